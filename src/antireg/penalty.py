"""The signed proximity penalty λ·½‖θ − θ_c‖², composable with any optimizer.

λ < 0 is Anti-Regularization (a reward for moving away from θ_c), λ > 0 is
ordinary ridge/L2 through the same code path. Kim, Jeong, Oh (2025), arXiv:2508.17412.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch


class ProximityPenalty:
    """Adds ∇(λ·½‖θ − θ_c‖²) = λ(θ − θ_c) to the gradients.

    ``center="zero"`` uses θ_c = 0; ``center="init"`` snapshots θ_c = θ₀ at
    construction, which makes the NTK analysis exact.
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        lam: float,
        center: Literal["zero", "init"] = "zero",
    ) -> None:
        if center not in ("zero", "init"):
            raise ValueError(f"center must be 'zero' or 'init', got {center!r}")
        self.params = list(params)
        self._data = [p.detach() for p in self.params]  # aliases: in-place updates show through
        self.lam = float(lam)
        self.center = [p.detach().clone() for p in self.params] if center == "init" else None

    def value(self) -> torch.Tensor:
        """λ·½‖θ − θ_c‖² at the current parameters (differentiable)."""
        centers = self.center or [torch.zeros_like(p) for p in self.params]
        return 0.5 * self.lam * sum(((p - c) ** 2).sum() for p, c in zip(self.params, centers))

    def __call__(self) -> bool:
        """Add λ(θ − θ_c) to each ``p.grad``; never an 'event', so returns False."""
        if self.lam == 0.0:
            return False
        grads = [p.grad for p in self.params]
        # λθ − λθ_c in place: no temporary θ − θ_c on the hot path
        torch._foreach_add_(grads, self._data, alpha=self.lam)
        if self.center is not None:
            torch._foreach_add_(grads, self.center, alpha=-self.lam)
        return False
