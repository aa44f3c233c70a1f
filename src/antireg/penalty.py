"""The signed proximity penalty λ·½‖θ − θ_c‖², composable with any optimizer.

λ < 0 is Anti-Regularization (a reward for moving away from θ_c), λ > 0 is
ordinary ridge/L2 through the same code path. Kim, Jeong, Oh (2025), arXiv:2508.17412.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import torch

from antireg.safeguards import per_model, snapshot


class ProximityPenalty:
    """Adds ∇(λ·½‖θ − θ_c‖²) = λ(θ − θ_c) to the gradients, as λθ − λθ_c.

    ``center="zero"`` uses θ_c = 0; ``center="init"`` snapshots θ_c = θ₀ at
    construction (:func:`antireg.safeguards.snapshot`), which makes the NTK analysis
    exact; a sequence of tensors is a θ_c another part already holds (a trust
    region's ``ref``), shared and not copied. Stacked models (``blocks`` given, see
    :mod:`antireg.safeguards`): ``lam`` is one λ per model, 0 for a model without the
    penalty, and ``center`` their (M, P) centres (zero rows for ``"zero"``).
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        lam: float | Sequence[float],
        center: Literal["zero", "init"] | Sequence[torch.Tensor] = "zero",
        *,
        blocks: Sequence[int] | None = None,
    ) -> None:
        if isinstance(center, str) and center not in ("zero", "init"):
            raise ValueError(f"center must be 'zero', 'init' or tensors, got {center!r}")
        self.params = list(params)
        self.blocks = blocks
        self._data = [p.detach() for p in self.params]  # aliases: in-place updates show through
        # in the parameters' dtype: λ multiplies θ as the single step's alpha=λ does
        self.lam = per_model(lam, self._data[0], blocks, self._data[0].dtype)
        if isinstance(center, str):
            self._center = snapshot(self._data) if center == "init" else None
        else:
            self._center = [t.detach() for t in center]

    @property
    def center(self) -> list[torch.Tensor] | None:
        """θ_c, one tensor per parameter, or None for θ_c = 0 (saved by TrainStep's state_dict)."""
        return self._center

    @center.setter
    def center(self, tensors: Sequence[torch.Tensor] | None) -> None:
        if tensors is None or self._center is None:
            self._center = None if tensors is None else [t.detach().clone() for t in tensors]
        else:  # in place, so a centre shared with the trust region stays shared
            torch._foreach_copy_(self._center, [t.detach() for t in tensors])

    def state_dict(self) -> dict[str, Any]:
        """What of the penalty training cannot rebuild from the config: θ_c."""
        return {"center": self.center}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.center = state["center"]

    def value(self) -> torch.Tensor:
        """λ·½‖θ − θ_c‖² at the current parameters (differentiable; one model)."""
        centers = self.center or [torch.zeros_like(p) for p in self.params]
        return 0.5 * self.lam * sum(((p - c) ** 2).sum() for p, c in zip(self.params, centers))

    def __call__(self) -> bool:
        """Add λ(θ − θ_c) to each ``p.grad``; never an 'event', so returns False."""
        if self.blocks is None and self.lam == 0.0:
            return False
        grads = [p.grad for p in self.params]
        # λθ − λθ_c in place: no temporary θ − θ_c on the hot path. add(alpha=λ) and
        # addcmul(·, λ) round alike (one fused multiply-add), so stacked models add
        # their own λ exactly as a single model adds its float
        if self.blocks is None:
            torch._foreach_add_(grads, self._data, alpha=self.lam)
            if self.center is not None:
                torch._foreach_add_(grads, self.center, alpha=-self.lam)
        else:
            grads[0].addcmul_(self._data[0], self.lam)
            if self.center is not None:
                grads[0].addcmul_(self.center[0], -self.lam)
        return False
