"""Gradient-norm regularisation and its implicit-regularisation special case.

Karakida, Takase, Hayase, Osawa (2023). Understanding Gradient Regularization in Deep
Learning: Efficient Finite-Difference Computation and Implicit Bias. ICML,
arXiv:2210.02720. Barrett, Dherin (2021). Implicit Gradient Regularization. ICLR.
"""

from __future__ import annotations

from typing import Literal

import torch

from antireg.rules.base import Batch, Grads, Rule, add, perturbed

Mode = Literal["db", "fd_forward", "fd_backward"]


class GradientNorm(Rule):
    """GR: minimise L(θ) + (γ/2)‖∇L(θ)‖², whose gradient is g + γ H g (g = ∇L(θ)).

    ``mode``:

    - ``"db"``: exact, g + γ H g, with H g by double backpropagation.
    - ``"fd_forward"`` (F-GR, ascent step; Karakida et al.'s recommendation):
      (1 − γ/ε) g + (γ/ε) ∇L(θ + ε g).
    - ``"fd_backward"`` (B-GR, descent step):
      (1 + γ/ε) g − (γ/ε) ∇L(θ − ε g).

    Both finite differences equal g + γ H g + O(γ ε); ``eps`` is ε (unused by
    ``db``). Karakida et al. find F-GR best with a fairly large ε: tune it.
    """

    def __init__(self, gamma: float, mode: Mode = "db", eps: float = 1e-2) -> None:
        if mode not in ("db", "fd_forward", "fd_backward"):
            raise ValueError(f"GR mode must be 'db', 'fd_forward' or 'fd_backward', got {mode!r}")
        if not eps > 0:
            raise ValueError(f"GR eps must be > 0, got {eps}")
        self.gamma = float(gamma)
        self.mode = mode
        self.eps = float(eps)

    def _sign(self) -> float:
        """s = +1 for the forward difference (ascent step), −1 for the backward one."""
        return 1.0 if self.mode == "fd_forward" else -1.0

    def perturbation(self, batch: Batch, g: Grads) -> tuple[Grads, float]:
        """The finite-difference step ε̂ = sεg (``fd_*`` modes), as (d, c) = (g, sε)."""
        return g, self._sign() * self.eps

    def combine(self, g: Grads, g_shift: Grads) -> Grads:
        """(1 − c) g + c ∇L(θ + ε̂) with c = sγ/ε, from g = ∇L(θ) and g_shift = ∇L(θ + ε̂),
        written into g (see :meth:`antireg.rules.SAM.combine`)."""
        c = self._sign() * self.gamma / self.eps
        torch._foreach_mul_(g, 1.0 - c)
        torch._foreach_add_(g, g_shift, alpha=c)
        return g

    def gradient(self, batch: Batch) -> tuple[torch.Tensor, Grads]:
        if self.mode == "db":
            loss, g, hg = batch.grad_hvp()
            return loss, add(g, hg, alpha=self.gamma)
        loss, g = batch.grad()
        with perturbed(batch.params, *self.perturbation(batch, g)):
            _, g_shift = batch.grad()
        return loss, self.combine(g, g_shift)


class IGR(GradientNorm):
    """IGR: L + (h/4)‖∇L‖², the implicit regulariser of gradient descent with
    learning rate h made explicit (Barrett & Dherin 2021): GR with γ = h/2."""

    def __init__(self, lr: float, mode: Mode = "db", eps: float = 1e-2) -> None:
        if not lr > 0:
            raise ValueError(f"IGR lr must be > 0, got {lr}")
        super().__init__(gamma=lr / 2, mode=mode, eps=eps)
        self.lr = float(lr)
