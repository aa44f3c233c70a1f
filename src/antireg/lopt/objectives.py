"""Meta-objectives: the plain loss, or a regularized loss, along the unroll.

For an unroll θ₁ … θ_T, θ_t = θ_{t−1} + Δθ_t(φ), on batches B_t, the meta-objective is

    J(φ) = (1/T) Σ_t L_R(θ_t; B_t)

with L_R the plain loss L (on the training batch, or on a validation batch), or a
regularized loss: SAM's L(θ + ε̂), GSAM's (L_p, surrogate gap), GAM's
L + αρ·max‖∇L(θ + δ)‖ (Sahoo & Krishnan 2025, arXiv:2510.08968, put these in the
meta-objective). Its meta-gradient is

    ∇_φ J = (1/T) Σ_t (∂θ_t/∂φ)ᵀ u_R(θ_t),   u_R(θ) = ∇_θ L_R(θ; B_t),

and u_R is exactly what the gradient rule R of ``antireg.rules`` returns, with the
same approximations (SAM's ε̂ held fixed, GAM's Hessian-vector products). So
meta-training backpropagates the surrogate

    Ĵ(φ) = (1/T) Σ_t ⟨sg(u_R(θ_t)), θ_t⟩        (sg: stop-gradient)

whose φ-gradient equals J's, and the rules are reused unchanged, on a module
loaded with θ_t. GSAM's update gᵖ − α·g⊥ is the gradient of no scalar loss; Ĵ
still pulls the unroll along the direction GSAM itself follows.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from antireg.lopt.tasks import Params, Task
from antireg.rules import ERM, make_rule
from antireg.rules.base import Grads


class MetaObjective:
    """L_R for rule ``rule`` (``"erm"`` is the plain loss) with ``params``, on ``data``'s batches."""

    def __init__(
        self, rule: str = "erm", params: dict[str, Any] | None = None, data: Literal["train", "val"] = "train"
    ) -> None:
        self.rule = make_rule(rule, **(params or {}))
        self.data = data

    @property
    def is_plain_train_loss(self) -> bool:
        """u_R is the training gradient the optimizer already has, so no extra pass is needed."""
        return isinstance(self.rule, ERM) and self.data == "train"

    def direction(self, task: Task, params: Params, batch: tuple[torch.Tensor, torch.Tensor]) -> Grads:
        """u_R(θ) = ∇L_R(θ; batch), detached: the rule run on ``task.model`` loaded with θ."""
        model = task.model
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(params[name])
                p.grad = None
        X, y = batch
        self.rule(model, lambda: task.loss_fn(model(X), y))
        return [p.grad.detach() for p in model.parameters()]

    def __repr__(self) -> str:
        return f"MetaObjective({self.rule!r}, data={self.data!r})"


def surrogate_term(u: Grads, params: Params) -> torch.Tensor:
    """⟨sg(u), θ⟩, whose gradient in θ is u."""
    return sum((ui.detach() * p).sum() for ui, p in zip(u, params.values()))
