"""The trainer: epochs, per-epoch log, best-validation checkpoint, divergence stop.

One loop, :func:`fit_stepper`, drives a stepper of M models: an ordinary run is M = 1
(:class:`ModelStepper`, what :func:`fit` trains), the vectorised path the same loop with
a stacked step (:func:`antireg.vectorised.fit_stacked`). It knows nothing of any method:
AR, L2, SAM… all live in the :class:`TrainStep` it is handed.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Protocol, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from antireg.step import StepInfo, TrainStep

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def squared_error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example ½(f(x) − y)², so the Hessian of the mean is JᵀJ/n (SPEC's λ units)."""
    return 0.5 * (out.reshape(y.shape) - y) ** 2


def cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example −log softmax(f(x))_y."""
    return F.cross_entropy(out, y, reduction="none")


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    steps: int = 0
    diverged: bool = False
    divergence: str = ""


# Why a run stopped, worded the same for every run, one or many at a time.
def bad_step_reason(step: int) -> str:
    return f"non-finite loss or gradient at step {step}"


def bad_params_reason(step: int) -> str:
    return f"non-finite parameters at step {step}"


def epoch_row(
    epoch: int, train_loss: float, val_loss: float, grad_norm: float, clips: int, projs: int, steps: int
) -> dict:
    """One line of the per-epoch log: the means of the epoch's per-step losses and
    gradient norms, its clip and projection events and its number of steps."""
    return {
        "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "grad_norm": grad_norm,
        "clip_events": clips, "proj_events": projs, "steps": steps,
    }  # fmt: skip


@torch.no_grad()
def mean_loss(model: nn.Module, loss_fn: LossFn, X: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    value = float(loss_fn(model(X), y).mean())
    model.train()
    return value


class Stepper(Protocol):
    """M models that :func:`fit_stepper` trains in lockstep, each on its own data.

    ``n`` training points per model, their ``device``, and which models measure their
    gradient norm (``clipping``: the others report NaN by design). A call takes each
    model's batch indices, (M, b), or None for the full batch, makes one step of each,
    and returns its record and whether every model has now had a bad step (a stepper
    that would have to wait for the device to know answers False).
    """

    n_models: int
    n: int
    device: torch.device
    clipping: np.ndarray

    def __call__(self, idx: torch.Tensor | None) -> tuple[Any, bool]: ...

    def epoch_log(self, records: list) -> np.ndarray:
        """(4, M, steps) in double precision from an epoch's records: the loss at θ, the
        gradient norm the clip saw, and whether the clip and the projection fired."""

    def val_losses(self) -> torch.Tensor:
        """(M,) mean validation loss of each model."""

    def finite(self) -> torch.Tensor:
        """(M,) whether each model's parameters are all finite."""

    def keep(self, improved: np.ndarray) -> None:
        """Remember the current parameters of the models ``improved`` (M,) marks as their best."""

    def finish(self, results: list[FitResult], best: bool) -> None:
        """Leave each model holding its kept parameters (``best``) or its last ones, in
        eval mode, with its safeguards' counters at the steps ``results`` counted."""


class ModelStepper:
    """One model and its :class:`TrainStep`: the stepper of an ordinary run (M = 1)."""

    n_models = 1

    def __init__(
        self,
        model: nn.Module,
        step: TrainStep,
        loss_fn: LossFn,
        train: tuple[torch.Tensor, torch.Tensor],
        val: tuple[torch.Tensor, torch.Tensor],
    ) -> None:
        self.model, self.step, self.loss_fn = model, step, loss_fn
        self.X, self.y = train
        self.val = val
        self.n, self.device = self.X.shape[0], self.X.device
        self.clipping = np.array([step.clip is not None])
        self.best = copy.deepcopy(model.state_dict())
        model.train()

    def __call__(self, idx: torch.Tensor | None) -> tuple[StepInfo, bool]:
        xb, yb = (self.X, self.y) if idx is None else (self.X[idx[0]], self.y[idx[0]])
        info = self.step(lambda: self.loss_fn(self.model(xb), yb))
        # grad_norm is NaN by design when clipping is off, so only trust it when measured
        bad = not math.isfinite(info.loss) or (self.clipping[0] and not math.isfinite(info.grad_norm))
        return info, bad

    def epoch_log(self, records: list[StepInfo]) -> np.ndarray:
        return np.array([[r.loss, r.grad_norm, r.clipped, r.projected] for r in records], dtype=float).T[:, None]

    def val_losses(self) -> torch.Tensor:
        return torch.tensor([mean_loss(self.model, self.loss_fn, *self.val)], dtype=torch.float64)

    def finite(self) -> torch.Tensor:
        return torch.tensor([all(bool(torch.isfinite(p).all()) for p in self.model.parameters())])

    def keep(self, improved: np.ndarray) -> None:
        if improved[0]:
            self.best = copy.deepcopy(self.model.state_dict())

    def finish(self, results: list[FitResult], best: bool) -> None:
        # the step's safeguards counted every step themselves, and the loop stops at a bad one
        if best:
            self.model.load_state_dict(self.best)
        self.model.eval()


def _batches(
    stepper: Stepper, bs: int, generators: Sequence[torch.Generator | None], replacement: bool
) -> Iterator[torch.Tensor | None]:
    """Each model's batches of one epoch, (M, b) indices or None for the full batch,
    drawn on the CPU whatever the device, so every device sees the same batches.
    Without replacement, a permutation cut into ⌈n/b⌉ batches; with it, ⌈n/b⌉ batches of
    b indices each drawn by ``torch.randint(n, (b,), generator=g)`` when it is needed
    (the learned optimizer's minibatches, :meth:`antireg.lopt.tasks.Task.batch`)."""
    n = stepper.n
    if bs >= n:
        yield None
        return
    if not replacement:
        order = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(stepper.device)
    for start in range(0, n, bs):
        if replacement:
            yield torch.stack([torch.randint(n, (bs,), generator=g) for g in generators]).to(stepper.device)
        else:
            yield order[:, start : start + bs]


