"""Ridge regression with a signed, spectrally safe penalty (Anti-Regularization).

Both estimators minimise ``sum_i sw_i (y_i - x_i w - b)^2 + alpha * ||w||^2``
(scikit-learn's convention, ``alpha = n * lambda``) where ``alpha`` may be
negative down to the spectral-safety bound ``alpha_min = -(1 - eta) * s_min^2``
(Kim, Jeong, Oh (2025), *Convergence and Generalization of Anti-Regularization
for Parametric Models*, arXiv:2508.17412).  One thin SVD ``A = U diag(s) V^T``
of the centred, weighted design gives every solution in closed form,

    w(alpha) = V diag(s / (s^2 + alpha)) U^T y,

the minimum-norm one in the row space, so ``n < d`` works too.

Alphas may also be given in units of the spectral bound (``alpha_unit="bound"``)
and, for :class:`ARRidgeCV`, as adjustments ``a`` of a baseline ridge ``tau0``
(v4's baseline-adjusted family ``eta = tau0 + a``); see :func:`_from_bound_units`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin, _fit_context
from sklearn.metrics import check_scoring, get_scorer_names
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from sklearn.model_selection import check_cv

from antireg.spectral import (
    ETA,
    _ROW_BLOCK,
    alpha_to_lambda,
    center_design,
    clamp_alpha,
    dof,
    safe_alpha_min,
    thin_svd,
)

__all__ = ["ARRidge", "ARRidgeCV", "estimate_noise_variance", "sure_score"]

_ALPHA_UNITS = {"absolute", "bound"}

# |1 - h| at or below this counts as zero: the LOO/GCV error is then 0/0.
_UNDEFINED_TOL = np.sqrt(np.finfo(float).eps)


# Centred targets smaller than this have squared LOO/GCV errors below the normal
# float64 range, where the scores (and the choice of alpha) lose their precision.
_SMALLEST_SQUARABLE = np.sqrt(np.finfo(float).tiny / np.finfo(float).eps)


def _require_float_range(
    *arrays: np.ndarray, eigs: np.ndarray | None = None, ok: bool = True
) -> None:
    """Raise ``ValueError`` when float64 arithmetic on the data over- or underflowed.

    Inputs are checked for NaN and infinity by scikit-learn's validation; this
    catches finite inputs whose scale leaves float64's range: ``ok`` must hold,
    every array must be finite, and squared singular values ``eigs`` normal floats
    (``1 / eigs`` enters the solution and :func:`antireg.spectral.check_eigs`
    requires them).
    """
    ok = ok and all(np.isfinite(a).all() for a in arrays)
    if eigs is not None and eigs.size:
        ok = ok and bool(np.isfinite(eigs.max()) and eigs.min() >= np.finfo(float).tiny)
    if not ok:
        raise ValueError(
            "the data's scale is outside float64's range for this computation (X, y or "
            "sample_weight too large or too small, so squared singular values, squared "
            "errors or the solution overflow or underflow); rescale X and y, e.g. with "
            "StandardScaler."
        )


@dataclass
class _Spectral:
    """Thin SVD of the centred, weighted problem, shared by all alphas."""

    U: np.ndarray  # (n, r)
    s: np.ndarray  # (r,)
    Vt: np.ndarray  # (r, d)
    y: np.ndarray  # (n, t) targets as given
    y_ndim: int  # 1 for a single target passed as a vector
    Y: np.ndarray  # (n, t) centred targets scaled by sqrt(sw)
    UtY: np.ndarray  # (r, t)
    sqrt_sw: np.ndarray  # (n,)
    X_offset: np.ndarray  # (d,)
    y_offset: np.ndarray  # (t,)

    @property
    def eigs(self) -> np.ndarray:
        return self.s**2

    @property
    def n_eff(self) -> float:
        """Number of samples, or the sum of the sample weights."""
        return float((self.sqrt_sw**2).sum())

    def coef(self, alpha: float | np.ndarray) -> np.ndarray:
        """Coefficients, shape (d, t), for one alpha or one per target (shape (t,))."""
        return self.Vt.T @ (self.s[:, None] / (self.eigs[:, None] + alpha) * self.UtY)

    def rss(self, alphas: np.ndarray) -> np.ndarray:
        """Weighted residual sums of squares, shape (m, t), for every alpha.

        ``||(I - H) Y||^2 = ||Y||^2 - ||U^T Y||^2 + sum_i (1 - F_i)^2 (U^T Y)_i^2``
        with ``F = s^2 / (s^2 + alpha)``: O(r m t), no n-by-m residuals.
        """
        outside = np.maximum((self.Y**2).sum(axis=0) - (self.UtY**2).sum(axis=0), 0.0)
        shrink = alphas[None, :] / (self.eigs[:, None] + alphas[None, :])  # 1 - F, (r, m)
        return outside[None, :] + (shrink**2).T @ (self.UtY**2)


def _sure(spec: _Spectral, alphas: np.ndarray, noise_variance: np.ndarray, fit_intercept: bool):
    """SURE per alpha and target, shape (m, t); see :func:`sure_score`."""
    n = spec.n_eff
    df = dof(spec.eigs, alphas) if spec.eigs.size else np.zeros(alphas.size)
    return (
        spec.rss(alphas) / n
        + 2.0 * noise_variance[None, :] * (df[:, None] + fit_intercept) / n
        - noise_variance[None, :]
    )


def _check_noise_variance(value, n_targets: int) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=float)) if not isinstance(value, str) else None
    if arr is None or arr.ndim != 1 or arr.size not in (1, n_targets) or not (
        np.isfinite(arr).all() and (arr > 0).all()
    ):
        raise ValueError(
            f"noise_variance must be a positive finite number (or one per target) or "
            f"'auto', got {value!r}."
        )
    return np.broadcast_to(arr, (n_targets,)).astype(float)


def _from_bound_units(c: np.ndarray, eigs: np.ndarray, baseline: float = 0.0) -> np.ndarray:
    """Absolute alphas ``alpha(c) = tau0 + c * (tau0 + s_min^2)`` from bound units ``c > -1``.

    ``c = 0`` is the baseline ``tau0`` (0 without one), ``c = -1`` the pole
    ``-s_min^2`` where ``X^T X + alpha I`` turns singular, so ``c = -0.9`` is 90% of
    the way from the baseline to the pole, on every data set and fold alike; with
    ``tau0 = 0`` simply ``alpha = c * s_min^2`` (``lambda = c * mu_min`` per
    sample).  The caller clamps to the safe bound ``-(1 - eta) s_min^2``, which
    with ``tau0 = 0`` is ``c = -(1 - eta)``.  An empty spectrum has ``s_min^2 = 0``.
    """
    if not (c > -1.0).all():
        raise ValueError(
            f"alphas in units of the spectral bound (alpha_unit='bound') must be > -1 "
            f"(-1 is the pole -s_min^2), got {c}."
        )
    pole = float(eigs.min()) if eigs.size else 0.0
    return baseline + c * (baseline + pole)


def estimate_noise_variance(
    X: ArrayLike, y: ArrayLike, fit_intercept: bool = True
) -> float | np.ndarray:
    """Noise variance from the residuals of the least-squares (OLS) fit.

    ``sigma2_hat = RSS_OLS / (n - rank(X_c) - fit_intercept)``, the unbiased
    estimator for a linear model with homoscedastic noise (``X_c`` the centred
    design, ``rank`` its numerical rank, so collinear columns are not counted
    twice); v4 (arXiv:2508.17412) uses it as the plug-in sigma^2 of SURE.
    Returns a float for 1-D ``y`` and one value per target for 2-D ``y``.

    Raises ``ValueError`` when ``n <= rank + fit_intercept`` (the OLS fit
    interpolates, no residual degrees of freedom are left): pass a known
    ``noise_variance`` instead.
    """
    spec = ARRidge(alpha=0.0, fit_intercept=fit_intercept)._decompose(X, y, None)
    sigma2 = _noise_variance(spec, fit_intercept)
    return float(sigma2[0]) if spec.y_ndim == 1 else sigma2


def _noise_variance(spec: _Spectral, fit_intercept: bool) -> np.ndarray:
    """OLS residual variance per target; ``n`` is the sum of weights when weighted
    (so integer weights equal repeated rows)."""
    n, rank = spec.n_eff, spec.s.size
    dof_resid = n - rank - int(fit_intercept)
    if dof_resid <= 0:
        raise ValueError(
            f"estimating the noise variance needs n_samples > rank(X) + fit_intercept "
            f"({n:g} <= {rank} + {int(fit_intercept)}): the least-squares fit interpolates. "
            "Give noise_variance as a positive number."
        )
    return spec.rss(np.zeros(1))[0] / dof_resid


def sure_score(
    X: ArrayLike,
    y: ArrayLike,
    alphas: ArrayLike,
    noise_variance: float | str = "auto",
    fit_intercept: bool = True,
) -> np.ndarray:
    """SURE (Mallows Cp) of ridge for each alpha: lower is better.

    ``SURE(alpha) = ||y - y_hat(alpha)||^2 / n + 2 sigma^2 (df(alpha) + fit_intercept) / n - sigma^2``
    with ``df(alpha) = sum_i s_i^2 / (s_i^2 + alpha)`` (v4 of arXiv:2508.17412;
    an unbiased estimate of the in-sample prediction risk).  ``alphas`` are in
    scikit-learn units (``alpha = n * lambda``) and must lie above ``-s_min^2``.
    ``noise_variance="auto"`` uses :func:`estimate_noise_variance`.  Returns shape
    ``(n_alphas,)`` for 1-D ``y``, ``(n_alphas, n_targets)`` for 2-D ``y``.
    """
    est = ARRidge(alpha=0.0, fit_intercept=fit_intercept)
    spec = est._decompose(X, y, None)
    alphas = np.atleast_1d(np.asarray(alphas, dtype=float))
    if spec.eigs.size and not (alphas > -spec.eigs.min()).all():
        raise ValueError(f"alphas must be > -s_min^2 = {-spec.eigs.min()!r}, got {alphas}.")
    if isinstance(noise_variance, str) and noise_variance == "auto":
        noise_variance = estimate_noise_variance(X, y, fit_intercept)
    sigma2 = _check_noise_variance(noise_variance, spec.Y.shape[1])
    out = _sure(spec, alphas, sigma2, fit_intercept)
    return out[:, 0] if spec.y_ndim == 1 else out


class _BaseARRidge(MultiOutputMixin, RegressorMixin, BaseEstimator):
    """Validation, decomposition, solution and prediction shared by both estimators."""

    def _decompose(self, X, y, sample_weight) -> _Spectral:
        # scikit-learn raises TypeError for a scalar y; a wrong shape is a ValueError
        if np.isscalar(y) or getattr(y, "ndim", None) == 0:
            raise ValueError(
                f"y must have shape (n_samples,) or (n_samples, n_targets), got the scalar {y!r}."
            )
        X, y = validate_data(
            self, X, y, dtype=np.float64, multi_output=True, y_numeric=True
        )
        if getattr(sample_weight, "ndim", None) == 0:  # a 0-d array: a scalar weight, like a number
            try:
                sample_weight = float(sample_weight)
            except (TypeError, ValueError) as e:
                raise ValueError(f"sample_weight must be numeric, got {sample_weight!r}.") from e
        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, X, dtype=np.float64, ensure_non_negative=True
            )
        y_ndim, y = y.ndim, y.reshape(len(y), -1)
        with np.errstate(all="ignore"):  # overflow is reported by _require_float_range
            A, X_offset, sqrt_sw = center_design(X, self.fit_intercept, sample_weight)
            Y, y_offset, _ = center_design(y, self.fit_intercept, sample_weight)
            _require_float_range(A, Y, X_offset, y_offset)
            U, s, Vt = thin_svd(A, overwrite_a=True)  # A is our centred copy
            UtY = U.T @ Y
            _require_float_range(UtY, eigs=s**2)
        return _Spectral(U, s, Vt, y, y_ndim, Y, UtY, sqrt_sw, X_offset, y_offset)

    def _set_solution(self, spec: _Spectral, alpha: float | np.ndarray) -> None:
        """Coefficients for one alpha, or one alpha per target (shape (t,))."""
        with np.errstate(all="ignore"):
            coef = spec.coef(alpha)
            intercept = spec.y_offset - spec.X_offset @ coef
        _require_float_range(coef, intercept)
        if np.ndim(alpha):
            self.alpha_ = np.asarray(alpha, dtype=float)
            self.dof_ = np.asarray(dof(spec.eigs, alpha), dtype=float)
        else:
            self.alpha_ = float(alpha)
            self.dof_ = float(dof(spec.eigs, alpha))
        self.lambda_ = alpha_to_lambda(self.alpha_, spec.n_eff)
        # exactly sklearn Ridge's shapes and types: a (n, 1) target gives coef_ of
        # shape (d,) but intercept_ of shape (1,); no intercept gives the float 0.0
        one_column = coef.shape[1] == 1
        self.coef_ = coef[:, 0] if one_column else coef.T
        if not self.fit_intercept:
            self.intercept_ = 0.0
        elif spec.y_ndim == 1:
            self.intercept_ = np.float64(intercept[0])
        else:
            self.intercept_ = intercept

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predict ``X @ coef_.T + intercept_``."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        with np.errstate(all="ignore"):
            prediction = X @ self.coef_.T + self.intercept_
        _require_float_range(prediction)
        return prediction


class ARRidge(_BaseARRidge):
    """Ridge regression whose ``alpha`` may be negative (Anti-Regularization).

    Minimises ``sum_i sw_i (y_i - x_i w - b)^2 + alpha * ||w||^2`` by one thin SVD
    ``A = U diag(s) V^T`` of the centred, weighted design:
    ``w = V diag(s / (s^2 + alpha)) U^T y`` (minimum norm, so ``n < d`` works).
    For ``alpha >= 0`` this is :class:`sklearn.linear_model.Ridge`.  An ``alpha``
    below the spectral-safety bound ``alpha_min = -(1 - eta) * s_min^2``
    (``s_min`` the smallest nonzero singular value) is clamped to the bound with
    a :class:`UserWarning` (Kim, Jeong, Oh (2025), arXiv:2508.17412).

    Invalid parameters or data (NaN, infinity, wrong shapes or types) raise
    ``ValueError`` naming the problem, as does data whose scale leaves float64's
    range (squared singular values must be normal floats): rescale it.

    Parameters
    ----------
    alpha : float, default=1.0
        Signed penalty, in scikit-learn units (``alpha = n * lambda``), or in units
        of the spectral bound with ``alpha_unit="bound"``.
    fit_intercept : bool, default=True
        Fit an unpenalised intercept (the design and targets are centred).
    eta : float, default=spectral.ETA = 0.1
        Safety margin in (0, 1).
    alpha_unit : {"absolute", "bound"}, default="absolute"
        ``"bound"`` reads ``alpha`` as ``c > -1`` and uses ``alpha = c * s_min^2``
        (``-0.9`` is 90% of the way to the pole ``-s_min^2``; with the default
        ``eta=0.1`` exactly the safe bound); see :func:`_from_bound_units`.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
    intercept_ : float or ndarray of shape (n_targets,)
    alpha_ : float
        The alpha actually used (``max(alpha, alpha_min_)``).
    alpha_min_ : float
        The safe bound; ``-inf`` when the centred design is zero.
    dof_ : float
        Effective degrees of freedom ``sum_i s_i^2 / (s_i^2 + alpha_)`` of the
        penalised part, *without* the intercept's +1.
    n_features_in_ : int
    feature_names_in_ : ndarray of str, only when ``X`` has string column names
    """

    # Types here; values (alpha finite, eta in (0, 1)) in antireg.spectral.
    _parameter_constraints: dict = {
        "alpha": [Real],
        "fit_intercept": ["boolean"],
        "eta": [Real],
        "alpha_unit": [StrOptions(_ALPHA_UNITS)],
    }

    def __init__(
        self,
        alpha: float = 1.0,
        *,
        fit_intercept: bool = True,
        eta: float = ETA,
        alpha_unit: str = "absolute",
    ):
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.eta = eta
        self.alpha_unit = alpha_unit

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> ARRidge:
        """Fit on ``X`` (n_samples, n_features) and ``y`` (n_samples,) or (n_samples, n_targets)."""
        spec = self._decompose(X, y, sample_weight)
        self.alpha_min_ = safe_alpha_min(spec.eigs, self.eta)
        alpha = self.alpha
        if self.alpha_unit == "bound":
            alpha = float(_from_bound_units(np.array([float(alpha)]), spec.eigs)[0])
        alpha, clamped = clamp_alpha(alpha, spec.eigs, self.eta)
        if clamped:
            unit = " (in bound units)" if self.alpha_unit == "bound" else ""
            warnings.warn(
                f"alpha={self.alpha!r}{unit} is below the spectral-safety bound "
                f"alpha_min={self.alpha_min_!r} (eta={self.eta}); using alpha_min.",
                UserWarning,
                stacklevel=2,
            )
        self._set_solution(spec, alpha)
        return self


class _Precomputed(RegressorMixin, BaseEstimator):
    """Lets a scorer score precomputed predictions: ``predict(P)`` returns ``P``."""

    def predict(self, X):
        return X


class ARRidgeCV(_BaseARRidge):
    """Ridge with a signed alpha chosen by closed-form leave-one-out CV or GCV.

    One thin SVD ``A = U diag(s) V^T`` of the centred, weighted design serves
    every alpha.  With ``F = s^2 / (s^2 + alpha)`` the hat matrix is
    ``H = sqrt(sw) sqrt(sw)^T / sum(sw) + U diag(F) U^T`` (the first term only with
    an intercept) and the residuals are ``r = (I - H) y`` (scaled by ``sqrt(sw)``):

    * ``criterion="loo"``: exact leave-one-out errors ``r_i / (1 - H_ii)``;
    * ``criterion="gcv"``: ``r_i / (1 - tr(H) / n)``, whose mean square is
      ``GCV = n ||(I - H) y||^2 / (n - tr H)^2`` (Kim, Jeong, Oh (2025),
      arXiv:2508.17412), with ``tr H = dof + fit_intercept``.

    An alpha whose error is undefined (``1 - H_ii`` or ``1 - tr(H)/n`` numerically
    zero, e.g. interpolation at ``alpha = 0`` when ``n <= d``) or for which GCV
    has ``tr H >= n`` is skipped: its score is ``-inf`` and its ``cv_results_``
    entries are NaN.  If every alpha is skipped, ``fit`` raises ``ValueError``.

    The candidates are totals ``alpha = baseline + a`` of v4's baseline-adjusted
    family ``eta = tau0 + a`` (arXiv:2508.17412 v4), ``a`` the given ``alphas``:
    in scikit-learn units (``alpha_unit="absolute"``) or in units of the spectral
    bound (``alpha_unit="bound"``), ``alpha = tau0 + c * (tau0 + s_min^2)`` for
    ``c > -1``, computed on each k-fold training design with its own ``s_min``.

    Parameters
    ----------
    alphas : array-like of float, default=None
        Candidate adjustments ``a`` (the alphas themselves when ``baseline=0``).
        With ``alpha_unit="absolute"`` totals below the safe bound are dropped
        with a :class:`UserWarning` (``ValueError`` if none remain); with
        ``"bound"`` they are clamped to it, with one :class:`UserWarning` per fit.
        ``None`` builds ``n_alphas`` increasing absolute totals (``baseline`` and
        ``alpha_unit`` do not apply): ``k = n_alphas // 4`` negative ones
        ``alpha_min * (1, (k-1)/k, ..., 1/k)`` starting at the bound, ``0``, and
        the rest log-spaced over ``[1e-3 * s_min^2, 1e3 * s_max^2]``.
    fit_intercept : bool, default=True
    eta : float, default=spectral.ETA = 0.1
        Safety margin in (0, 1).
    scoring : str or callable, default=None
        ``None`` scores by ``-mean(sw_i * e_i^2)`` over the LOO/GCV errors ``e``,
        like :class:`sklearn.linear_model.RidgeCV`; otherwise a scorer (name or
        callable) applied to the LOO/GCV predictions and ``y``; zero sample
        weights are then not supported.
    criterion : {"loo", "gcv", "sure"}, default="loo"
    noise_variance : float or "auto", default="auto"
        sigma^2 of ``criterion="sure"``.
    cv : int, cross-validation generator or iterable, default=None
        k-fold selection instead of LOO/GCV/SURE.
    store_cv_results : bool, default=False
        Store squared errors (``scoring=None``) or predictions in ``cv_results_``.
    n_alphas : int, default=100
        Size of the default grid (at least 3).
    alpha_per_target : bool, default=False
        Choose one alpha per target of a 2-D ``y`` (as RidgeCV: ``cv=None`` only).
    alpha_unit : {"absolute", "bound"}, default="absolute"
        Units of ``alphas``; see above and :func:`_from_bound_units`.
    baseline : float, default=0.0
        The baseline ridge ``tau0 >= 0`` in scikit-learn units (``alpha = n *
        lambda``; v4's ``tau0 = 0.75 median(mu)`` per sample is
        ``0.75 * np.median(antireg.spectral.gram_spectrum(X))`` here).

    Attributes
    ----------
    alpha_, best_score_, alphas_, alpha_min_, dof_, coef_, intercept_,
    n_features_in_, feature_names_in_ :
        As in :class:`ARRidge` and :class:`~sklearn.linear_model.RidgeCV`;
        ``alpha_`` is the total ``baseline + adjustment_``, ``alphas_`` the grid
        of totals used and ``dof_`` excludes the intercept.  With
        ``alpha_per_target`` and ``n_targets > 1``, ``alpha_``, ``lambda_``,
        ``adjustment_``, ``dof_`` and ``best_score_`` have shape (n_targets,).
    adjustment_ : float or ndarray
        ``alpha_ - baseline``, in scikit-learn units.
    cv_results_ : ndarray of shape (n_samples, n_alphas) or (n_samples, n_targets, n_alphas)
    """

    _parameter_constraints: dict = {
        "alphas": ["array-like", Real, None],
        "fit_intercept": ["boolean"],
        "eta": [Real],
        "scoring": [StrOptions(set(get_scorer_names())), callable, None],
        "criterion": [StrOptions({"loo", "gcv", "sure"})],
        "noise_variance": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "cv": ["cv_object"],
        "store_cv_results": ["boolean"],
        "n_alphas": [Interval(Integral, 3, None, closed="left")],
        "alpha_per_target": ["boolean"],
        "alpha_unit": [StrOptions(_ALPHA_UNITS)],
        "baseline": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        alphas: ArrayLike | None = None,
        *,
        fit_intercept: bool = True,
        eta: float = ETA,
        scoring=None,
        criterion: str = "loo",
        noise_variance: float | str = "auto",
        cv=None,
        store_cv_results: bool = False,
        n_alphas: int = 100,
        alpha_per_target: bool = False,
        alpha_unit: str = "absolute",
        baseline: float = 0.0,
    ):
        self.alphas = alphas
        self.fit_intercept = fit_intercept
        self.eta = eta
        self.scoring = scoring
        self.criterion = criterion
        self.noise_variance = noise_variance
        self.cv = cv
        self.store_cv_results = store_cv_results
        self.n_alphas = n_alphas
        self.alpha_per_target = alpha_per_target
        self.alpha_unit = alpha_unit
        self.baseline = baseline

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> ARRidgeCV:
        """Fit on ``X`` (n_samples, n_features) and ``y`` (n_samples,) or (n_samples, n_targets)."""
        spec = self._decompose(X, y, sample_weight)
        n_samples = spec.Y.shape[0]
        if n_samples < 2:
            raise ValueError(f"ARRidgeCV needs n_samples >= 2, got n_samples = {n_samples}.")
        y_peak = np.abs(spec.Y).max()
        _require_float_range(ok=not 0 < y_peak < _SMALLEST_SQUARABLE)
        if self.cv is not None and self.alpha_per_target:
            raise ValueError("cv!=None and alpha_per_target=True are incompatible (as in RidgeCV).")
        self.alpha_min_ = safe_alpha_min(spec.eigs, self.eta)
        self.alphas_, clamped = self._alpha_grid(spec.eigs)
        if self.cv is not None:
            clamped |= self._fit_kfold(X, y, sample_weight, spec)
        elif self.criterion == "sure":
            self._fit_sure(spec)
        else:
            self._fit_closed_form(spec, sample_weight is not None)
        if clamped:
            warnings.warn(
                f"Clamped alphas (alpha_unit='bound') below the spectral-safety bound "
                f"-(1 - eta) s_min^2 (eta={self.eta}) to it, on the data or a fold.",
                UserWarning,
                stacklevel=2,
            )
        return self

    def _fit_closed_form(self, spec: _Spectral, weighted: bool) -> None:
        with np.errstate(all="ignore"):  # overflow is reported by _require_float_range
            errors = self._cv_errors(spec, self.alphas_)  # (n, m, t), NaN where undefined
            defined = ~np.isnan(errors).any(axis=(0, 2))
            if not defined.any():
                raise ValueError(
                    f"The {self.criterion.upper()} criterion is undefined for every alpha "
                    f"in {self.alphas_}; see the ARRidgeCV docstring."
                )
            results, scores = self._score(spec, errors, defined, weighted)
        _require_float_range(scores[defined])
        self._select(spec, scores)
        if self.store_cv_results:
            self.cv_results_ = np.moveaxis(results, 1, -1)  # (n, t, m)
            if spec.y_ndim == 1:
                self.cv_results_ = self.cv_results_[:, 0]

    def _fit_sure(self, spec: _Spectral) -> None:
        if self.store_cv_results or self.scoring is not None:
            raise ValueError(
                "criterion='sure' scores by SURE itself: use scoring=None and "
                "store_cv_results=False (or criterion='loo')."
            )
        if isinstance(self.noise_variance, str):
            sigma2 = _noise_variance(spec, self.fit_intercept)
        else:
            sigma2 = _check_noise_variance(self.noise_variance, spec.Y.shape[1])
        self.noise_variance_ = float(sigma2[0]) if spec.y_ndim == 1 else sigma2
        scores = -_sure(spec, self.alphas_, sigma2, self.fit_intercept)  # (m, t)
        _require_float_range(scores)
        self._select(spec, scores if self.alpha_per_target else scores.mean(axis=1))

    def _select(self, spec: _Spectral, scores: np.ndarray) -> None:
        """Best alpha for scores of shape (m,), or per target for shape (m, t).

        Shapes as RidgeCV(alpha_per_target=True): ``alpha_`` has shape (t,) only
        when ``t > 1``; ``best_score_`` has shape (t,) for any 2-D ``y``.
        """
        best = np.argmax(scores, axis=0)  # the first best on ties, as RidgeCV
        if scores.ndim == 1:
            alpha, self.best_score_ = self.alphas_[best], float(scores[best])
        else:
            alpha, best_score = self.alphas_[best], scores[best, np.arange(scores.shape[1])]
            alpha = alpha if alpha.size > 1 else alpha[0]
            self.best_score_ = best_score if spec.y_ndim == 2 else float(best_score[0])
        self._set_solution(spec, alpha)
        self.adjustment_ = self.alpha_ - self.baseline

    def _fit_kfold(self, X, y, sample_weight, spec: _Spectral) -> bool:
        """k-fold selection: one SVD per training fold, every alpha in closed form.

        An absolute alpha below a fold's own bound ``-(1 - eta) s_min^2`` (of that
        fold's training design) is infeasible there: its fold score is ``-inf``, so
        it is never chosen; with ``alpha_unit="bound"`` each fold converts (and
        clamps) with its own ``s_min``.  Scores are ``scoring`` (default R^2, as
        RidgeCV's GridSearchCV) on each test fold, averaged over folds.  Returns
        whether a fold clamped.
        """
        if self.store_cv_results:
            raise ValueError("cv!=None and store_cv_results=True are incompatible (as in RidgeCV).")
        X = np.asarray(X, dtype=float) if not hasattr(X, "iloc") else X.to_numpy(dtype=float)
        y = np.asarray(y, dtype=float)
        scorer = check_scoring(self, scoring=self.scoring or "r2")
        sw = None if sample_weight is None else _check_sample_weight(sample_weight, X)
        fold_scores, clamped = [], False
        for train, test in check_cv(self.cv).split(X, y):
            fold = ARRidge(fit_intercept=self.fit_intercept)
            fs = fold._decompose(X[train], y[train], None if sw is None else sw[train])
            fold_min = safe_alpha_min(fs.eigs, self.eta)
            if self.alphas is not None and self.alpha_unit == "bound":
                alphas, fold_clamped = self._from_bound(fs.eigs, fold_min)
                clamped |= fold_clamped
            else:
                alphas = self.alphas_
            ok = alphas >= fold_min
            scale = fs.s[:, None] / (fs.eigs[:, None] + alphas[ok])  # (r, m)
            coefs = fs.Vt.T @ (scale[:, :, None] * fs.UtY[:, None, :]).reshape(fs.s.size, -1)
            d, t = X.shape[1], fs.Y.shape[1]
            coefs = coefs.reshape(d, -1, t)
            pred = np.einsum("nd,dmt->nmt", X[test] - fs.X_offset, coefs) + fs.y_offset
            y_test = y[test]
            # weighted test scores, as RidgeCV's GridSearchCV gives them
            score_kw = {} if sample_weight is None else {"sample_weight": sw[test]}
            scores = np.full(alphas.size, -np.inf)
            for j, idx in enumerate(np.flatnonzero(ok)):
                p = pred[:, j, 0] if fs.y_ndim == 1 else pred[:, j]
                scores[idx] = scorer(_Precomputed(), p, y_test, **score_kw)
            fold_scores.append(scores)
        mean = np.mean(fold_scores, axis=0)
        if not np.isfinite(mean).any():
            raise ValueError("every alpha is below the spectral bound on some fold.")
        self._select(spec, mean)
        return clamped

    def _from_bound(self, eigs: np.ndarray, alpha_min: float) -> tuple[np.ndarray, bool]:
        """Totals from ``alphas`` in bound units, clamped to ``alpha_min``; and whether any was."""
        totals = _from_bound_units(self._given_alphas(), eigs, self.baseline)
        return np.maximum(totals, alpha_min), bool((totals < alpha_min).any())

    def _given_alphas(self) -> np.ndarray:
        try:
            alphas = np.atleast_1d(np.asarray(self.alphas, dtype=float))
        except (TypeError, ValueError):
            alphas = np.array([np.nan])
        if alphas.ndim != 1 or alphas.size == 0 or not np.isfinite(alphas).all():
            raise ValueError(
                f"alphas must be a nonempty 1-D array of finite floats, got {self.alphas!r}."
            )
        return alphas

    def _alpha_grid(self, eigs: np.ndarray) -> tuple[np.ndarray, bool]:
        """The grid of total alphas on the full data, and whether any was clamped."""
        if self.alphas is None:
            n = self.n_alphas
            if eigs.size == 0:
                return np.zeros(1), False
            n_neg = n // 4
            negative = self.alpha_min_ * np.linspace(1.0, 0.0, n_neg, endpoint=False)
            positive = np.geomspace(1e-3 * eigs.min(), 1e3 * eigs.max(), n - n_neg - 1)
            return np.concatenate([negative, [0.0], positive]), False
        if self.alpha_unit == "bound":
            return self._from_bound(eigs, self.alpha_min_)
        alphas = self.baseline + self._given_alphas()
        unsafe = alphas < self.alpha_min_
        if unsafe.all():
            raise ValueError(
                f"All alphas are below the spectral-safety bound alpha_min={self.alpha_min_!r}."
            )
        if unsafe.any():
            warnings.warn(
                f"Dropping alphas {alphas[unsafe]} below the spectral-safety bound "
                f"alpha_min={self.alpha_min_!r} (eta={self.eta}).",
                UserWarning,
                stacklevel=3,
            )
        return alphas[~unsafe], False

    def _score(
        self, spec: _Spectral, errors: np.ndarray, defined: np.ndarray, weighted: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample results (squared errors or predictions) and scores per alpha,
        shape (m,), or per alpha and target, shape (m, t), with ``alpha_per_target``.
        A scorer gets the sample weights when there are any, as in RidgeCV."""
        if self.scoring is None:
            squared = np.square(errors, out=errors)  # errors are not needed afterwards
            scores = -squared.mean(axis=0)  # (m, t)
            if not self.alpha_per_target:
                scores = scores.mean(axis=1)
            scores[~defined] = -np.inf
            return squared, scores
        if not spec.sqrt_sw.all():
            # sqrt(sw)-scaled errors cannot be unscaled there (RidgeCV gives NaN).
            raise ValueError("scoring is not supported with zero sample weights.")
        # The scorer sees predictions on the original scale of y, as in RidgeCV.
        predictions = spec.y[:, None, :] - errors / spec.sqrt_sw[:, None, None]
        scorer = check_scoring(self, scoring=self.scoring)
        if self.alpha_per_target:  # each column alone, as RidgeCV
            targets = [(predictions[:, :, k], spec.y[:, k]) for k in range(spec.y.shape[1])]
        elif spec.y_ndim == 1:
            targets = [(predictions[:, :, 0], spec.y[:, 0])]
        else:
            targets = [(predictions, spec.y)]
        score_kw = {"sample_weight": spec.sqrt_sw**2} if weighted else {}
        scores = np.full((len(defined), len(targets)), -np.inf)
        for j in np.flatnonzero(defined):
            for k, (prediction, y) in enumerate(targets):
                scores[j, k] = scorer(_Precomputed(), prediction[:, j], y, **score_kw)
        return predictions, scores if self.alpha_per_target else scores[:, 0]

    def _cv_errors(self, spec: _Spectral, alphas: np.ndarray) -> np.ndarray:
        """LOO or GCV errors (sqrt(sw)-scaled), shape (n, m, t); NaN where undefined.

        Consumes ``spec.U`` (squares it in place).  Computed a block of rows at a
        time into the one output array: each block's fitted values and ``1 - H_ii``
        stay in cache, and no other array of the output's size is allocated (at
        benchmark sizes fresh temporaries cost as much as the arithmetic).
        """
        (n, t), r, m = spec.Y.shape, spec.s.size, alphas.size
        F = spec.eigs[:, None] / (spec.eigs[:, None] + alphas)  # (r, m)
        FUtY = (F[:, :, None] * spec.UtY[:, None, :]).reshape(r, m * t)
        errors = np.empty((n, m, t))
        if self.criterion == "loo":
            # 1 - H_ii = (1 - sw_i / sum(sw)) - (U^2 F)_i: less the intercept's leverage, then U's
            one_minus_h0 = 1.0 - spec.sqrt_sw**2 / spec.n_eff if self.fit_intercept else np.ones(n)
            minus_F = -F
        else:
            one_minus_h = 1.0 - (F.sum(axis=0, keepdims=True) + self.fit_intercept) / n
            one_minus_h[one_minus_h < 0] = np.nan  # tr H > n: GCV undefined
        for start in range(0, n, _ROW_BLOCK):
            rows = slice(start, start + _ROW_BLOCK)
            U, block = spec.U[rows], errors[rows]
            np.matmul(U, FUtY, out=block.reshape(-1, m * t))  # fitted values H y
            np.subtract(spec.Y[rows, None, :], block, out=block)  # residuals (I - H) y
            if self.criterion == "loo":
                one_minus_h = np.square(U, out=U) @ minus_F
                one_minus_h += one_minus_h0[rows, None]
            undefined = np.abs(one_minus_h) <= _UNDEFINED_TOL
            if undefined.any():
                one_minus_h[undefined] = np.nan
            block /= one_minus_h[:, :, None]
        return errors
