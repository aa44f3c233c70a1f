"""Spectral toolkit for linear smoothers with a signed (possibly negative) ridge.

Everything here is in scikit-learn's *alpha* units: the ridge objective is
``||y - X w||^2 + alpha * ||w||^2``, so ``alpha = n * lambda`` in the notation of
Kim, Jeong, Oh (2025), *Convergence and Generalization of Anti-Regularization
for Parametric Models*, arXiv:2508.17412.  ``eigs`` are the nonzero eigenvalues
``mu_i`` of the Gram matrix ``A^T A`` (equivalently of ``A A^T``, the squared
nonzero singular values of ``A``) or of a kernel matrix ``K``.

For ``alpha > -min(mu)`` the smoother ``S_alpha = A (A^T A + alpha I)^+ A^T`` has

* effective degrees of freedom ``df(alpha) = tr S_alpha = sum_i mu_i / (mu_i + alpha)``,
  strictly decreasing and convex in ``alpha``, above the rank when ``alpha < 0``;
* spectral safety (the anti-regularised Hessian stays positive definite):
  ``alpha >= alpha_min = -(1 - eta) * min(mu)`` for a margin ``eta`` in (0, 1).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "alpha_for_dof",
    "center_design",
    "clamp_alpha",
    "dof",
    "gram_spectrum",
    "safe_alpha_min",
    "thin_svd",
]


def center_design(
    X: ArrayLike, fit_intercept: bool = True, sample_weight: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(A, X_offset, sqrt_sw)`` with ``A = diag(sqrt_sw) (X - X_offset)``.

    ``X`` is any ``(n, k)`` array (a design, or 2-D targets).  ``X_offset`` is the
    (weighted) column mean when ``fit_intercept`` else zero.  The weighted
    least-squares problem ``sum_i sw_i (y_i - x_i w - b)^2`` with an unpenalised
    intercept ``b`` is the plain problem on the transformed design and targets
    (as in scikit-learn), and centring removes the constant direction from the
    spectrum.
    """
    X = np.asarray(X, dtype=float)
    if sample_weight is None:
        X_offset = X.mean(axis=0) if fit_intercept else np.zeros(X.shape[1])
        return X - X_offset, X_offset, np.ones(X.shape[0])
    sw = np.asarray(sample_weight, dtype=float)
    X_offset = sw @ X / sw.sum() if fit_intercept else np.zeros(X.shape[1])
    sqrt_sw = np.sqrt(sw)
    return (X - X_offset) * sqrt_sw[:, None], X_offset, sqrt_sw


