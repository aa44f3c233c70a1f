"""The gradient rules of :mod:`antireg.rules` as ``torch.optim`` optimizers.

Each wrapper is a real :class:`torch.optim.Optimizer` around a base optimizer
built from its class and keyword arguments, e.g.
``SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)``.
``param_groups`` and ``state`` are the base optimizer's own, so lr schedulers
attach to the wrapper (and GSAM's ρ schedule follows the scheduled lr).

``step(closure)`` follows torch's convention: the closure zeroes the gradients,
computes the loss, calls ``backward()`` and returns the loss; the wrapper calls it
as many times as the rule needs. Rules that need Hessian-vector products (GAM,
GradNorm and IGR with ``mode="db"``) call it as ``closure(create_graph=True)``, so
their closure passes that flag on::

    def closure(create_graph=False):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward(create_graph=create_graph)
        return loss

Gradients come from ``backward()``, so under
``DistributedDataParallel`` every pass is all-reduced. The rule's arithmetic is
the one in :mod:`antireg.rules` (the same objects ``TrainStep`` runs); only the way
a gradient is obtained differs (:class:`ClosureBatch`).
"""

from __future__ import annotations

import inspect
import warnings
from contextlib import nullcontext
from functools import cached_property
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Literal

import torch

from antireg import defaults
from antireg.penalty import ProximityPenalty
from antireg.rules.erm import ERM
from antireg.safeguards import GradClip, TrustRegion, spectral_clamp
from antireg.schedules import Schedule
from antireg.spectral import ETA
from antireg.step import load_safeguard_state, safeguard_state

from antireg.rules import base, gam, gr, sam
from antireg.rules.base import Grads, Rule, dot, frozen_stats, grad_of

TorchClosure = Callable[..., torch.Tensor]


def _grads(params: list[torch.Tensor], take: bool = False) -> Grads:
    """Every ``p.grad`` (zeros where a parameter got none), kept apart from what the closure's
    next ``backward()`` writes. ``take``: hand the tensors over and set ``p.grad = None`` (the
    next backward then allocates new ones; no copy); a gradient that is a view, as into a flat
    gradient buffer the closure may write again, is copied, as is every one without ``take``."""
    out = []
    for p in params:
        g = p.grad
        if g is None:
            out.append(torch.zeros_like(p))
        elif take and not g._is_view():
            out.append(g)
            p.grad = None
        else:
            out.append(g.detach().clone())
    return out


def _names(params: list[torch.Tensor], modules: Iterable[torch.nn.Module]) -> list[str]:
    """Each parameter's name in ``modules`` (by identity; "" when not found): ASAM
    normalises only "*weight*" tensors."""
    named = {id(q): n for m in modules for n, q in m.named_parameters()}
    return [named.get(id(p), "") for p in params]


class ClosureBatch:
    """The :class:`antireg.rules.base.Batch` interface over a torch-convention closure.

    ``grad()`` calls the closure (which runs ``backward()``) and reads ``p.grad``;
    ``grad_hvp()`` calls ``closure(create_graph=True)`` and differentiates ``p.grad``
    once more. Every call after the first runs with the normalisation layers' running
    statistics frozen (``modules``: where to find them), so BatchNorm is updated
    once per step, as by one plain forward pass.
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        closure: TorchClosure,
        modules: Iterable[torch.nn.Module],
        loss_scale: float = 1.0,
        norm_layers: list[torch.nn.Module] | None = None,
        names: Callable[[], list[str]] | None = None,
    ) -> None:
        self.params = params
        self.loss_scale = float(loss_scale)
        self.modules = list(modules)
        self.norm_layers = norm_layers if norm_layers is not None else base.norm_layers(self.modules)
        self._find_names = names if names is not None else lambda: _names(self.params, self.modules)
        self.closure = closure
        self._evaluated = False

    @cached_property
    def names(self) -> list[str]:
        """Each parameter's name (only ASAM asks, so it is found only then)."""
        return self._find_names()

    def _evaluate(self, **kwargs: Any) -> torch.Tensor:
        """Call the closure; every call after the first with the running statistics frozen."""
        frozen = self._evaluated and self.norm_layers
        with frozen_stats(self.norm_layers) if frozen else nullcontext(), torch.enable_grad():
            loss = self.closure(**kwargs)
        self._evaluated = True
        return loss

    def grad(self, transform: Callable | None = None) -> tuple[torch.Tensor, Grads]:
        if transform is not None:
            raise ValueError("a torch-convention closure returns the mean loss: per-example transforms are not available")
        loss = self._evaluate()
        return self._true_sizes(loss, _grads(self.params, take=True))

    def _true_sizes(self, loss: torch.Tensor, *results: Grads) -> tuple:
        """(L, *results) divided by S: the closure backpropagated scaler.scale(loss), the rule needs true sizes."""
        if self.loss_scale != 1.0:
            for r in results:
                torch._foreach_div_(r, self.loss_scale)
            loss = loss / self.loss_scale
        return (loss.detach(), *results)

    def grad_hvp(self, v: Grads | None = None) -> tuple[torch.Tensor, Grads, Grads]:
        """(L, ∇L, H v) by double backpropagation, as :meth:`antireg.rules.base.Batch.grad_hvp`:
        ``closure(create_graph=True)`` leaves a differentiable ∇L in ``p.grad`` (summed over
        whatever micro-batches the closure accumulates, so v = ∇L is the whole batch's), and
        H v = ∇⟨∇L, sg(v)⟩; ``v=None`` means v = ∇L."""
        _refuse_distributed_double_backprop()
        _check_create_graph(self.closure)
        with warnings.catch_warnings():
            # backward(create_graph=True) links p.grad and p in a cycle: _grads_and_hvp breaks it
            warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")
            loss = self._evaluate(create_graph=True)
        return self._true_sizes(loss, *_grads_and_hvp(self.params, self.loss_scale, v))


