"""What every gradient rule is built from, written once.

- :class:`Batch`: the current batch, as one closure or several micro-batch closures,
  evaluated at the current θ: the mean loss, its gradient, and Hessian-vector
  products. Gradient accumulation, autocast and loss scaling live here, so a rule
  is only its formula. Every evaluation after the first one of a step leaves the
  normalisation layers' running statistics untouched.
- :func:`perturbed`: θ ← θ + δ for a block, then θ restored bit for bit; the
  "perturb, gradient, restore" of SAM and the finite-difference GRs.
- :class:`Rule`: ``rule(model, closure)`` per the contract in ``antireg.rules``;
  a subclass writes only ``gradient(batch) -> (loss, g)``.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from functools import cached_property
from typing import Callable, ContextManager, Iterable, Iterator, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from antireg.safeguards import global_norm

Closure = Callable[[], torch.Tensor]
Grads = list[torch.Tensor]

# Guards the normalisations g/‖g‖ against a zero gradient (as in davda54/sam).
NORM_EPS = 1e-12


def norm_layers(modules: Iterable[nn.Module]) -> list[_NormBase]:
    """The BatchNorm/InstanceNorm layers of ``modules`` (and their submodules), each once."""
    layers = {id(m): m for module in modules for m in module.modules() if isinstance(m, _NormBase)}
    return list(layers.values())


@contextmanager
def frozen_stats(layers: Sequence[_NormBase]) -> Iterator[None]:
    """:func:`frozen_norm_stats` for given layers (an optimizer finds them once, not every pass)."""
    buffers = [b for m in layers for b in m.buffers(recurse=False)]
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, s in zip(buffers, saved):
                b.copy_(s)


def frozen_norm_stats(model: nn.Module) -> ContextManager[None]:
    """Run forward passes without changing any running statistics.

    Saves and restores the buffers (running mean/var, batch counter) of every
    BatchNorm/InstanceNorm layer, which is exact whatever the layer's momentum
    (including ``momentum=None``, the cumulative average). Layers still normalise
    with the batch statistics, as in the plain training pass.
    """
    return frozen_stats(norm_layers([model]))


@contextmanager
def perturbed(params: Sequence[torch.Tensor], delta: Sequence[torch.Tensor], alpha: float = 1.0) -> Iterator[None]:
    """θ ← θ + α·δ inside the block; afterwards θ is restored exactly (θ itself, not θ + δ − δ).

    The parameters point to new tensors θ + α·δ for the block and back to their own
    storage after it: one pass over θ instead of a saved copy, an in-place add and a
    copy back (what a large model's step pays for). A rule's step ε̂ = c·d is taken as
    ``perturbed(params, d, c)``: one pass, without ε̂ itself as a tensor."""
    params = list(params)
    own = [p.data for p in params]
    with torch.no_grad():
        shifted = torch._foreach_add(own, list(delta), alpha=alpha)
    del delta  # the caller may drop δ inside the block (SAM's δ is g) and its memory serve the next pass
    for p, s in zip(params, shifted):
        p.data = s
    try:
        yield
    finally:
        for p, s in zip(params, own):
            p.data = s


def grad_of(objective: torch.Tensor, params: Sequence[torch.Tensor], create_graph: bool = False) -> Grads:
    """∇ objective with respect to ``params`` (zeros for parameters it does not reach)."""
    return list(torch.autograd.grad(objective, params, create_graph=create_graph, allow_unused=True,
                                    materialize_grads=True))


def dot(xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> torch.Tensor:
    """⟨x, y⟩ summed over all tensors: one ``torch.dot`` per tensor, so no product the size
    of θ is ever held (differentiable, as the Hessian-vector products need)."""
    return torch.stack([torch.dot(x.reshape(-1), y.reshape(-1)) for x, y in zip(xs, ys)]).sum()


def mul(xs: Sequence[torch.Tensor], c: float) -> Grads:
    """c·x, tensor by tensor. The same values as ``torch._foreach_mul(xs, c)``; a 0-d tensor
    for c takes a faster path on the CPU than a Python number."""
    return torch._foreach_mul(list(xs), torch.tensor(c, dtype=torch.float64))


def norm_scale(radius: float, xs: Sequence[torch.Tensor]) -> float:
    """c = radius/‖x‖, the factor that makes c·x a step of length ``radius`` along x."""
    return radius / (float(global_norm(xs)) + NORM_EPS)


def scaled_to(radius: float, xs: Sequence[torch.Tensor]) -> Grads:
    """radius · x/‖x‖: a step of length ``radius`` along x."""
    return mul(xs, norm_scale(radius, xs))


def add(xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor], alpha: float = 1.0) -> Grads:
    """x + α·y, tensor by tensor."""
    return torch._foreach_add(list(xs), list(ys), alpha=alpha)


class Batch:
    """The current batch, evaluated at the current θ, over its micro-batches.

    Each closure returns the per-example losses of one micro-batch; the batch's
    loss is their mean over all N examples, L = Σᵢ (nᵢ/N)·Lᵢ over micro-batches of
    nᵢ examples with mean loss Lᵢ, so several closures give the full-batch
    gradient, holding one micro-batch's graph at a time.

    ``autocast``: a dtype (e.g. ``torch.bfloat16``) to run the forward passes in.
    ``loss_scale``: S, multiplied into every backward pass and divided out of the
    result (GradScaler's scale; the caller owns the scaler).
    ``norm_layers``: the model's :func:`norm_layers`, when the caller found them once
    (TrainStep), instead of walking the model on every extra pass.
    """

    def __init__(
        self,
        model: nn.Module,
        closures: Closure | Sequence[Closure],
        autocast: torch.dtype | None = None,
        loss_scale: float = 1.0,
        norm_layers: Sequence[_NormBase] | None = None,
    ) -> None:
        self.model = model
        self.closures = [closures] if callable(closures) else list(closures)
        if not self.closures:
            raise ValueError("a batch needs at least one closure")
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.autocast = autocast
        self.loss_scale = float(loss_scale)
        self.norm_layers = list(norm_layers) if norm_layers is not None else None
        self._evaluated = False

    @cached_property
    def names(self) -> list[str]:
        """Each parameter's name (only ASAM asks, so it is found only then)."""
        return [n for n, p in self.model.named_parameters() if p.requires_grad]

    def _losses(self) -> Iterator[torch.Tensor]:
        """Per-example losses of each micro-batch in turn. The first pass over the
        batch updates running statistics as plain ERM would; later ones do not."""
        if self._evaluated and self.norm_layers is None:
            self.norm_layers = norm_layers([self.model])
        freeze = frozen_stats(self.norm_layers) if self._evaluated and self.norm_layers else nullcontext()
        device = self.params[0].device.type
        with freeze:
            for closure in self.closures:
                with torch.autocast(device, dtype=self.autocast) if self.autocast else nullcontext():
                    losses = closure()
                if losses.ndim != 1:
                    raise ValueError(
                        f"a closure must return per-example losses (a 1-D tensor), got shape {tuple(losses.shape)}"
                    )
                yield losses
        self._evaluated = True

    def _grad(self, objective: torch.Tensor, create_graph: bool = False) -> Grads:
        return grad_of(objective, self.params, create_graph)

    def _scaled(self, objective: torch.Tensor) -> torch.Tensor:
        return objective if self.loss_scale == 1.0 else self.loss_scale * objective

    def _unscaled(self, grads: Grads) -> Grads:
        if self.loss_scale != 1.0:
            torch._foreach_div_(grads, self.loss_scale)
        return grads

    def grad(self, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[torch.Tensor, Grads]:
        """(L, ∇L): the plain mean loss (detached) and the gradient of the mean of
        ``transform(ℓ)`` (of ℓ itself when ``transform`` is None)."""
        loss, grads = _SizeWeightedMean(), _SizeWeightedMean()
        for losses in self._losses():
            objective = losses if transform is None else transform(losses)
            loss.add([losses.detach().mean()], losses.numel())
            grads.add(self._grad(self._scaled(objective.mean())), losses.numel())
        return loss.value[0], self._unscaled(grads.value)

    def grad_hvp(self, v: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, Grads, Grads]:
        """(L, ∇L, H v) by double backpropagation; ``v=None`` means v = ∇L itself.

        H v = ∇⟨∇L, sg(v)⟩ with v held fixed (sg: stop-gradient). Being linear in
        the batch, it averages over micro-batches; v = ∇L must be the full-batch
        gradient, so with several micro-batches it is computed first.
        """
        if v is None and len(self.closures) > 1:
            v = self.grad()[1]
        loss, grads, hvps = _SizeWeightedMean(), _SizeWeightedMean(), _SizeWeightedMean()
        for losses in self._losses():
            g = self._grad(self._scaled(losses.mean()), create_graph=True)  # S·∇L, differentiable
            # One micro-batch and v = ∇L: the gradient just computed is v.
            vec = v if v is not None else [gi.detach() / self.loss_scale for gi in g]
            loss.add([losses.detach().mean()], losses.numel())
            hvps.add(self._grad(dot(g, vec)), losses.numel())  # S·H v
            grads.add([gi.detach() for gi in g], losses.numel())
        return loss.value[0], self._unscaled(grads.value), self._unscaled(hvps.value)


class _SizeWeightedMean:
    """The mean over micro-batches weighted by their sizes, kept as a running mean:
    one micro-batch costs no arithmetic, several need no list of copies."""

    def __init__(self) -> None:
        self.n = 0
        self.value: Grads | None = None

    def add(self, value: Grads, n: int) -> None:
        if self.value is None:
            self.value = value
        else:  # (n_old·mean + n·value)/(n_old + n)
            torch._foreach_lerp_(self.value, value, n / (self.n + n))
        self.n += n


def as_batch(model: nn.Module, closure: Batch | Closure | Sequence[Closure]) -> Batch:
    """A :class:`Batch` as given, or one made from a closure or a list of micro-batch closures."""
    return closure if isinstance(closure, Batch) else Batch(model, closure)


class Rule:
    """A gradient rule: ``rule(model, closure)`` leaves g in every ``p.grad`` and
    returns the plain mean loss at θ. Subclasses write ``gradient(batch)``."""

    def gradient(self, batch: Batch) -> tuple[torch.Tensor, Grads]:
        """(plain mean loss at θ, the rule's gradient g at θ)."""
        raise NotImplementedError

    #: whether a two-pass rule's ``combine(first, second)`` reads the first pass; when not, the
    #: first gradient is dropped before the second pass, whose gradients then take its memory
    #: (as davda54/sam's zero_grad between the passes does)
    combine_reads_g = True

    def perturbation(self, batch: Batch, first: Grads) -> tuple[Grads, float]:
        """A two-pass rule's step to its second evaluation point, ε̂ = c·d, as (d, c)."""
        raise NotImplementedError(f"{type(self).__name__} takes no second point")

    def epsilon(self, batch: Batch, first: Grads) -> Grads:
        """ε̂ = c·d of :meth:`perturbation` as a tensor per parameter: what a hand-written loop
        or the stacked trainer adds to θ; the rule's own ``gradient`` adds c·d in one pass."""
        return mul(*self.perturbation(batch, first))

    def __call__(self, model: nn.Module, closure: Batch | Closure | Sequence[Closure]) -> torch.Tensor:
        batch = as_batch(model, closure)
        loss, grads = self.gradient(batch)
        for p, g in zip(batch.params, grads):
            p.grad = g
        return loss.detach()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"
