"""Meta-training by truncated unrolls with backpropagation through the unroll.

Each task is trained by the learned optimizer for ``truncations`` segments of
``unroll`` steps. After each segment the meta-objective of that segment
(``antireg.lopt.objectives``) is backpropagated through its steps into φ, the
meta-gradient clipped to norm ``grad_clip`` and an Adam step taken on φ; θ and the
optimizer state then go on from where they are, detached (truncated BPTT,
Andrychowicz et al. 2016; Sahoo & Krishnan 2025 train their LSTM optimizer so).
Then a fresh task is drawn.

``second_order=False`` feeds the optimizer detached gradients, dropping the
second-derivative terms ∂g_t/∂φ from the meta-gradient as Andrychowicz et al. do;
``True`` keeps them, so the meta-gradient is exact.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Callable

import torch

from antireg.lopt.objectives import MetaObjective, surrogate_term
from antireg.optimizers.learned import LOptNet, State
from antireg.lopt.tasks import Params, Task


@dataclass(frozen=True)
class MetaSettings:
    iterations: int = 200  # meta-gradient steps
    unroll: int = 20  # optimizer steps per truncation
    truncations: int = 5  # truncations per task
    meta_lr: float = 3e-3
    grad_clip: float = 1.0
    second_order: bool = False


@dataclass
class Unroll:
    """Where a task's training stands: θ and the optimizer state (momenta, step, LSTM state) per tensor."""

    params: Params
    states: dict[str, State]


def start(net: LOptNet, task: Task) -> Unroll:
    params = task.init_params()
    return Unroll(params, {n: net.init_state(p) for n, p in params.items()})


def _detached(u: Unroll) -> Unroll:
    return Unroll(
        {n: p.detach() for n, p in u.params.items()},
        {n: {k: v.detach() for k, v in s.items()} for n, s in u.states.items()},
    )


def unroll(
    net: LOptNet,
    task: Task,
    objective: MetaObjective,
    state: Unroll,
    steps: int,
    generator: torch.Generator,
    second_order: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, Unroll]:
    """Run ``steps`` optimizer steps from ``state`` (detached first).

    Returns (Ĵ, J_plain, end state): the surrogate meta-objective, whose φ-gradient is
    the meta-gradient, and (1/T) Σ_t L(θ_t; B_t), the plain training loss along the
    unroll (equal in value and gradient to Ĵ for the plain objective).
    """
    state = _detached(state)
    params = {n: p.requires_grad_() for n, p in state.params.items()}
    states = state.states
    surrogate, plain = torch.zeros(()), torch.zeros(())
    loss = task.loss(params, task.batch(generator))
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=second_order)
    for _ in range(steps):
        new_params, new_states = {}, {}
        for (name, p), g in zip(params.items(), grads):
            delta, new_states[name] = net(p, g, states[name])
            new_params[name] = p + delta
        params, states = new_params, new_states
        batch = task.batch(generator)
        loss = task.loss(params, batch)
        # retain_graph: the loss itself is part of the meta-objective's graph
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=second_order, retain_graph=True)
        if objective.is_plain_train_loss:
            surrogate = surrogate + loss / steps
        else:
            data = batch if objective.data == "train" else task.batch(generator, "val")
            surrogate = surrogate + surrogate_term(objective.direction(task, params, data), params) / steps
        plain = plain + loss / steps
    return surrogate, plain, Unroll(params, states)


def meta_train(
    net: LOptNet,
    sample_task: Callable[[random.Random], Task],
    objective: MetaObjective,
    settings: MetaSettings,
    seed: int = 0,
    log: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Meta-train ``net`` in place; returns one record per meta-iteration (also passed to ``log``).

    A segment whose meta-objective or meta-gradient is not finite is skipped and
    its task dropped (counted in the record as ``skipped``).
    """
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=settings.meta_lr)
    history: list[dict] = []
    begin = time.perf_counter()
    task, state, segment = None, None, 0
    for it in range(settings.iterations):
        if task is None or segment == settings.truncations:
            task = sample_task(rng)
            state, segment = start(net, task), 0
        surrogate, plain, end = unroll(net, task, objective, state, settings.unroll, generator, settings.second_order)
        opt.zero_grad()
        surrogate.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(net.parameters(), settings.grad_clip))
        skipped = not (math.isfinite(norm) and math.isfinite(plain.item()))
        record = {"iteration": it, "task": task.name, "segment": segment, "train_loss": plain.item(),
                  "meta_grad_norm": norm, "skipped": skipped, "wall_s": time.perf_counter() - begin}  # fmt: skip
        if skipped:
            task = None
        else:
            opt.step()
            state, segment = end, segment + 1
        history.append(record)
        if log is not None:
            log(record)
    return history
