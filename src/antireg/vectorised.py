"""Vectorised training: M models of one architecture trained at once, as one batched model.

The counterpart of :func:`antireg.train.fit` for M runs that share an architecture,
a training size and an optimizer. :func:`torch.func.stack_module_state` stacks the
models' parameters along a new leading dimension, and one batched pass runs every
model on its own mini-batch: ``vmap`` over :func:`torch.func.functional_call` for any
architecture, batched matrix products (``bmm``, bias and ReLU in place) for MLPs, where they give the
same numbers several times faster than ``vmap``'s generic linear. Each model keeps its own data, initialisation and batch order, its
own λ, clipping threshold and trust region (with their counters), and its own
divergence stop and best-validation checkpoint.

No operation mixes models: matrix products are batched per model, the penalty, the
safeguards and the optimizer update are elementwise or per-model reductions, so a
model that diverges leaves the others untouched. The arithmetic is the sequential
step's (rule → + λ(θ − θ_c) → clip → optimizer → projection), with the single step's
own stages, batched, and results agree with ``fit`` up to float rounding: batched
products round differently from single ones, and by the shape of the batch, so a
model's last bits depend on how many models share its batch (the sweep keeps batches
fixed).

Supported (:func:`unsupported` says why not otherwise): the gradient rules of
:data:`STACKED_RULES` (ERM, so AR and L2, with or without safeguards; SAM, ASAM and
GSAM and GR's and IGR's finite differences, their second pass batched like the first and their
ε̂ and update from each model's own rule; batch-level flooding; all mixed freely in one
stack), ``torch.optim.SGD`` and ``Adam``, models
without buffers (no BatchNorm), no autocast or loss scaling.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping, Sequence
from functools import partial
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from antireg.penalty import ProximityPenalty
from antireg.rules import ASAM, ERM, GSAM, IGR, RULES, SAM, Flooding, GradientNorm
from antireg.rules.base import perturbed
from antireg.safeguards import GradClip, TrustRegion
from antireg.step import TrainStep
from antireg.train import FitResult, LossFn, fit_stepper

OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam)
# the gradient rules whose runs train stacked, by their names in antireg.rules.RULES (GR and IGR
# only by finite differences: see stackable)
STACKED_RULES = {
    "erm": ERM, "flooding": Flooding, "sam": SAM, "asam": ASAM, "gsam": GSAM,
    "gr": GradientNorm, "gr_fd_forward": GradientNorm, "gr_fd_backward": GradientNorm, "igr": IGR,
}  # fmt: skip


def stackable(rule: str, params: Mapping[str, Any] | None = None) -> bool:
    """Whether runs of the gradient rule named ``rule`` (a key of
    :data:`antireg.rules.RULES`) with parameters ``params`` can train stacked, M models as
    one batched model. GR and IGR stack only in a finite-difference mode: the mode the name
    fixes, else ``params["mode"]``, else the rule's default (double backprop: not stacked)."""
    if rule not in STACKED_RULES:
        return False
    if not issubclass(STACKED_RULES[rule], GradientNorm):
        return True
    factory = RULES[rule]
    default = inspect.signature(STACKED_RULES[rule]).parameters["mode"].default
    mode = {"mode": default, **(params or {}), **getattr(factory, "keywords", {})}["mode"]
    return mode != "db"


def unsupported(model: nn.Module, step: TrainStep) -> str | None:
    """Why ``step`` cannot be vectorised, or None when it can."""
    if type(step.rule) not in STACKED_RULES.values():
        return f"gradient rule {step.rule!r} (only {', '.join(STACKED_RULES)} are vectorised)"
    if isinstance(step.rule, Flooding) and step.rule.per_example:
        return "per-example flooding (its transform of the losses is not batched)"
    if isinstance(step.rule, GradientNorm) and step.rule.mode == "db":
        return "GR or IGR by double backpropagation (only their finite differences are batched)"
    if type(step.optimizer) not in OPTIMIZERS:
        return f"optimizer {type(step.optimizer).__name__} (only SGD and Adam are vectorised)"
    if step.autocast is not None or step.scaler is not None:
        return "autocast or loss scaling"
    if next(model.buffers(), None) is not None:
        return "a model with buffers (e.g. BatchNorm)"
    return None


ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.GELU)  # activations that apply to stacked tensors as they are