def _grads_and_hvp(params: list[torch.Tensor], scale: float = 1.0, v: Grads | None = None) -> tuple[Grads, Grads]:
    """(S·∇L, S·H v) from the differentiable S·∇L that ``backward(create_graph=True)`` left in
    ``p.grad`` (S: the loss scale; ``v=None`` means v = ∇L), by H v = ∇⟨∇L, sg(v)⟩; then
    ``p.grad = None``, which frees the graph and breaks the cycle p → p.grad → graph → p."""
    if not any(p.grad is not None and p.grad.requires_grad for p in params):
        raise ValueError("this rule needs Hessian-vector products: the gradients must come from "
                         "loss.backward(create_graph=True)")
    g = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    for p in params:
        p.grad = None
    vec = v if v is not None else [gi.detach() / scale for gi in g]
    with torch.enable_grad():
        hvp = grad_of(dot(g, vec), params)
    return [gi.detach() for gi in g], hvp


def _check_create_graph(closure: TorchClosure) -> None:
    """A clear error, before any pass, when the closure cannot take ``create_graph``."""
    try:
        params = inspect.signature(closure).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins): let the call decide
        return
    if not any(p.name == "create_graph" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        raise ValueError(
            "this rule needs Hessian-vector products: its closure must take create_graph and pass it to "
            "backward, i.e. def closure(create_graph=False): opt.zero_grad(); loss = ...; "
            "loss.backward(create_graph=create_graph); return loss"
        )


def _refuse_distributed_double_backprop() -> None:
    """DDP all-reduces the values of ∇L but not its graph, so a Hessian-vector product through
    p.grad would be each rank's own and the replicas would drift apart: refuse instead."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        raise ValueError(
            "double backprop (GAM, GradNorm/IGR with mode='db') is not available under DistributedDataParallel "
            f"(world size {dist.get_world_size()}): DDP all-reduces gradients but not their graph, so the "
            "Hessian-vector products would differ between ranks. Use GradNorm/IGR with mode='fd_forward', "
            "or train on one process"
        )


class RuleOptimizer(torch.optim.Optimizer):
    """A base optimizer driven by a gradient rule: ``step(closure)`` leaves the rule's
    gradient in every ``p.grad`` and calls the base optimizer's ``step()``.

    ``modules``: the model(s) whose BatchNorm running statistics must be updated
    only once per step (pass ``model``; without it they are updated on every pass).
    """

    def __init__(
        self,
        params: Iterable,
        base_optimizer: type[torch.optim.Optimizer],
        rule: Rule,
        modules: Iterable[torch.nn.Module] | torch.nn.Module = (),
        **base_kwargs: Any,
    ) -> None:
        self.base_optimizer = base_optimizer(params, **base_kwargs)
        super().__init__(self.base_optimizer.param_groups, self.base_optimizer.defaults)
        # share, not copy: schedulers and state_dict see the base's groups and state
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        self.rule = rule
        self.modules = [modules] if isinstance(modules, torch.nn.Module) else list(modules)
        self._norm_layers = base.norm_layers(self.modules)  # found once: walking the model every pass costs
        self._named: tuple[tuple[int, ...], list[str]] = ((), [])
        if hasattr(rule, "bind"):
            rule.bind(self)

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"] if p.requires_grad]

    def _names_of(self, params: list[torch.Tensor]) -> list[str]:
        """:func:`_names`, found again only when the parameters change (add_param_group)."""
        key = tuple(map(id, params))
        if self._named[0] != key:
            self._named = (key, _names(params, self.modules))
        return self._named[1]

    def state_dict(self) -> dict[str, Any]:
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # torch's load_state_dict replaces ``state`` and ``param_groups``: load into
        # the base optimizer and share its new ones again
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state

    @torch.no_grad()
    def step(  # type: ignore[override]
        self, closure: TorchClosure | None = None, scaler: torch.amp.GradScaler | None = None
    ) -> torch.Tensor:
        """One step. With ``scaler`` (a ``torch.amp.GradScaler``) the closure backpropagates
        ``scaler.scale(loss)`` and returns it; the wrapper unscales once, the scaler
        skips the step when any pass found an inf/NaN, and ``scaler.update()`` runs
        once. Returns the (unscaled) loss at θ."""
        if closure is None:
            raise ValueError(f"{type(self).__name__}.step needs a closure (it evaluates the loss more than once)")
        params = self._params()
        scale = float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else 1.0
        loss, grads = self.rule.gradient(ClosureBatch(params, closure, self.modules, scale, self._norm_layers,
                                                           lambda: self._names_of(params)))
        self._apply(params, grads, scaler, scale)
        return loss

    def _apply(self, params: list[torch.Tensor], grads: Grads, scaler: torch.amp.GradScaler | None = None,
               scale: float = 1.0) -> None:
        """p.grad ← the rule's direction; penalty, clip, base step (through ``scaler``), projection."""
        for p, g in zip(params, grads):
            p.grad = g
        self._add_penalty()
        if scaler is not None:
            # GradScaler's inf check and skip expect S·g; S is a power of two, so ×S then unscale_ is exact
            torch._foreach_mul_(grads, scale)
            scaler.unscale_(self.base_optimizer)
        self._clip()
        if scaler is None:
            self.base_optimizer.step()
        else:
            scaler.step(self.base_optimizer)
            scaler.update()
        self._project()

    def _add_penalty(self) -> None:
        """Hook after the rule's gradient (AntiReg: λ(θ − θ₀))."""

    def _clip(self) -> None:
        """Hook on the true gradient before the base step (AntiReg: clipping)."""

    def _project(self) -> None:
        """Hook after the base step (AntiReg: trust-region projection)."""


class _TwoSteps(RuleOptimizer):
    """``first_step()`` / ``second_step()`` for hand-written loops, as in davda54/sam::

        loss_fn(model(x), y).backward(); opt.first_step(zero_grad=True)   # θ ← θ + ε̂(g)
        loss_fn(model(x), y).backward(); opt.second_step(zero_grad=True)  # θ back, step along the rule

    The same arithmetic as ``step(closure)`` (the rule's ``perturbation`` and ``combine``). Unlike
    ``step``, the second forward pass updates BatchNorm's running statistics again unless
    the loop prevents it, and there is no GradScaler path: use ``step(closure, scaler)`` for AMP.
    """

    _pending: tuple[list[torch.Tensor], Any] | None = None

    def _read(self, params: list[torch.Tensor]) -> Any:
        """What the rule takes from one pass: g (a copy; p.grad stays as it is)."""
        return _grads(params)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        params = self._params()
        first = self._read(params)
        view = SimpleNamespace(params=params, names=self._names_of(params))
        direction, scale = self.rule.perturbation(view, first)
        saved = [p.detach().clone() for p in params]
        torch._foreach_add_(params, direction, alpha=scale)  # θ + c·d, rounded as step(closure) rounds it
        self._pending = (saved, first if self.rule.combine_reads_g else None)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        if self._pending is None:
            raise RuntimeError(f"{type(self).__name__}.second_step() needs first_step() before it")
        (saved, first), self._pending = self._pending, None
        params = self._params()
        second = self._read(params)
        torch._foreach_copy_(params, saved)  # θ exactly as before first_step
        self._apply(params, self.rule.combine(first, second))
        if zero_grad:
            self.zero_grad()


class SAM(_TwoSteps):
    """SAM (Foret et al. 2021), rule :class:`antireg.rules.SAM`."""

    def __init__(self, params: Iterable, base_optimizer: type, rho: float = 0.05, **kw: Any) -> None:
        super().__init__(params, base_optimizer, sam.SAM(rho), **kw)


class ASAM(_TwoSteps):
    """ASAM (Kwon et al. 2021), rule :class:`antireg.rules.ASAM`. Pass ``modules=model``:
    T = |w| + η applies to parameters named ``*weight*``, as in the authors' code."""

    def __init__(self, params: Iterable, base_optimizer: type, rho: float = 0.5, eta: float = 0.01, **kw: Any) -> None:
        if not kw.get("modules"):
            raise ValueError("ASAM needs modules=model to tell weights (normalised) from biases")
        super().__init__(params, base_optimizer, sam.ASAM(rho, eta), **kw)


class GSAM(_TwoSteps):
    """GSAM (Zhuang et al. 2022), rule :class:`antireg.rules.GSAM`; ρ follows the scheduled lr when ``rho_min`` is set."""

    def __init__(
        self, params: Iterable, base_optimizer: type, rho: float = 0.05, alpha: float = 0.1,
        rho_min: float | None = None, lr_max: float | None = None, lr_min: float = 0.0, **kw: Any,
    ) -> None:
        super().__init__(params, base_optimizer, sam.GSAM(rho, alpha, rho_min, lr_max, lr_min), **kw)


class GradNorm(RuleOptimizer):
    """Gradient-norm regularisation (Karakida et al. 2023), rule :class:`antireg.rules.GradientNorm`.
    ``mode="db"`` (exact, double backprop) calls ``closure(create_graph=True)``; not under DDP."""

    def __init__(self, params: Iterable, base_optimizer: type, gamma: float, mode: gr.Mode = "fd_forward",
                 eps: float = 1e-2, **kw: Any) -> None:
        super().__init__(params, base_optimizer, gr.GradientNorm(gamma, mode, eps), **kw)


class IGR(RuleOptimizer):
    """IGR (Barrett & Dherin 2021): GR with γ = h/2, ``h`` the rule's learning rate; modes as GradNorm's."""

    def __init__(self, params: Iterable, base_optimizer: type, h: float, mode: gr.Mode = "fd_forward",
                 eps: float = 1e-2, **kw: Any) -> None:
        super().__init__(params, base_optimizer, gr.IGR(h, mode, eps), **kw)


class GAM(_TwoSteps):
    """GAM (Zhang et al. 2023, arXiv:2303.03108), rule :class:`antireg.rules.GAM`:
    update g + α ρ ∇‖∇L‖(θ + ρ f/‖f‖), f = ∇‖∇L(θ)‖ (+ β·SAM's term). Two passes of
    ``closure(create_graph=True)`` a step (a third, plain, when ``beta`` ≠ 0); not under DDP.
    With ``beta=0``, the hand-written form takes ``backward(create_graph=True)`` twice::

        loss_fn(model(x), y).backward(create_graph=True); opt.first_step(zero_grad=True)
        loss_fn(model(x), y).backward(create_graph=True); opt.second_step(zero_grad=True)
    """

    def __init__(self, params: Iterable, base_optimizer: type, rho: float, alpha: float, rho_sam: float = 0.05,
                 beta: float = 0.0, **kw: Any) -> None:
        super().__init__(params, base_optimizer, gam.GAM(rho, alpha, rho_sam, beta), **kw)

    def _read(self, params: list[torch.Tensor]) -> tuple[Grads, Grads]:
        """(g, Hg) from the differentiable gradients in p.grad (then set to None)."""
        _refuse_distributed_double_backprop()
        return _grads_and_hvp(params)

    def first_step(self, zero_grad: bool = False) -> None:
        if self.rule.beta != 0:
            raise ValueError("GAM with beta != 0 takes a third pass: use step(closure)")
        super().first_step(zero_grad)


class AntiReg(RuleOptimizer):
    """Anti-Regularization (Kim, Jeong, Oh 2025, arXiv:2508.17412) around any base optimizer:

        g ← rule gradient + λ(θ − θ_c);  clip ‖g‖ to ``max_norm``;  base step;
        project θ onto ‖θ − θ₀‖ ≤ R (``radius``, or ``radius_factor``·‖θ₀‖).

    The defaults are SPEC §1's and the sweeps' (:mod:`antireg.defaults`): θ_c = 0
    (``center="zero"``; ``"init"`` takes θ_c = θ₀, the parameters at construction, with
    which the NTK spectrum of :mod:`antireg.ntk` bounds λ exactly), G = 10 and R = 2‖θ₀‖;
    ``max_norm=None`` switches clipping off, ``radius_factor=None`` (and no ``radius``) the
    trust region.

    ``lam``: the signed coefficient (λ < 0 is AR, per-sample scale of v4). With the
    kernel/Gram eigenvalues ``eigs`` of the n training points (``n``) — linear
    models, or the NTK from :mod:`antireg.ntk` for MLPs — λ is clamped to the safe
    region λ > −(1−η)μ_min/n (:func:`antireg.safeguards.spectral_clamp`); without a
    spectrum a warning says once that the trust region is the safeguard (or that there is none).
    ``r_clip``, ``r_proj``: the fractions of steps clipped / projected so far.
    The penalty and the trust region share one copy of θ₀, the only memory AR adds
    (none with ``center="zero"`` and no trust region). Instead of ``lam``, a
    ``schedule`` (:mod:`antireg.schedules`, e.g. ``power_law(-1e-3, 1.0, n0=64)``) and the
    training size ``n`` give λ = schedule(n).
    """

    _warned = False

    def __init__(
        self,
        params: Iterable,
        base_optimizer: type,
        lam: float | None = None,
        max_norm: float | None = defaults.GRAD_CLIP,
        radius: float | None = None,
        radius_factor: float | None = defaults.TRUST_FACTOR,
        eigs: Any = None,
        n: int | None = None,
        eta: float = ETA,
        rule: Rule | None = None,
        schedule: Schedule | None = None,
        center: Literal["init", "zero"] = defaults.CENTER,  # type: ignore[assignment]
        **kw: Any,
    ) -> None:
        if (lam is None) == (schedule is None):
            raise ValueError("AntiReg needs exactly one of lam (the signed coefficient) or schedule (with n), "
                             "e.g. schedule=antireg.schedules.power_law(-1e-3, 1.0, n0=64), n=256")
        if schedule is not None:
            if n is None:
                raise ValueError("AntiReg(schedule=...) needs n, the number of training points: λ = schedule(n)")
            lam = schedule(n)
        super().__init__(params, base_optimizer, rule if rule is not None else ERM(), **kw)
        self.lam_clamped = False
        if eigs is not None:
            if n is None:
                raise ValueError("the spectral clamp needs n, the number of training points")
            lam, self.lam_clamped = spectral_clamp(lam, eigs, n, eta)
        elif lam < 0 and not AntiReg._warned:
            if radius is None and radius_factor is None:
                warnings.warn("AntiReg: no spectrum given (eigs, n) and no trust region (radius, radius_factor): "
                              "nothing bounds the negative penalty but clipping", stacklevel=2)
            else:
                warnings.warn("AntiReg: no spectrum given (eigs, n), so the trust region is the safeguard",
                              stacklevel=2)
            AntiReg._warned = True
        params_ = self._params()
        self.penalty = ProximityPenalty(params_, lam, center=center)
        self.clip = GradClip(params_, max_norm) if max_norm is not None else None
        self.trust_region = None
        if radius is not None or radius_factor is not None:
            self.trust_region = TrustRegion(params_, radius, radius_factor, ref=self.penalty.center)

    @property
    def lam(self) -> float:
        """The λ in use (after the spectral clamp)."""
        return self.penalty.lam

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state plus the penalty centre θ₀ and the safeguards'
        counters, so that a resumed run continues bit-identically."""
        return {**super().state_dict(), "antireg": safeguard_state(self)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        load_safeguard_state(self, state_dict.pop("antireg"))
        super().load_state_dict(state_dict)

    @property
    def r_clip(self) -> float:
        return self.clip.rate if self.clip is not None else 0.0

    @property
    def r_proj(self) -> float:
        return self.trust_region.rate if self.trust_region is not None else 0.0

    def _add_penalty(self) -> None:
        self.penalty()

    def _clip(self) -> None:
        if self.clip is not None:
            self.clip()

    def _project(self) -> None:
        if self.trust_region is not None:
            self.trust_region()


__all__ = ["RuleOptimizer", "AntiReg", "ClosureBatch", "SAM", "ASAM", "GSAM", "GAM", "GradNorm", "IGR"]
