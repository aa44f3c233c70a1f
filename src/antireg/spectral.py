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
    "ETA",
    "alpha_for_dof",
    "alpha_to_lambda",
    "center_design",
    "check_eigs",
    "clamp_alpha",
    "dof",
    "gram_spectrum",
    "lambda_to_alpha",
    "safe_alpha_min",
    "thin_svd",
]

#: The default spectral-safety margin η: the negative end is α_min = −(1 − η)·min μ.
#: Every default η in antireg (estimators, schedules, clamps, configs) is this one.
ETA = 0.1


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
    A: ArrayLike, rtol: float | None = None, *, overwrite_a: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-revealing thin SVD ``A = U diag(s) Vt`` with ``s > 0`` in decreasing order.

    Computed from the eigendecomposition of the smaller Gram matrix (``A^T A`` when
    ``n >= d``, else ``A A^T``), which costs ``O(n d min(n, d))`` and is much faster
    than a full SVD for tall or wide designs; the other factor is ``A (V / s)`` (or
    ``A^T (U / s)``).  Eigenvalues ``s_i^2 <= rtol * max(s^2)`` are treated as zero;
    the default ``rtol = max(n, d) * eps`` is the rounding level of the Gram matrix.
    A design whose entries are too large or too small for its Gram matrix to fit in
    float64 is first scaled by a power of two (exactly), so only ``s`` itself must
    be representable.  With ``overwrite_a`` a float64 ``A`` is overwritten (as in
    SciPy): the large factor is written into its memory, so no second array of
    ``A``'s size is allocated.  Raises ``ValueError`` for a non-finite or non-2-D ``A``.
    """
    A = np.asarray(A, dtype=float)
    if A.ndim != 2:
        raise ValueError(f"A must be a 2-D array, got shape {A.shape}.")
    n, d = A.shape
    if rtol is None:
        rtol = max(n, d) * np.finfo(float).eps
    exponent = _gram_safe_exponent(A)
    if exponent:
        A = np.ldexp(A, -exponent, out=A if overwrite_a else None)
    tall = n >= d
    mu, W = np.linalg.eigh(A.T @ A if tall else A @ A.T)
    keep = mu > rtol * mu.max(initial=0.0)
    mu, W = mu[keep][::-1], W[:, keep][:, ::-1]
    s = np.sqrt(mu)
    other = _product_by_rows(A if tall else A.T, W / s, overwrite_a)
    if exponent:
        with np.errstate(over="ignore"):
            s = np.ldexp(s, exponent)
        if not np.isfinite(s).all():
            raise ValueError(
                "the singular values of A overflow float64 (its entries are too large); "
                "rescale the data."
            )
    return (other, s, W.T) if tall else (W, s, other.T)


# Rows per block of _product_by_rows: a block's product stays in cache, and the
# result of at most this many rows is held beside the matrix being overwritten.
_ROW_BLOCK = 256


def _product_by_rows(B: np.ndarray, M: np.ndarray, overwrite: bool) -> np.ndarray:
    """``B @ M`` for ``M`` of shape (k, r), ``r <= k``, written over ``B[:, :r]`` when
    ``overwrite``: row block by row block, each block's product taken before it is
    written, so no row is read after it was overwritten."""
    if not overwrite:
        return B @ M
    out = B[:, : M.shape[1]]
    for start in range(0, B.shape[0], _ROW_BLOCK):
        rows = slice(start, start + _ROW_BLOCK)
        out[rows] = B[rows] @ M
    return out


def _gram_safe_exponent(A: np.ndarray) -> int:
    """0 when ``A``'s Gram matrix is safely inside float64's range, else the binary
    exponent of ``max |A|`` (so ``A * 2**-exponent`` has entries of order 1).
    Raises ``ValueError`` for NaN or infinite entries (min and max propagate them)."""
    scale = max(-A.min(), A.max()) if A.size else 0.0
    if not np.isfinite(scale):
        raise ValueError("A contains NaN or infinite values.")
    if scale == 0.0 or 1e-100 <= scale <= 1e100:
        return 0
    return int(np.frexp(scale)[1])


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
    with np.errstate(over="ignore", under="ignore"):
        eigs = thin_svd(A, rtol)[1] ** 2
    return check_eigs(eigs)


def check_eigs(eigs: ArrayLike) -> np.ndarray:
    """``eigs`` as a float array, else ``ValueError`` naming what is wrong.

    The one validation of a spectrum for every function here: a 1-D array of
    finite, strictly positive eigenvalues, each at least the smallest normal float64
    (subnormal values have lost their precision).  An empty spectrum is allowed.
    """
    try:
        eigs = np.asarray(eigs, dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"eigs must be a 1-D array of numbers: {e}") from e
    if eigs.ndim != 1:
        raise ValueError(f"eigs must be a 1-D array of eigenvalues, got shape {eigs.shape}.")
    if not np.isfinite(eigs).all():
        raise ValueError(
            "eigs contain NaN or infinite values (an overflowing spectrum means the "
            "data are too large for float64: rescale them)."
        )
    if eigs.size and not eigs.min() >= np.finfo(float).tiny:
        raise ValueError(
            "eigs must be the strictly positive eigenvalues (each at least "
            f"{np.finfo(float).tiny:.3g}), got minimum {float(eigs.min())!r}; drop the null space "
            "first (gram_spectrum and thin_svd do)."
        )
    return eigs


def _finite(value: ArrayLike, name: str, *, scalar: bool = False) -> np.ndarray:
    """``value`` as a finite float array (one number when ``scalar``), else
    ``ValueError`` naming ``name``."""
    try:
        out = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        out = None
    if out is None or not np.isfinite(out).all() or (scalar and out.ndim != 0):
        what = "one finite number" if scalar else "finite"
        raise ValueError(f"{name} must be {what}, got {value!r}.")
    return out


def dof(eigs: ArrayLike, alpha: ArrayLike) -> np.ndarray | float:
    """Effective degrees of freedom ``df(alpha) = sum_i mu_i / (mu_i + alpha)``.

    This is ``tr S_alpha`` for the smoother ``S_alpha = X (X^T X + alpha I)^+ X^T``
    (or ``K (K + alpha I)^{-1}``), Kim, Jeong, Oh (2025), arXiv:2508.17412.
    Meaningful for ``alpha > -min(eigs)``; vectorised over ``alpha`` (the result
    has the shape of ``alpha``).  Raises ``ValueError`` for invalid ``eigs`` (see
    :func:`check_eigs`) or a non-finite ``alpha``.
    """
    eigs = check_eigs(eigs)
    alpha = _finite(alpha, "alpha")
    return (eigs / (eigs + alpha[..., None])).sum(axis=-1)


def _check_eta(eta: float) -> float:
    eta_ = float(_finite(eta, "eta", scalar=True))
    # Below eps, 1 - eta rounds to 1 and the bound would sit on the pole -min(eigs).
    if not np.finfo(float).eps <= eta_ < 1.0:
        raise ValueError(
            f"eta must lie in the open interval (0, 1), at least {np.finfo(float).eps:.3g}, "
            f"got {eta!r}."
        )
    return eta_


def safe_alpha_min(eigs: ArrayLike, eta: float = ETA) -> float:
    """Spectral-safety bound ``alpha_min = -(1 - eta) * min(eigs)``.

    Any ``alpha >= alpha_min`` keeps ``X^T X + alpha I`` positive definite on the
    row space with smallest eigenvalue at least ``eta * min(eigs)`` (Kim, Jeong,
    Oh (2025), arXiv:2508.17412).  Returns ``-inf`` for an empty spectrum: with
    no direction to protect, no alpha is unsafe.
    """
    eta = _check_eta(eta)
    eigs = check_eigs(eigs)
    if eigs.size == 0:
        return -np.inf
    return -(1.0 - eta) * float(eigs.min())


def clamp_alpha(alpha: float, eigs: ArrayLike, eta: float = ETA) -> tuple[float, bool]:
    """Return ``(max(alpha, alpha_min), alpha < alpha_min)``; see :func:`safe_alpha_min`."""
    alpha = float(_finite(alpha, "alpha", scalar=True))
    alpha_min = safe_alpha_min(eigs, eta)
    if alpha < alpha_min:
        return alpha_min, True
    return alpha, False


def alpha_for_dof(
    eigs: ArrayLike, target_df: float, eta: float = ETA, *, max_iter: int = 200
) -> tuple[float, bool]:
    """Solve ``dof(eigs, alpha) = target_df`` inside the safe region.

    Returns ``(alpha, clamped)``.  On ``[alpha_min, inf)`` the map
    ``alpha -> sum_i mu_i / (mu_i + alpha)`` decreases strictly from
    ``dof(alpha_min)`` to 0 (Kim, Jeong, Oh (2025), arXiv:2508.17412).  A target
    at or above ``dof(alpha_min)`` cannot be reached safely: the bound
    ``alpha_min`` is returned with ``clamped=True``.

    Raises ``ValueError`` for a target that is not finite and positive, an invalid
    or empty spectrum (see :func:`check_eigs`), or an ``eta`` outside (0, 1).
    """
    eigs = check_eigs(eigs)
    target = float(_finite(target_df, "target_df", scalar=True))
    if not target > 0:
        raise ValueError(f"target_df must be > 0, got {target_df!r}.")
    target_df = target
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


def alpha_to_lambda(alpha: ArrayLike, n_samples: float) -> np.ndarray | float:
    """Per-sample ``lambda = alpha / n`` of v4 (``Sigma_hat + lambda I``, ``Sigma_hat = X^T X / n``).

    scikit-learn's ``||y - X w||^2 + alpha ||w||^2`` is ``n`` times v4's per-sample
    objective (arXiv:2508.17412 v4), so ``alpha = n * lambda``; with sample weights
    ``n`` is their sum.  The one place the library converts between the scales.
    """
    if not n_samples > 0:
        raise ValueError(f"n_samples must be > 0, got {n_samples!r}.")
    return np.asarray(alpha, dtype=float) / float(n_samples) if np.ndim(alpha) else float(alpha) / float(n_samples)


def lambda_to_alpha(lam: ArrayLike, n_samples: float) -> np.ndarray | float:
    """scikit-learn's ``alpha = n * lambda``; the inverse of :func:`alpha_to_lambda`."""
    if not n_samples > 0:
        raise ValueError(f"n_samples must be > 0, got {n_samples!r}.")
    return np.asarray(lam, dtype=float) * float(n_samples) if np.ndim(lam) else float(lam) * float(n_samples)
