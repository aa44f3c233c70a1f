"""Safeguards around the optimizer step, each switchable and each counting when it fires.

- :class:`GradClip`: clip the global gradient norm to G (ablation ``no_grad_clip``).
- :class:`TrustRegion`: after the step, project θ back to ‖θ − θ_ref‖ ≤ R
  (ablation ``no_trust_region``).
- :func:`spectral_clamp`: keep λ inside the spectral-safety region where a spectrum
  is known (linear, kernel, NTK).

``events / steps`` of a safeguard is exactly r_clip or r_proj, the fraction of
optimizer steps it changed. Kim, Jeong, Oh (2025), arXiv:2508.17412, SPEC §1.
"""

from __future__ import annotations

import math
from typing import Sequence

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

    def _count(self, fired: bool) -> bool:
        self.steps += 1
        self.events += int(fired)
        return fired


def global_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """‖(t₁, …, t_k)‖₂ over all tensors, as one 0-d tensor."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(tensors))))


class GradClip(_Counted):
    """g ← g · min(1, G/‖g‖): global gradient-norm clipping."""

    def __init__(self, params: Sequence[torch.Tensor], max_norm: float) -> None:
        super().__init__()
        if not max_norm > 0:
            raise ValueError(f"grad-clip max_norm must be > 0, got {max_norm}")
        self.params = list(params)
        self.max_norm = float(max_norm)
        self.last_norm = math.nan

    def __call__(self) -> bool:
        grads = [p.grad for p in self.params]
        norm = float(global_norm(grads))
        self.last_norm = norm
        fired = norm > self.max_norm
        if fired:
            torch._foreach_mul_(grads, self.max_norm / (norm + 1e-12))
        return self._count(fired)


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


class TrustRegion(_Counted):
    """θ ← θ_ref + R·(θ − θ_ref)/‖θ − θ_ref‖ whenever ‖θ − θ_ref‖ > R.

    θ_ref is a :func:`snapshot` of the parameters at construction (θ₀), or ``ref``, a
    snapshot another part already holds (AR's penalty centre), shared and not copied.
    R is given directly, or as ``factor · ‖θ₀‖``. When the parameters live in one flat
    buffer the check is two operations instead of one per tensor, which matters for
    small models; θ_ref is then one flat buffer too, and ``ref`` views of it.
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        radius: float | None = None,
        factor: float | None = None,
        ref: Sequence[torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.params = list(params)
        self._data = [p.detach() for p in self.params]  # aliases: in-place updates show through
        self._flat = flat_view(self._data)
        self._ref = [t.detach() for t in ref] if ref is not None else snapshot(self._data)
        self._flat_ref = None
        if self._flat is not None:
            self._flat_ref = flat_view(self._ref)
            if self._flat_ref is None:  # a given reference in pieces: one flat copy serves the fast path
                self._flat_ref = torch.cat([t.reshape(-1) for t in self._ref])
                self._ref = views(self._flat_ref, self._ref)
        if radius is None:
            if factor is None:
                raise ValueError("trust region needs a radius or a factor of ‖θ₀‖")
            radius = factor * float(global_norm(self.ref))
        if not radius > 0:
            raise ValueError(f"trust-region radius must be > 0, got {radius}")
        self.radius = float(radius)

    @property
    def ref(self) -> list[torch.Tensor]:
        """θ_ref, one tensor per parameter (saved and restored by TrainStep's state_dict)."""
        return self._ref

    @ref.setter
    def ref(self, tensors: Sequence[torch.Tensor]) -> None:
        # in place, so a reference shared with the penalty centre stays shared
        torch._foreach_copy_(self._ref, [t.detach() for t in tensors])

    @torch.no_grad()
    def __call__(self) -> bool:
        if self._flat is not None:
            dist = float(torch.dist(self._flat, self._flat_ref))
            fired = dist > self.radius
            if fired:
                self._flat.sub_(self._flat_ref).mul_(self.radius / dist).add_(self._flat_ref)
            return self._count(fired)
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