def thin_svd(
    A: ArrayLike, rtol: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-revealing thin SVD ``A = U diag(s) Vt`` with ``s > 0`` in decreasing order.

    Computed from the eigendecomposition of the smaller Gram matrix (``A^T A`` when
    ``n >= d``, else ``A A^T``), which costs ``O(n d min(n, d))`` and is much faster
    than a full SVD for tall or wide designs; the other factor is ``A V / s`` (or
    ``A^T U / s``).  Eigenvalues ``s_i^2 <= rtol * max(s^2)`` are treated as zero;
    the default ``rtol = max(n, d) * eps`` is the rounding level of the Gram matrix.
    """
    A = np.asarray(A, dtype=float)
    n, d = A.shape
    if rtol is None:
        rtol = max(n, d) * np.finfo(float).eps
    tall = n >= d
    mu, W = np.linalg.eigh(A.T @ A if tall else A @ A.T)
    mu, W = mu[::-1], W[:, ::-1]
    keep = mu > rtol * mu.max(initial=0.0)
    s, W = np.sqrt(mu[keep]), W[:, keep]
    other = A @ W if tall else A.T @ W
    other /= s
    return (other, s, W.T) if tall else (W, s, other.T)


def gram_spectrum(
    X: ArrayLike,
    fit_intercept: bool = True,
    sample_weight: ArrayLike | None = None,
    rtol: float | None = None,
) -> np.ndarray:
    """Nonzero eigenvalues ``mu_i = s_i^2`` (decreasing) of the centred, weighted Gram.

    The design is ``A = diag(sqrt(sw)) (X - mean_sw(X))`` (no centring when
    ``fit_intercept=False``); ``rtol`` is as in :func:`thin_svd`.  These are the
    ``eigs`` used by :func:`dof` and :func:`safe_alpha_min` for linear ridge.
    """
    A, _, _ = center_design(X, fit_intercept, sample_weight)
    return thin_svd(A, rtol)[1] ** 2


def dof(eigs: ArrayLike, alpha: ArrayLike) -> np.ndarray | float:
    """Effective degrees of freedom ``df(alpha) = sum_i mu_i / (mu_i + alpha)``.

    This is ``tr S_alpha`` for the smoother ``S_alpha = X (X^T X + alpha I)^+ X^T``
    (or ``K (K + alpha I)^{-1}``), Kim, Jeong, Oh (2025), arXiv:2508.17412.
    Meaningful for ``alpha > -min(eigs)``; vectorised over ``alpha`` (the result
    has the shape of ``alpha``).
    """
    eigs = np.asarray(eigs, dtype=float)
    alpha = np.asarray(alpha, dtype=float)
    return (eigs / (eigs + alpha[..., None])).sum(axis=-1)


def _check_eta(eta: float) -> float:
    if not 0.0 < eta < 1.0:
        raise ValueError(f"eta must lie in the open interval (0, 1), got {eta!r}.")
    return float(eta)


def safe_alpha_min(eigs: ArrayLike, eta: float = 0.1) -> float:
    """Spectral-safety bound ``alpha_min = -(1 - eta) * min(eigs)``.

    Any ``alpha >= alpha_min`` keeps ``X^T X + alpha I`` positive definite on the
    row space with smallest eigenvalue at least ``eta * min(eigs)`` (Kim, Jeong,
    Oh (2025), arXiv:2508.17412).  Returns ``-inf`` for an empty spectrum: with
    no direction to protect, no alpha is unsafe.
    """
    eta = _check_eta(eta)
    eigs = np.asarray(eigs, dtype=float)
    if eigs.size == 0:
        return -np.inf
    if not eigs.min() > 0:
        raise ValueError(
            "eigs must be the strictly positive eigenvalues; drop the null space "
            "first (gram_spectrum and thin_svd do)."
        )
    return -(1.0 - eta) * float(eigs.min())


def clamp_alpha(alpha: float, eigs: ArrayLike, eta: float = 0.1) -> tuple[float, bool]:
    """Return ``(max(alpha, alpha_min), alpha < alpha_min)``; see :func:`safe_alpha_min`."""
    alpha = float(alpha)
    if not np.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha!r}.")
    alpha_min = safe_alpha_min(eigs, eta)
    if alpha < alpha_min:
        return alpha_min, True
    return alpha, False


def alpha_for_dof(
    eigs: ArrayLike, target_df: float, eta: float = 0.1, *, max_iter: int = 200
) -> tuple[float, bool]:
    """Solve ``dof(eigs, alpha) = target_df`` inside the safe region.

    Returns ``(alpha, clamped)``.  On ``[alpha_min, inf)`` the map
    ``alpha -> sum_i mu_i / (mu_i + alpha)`` decreases strictly from
    ``dof(alpha_min)`` to 0 (Kim, Jeong, Oh (2025), arXiv:2508.17412).  A target
    at or above ``dof(alpha_min)`` cannot be reached safely: the bound
    ``alpha_min`` is returned with ``clamped=True``.

    Raises ``ValueError`` for a target that is not finite and positive, or an
    empty spectrum.
    """
    eigs = np.asarray(eigs, dtype=float)
    target_df = float(target_df)
    if not (np.isfinite(target_df) and target_df > 0):
        raise ValueError(f"target_df must be finite and > 0, got {target_df!r}.")
    if eigs.size == 0:
        raise ValueError("alpha_for_dof needs a nonempty spectrum.")
    alpha = safe_alpha_min(eigs, eta)
    if dof(eigs, alpha) <= target_df:
        return alpha, True
    # dof is convex and decreasing, so Newton steps started left of the root
    # increase monotonically and never overshoot it: no bracketing needed.
    for _ in range(max_iter):
        r = eigs / (eigs + alpha)
        excess = r.sum() - target_df
        step = excess / (r**2 / eigs).sum()
        if excess <= 0 or step <= 4 * np.finfo(float).eps * abs(alpha):
            break
        alpha += step
    return float(alpha), False
