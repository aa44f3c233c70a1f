"""λ, the signed coefficient of the penalty λ·½‖θ − θ_c‖²: its one home.

A run's λ is resolved here, once, from its settings (:func:`resolve`):

1. magnitude and sign: λ₀ > 0 in the config; AR rewards distance, λ = −λ₀·…, the
   ``l2`` ablation penalises it, λ = +λ₀·… (:func:`signed`);
2. unit: λ₀ absolute, or in units of the run's bound μ_min/n (:func:`bound_unit`), μ_min
   the smallest nonzero eigenvalue of its Gram or NTK matrix on its n training points;
3. schedule in n: :func:`power_law` λ₀·(n₀/n)^decay, :func:`constant`, :func:`zero`, or
   :func:`dof_target`, the λ whose effective degrees of freedom per sample df(λ)/n = κ;
4. the spectral clamp to the safe region λ ≥ −(1−η)·μ_min/n (:func:`clamp`), whose bound
   is computed once per run;
5. α = n·λ: scikit-learn's scale of the same coefficient (‖y − Xw‖² + α‖w‖² is n times
   ½·mean squared error's objective up to the factor 2), converted by
   :func:`lambda_to_alpha` / :func:`alpha_to_lambda` and nowhere else.

The schedules are plain functions of the training-set size n. λ < 0 is
Anti-Regularization's reward, λ > 0 ridge/L2. Kim, Jeong, Oh (2025), arXiv:2508.17412, SPEC §1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from antireg import spectral
from antireg.spectral import ETA, alpha_to_lambda, lambda_to_alpha

__all__ = [
    "ETA", "ResolvedLambda", "Schedule", "alpha_to_lambda", "baseline_kappa", "bound_unit", "clamp", "constant",
    "dof_per_n", "dof_target", "lambda_to_alpha", "power_law", "resolve", "safe_lambda_min", "signed", "zero",
]  # fmt: skip

Schedule = Callable[[int], float]
ScheduleName = Literal["zero", "power_law", "constant", "dof_target"]
Unit = Literal["absolute", "bound"]


# -- schedules --------------------------------------------------------------------------------


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"training-set size n must be >= 1, got {n}")


def power_law(lambda0: float, alpha: float, n0: int) -> Schedule:
    """λ(n) = λ₀ · (n₀/n)^α: full strength at the reference size n₀, fading as data grow.

    ``alpha`` is the decay exponent (``ar.decay`` in a config): 1 is the regression
    default, 0.5 the classification one (keep it ≥ 0.5).
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


def dof_target(kappa: float, eigs: np.ndarray, eta: float = ETA) -> Schedule:
    """λ(n) chosen so that df(λ)/n = κ, with df(λ) = Σ μᵢ/(μᵢ + nλ).

    ``eigs`` are the nonzero eigenvalues μᵢ of the n-sample Gram (or kernel) matrix
    the run trains on. A target beyond the safe region returns the safe bound
    λ = −(1−η)·μ_min/n.
    """
    eigs = np.asarray(eigs, dtype=float)

    def schedule(n: int) -> float:
        _check_n(n)
        return alpha_to_lambda(spectral.alpha_for_dof(eigs, kappa * n, eta=eta)[0], n)

    return schedule


def baseline_kappa(eigs: np.ndarray, n0: int, delta: float) -> float:
    """SPEC's default target: κ = (1 + δ)·df(0)/n₀, the ERM baseline's df per sample at n₀."""
    return (1.0 + delta) * float(spectral.dof(np.asarray(eigs, dtype=float), 0.0)) / n0


# -- sign, unit, bound ------------------------------------------------------------------------


def signed(magnitude: float, l2: bool = False) -> float:
    """λ₀'s sign: −|λ₀| for AR (a reward), +|λ₀| for the ``l2`` ablation (ridge)."""
    return (1.0 if l2 else -1.0) * magnitude


def bound_unit(eigs: np.ndarray, n: int) -> float:
    """μ_min/n, the magnitude of the spectral bound λ > −μ_min/n of a run on n points: the
    smallest eigenvalue of the Hessian of ½·mean squared error (``lambda0_unit: bound``)."""
    return float(np.min(eigs)) / n


def safe_lambda_min(eigs: np.ndarray, n: int, eta: float = ETA) -> float:
    """Spectral-safety bound on the signed coefficient, λ_min = −(1−η)·μ_min/n.

    λ in the units of the loss ½·mean squared error + λ·½‖θ − θ₀‖², for ``eigs``
    of the kernel of ``n`` samples (α = n·λ in :mod:`antireg.spectral`).
    """
    return alpha_to_lambda(spectral.safe_alpha_min(eigs, eta), n)


