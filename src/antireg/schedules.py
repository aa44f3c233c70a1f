"""Schedules for the signed regularization coefficient λ(n).

A schedule is a plain function of the training-set size n returning the signed
coefficient λ(n) of the penalty λ·½‖θ − θ_c‖² (λ < 0: Anti-Regularization's reward;
λ > 0: ridge/L2). Kim, Jeong, Oh (2025), arXiv:2508.17412, SPEC §1.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from antireg import spectral

Schedule = Callable[[int], float]


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"training-set size n must be >= 1, got {n}")


def power_law(lambda0: float, alpha: float, n0: int) -> Schedule:
    """λ(n) = λ₀ · (n₀/n)^α: full strength at the reference size n₀, fading as data grow.

    α = 1 is the regression default, α = 0.5 the classification one (keep α ≥ 0.5).
    """
    if n0 < 1:
        raise ValueError(f"reference size n0 must be >= 1, got {n0}")
    if alpha < 0:
        raise ValueError(f"decay exponent alpha must be >= 0, got {alpha}")

    def schedule(n: int) -> float:
        _check_n(n)
        return float(lambda0) * (n0 / n) ** alpha

    return schedule


def constant(lambda0: float) -> Schedule:
    """λ(n) = λ₀: no decay (ablation ``constant_lambda``)."""
    return lambda n: (_check_n(n), float(lambda0))[1]


def zero() -> Schedule:
    """λ(n) = 0: the ERM baseline."""
    return lambda n: (_check_n(n), 0.0)[1]


def dof_target(kappa: float, eigs: np.ndarray, eta: float = spectral.ETA) -> Schedule:
    """λ(n) chosen so that df(λ)/n = κ, with df(λ) = Σ μᵢ/(μᵢ + nλ).

    ``eigs`` are the nonzero eigenvalues μᵢ of the n-sample Gram (or kernel) matrix
    the run trains on. A target beyond the safe region returns the safe bound
    λ = −(1−η)·μ_min/n.
    """
    eigs = np.asarray(eigs, dtype=float)

    def schedule(n: int) -> float:
        _check_n(n)
        return spectral.alpha_for_dof(eigs, kappa * n, eta=eta)[0] / n

    return schedule


def baseline_kappa(eigs: np.ndarray, n0: int, delta: float) -> float:
    """SPEC's default target: κ = (1 + δ)·df(0)/n₀, the ERM baseline's df per sample at n₀."""
    return (1.0 + delta) * float(spectral.dof(np.asarray(eigs, dtype=float), 0.0)) / n0
