"""Sharpness probes at a solution θ, the measures Sahoo & Krishnan (2025) compare optimizers by.

For a loss L (here the full training loss of a task):

- ``max_loss``: max_{‖δ‖≤ρ} L(θ + δ), by projected normalised gradient ascent from δ = 0,
  δ ← Π_ρ(δ + a·∇L(θ+δ)/‖∇L(θ+δ)‖) with a = 2.5ρ/K for K steps (the step size of
  Madry et al. 2018's PGD), keeping the largest loss seen; ``sharpness`` is max_loss − L(θ);
- ``grad_norm``: ‖∇L(θ)‖;
- ``surrogate_gap``: h = L(θ + ρ g/‖g‖) − L(θ), GSAM's first-order surrogate gap
  (Zhuang et al. 2022, Eq. 4).

:func:`model_probes` takes them for a model's mean loss on a data set, at its current parameters.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.func import functional_call

from antireg.rules.base import add, scaled_to
from antireg.safeguards import global_norm

Loss = Callable[[list[torch.Tensor]], torch.Tensor]


def _value_and_grad(loss: Loss, theta: list[torch.Tensor]) -> tuple[float, list[torch.Tensor]]:
    theta = [t.detach().requires_grad_() for t in theta]
    value = loss(theta)
    return value.item(), list(torch.autograd.grad(value, theta))


def max_loss_in_ball(loss: Loss, theta: list[torch.Tensor], rho: float, steps: int = 10) -> float:
    """max_{‖δ‖≤ρ} L(θ + δ) found by K = ``steps`` steps of projected gradient ascent."""
    a = 2.5 * rho / steps
    delta = [torch.zeros_like(t) for t in theta]
    best = -float("inf")
    for _ in range(steps):
        value, grad = _value_and_grad(loss, add(theta, delta))
        best = max(best, value)
        delta = add(delta, scaled_to(a, grad))
        norm = float(global_norm(delta))
        if norm > rho:
            delta = torch._foreach_mul(delta, rho / norm)
    with torch.no_grad():
        return max(best, loss(add(theta, delta)).item())


def sharpness_probes(loss: Loss, theta: list[torch.Tensor], rho: float = 0.05, steps: int = 10) -> dict[str, float]:
    """loss, max_loss, sharpness, grad_norm, surrogate_gap at θ (see the module docstring)."""
    value, grad = _value_and_grad(loss, theta)
    with torch.no_grad():
        perturbed = loss(add(theta, scaled_to(rho, grad))).item()
    top = max_loss_in_ball(loss, theta, rho, steps)
    return {"loss": value, "max_loss": top, "sharpness": top - value,
            "grad_norm": float(global_norm(grad)), "surrogate_gap": perturbed - value}  # fmt: skip


def model_probes(model: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], X: torch.Tensor,
                 y: torch.Tensor, rho: float = 0.05, steps: int = 10) -> dict[str, float]:  # fmt: skip
    """:func:`sharpness_probes` of L(θ) = mean ``loss_fn(model(X), y)`` at the model's θ, the
    loss named ``train_loss`` (what a run reports them on: its training set)."""
    names, theta = zip(*((n, p.detach()) for n, p in model.named_parameters()))

    def loss(params: list[torch.Tensor]) -> torch.Tensor:
        return loss_fn(functional_call(model, dict(zip(names, params)), (X,)), y).mean()

    probes = sharpness_probes(loss, list(theta), rho, steps)
    return {"train_loss": probes.pop("loss"), **probes}