def dof_per_n(eigs: np.ndarray, lam: float, n: int) -> float:
    """Effective degrees of freedom per sample, df(λ)/n = (1/n) Σ μᵢ/(μᵢ + nλ)."""
    return float(spectral.dof(eigs, lambda_to_alpha(lam, n))) / n


def _clamp(lam: float, n: int, alpha_min: float) -> tuple[float, bool]:
    """λ raised to the bound α_min/n where below it, compared in α = n·λ units."""
    alpha = lambda_to_alpha(lam, n)
    if not math.isfinite(alpha):
        raise ValueError(f"lambda must be one finite number, got {lam!r}.")
    return alpha_to_lambda(max(alpha, alpha_min), n), alpha < alpha_min


def clamp(lam: float, eigs: np.ndarray, n: int, eta: float = ETA) -> tuple[float, bool]:
    """Clamp λ to the safe region λ > −(1−η)·μ_min/n of the Hessian spectrum.

    ``eigs`` are the nonzero eigenvalues μᵢ of the Gram/kernel matrix of the n
    training points (so the Hessian of ½·mean squared error is μᵢ/n + λ).
    Returns (λ used, whether it was clamped).
    """
    return _clamp(lam, n, spectral.safe_alpha_min(np.asarray(eigs, dtype=float), eta))


# -- one run's λ ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedLambda:
    """A run's λ, resolved once (:func:`resolve`). ``lambda_requested`` is what the
    schedule asked for, ``lambda_n`` what the run uses after the clamp (``clamped``),
    ``lambda_bound`` the safe bound −(1−η)·μ_min/n, ``df_per_n`` df(λ_n)/n (NaN where no
    spectrum is known or λ_n lies past the pole −μ_min/n)."""

    n: int
    lambda_n: float
    lambda_requested: float
    clamped: bool
    lambda_bound: float
    df_per_n: float

    @property
    def alpha(self) -> float:
        """α = n·λ_n, scikit-learn's scale."""
        return lambda_to_alpha(self.lambda_n, self.n)

    def columns(self) -> dict[str, float | bool]:
        """The results columns of a run's λ (everything but ``n``)."""
        out = asdict(self)
        del out["n"]
        return out


def resolve(
    schedule: ScheduleName,
    lambda0: float,
    n: int,
    *,
    unit: Unit = "absolute",
    decay: float = 0.0,
    n0: int = 1,
    kappa: float | None = None,
    delta: float = 0.1,
    eta: float | None = None,
    eigs: np.ndarray | None = None,
) -> ResolvedLambda:
    """λ(n) of one run on ``n`` points: signed ``lambda0`` in ``unit`` through ``schedule``
    (``decay`` and ``n0`` for power_law; ``kappa``, else :func:`baseline_kappa` with
    ``delta``, for dof_target), then the spectral clamp with margin ``eta`` where a
    spectrum ``eigs`` is known (``eta`` None: no clamp).

    With ``unit="bound"``, λ₀ is first converted to absolute units, λ₀ ← λ₀·μ_min/n, so
    constant gives λ(n) = λ₀·μ_min/n and power_law λ(n) = λ₀·(μ_min/n)·(n₀/n)^decay.
    """
    if eigs is None and (unit == "bound" or schedule == "dof_target"):
        raise ValueError(f"{'lambda0_unit bound' if unit == 'bound' else 'schedule dof_target'} needs the run's "
                         "spectrum: a linear model, or an mlp with ntk")  # fmt: skip
    lam0 = lambda0 * (bound_unit(eigs, n) if unit == "bound" else 1.0)
    if schedule == "zero":
        lam = zero()(n)
    elif schedule == "constant":
        lam = constant(lam0)(n)
    elif schedule == "power_law":
        lam = power_law(lam0, decay, n0)(n)
    elif schedule == "dof_target":
        kappa = kappa if kappa is not None else baseline_kappa(eigs, n0, delta)
        lam = dof_target(kappa, eigs, eta=eta if eta is not None else ETA)(n)
    else:
        raise ValueError(f"unknown schedule {schedule!r}; choose zero, power_law, constant or dof_target")
    if eigs is None:
        return ResolvedLambda(n, lam, lam, False, math.nan, math.nan)
    alpha_min = spectral.safe_alpha_min(eigs, eta if eta is not None else ETA)  # the bound, once
    used, clamped = _clamp(lam, n, alpha_min) if eta is not None else (lam, False)
    safe = used > -bound_unit(eigs, n)  # df(λ) has a pole at −μ_min/n and no meaning past it
    df = dof_per_n(eigs, used, n) if safe else math.nan
    return ResolvedLambda(n, used, lam, clamped, alpha_to_lambda(alpha_min, n), df)
