"""GAM: Gradient norm Aware Minimization, which seeks first-order flatness.

Zhang, Xu, Yu, Zou, Cui (2023). Gradient Norm Aware Minimization Seeks First-Order
Flatness and Improves Generalization. CVPR, arXiv:2303.03108.
"""

from __future__ import annotations

import torch

from antireg.rules.base import NORM_EPS, Batch, Grads, Rule, add, norm_scale, perturbed
from antireg.safeguards import global_norm


class GAM(Rule):
    """GAM with Hessian-vector products (the paper's Algorithm 1, not the
    finite-difference "accelerated GAM" of its Appendix D).

    Objective: L(θ) + α·R¹_ρ(θ) + β·R⁰_ρ₀(θ), where

    - R¹_ρ(θ) = ρ · max_{‖δ‖≤ρ} ‖∇L(θ + δ)‖ is first-order flatness;
    - R⁰_ρ₀(θ) = max_{‖δ‖≤ρ₀} L(θ + δ) − L(θ) is zeroth-order flatness (SAM's);
      ``beta=0`` (default) is plain GAM, ``beta=1`` is "GAM + SAM".

    Gradient, with g = ∇L(θ) and H the Hessian of L (the paper's Eqs. 7–8, the
    two Hessian-vector products, as the authors' README xxgege/GAM cites them):

    - f = ∇‖∇L(θ)‖ = H g/‖g‖, and the ascent θᵃᵈᵛ = θ + ρ f/‖f‖;
    - ∇R¹_ρ(θ) ≈ ρ ∇‖∇L‖ at θᵃᵈᵛ = ρ H(θᵃᵈᵛ) ∇L(θᵃᵈᵛ)/‖∇L(θᵃᵈᵛ)‖;
    - ∇R⁰_ρ₀(θ) ≈ ∇L(θ + ρ₀ g/‖g‖) − g, SAM's approximation.

    update = g + α ∇R¹_ρ + β ∇R⁰_ρ₀. Cost: two double-backward passes, plus one
    gradient when β ≠ 0.
    """

    def __init__(self, rho: float, alpha: float, rho_sam: float = 0.05, beta: float = 0.0) -> None:
        if not rho > 0:
            raise ValueError(f"rho must be > 0, got {rho}")
        if beta != 0 and not rho_sam > 0:
            raise ValueError(f"rho_sam must be > 0 when beta != 0, got {rho_sam}")
        self.rho = float(rho)
        self.alpha = float(alpha)
        self.rho_sam = float(rho_sam)
        self.beta = float(beta)

    def perturbation(self, batch: Batch, first: tuple[Grads, Grads]) -> tuple[Grads, float]:
        """The ascent θᵃᵈᵛ − θ = ρ f/‖f‖ from (g, Hg) at θ, as (d, c) = (Hg, ρ/‖Hg‖):
        f/‖f‖ = Hg/‖Hg‖, the 1/‖g‖ in f cancels."""
        return first[1], norm_scale(self.rho, first[1])

    def combine(self, first: tuple[Grads, Grads], second: tuple[Grads, Grads]) -> Grads:
        """g + α ∇R¹_ρ from (g, Hg) at θ and (g, Hg) at θᵃᵈᵛ."""
        (g, _), (g_adv, hg_adv) = first, second
        return add(g, hg_adv, alpha=self.alpha * self.rho / (float(global_norm(g_adv)) + NORM_EPS))

    def gradient(self, batch: Batch) -> tuple[torch.Tensor, Grads]:
        loss, g, hg = batch.grad_hvp()
        with perturbed(batch.params, *self.perturbation(batch, (g, hg))):
            _, g_adv, hg_adv = batch.grad_hvp()
        update = self.combine((g, hg), (g_adv, hg_adv))
        if self.beta != 0:
            with perturbed(batch.params, g, norm_scale(self.rho_sam, g)):
                _, g_sam = batch.grad()
            update = add(update, torch._foreach_sub(g_sam, g), alpha=self.beta)
        return loss, update
