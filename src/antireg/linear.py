"""Ridge regression with a signed, spectrally safe penalty (Anti-Regularization).

Both estimators minimise ``sum_i sw_i (y_i - x_i w - b)^2 + alpha * ||w||^2``
(scikit-learn's convention, ``alpha = n * lambda``) where ``alpha`` may be
negative down to the spectral-safety bound ``alpha_min = -(1 - eta) * s_min^2``
(Kim, Jeong, Oh (2025), *Convergence and Generalization of Anti-Regularization
for Parametric Models*, arXiv:2508.17412).  One thin SVD ``A = U diag(s) V^T``
of the centred, weighted design gives every solution in closed form,

    w(alpha) = V diag(s / (s^2 + alpha)) U^T y,

the minimum-norm one in the row space, so ``n < d`` works too.
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

from antireg.spectral import center_design, clamp_alpha, dof, safe_alpha_min, thin_svd

__all__ = ["ARRidge", "ARRidgeCV"]

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

    def coef(self, alpha: float) -> np.ndarray:
        """Coefficients, shape (d, t), for one alpha."""
        return self.Vt.T @ ((self.s / (self.eigs + alpha))[:, None] * self.UtY)


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
            U, s, Vt = thin_svd(A)
            UtY = U.T @ Y
            _require_float_range(UtY, eigs=s**2)
        return _Spectral(U, s, Vt, y, y_ndim, Y, UtY, sqrt_sw, X_offset, y_offset)

    def _set_solution(self, spec: _Spectral, alpha: float) -> None:
        with np.errstate(all="ignore"):
            coef = spec.coef(alpha)
            intercept = spec.y_offset - spec.X_offset @ coef
        _require_float_range(coef, intercept)
        self.alpha_ = float(alpha)
        self.dof_ = float(dof(spec.eigs, alpha))
        if spec.y_ndim == 1:
            self.coef_, self.intercept_ = coef[:, 0], float(intercept[0])
        else:
            self.coef_, self.intercept_ = coef.T, intercept

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
        Signed penalty, in scikit-learn units (``alpha = n * lambda``).
    fit_intercept : bool, default=True
        Fit an unpenalised intercept (the design and targets are centred).
    eta : float, default=0.1
        Safety margin in (0, 1).

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
    }

    def __init__(self, alpha: float = 1.0, *, fit_intercept: bool = True, eta: float = 0.1):
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.eta = eta

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> ARRidge:
        """Fit on ``X`` (n_samples, n_features) and ``y`` (n_samples,) or (n_samples, n_targets)."""
        spec = self._decompose(X, y, sample_weight)
        self.alpha_min_ = safe_alpha_min(spec.eigs, self.eta)
        alpha, clamped = clamp_alpha(self.alpha, spec.eigs, self.eta)
        if clamped:
            warnings.warn(
                f"alpha={self.alpha!r} is below the spectral-safety bound "
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

    Parameters
    ----------
    alphas : array-like of float, default=None
        Candidate alphas.  Those below the safe bound are dropped with a
        :class:`UserWarning` (``ValueError`` if none remain).  ``None`` builds
        ``n_alphas`` increasing values: ``k = n_alphas // 4`` negative ones
        ``alpha_min * (1, (k-1)/k, ..., 1/k)`` starting at the bound, ``0``, and
        the rest log-spaced over ``[1e-3 * s_min^2, 1e3 * s_max^2]``.
    fit_intercept : bool, default=True
    eta : float, default=0.1
        Safety margin in (0, 1).
    scoring : str or callable, default=None
        ``None`` scores by ``-mean(sw_i * e_i^2)`` over the LOO/GCV errors ``e``,
        like :class:`sklearn.linear_model.RidgeCV`; otherwise a scorer (name or
        callable) applied to the LOO/GCV predictions and ``y``; zero sample
        weights are then not supported.
    criterion : {"loo", "gcv"}, default="loo"
    store_cv_results : bool, default=False
        Store squared errors (``scoring=None``) or predictions in ``cv_results_``.
    n_alphas : int, default=100
        Size of the default grid (at least 3).

    Attributes
    ----------
    alpha_, best_score_, alphas_, alpha_min_, dof_, coef_, intercept_,
    n_features_in_, feature_names_in_ :
        As in :class:`ARRidge` and :class:`~sklearn.linear_model.RidgeCV`;
        ``alphas_`` is the grid used and ``dof_`` excludes the intercept.
    cv_results_ : ndarray of shape (n_samples, n_alphas) or (n_samples, n_targets, n_alphas)
    """

    _parameter_constraints: dict = {
        "alphas": ["array-like", Real, None],
        "fit_intercept": ["boolean"],
        "eta": [Real],
        "scoring": [StrOptions(set(get_scorer_names())), callable, None],
        "criterion": [StrOptions({"loo", "gcv"})],
        "store_cv_results": ["boolean"],
        "n_alphas": [Interval(Integral, 3, None, closed="left")],
    }

    def __init__(
        self,
        alphas: ArrayLike | None = None,
        *,
        fit_intercept: bool = True,
        eta: float = 0.1,
        scoring=None,
        criterion: str = "loo",
        store_cv_results: bool = False,
        n_alphas: int = 100,
    ):
        self.alphas = alphas
        self.fit_intercept = fit_intercept
        self.eta = eta
        self.scoring = scoring
        self.criterion = criterion
        self.store_cv_results = store_cv_results
        self.n_alphas = n_alphas

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> ARRidgeCV:
        """Fit on ``X`` (n_samples, n_features) and ``y`` (n_samples,) or (n_samples, n_targets)."""
        spec = self._decompose(X, y, sample_weight)
        n_samples = spec.Y.shape[0]
        if n_samples < 2:
            raise ValueError(f"ARRidgeCV needs n_samples >= 2, got n_samples = {n_samples}.")
        y_peak = np.abs(spec.Y).max()
        _require_float_range(ok=not 0 < y_peak < _SMALLEST_SQUARABLE)
        self.alpha_min_ = safe_alpha_min(spec.eigs, self.eta)
        self.alphas_ = self._alpha_grid(spec.eigs)

        with np.errstate(all="ignore"):  # overflow is reported by _require_float_range
            errors = self._cv_errors(spec, self.alphas_)  # (n, m, t), NaN where undefined
            defined = ~np.isnan(errors).any(axis=(0, 2))
            if not defined.any():
                raise ValueError(
                    f"The {self.criterion.upper()} criterion is undefined for every alpha "
                    f"in {self.alphas_}; see the ARRidgeCV docstring."
                )
            results, scores = self._score(spec, errors, defined)
        _require_float_range(scores[defined])
        best = int(np.argmax(scores))
        self.best_score_ = float(scores[best])
        self._set_solution(spec, self.alphas_[best])
        if self.store_cv_results:
            self.cv_results_ = np.moveaxis(results, 1, -1)  # (n, t, m)
            if spec.y_ndim == 1:
                self.cv_results_ = self.cv_results_[:, 0]
        return self

    def _alpha_grid(self, eigs: np.ndarray) -> np.ndarray:
        if self.alphas is None:
            n = self.n_alphas
            if eigs.size == 0:
                return np.zeros(1)
            n_neg = n // 4
            negative = self.alpha_min_ * np.linspace(1.0, 0.0, n_neg, endpoint=False)
            positive = np.geomspace(1e-3 * eigs.min(), 1e3 * eigs.max(), n - n_neg - 1)
            return np.concatenate([negative, [0.0], positive])
        try:
            alphas = np.atleast_1d(np.asarray(self.alphas, dtype=float))
        except (TypeError, ValueError):
            alphas = np.array([np.nan])
        if alphas.ndim != 1 or alphas.size == 0 or not np.isfinite(alphas).all():
            raise ValueError(
                f"alphas must be a nonempty 1-D array of finite floats, got {self.alphas!r}."
            )
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
        return alphas[~unsafe]

    def _score(
        self, spec: _Spectral, errors: np.ndarray, defined: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample results (squared errors or predictions) and per-alpha scores."""
        if self.scoring is None:
            squared = np.square(errors, out=errors)  # errors are not needed afterwards
            scores = -squared.mean(axis=(0, 2))
            scores[~defined] = -np.inf
            return squared, scores
        if not spec.sqrt_sw.all():
            # sqrt(sw)-scaled errors cannot be unscaled there (RidgeCV gives NaN).
            raise ValueError("scoring is not supported with zero sample weights.")
        # The scorer sees predictions on the original scale of y, as in RidgeCV.
        predictions = spec.y[:, None, :] - errors / spec.sqrt_sw[:, None, None]
        scorer = check_scoring(self, scoring=self.scoring)
        one_target = spec.y_ndim == 1
        y = spec.y[:, 0] if one_target else spec.y
        scores = np.full(len(defined), -np.inf)
        for j in np.flatnonzero(defined):
            prediction = predictions[:, j, 0] if one_target else predictions[:, j]
            scores[j] = scorer(_Precomputed(), prediction, y)
        return predictions, scores

    def _cv_errors(self, spec: _Spectral, alphas: np.ndarray) -> np.ndarray:
        """LOO or GCV errors (sqrt(sw)-scaled), shape (n, m, t); NaN where undefined.

        Consumes ``spec.U`` (squares it in place).  The large arrays are updated in
        place because, at benchmark sizes, fresh temporaries cost as much as the
        arithmetic.
        """
        (n, t), r, m = spec.Y.shape, spec.s.size, alphas.size
        F = spec.eigs[:, None] / (spec.eigs[:, None] + alphas)  # (r, m)
        fitted = spec.U @ (F[:, :, None] * spec.UtY[:, None, :]).reshape(r, m * t)
        errors = fitted.reshape(n, m, t)
        np.subtract(spec.Y[:, None, :], errors, out=errors)  # residuals (I - H) y
        if self.criterion == "loo":
            leverage = np.square(spec.U, out=spec.U) @ F  # diag(U diag(F) U^T)
            if self.fit_intercept:
                leverage += (spec.sqrt_sw**2 / (spec.sqrt_sw**2).sum())[:, None]
            one_minus_h = np.subtract(1.0, leverage, out=leverage)
        else:
            one_minus_h = 1.0 - (F.sum(axis=0, keepdims=True) + self.fit_intercept) / n
            one_minus_h[one_minus_h < 0] = np.nan  # tr H > n: GCV undefined
        one_minus_h[np.abs(one_minus_h) <= _UNDEFINED_TOL] = np.nan
        errors /= one_minus_h[:, :, None]
        return errors
