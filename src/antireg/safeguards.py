"""Safeguards around the optimizer step, each switchable and each counting when it fires.

- :class:`GradClip`: clip the global gradient norm to G (ablation ``no_grad_clip``).
- :class:`TrustRegion`: after the step, project θ back to ‖θ − θ_ref‖ ≤ R
  (ablation ``no_trust_region``).
- :func:`spectral_clamp`: keep λ inside the spectral-safety region where a spectrum
  is known (linear, kernel, NTK).

``events / steps`` of a safeguard is exactly r_clip or r_proj, the fraction of
optimizer steps it changed. Kim, Jeong, Oh (2025), arXiv:2508.17412, SPEC §1.

Each stage (these two and :class:`antireg.penalty.ProximityPenalty`) serves one model
or M stacked ones. Stacked, ``params`` is ``[flat]``: one (M, P) tensor whose row i is
model i's parameters flattened, parameter tensor after parameter tensor, of sizes
``blocks``; each per-model setting is then a sequence of M values, and a call answers
an (M,) tensor of which models it changed. The arithmetic is the same for both, in the
same order, so a stacked model is rounded as its own run would be given the same
gradients (batched products upstream of them round differently).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import numpy as np
import torch

from antireg import spectral


class _Counted:
    def __init__(self) -> None:
        self.steps = 0
        self.events = 0

    @property
    def rate(self) -> float:
        """Fraction of steps on which the safeguard fired."""
        return self.events / self.steps if self.steps else 0.0

    def _count(self, fired: bool | torch.Tensor) -> bool | torch.Tensor:
        """A single model's step: count it and answer as a Python bool. Stacked models
        are counted by their trainer, from the flags returned, up to each model's
        divergence; so they are answered as the (M,) tensor, with no host sync."""
        if self.blocks is not None:
            return fired
        fired = bool(fired)
        self.steps += 1
        self.events += int(fired)
        return fired

    def state_dict(self) -> dict[str, Any]:
        """What of the stage changes while training (its configuration, such as G, is
        rebuilt from the run's config)."""
        return {a: getattr(self, a) for a in self._saved}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for attr, value in state.items():
            setattr(self, attr, copy.deepcopy(value))


def global_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """‖(t₁, …, t_k)‖₂ over all tensors, as one 0-d tensor."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(tensors))))


def block_norms(rows: torch.Tensor, blocks: Sequence[int]) -> torch.Tensor:
    """:func:`global_norm` of each row of ``rows`` (M, P) cut into ``blocks``, as (M, 1):
    the norm of the per-block norms, the order the single step takes over its parameter
    tensors, so that a stacked model's norm is rounded as its own run's."""
    per_block = [torch.linalg.vector_norm(b, dim=1) for b in rows.split(list(blocks), dim=1)]
    return torch.linalg.vector_norm(torch.stack(per_block, dim=1), dim=1, keepdim=True)


def per_model(
    values: float | Sequence[float],
    like: torch.Tensor,
    blocks: Sequence[int] | None,
    dtype: torch.dtype = torch.float64,
) -> float | torch.Tensor:
    """A per-model setting: the Python float of a single model, or (M, 1) for stacked
    ones (broadcasting against their (M, P) rows), by default in double precision, as
    Python compares a single model's norms with its float."""
    if blocks is None:
        return float(values)  # type: ignore[arg-type]
    return torch.as_tensor(values, dtype=dtype, device=like.device).reshape(-1, 1)


def ratio(limit: float | torch.Tensor, norm: torch.Tensor, eps: float) -> torch.Tensor:
    """limit / (norm + eps) in double precision, then rounded to the norm's dtype: what
    multiplying a tensor by the Python float of the same quotient does."""
    return (torch.as_tensor(limit, dtype=torch.float64, device=norm.device) / (norm.double() + eps)).to(norm.dtype)


class GradClip(_Counted):
    """g ← g · min(1, G/‖g‖): global gradient-norm clipping.

    Stacked (``blocks`` given, see the module's docstring): ``max_norm`` is one G per
    model, ``inf`` for a model that does not clip, whose ``last_norm`` is NaN.
    """

    _saved = ("steps", "events", "last_norm")

    def __init__(
        self, params: Sequence[torch.Tensor], max_norm: float | Sequence[float], *, blocks: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        self.params = list(params)
        self.blocks = blocks
        self.max_norm = per_model(max_norm, self.params[0], blocks)
        if not bool((torch.as_tensor(self.max_norm) > 0).all()):
            raise ValueError(f"grad-clip max_norm must be > 0, got {max_norm}")
        self.last_norm: float | torch.Tensor = math.nan

    def __call__(self) -> bool | torch.Tensor:
        grads = [p.grad for p in self.params]
        if self.blocks is None:  # one model: the host decides, and skips the pass when it did not fire
            self.last_norm = float(global_norm(grads))
            fired = self.last_norm > self.max_norm
            if fired:
                torch._foreach_mul_(grads, self.max_norm / (self.last_norm + 1e-12))
            return self._count(fired)
        # stacked: the same comparison and factor on the device, ×1 (exact) for the models
        # that did not fire, rather than a host sync to learn which did
        norm = block_norms(grads[0], self.blocks)
        fired = norm.double() > self.max_norm
        grads[0].mul_(torch.where(fired, ratio(self.max_norm, norm, 1e-12), 1.0))
        self.last_norm = torch.where(torch.isinf(self.max_norm), torch.nan, norm)[:, 0]
        return self._count(fired[:, 0])


def flat_view(tensors: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """A 1-D view over ``tensors`` when they tile one contiguous buffer in order
    (as :func:`antireg.models.flatten_parameters` lays them out), else None."""
    first = tensors[0]
    ptr, start = first.untyped_storage().data_ptr(), first.storage_offset()
    end = start
    for t in tensors:
        if not t.is_contiguous() or t.untyped_storage().data_ptr() != ptr or t.storage_offset() != end:
            return None
        end += t.numel()
    flat = torch.empty(0, dtype=first.dtype, device=first.device)
    return flat.set_(first.untyped_storage(), start, (end - start,))


def views(flat: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``flat`` cut into views shaped like ``like``, in order (the inverse of :func:`flat_view`)."""
    return [c.view_as(t) for c, t in zip(flat.split([t.numel() for t in like]), like)]


def snapshot(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """A detached copy of ``tensors``: one flat buffer cut into views when they tile one
    (:func:`flat_view`), so that a single copy of θ₀ can serve the penalty centre and the
    trust-region reference at once; else one clone per tensor."""
    flat = flat_view(tensors)
    if flat is None:
        return [t.detach().clone() for t in tensors]
    return views(flat.detach().clone(), tensors)


DISTANCE_CHUNK = 1 << 16  # columns per pass of row_distances: its temporary is (M, 65536) at most


def distance_buffer(rows: torch.Tensor) -> torch.Tensor:
    """The scratch space :func:`row_distances` works in for (M, P) ``rows``: (M, min(P, chunk))."""
    return torch.empty(rows.shape[0], min(rows.shape[1], DISTANCE_CHUNK), dtype=rows.dtype, device=rows.device)


def row_distances(rows: torch.Tensor, ref: torch.Tensor, buffer: torch.Tensor | None = None) -> torch.Tensor:
    """‖θ − θ_ref‖ of each row of (M, P) ``rows`` and ``ref``, as (M, 1), without a
    temporary the size of θ: the differences of at most :data:`DISTANCE_CHUNK` columns at a
    time go into one bounded buffer, and the distance is the norm of the chunks' norms (for
    P ≤ DISTANCE_CHUNK the norm of θ − θ_ref itself, bit for bit: √(x²) = |x| in floating point).
    ``buffer``: a :func:`distance_buffer` kept by the caller, so that no step allocates one
    (fresh pages cost more than the arithmetic for a model of a few MB)."""
    if buffer is None:
        buffer = distance_buffer(rows)
    if rows.shape[1] <= DISTANCE_CHUNK:  # one chunk: the same bits, without the chunking's dispatches
        return torch.linalg.vector_norm(torch.sub(rows, ref, out=buffer), dim=1, keepdim=True)
    norms = [torch.linalg.vector_norm(torch.sub(r, c, out=buffer[:, : r.shape[1]]), dim=1)
             for r, c in zip(rows.split(DISTANCE_CHUNK, dim=1), ref.split(DISTANCE_CHUNK, dim=1))]  # fmt: skip
    return torch.linalg.vector_norm(torch.stack(norms, dim=1), dim=1, keepdim=True)


class TrustRegion(_Counted):
    """θ ← θ_ref + R·(θ − θ_ref)/‖θ − θ_ref‖ whenever ‖θ − θ_ref‖ > R.

    θ_ref is a :func:`snapshot` of the parameters at construction (θ₀), or ``ref``, a
    snapshot another part already holds (AR's penalty centre), shared and not copied.
    R is given directly, or as ``factor · ‖θ₀‖``. When the parameters live in one flat
    buffer the check is two operations per column chunk (:func:`row_distances`, no
    temporary the size of θ) instead of one per tensor, which matters for small models;
    θ_ref is then one flat buffer too, and ``ref`` views of it. Stacked
    (``blocks`` given): ``radius`` is one R per model, ``inf`` for a model without one.
    """

    _saved = ("ref", "radius", "steps", "events")

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        radius: float | Sequence[float] | None = None,
        factor: float | None = None,
        ref: Sequence[torch.Tensor] | None = None,
        *,
        blocks: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.params = list(params)
        self.blocks = blocks
        self._data = [p.detach() for p in self.params]  # aliases: in-place updates show through
        self._flat = flat_view(self._data)
        self._ref = [t.detach() for t in ref] if ref is not None else snapshot(self._data)
        self._flat_ref = None
        # one model's scratch buffer (one chunk at most) is kept, as every step runs the check;
        # stacked models' could be large, so theirs is made per call
        self._buffer: torch.Tensor | None = None
        if self._flat is not None and blocks is None:
            self._buffer = distance_buffer(self._flat[None])
        if self._flat is not None:
            self._flat_ref = flat_view(self._ref)
            if self._flat_ref is None:  # a given reference in pieces: one flat copy serves the fast path
                self._flat_ref = torch.cat([t.reshape(-1) for t in self._ref])
                self._ref = views(self._flat_ref, self._ref)
        if radius is None:
            if factor is None or blocks is not None:
                raise ValueError("trust region needs a radius or (for a single model) a factor of ‖θ₀‖")
            radius = factor * float(global_norm(self.ref))
            if radius == 0.0:
                raise ValueError(f"trust region: R = {factor}·‖θ₀‖ is 0, as θ₀ = 0 (a zero initialisation); "
                                 "give a radius instead, or switch the trust region off")
        self.radius = per_model(radius, self._data[0], blocks)
        if not bool((torch.as_tensor(self.radius) > 0).all()):
            raise ValueError(f"trust-region radius must be > 0, got {radius}")

    @property
    def ref(self) -> list[torch.Tensor]:
        """θ_ref, one tensor per parameter (saved and restored by TrainStep's state_dict)."""
        return self._ref

    @ref.setter
    def ref(self, tensors: Sequence[torch.Tensor]) -> None:
        # in place, so a reference shared with the penalty centre stays shared
        torch._foreach_copy_(self._ref, [t.detach() for t in tensors])

    @torch.no_grad()
    def __call__(self) -> bool | torch.Tensor:
        if self._flat is None:
            return self._project_per_tensor()
        # one row per model: a single model's flat buffer is a stack of one
        stacked = self.blocks is not None
        rows, ref = (self._data[0], self._ref[0]) if stacked else (self._flat[None], self._flat_ref[None])
        dist = row_distances(rows, ref, self._buffer)
        fired = dist.double() > self.radius
        # only the rows that fired are rewritten, in place: a model inside its region keeps θ
        # bit for bit, and a step where none fired costs one pass (one host sync on a GPU)
        if fired.any():
            scale = ratio(self.radius, dist, 0.0)
            for i in fired[:, 0].nonzero()[:, 0].tolist():
                rows[i].sub_(ref[i]).mul_(scale[i]).add_(ref[i])
        return self._count(fired[:, 0] if stacked else fired)

    def _project_per_tensor(self) -> bool:
        """The check and projection of a single model whose parameters lie apart."""
        diff = torch._foreach_sub(self._data, self._ref)
        dist = float(global_norm(diff))
        fired = dist > self.radius
        if fired:
            torch._foreach_mul_(diff, self.radius / dist)
            torch._foreach_add_(diff, self._ref)
            torch._foreach_copy_(self._data, diff)
        return self._count(fired)


def spectral_clamp(lam: float, eigs: np.ndarray, n: int, eta: float = spectral.ETA) -> tuple[float, bool]:
    """Clamp λ to the safe region λ > −(1−η)·μ_min/n of the Hessian spectrum.

    ``eigs`` are the nonzero eigenvalues μᵢ of the Gram/kernel matrix of the n
    training points (so the Hessian of ½·mean squared error is μᵢ/n + λ).
    Returns (λ used, whether it was clamped).
    """
    alpha, clamped = spectral.clamp_alpha(lam * n, np.asarray(eigs, dtype=float), eta=eta)
    return alpha / n, clamped