def _is_mlp(model: nn.Module) -> bool:
    """An nn.Sequential of Flatten (the default dims), Linear and elementwise activations."""
    return isinstance(model, nn.Sequential) and all(
        isinstance(m, (nn.Linear, *ELEMENTWISE)) or (isinstance(m, nn.Flatten) and (m.start_dim, m.end_dim) == (1, -1))
        for m in model
    )


def _mlp_forward(mlp: nn.Sequential, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """M stacked MLPs on their (M, n, …) inputs: each Linear as one batched product θ-slice
    by θ-slice, then the bias added in place (model i's x·Wᵀ + b, rounded as its own addmm
    and as ``vmap`` over ``functional_call`` round it). ``vmap`` turns a Linear into a matmul,
    copies and a broadcast add, 1.5–3× slower on layers this small; ``baddbmm`` first copies
    the broadcast bias into its output, which costs as much as the product at 8 inputs.
    ReLU runs in place on the tensors made here (never on the caller's input): autograd
    needs neither a product's output nor a bias sum's, and the validation pass allocates
    half as much."""
    owned = False  # whether x is a tensor made here, free to overwrite
    for name, layer in mlp.named_children():
        if isinstance(layer, nn.Linear):
            x = torch.bmm(x, params[f"{name}.weight"].transpose(1, 2))
            if (bias := params.get(f"{name}.bias")) is not None:
                x.add_(bias.unsqueeze(1))
            owned = True
        elif isinstance(layer, nn.Flatten):
            x = x.flatten(2)  # per model, flatten(1) of its (n, …) input
        elif isinstance(layer, nn.ReLU) and owned:
            x = x.relu_()
        else:
            x = layer(x)
            owned = True
    return x


class _Evaluated:
    """One model's batch whose plain pass the stack has made: what a rule that reshapes
    the plain gradient (batch-level flooding) reads as its ``Batch``."""

    def __init__(self, loss: torch.Tensor, grads: list[torch.Tensor]) -> None:
        self.loss, self.grads = loss, grads

    def grad(self, transform: None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if transform is not None:
            raise ValueError("a transform of the losses needs its own pass")
        return self.loss, self.grads


class StackedStep:
    """One training step of M stacked models: the arithmetic of their M TrainSteps, batched.

    The M models' parameters live in one (M, P) leaf tensor, ``flat``, row i being
    model i's parameters flattened in ``named_parameters`` order; the layers'
    stacked (M, …) tensors are views of it. The penalty, the clip and the trust region
    are the single step's own stages (:mod:`antireg.safeguards`) over these rows, so each
    is one or two operations over the whole stack, whatever the number of layers.

    Reads each model's configuration (λ and θ_c, clip threshold, trust radius and
    θ_ref, optimizer hyperparameters) from its TrainStep, so runs are configured in
    one place whichever path trains them. Calling it returns per-model (M,) tensors:
    the loss at θ, the gradient norm the clip saw (NaN without clipping), and
    whether the clip and the projection fired.
    """

    def __init__(self, models: Sequence[nn.Module], steps: Sequence[TrainStep], loss_fn: LossFn) -> None:
        for model, step in zip(models, steps, strict=True):
            if (reason := unsupported(model, step)) is not None:
                raise ValueError(f"cannot vectorise {reason}")
        opt = steps[0].optimizer
        if any(type(s.optimizer) is not type(opt) or s.optimizer.defaults != opt.defaults for s in steps):
            raise ValueError("vectorised models must share one optimizer and its hyperparameters")
        stacked, _ = stack_module_state(list(models))  # (M, …) per parameter, in named_parameters order
        self.names = list(stacked)
        self.shapes = [t.shape[1:] for t in stacked.values()]
        self.sizes = [t[0].numel() for t in stacked.values()]
        self.flat = self._flatten(list(stacked.values())).requires_grad_()
        self.optimizer = type(opt)([self.flat], **opt.defaults)

        thetas = [list(m.parameters()) for m in models]  # θ₀, the default θ_c and θ_ref
        rows, blocks = [self.flat], self.sizes
        self.penalty = self.clip = self.trust_region = None
        if any(s.penalty for s in steps):
            centers = [s.penalty.center if s.penalty and s.penalty.center else None for s in steps]
            center = "zero"  # θ_c = 0 for all
            if any(c is not None for c in centers):
                zeros = [[torch.zeros_like(p) for p in t] for t in thetas]
                center = [self._rows([c if c is not None else z for c, z in zip(centers, zeros)])]
            lam = [s.penalty.lam if s.penalty else 0.0 for s in steps]
            self.penalty = ProximityPenalty(rows, lam, center, blocks=blocks)
        if any(s.clip for s in steps):
            self.clip = GradClip(rows, [s.clip.max_norm if s.clip else torch.inf for s in steps], blocks=blocks)
        if any(s.trust_region for s in steps):
            ref = self._rows([s.trust_region.ref if s.trust_region else t for s, t in zip(steps, thetas)])
            radius = [s.trust_region.radius if s.trust_region else torch.inf for s in steps]
            self.trust_region = TrustRegion(rows, radius, ref=[ref], blocks=blocks)

        self.rules = [s.rule for s in steps]
        # the models whose rule reshapes the plain gradient (flooding), and those whose rule
        # needs the gradient at θ + ε̂ too (SAM, ASAM, GSAM, GR's finite differences), with
        # the rule's ε̂ and combination of g and gᵖ; ERM's direction is g itself
        self.one_pass = [i for i, r in enumerate(self.rules) if isinstance(r, Flooding)]
        self.two_pass = {i: r for i, r in enumerate(self.rules) if isinstance(r, (SAM, GradientNorm))}
        if self.one_pass or self.two_pass:
            self._init_rule_buffers()

        base = copy.deepcopy(models[0]).to("meta")  # the architecture; parameters come from the stack
        if _is_mlp(base):
            self.forward = partial(_mlp_forward, base)
        else:  # any other architecture (e.g. a CNN): the generic batched call
            self.forward = vmap(lambda p, x: functional_call(base, p, (x,)))
        self.loss_fn = loss_fn

    @staticmethod
    def _flatten(stacked: Sequence[torch.Tensor]) -> torch.Tensor:
        """(M, …) tensors → one (M, P) tensor."""
        return torch.cat([t.detach().flatten(1) for t in stacked], dim=1)

    def _rows(self, per_model: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
        """M lists of parameter-shaped tensors → one (M, P) tensor."""
        return self._flatten([torch.stack(ts) for ts in zip(*per_model)])

    def stacked_params(self, flat: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Name → (M, …) views of ``flat`` (of the parameters by default)."""
        flat = self.flat if flat is None else flat
        chunks = flat.split(self.sizes, dim=1)
        return {name: c.view(-1, *shape) for name, shape, c in zip(self.names, self.shapes, chunks)}

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(M,) mean loss of each model on its own batch: x (M, b, …), y (M, b).

        The loss is per example, so it runs on the M·b examples as one batch (no
        ``vmap``, whose dispatch costs more than the loss itself at these sizes)."""
        out = self.forward(self.stacked_params(), x)
        return self.loss_fn(out.flatten(0, 1), y.flatten(0, 1)).view(y.shape[:2]).mean(1)

    def loss_grad(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(M,) losses and the (M, P) gradient: Σ over models couples no two of them, so
        row i of the gradient is model i's ∇L."""
        loss = self.losses(xb, yb)
        (grad,) = torch.autograd.grad(loss.sum(), self.flat)
        return loss, grad

    def _init_rule_buffers(self) -> None:
        """Buffers of g, gᵖ and ε̂ with each model's parameter-shaped views into them, made
        once: the rules' arithmetic runs model by model on these views."""
        self._g, self._g_p, self._eps = (torch.zeros_like(self.flat, requires_grad=False) for _ in range(3))
        views = lambda t: [[c[i].view(s) for c, s in zip(t.split(self.sizes, 1), self.shapes)]  # noqa: E731
                           for i in range(len(self.rules))]
        self._g_rows, self._g_p_rows, self._eps_rows = views(self._g), views(self._g_p), views(self._eps)
        # what SAM-type rules read of a batch: ASAM's |w| of the parameters named *weight*
        params = views(self.flat.detach())
        self._batches = [SimpleNamespace(names=self.names, params=p) for p in params]
        for rule in self.rules:
            if hasattr(rule, "bind"):  # GSAM's ρ schedule follows the (shared) learning rate
                rule.bind(self.optimizer)

    def _rule_directions(
        self, xb: torch.Tensor, yb: torch.Tensor, loss: torch.Tensor, grad: torch.Tensor
    ) -> torch.Tensor:
        """(M, P): each model's update direction from its own rule, the rules' arithmetic
        model by model. Flooding reshapes g (its rule reads this pass as its batch's);
        two-pass rules take ε̂ from g, one batched pass at θ + ε̂ (ε̂ = 0 for the other
        models) gives gᵖ, and the rule combines g and gᵖ."""
        self._g.copy_(grad)
        for i in self.one_pass:
            _, direction = self.rules[i].gradient(_Evaluated(loss[i].detach(), self._g_rows[i]))
            torch._foreach_copy_(self._g_rows[i], direction)
        if self.two_pass:
            for i, rule in self.two_pass.items():
                torch._foreach_copy_(self._eps_rows[i], rule.epsilon(self._batches[i], self._g_rows[i]))
            with perturbed([self.flat], [self._eps]):
                self._g_p.copy_(self.loss_grad(xb, yb)[1])
            for i, rule in self.two_pass.items():
                torch._foreach_copy_(self._g_rows[i], rule.combine(self._g_rows[i], self._g_p_rows[i]))
        return self._g

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """rule → penalty → clip → optimizer.step() → projection, as TrainStep orders them."""
        loss, grad = self.loss_grad(xb, yb)
        if self.one_pass or self.two_pass:
            grad = self._rule_directions(xb, yb, loss, grad)
        self.flat.grad = grad
        if self.penalty is not None:
            self.penalty()
        none = torch.zeros(len(loss), dtype=torch.bool, device=loss.device)
        clipped = self.clip() if self.clip is not None else none
        norm = self.clip.last_norm if self.clip is not None else torch.full_like(loss, torch.nan)
        self.optimizer.step()
        projected = self.trust_region() if self.trust_region is not None else none
        return loss.detach(), norm, clipped, projected

    @torch.no_grad()
    def val_losses(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.losses(X, y)

    @torch.no_grad()
    def finite(self) -> torch.Tensor:
        """(M,) whether all of each model's parameters are finite. A row with an inf or a
        NaN has a non-finite sum, so a finite float32 row sum proves the row finite; only
        rows whose sum is not (an overflow, or a real inf/NaN) are summed again in double
        precision, which is finite exactly when every entry is. Several times cheaper
        than ``isfinite(…).all(1)`` or a double sum of every row."""
        finite = torch.isfinite(self.flat.sum(1))
        if not finite.all():
            rows = (~finite).nonzero().squeeze(1)
            finite[rows] = torch.isfinite(self.flat[rows].sum(1, dtype=torch.float64))
        return finite


class StackedStepper:
    """M models as one :class:`StackedStep`, each with its own data, generator and step:
    the stepper of :func:`antireg.train.fit_stepper` for the vectorised path."""

    def __init__(
        self,
        models: Sequence[nn.Module],
        steps: Sequence[TrainStep],
        loss_fn: LossFn,
        train: Sequence[tuple[torch.Tensor, torch.Tensor]],
        val: Sequence[tuple[torch.Tensor, torch.Tensor]],
    ) -> None:
        self.stacked = StackedStep(models, steps, loss_fn)
        self.models, self.steps = list(models), list(steps)
        self.X, self.y = (torch.stack(parts) for parts in zip(*train))
        self.X_val, self.y_val = (torch.stack(parts) for parts in zip(*val))
        self.n_models, self.n = self.X.shape[:2]
        self.device = self.X.device
        self.clipping = np.array([s.clip is not None for s in steps])
        self.rows = torch.arange(self.n_models, device=self.device)[:, None]
        self.best = self.stacked.flat.detach().clone()

    def __call__(self, idx: torch.Tensor | None) -> tuple[torch.Tensor, bool]:
        xb, yb = (self.X, self.y) if idx is None else (self.X[self.rows, idx], self.y[self.rows, idx])
        return torch.stack([v.to(self.X.dtype) for v in self.stacked(xb, yb)]), False

    def epoch_log(self, records: list[torch.Tensor]) -> np.ndarray:
        return torch.stack(records, dim=2).double().cpu().numpy()  # one transfer per epoch

    def val_losses(self) -> torch.Tensor:
        return self.stacked.val_losses(self.X_val, self.y_val)

    def finite(self) -> torch.Tensor:
        return self.stacked.finite()

    def keep(self, improved: np.ndarray) -> None:
        flat = self.stacked.flat.detach()
        if improved.all():
            self.best.copy_(flat)
        else:  # one pass, in place: cheaper than gathering and scattering the rows
            torch.where(torch.as_tensor(improved, device=self.device)[:, None], flat, self.best, out=self.best)

    def finish(self, results: list[FitResult], best: bool) -> None:
        """Copy each model's kept (or last) parameters back into it, and add the steps and
        events its log counted to its TrainStep's clip and trust region, as its own run would."""
        for step, r in zip(self.steps, results):
            clips, projs = sum(h["clip_events"] for h in r.history), sum(h["proj_events"] for h in r.history)
            for guard, events in ((step.clip, clips), (step.trust_region, projs)):
                if guard is not None:
                    guard.steps += r.steps
                    guard.events += events
        with torch.no_grad():
            for i, model in enumerate(self.models):
                named = dict(model.named_parameters())
                for name, b in self.stacked.stacked_params(self.best if best else self.stacked.flat).items():
                    named[name].copy_(b[i])
                model.eval()


def fit_stacked(
    models: Sequence[nn.Module],
    steps: Sequence[TrainStep],
    loss_fn: LossFn,
    train: Sequence[tuple[torch.Tensor, torch.Tensor]],
    val: Sequence[tuple[torch.Tensor, torch.Tensor]],
    epochs: int,
    batch_size: int | None = None,
    generators: Sequence[torch.Generator] | None = None,
    *,
    replacement: bool = False,
    max_steps: int | None = None,
    keep: Literal["best", "last"] = "best",
) -> list[FitResult]:
    """:func:`antireg.train.fit` for M models at once, each with its own data, step and
    generator: :func:`antireg.train.fit_stepper` with a :class:`StackedStepper`.

    Returns one :class:`FitResult` per model, leaves each model holding its
    best-validation parameters (or its last, ``keep="last"``; in eval mode), and adds
    each model's step and event counts to its TrainStep's clip and trust region, as the
    sequential path would. ``replacement``, ``max_steps``, ``keep``: as for ``fit``.
    """
    stepper = StackedStepper(models, steps, loss_fn, train, val)
    return fit_stepper(stepper, epochs, batch_size, generators, replacement=replacement, max_steps=max_steps,
                       keep=keep)  # fmt: skip