def fit_stepper(
    stepper: Stepper,
    epochs: int,
    batch_size: int | None = None,
    generators: Sequence[torch.Generator | None] | None = None,
    *,
    replacement: bool = False,
    max_steps: int | None = None,
    keep: Literal["best", "last"] = "best",
) -> list[FitResult]:
    """The trainer: ``epochs`` passes of each model over its batches, a per-epoch log,
    a divergence stop and a best-validation checkpoint per model.

    ``batch_size=None`` is full batch. ``replacement``: batches drawn with replacement
    (see :func:`_orders`); ``max_steps`` ends training after that many steps, the last
    epoch cut short (the learned optimizer's fixed budget: ``epochs=ceil(T / steps per
    epoch), max_steps=T``). ``keep="best"`` leaves each model at its lowest validation
    loss, ``"last"`` at its final parameters. A non-finite loss, measured gradient norm
    or parameter stops a model and marks it diverged (with reason and step); the others
    go on. The bookkeeping is array arithmetic over the M models; one model stops at its
    bad step at once, stacked ones run the epoch out and their logs say where each stopped
    (knowing at once would cost a host sync per step on a GPU).
    """
    M = stepper.n_models
    bs = stepper.n if batch_size is None else min(batch_size, stepper.n)
    generators = list(generators) if generators is not None else [None] * M
    results = [FitResult() for _ in range(M)]
    active = np.ones(M, dtype=bool)
    total_steps = np.zeros(M, dtype=np.int64)
    best_val = np.full(M, np.inf)
    best_epoch = np.full(M, -1)
    epoch_logs = []  # per epoch: (which models ran it, its per-model log columns)
    taken = 0  # steps of the stepper (all models step together)
    for epoch in range(epochs):
        log = []
        for idx in _batches(stepper, bs, generators, replacement):
            if max_steps is not None and taken >= max_steps:
                break
            record, all_bad = stepper(idx)
            log.append(record)
            taken += 1
            if all_bad:  # no model goes on: stop before another step counts
                break
        if not log:
            break
        loss, norm, clipped, projected = stepper.epoch_log(log)
        val_loss = stepper.val_losses().double().cpu().numpy()
        finite = stepper.finite().cpu().numpy()
        bad = _bad(np.stack([loss, norm]), stepper.clipping)
        bad_step = bad.any(1)
        used = np.where(bad_step, bad.argmax(1) + 1, loss.shape[1])  # the steps up to and including a bad one
        ran = np.arange(loss.shape[1]) < used[:, None]
        ran_now = active.copy()
        total_steps += np.where(active, used, 0)
        diverged = active & (bad_step | ~finite)
        for i in np.flatnonzero(diverged):
            reason = bad_step_reason if bad_step[i] else bad_params_reason
            results[i].diverged, results[i].divergence = True, reason(int(total_steps[i]))
        active &= ~diverged
        val_loss = np.where(active, val_loss, np.nan)
        improved = active & (val_loss < best_val)
        best_val[improved], best_epoch[improved] = val_loss[improved], epoch
        # means over the steps run, summed left to right (cumsum) as one run adds them up
        columns = (
            _mean(loss, ran, used), val_loss, _mean(norm, ran, used),
            (clipped * ran).sum(1).astype(int), (projected * ran).sum(1).astype(int), used,
        )  # fmt: skip
        # Python lists, not arrays: a small array kept per epoch on the C heap splits the block the
        # freed activations left, so glibc grows the heap by about an activation an epoch
        epoch_logs.append((ran_now.tolist(), [c.tolist() for c in columns]))
        if improved.any():
            stepper.keep(improved)
        if not active.any():
            break
    for i, r in enumerate(results):
        r.steps, r.best_val_loss, r.best_epoch = int(total_steps[i]), float(best_val[i]), int(best_epoch[i])
        logged = [(epoch, cols) for epoch, (ran_now, cols) in enumerate(epoch_logs) if ran_now[i]]
        r.history = [epoch_row(epoch, *(c[i] for c in cols)) for epoch, cols in logged]
    stepper.finish(results, keep == "best")
    return results


def _bad(loss_norm: np.ndarray, clipping: np.ndarray) -> np.ndarray:
    """(M, steps): a non-finite loss, or a non-finite gradient norm where it is measured."""
    loss, norm = loss_norm
    return ~np.isfinite(loss) | (clipping[:, None] & ~np.isfinite(norm))


def _mean(values: np.ndarray, ran: np.ndarray, used: np.ndarray) -> np.ndarray:
    return np.cumsum(np.where(ran, values, 0.0), axis=1)[:, -1] / used


def fit(
    model: nn.Module,
    step: TrainStep,
    loss_fn: LossFn,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    epochs: int,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    *,
    replacement: bool = False,
    max_steps: int | None = None,
    keep: Literal["best", "last"] = "best",
) -> FitResult:
    """Train one model for ``epochs`` and restore the parameters of its best validation
    loss (by default): :func:`fit_stepper` with M = 1, whose docstring says what
    ``replacement``, ``max_steps`` and ``keep`` change."""
    stepper = ModelStepper(model, step, loss_fn, train, val)
    return fit_stepper(stepper, epochs, batch_size, [generator], replacement=replacement, max_steps=max_steps,
                       keep=keep)[0]  # fmt: skip
