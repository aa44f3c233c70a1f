"""Diagnostics of negative ridge in v4's per-sample scale (arXiv:2508.17412 v4, *A Ridge Too Far*).

Every λ / η here is **per-sample**: the estimator is β̂(η) = (Σ̂ + ηI)⁻¹ĝ with Σ̂ = XᵀX/n and
ĝ = Xᵀy/n (sklearn's α = n·η; convert with :func:`antireg.spectral.lambda_to_alpha` / :func:`antireg.spectral.alpha_to_lambda`,
the one conversion place of :mod:`antireg.paper`). Population quantities take Σ = diag(μ) (the
eigenbasis), coefficients β in that basis, noise variance σ² and training size n.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from antireg.spectral import center_design, dof, thin_svd


def _pop(mu: ArrayLike, beta: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    mu, beta = np.asarray(mu, dtype=float), np.asarray(beta, dtype=float)
    if mu.ndim != 1 or mu.shape != beta.shape or np.any(mu <= 0):
        raise ValueError("mu must be a 1-D array of positive eigenvalues and beta the same shape")
    return mu, beta


def population_risk(eta: ArrayLike, mu: ArrayLike, beta: ArrayLike, sigma2: float, n: int) -> np.ndarray:
    """Population excess risk of ridge at per-sample η (v4, population approximation):

    R(η) = Σⱼ μⱼ η² βⱼ² / (μⱼ + η)²  +  (σ²/n) Σⱼ μⱼ² / (μⱼ + η)²

    (bias: the shrinkage of each coefficient by μⱼ/(μⱼ+η), weighted by μⱼ; variance: noise passed
    through the smoother). Defined for η > −min μ; vectorised over η.
    """
    mu, beta = _pop(mu, beta)
    e = np.asarray(eta, dtype=float)[..., None]
    return (mu * e**2 * beta**2 / (mu + e) ** 2).sum(-1) + sigma2 / n * (mu**2 / (mu + e) ** 2).sum(-1)


def sign_switch(tau0: float, mu: ArrayLike, beta: ArrayLike, sigma2: float, n: int) -> float:
    """v4's sign-switch statistic: dR/da of R(τ₀ + a) at a = 0,

    dR/da|₀ = Σⱼ 2μⱼ² / (μⱼ + τ₀)³ · (τ₀βⱼ² − σ²/n).

    Positive ⇒ a negative adjustment (less shrinkage than the baseline τ₀) is locally predicted
    to lower the risk.
    """
    mu, beta = _pop(mu, beta)
    return float((2 * mu**2 / (mu + tau0) ** 3 * (tau0 * beta**2 - sigma2 / n)).sum())


@dataclass(frozen=True)
class WeakSpectrum:
    """v4's weak-spectrum statistics for W = {j : μⱼ ≤ κ} and S its complement, at per-sample λ."""

    kappa: float
    lam: float
    weak: np.ndarray  # boolean mask of W
    A_W: float  # Σ_W βⱼ²
    A_S: float
    rho_W: float  # A_W / (A_W + A_S)
    M_W: float  # Σ_W μⱼ βⱼ²
    M_S: float
    B_W: float  # Σ_W μⱼ λ² βⱼ² / (μⱼ + λ)²
    B_S: float
    weak_bias_share: float  # B_W / (B_W + B_S)


def weak_spectrum(mu: ArrayLike, beta: ArrayLike, lam: float, kappa: float) -> WeakSpectrum:
    """Weak-spectrum statistics of v4: with W = {j : μⱼ ≤ κ},
    A_W = Σ_W βⱼ², ρ_W = A_W/(A_W + A_S), M_W = Σ_W μⱼβⱼ², B_W(λ) = Σ_W μⱼλ²βⱼ²/(μⱼ + λ)²
    (S likewise on the rest) and weak-bias share = B_W/(B_W + B_S)."""
    mu, beta = _pop(mu, beta)
    w = mu <= kappa
    b2, bias = beta**2, mu * lam**2 * beta**2 / (mu + lam) ** 2
    A_W, A_S, B_W, B_S = b2[w].sum(), b2[~w].sum(), bias[w].sum(), bias[~w].sum()
    return WeakSpectrum(float(kappa), float(lam), w, float(A_W), float(A_S), float(A_W / (A_W + A_S)),
                        float((mu * b2)[w].sum()), float((mu * b2)[~w].sum()), float(B_W), float(B_S),
                        float(B_W / (B_W + B_S)) if B_W + B_S > 0 else float("nan"))


@dataclass(frozen=True)
class PlugIn:
    """Plug-in estimates from data: Σ̂'s eigenvalues μ̂ (per-sample), the low-bias coefficients in
    that eigenbasis, and the estimated noise variance σ̂²."""

    mu: np.ndarray
    beta: np.ndarray
    sigma2: float
    n: int


def plug_in(X: ArrayLike, y: ArrayLike, fit_intercept: bool = True, sigma2: float | None = None) -> PlugIn:
    """Estimate (μ̂, β̂, σ̂²) for the population formulas: μ̂ = s²/n from the thin SVD of the
    (centred) design, β̂ = Vᵀ β̂_OLS (the minimum-norm least-squares fit, the lowest-bias member of
    the ridge family, in the eigenbasis of Σ̂) and σ̂² from
    :func:`antireg.linear.estimate_noise_variance` unless ``sigma2`` is given."""
    A, _, _ = center_design(X, fit_intercept)
    yc = np.asarray(y, dtype=float).ravel()
    yc = yc - yc.mean() if fit_intercept else yc
    U, s, _ = thin_svd(A)
    n = A.shape[0]
    if sigma2 is None:
        from antireg.linear import estimate_noise_variance

        sigma2 = float(estimate_noise_variance(X, y, fit_intercept=fit_intercept))
    return PlugIn(s**2 / n, (U.T @ yc) / s, float(sigma2), n)


def sure_curve(X: ArrayLike, y: ArrayLike, lambdas: ArrayLike, sigma2: float,
               fit_intercept: bool = False) -> np.ndarray:
    """SURE / Mallows Cp of ridge over per-sample λ from one SVD (v4's selector):

    SURE(λ) = (1/n)‖y − ŷ(λ)‖² + 2σ²·df(λ)/n − σ²,   df(λ) = Σⱼ μ̂ⱼ/(μ̂ⱼ + λ) (+1 for an intercept),

    an unbiased estimate of the in-sample prediction error when σ² is the true noise variance.
    ŷ(λ) = Σⱼ uⱼ μ̂ⱼ/(μ̂ⱼ + λ) uⱼᵀy with μ̂ⱼ = sⱼ²/n. Infeasible λ ≤ −min μ̂ give +inf.
    """
    A, _, _ = center_design(X, fit_intercept)
    yv = np.asarray(y, dtype=float).ravel()
    yc = yv - yv.mean() if fit_intercept else yv
    U, s, _ = thin_svd(A)
    n, mu, c = A.shape[0], s**2 / A.shape[0], U.T @ yc
    lam = np.atleast_1d(np.asarray(lambdas, dtype=float))
    out = np.full(lam.shape, np.inf)
    ok = lam > -mu.min()
    shrink = lam[ok, None] / (mu + lam[ok, None])  # 1 − smoother eigenvalue
    rss = ((shrink * c) ** 2).sum(1) + max(float(yc @ yc - c @ c), 0.0)
    df = dof(mu, lam[ok]) + (1 if fit_intercept else 0)
    out[ok] = rss / n + 2 * sigma2 * df / n - sigma2
    return out
