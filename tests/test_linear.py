import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.utils.estimator_checks import parametrize_with_checks

from antireg.linear import ARRidge, ARRidgeCV


def _problem(n, d, n_targets=None, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) + rng.normal(size=d)
    shape = (d,) if n_targets is None else (d, n_targets)
    y = X @ rng.normal(size=shape) + 0.5 * rng.normal(size=(n,) + shape[1:]) + 2.0
    return X, y, rng.uniform(0.3, 3.0, n)


def _centre(X, y, sw, fit_intercept):
    """Independent oracle of the weighted centring: returns sqrt(sw)-scaled Xc, yc."""
    if not fit_intercept:
        xm, ym = np.zeros(X.shape[1]), np.zeros(y.shape[1:])
    else:
        xm, ym = np.average(X, axis=0, weights=sw), np.average(y, axis=0, weights=sw)
    r = np.sqrt(sw)
    return r[:, None] * (X - xm), (r if y.ndim == 1 else r[:, None]) * (y - ym), xm, ym


def _alpha_min(Xc, eta=0.1):
    s = np.linalg.svd(Xc, compute_uv=False)
    return -(1 - eta) * s[s > 1e-8 * s[0]].min() ** 2


def _oracle_fit(X, y, alpha, sw=None, fit_intercept=True):
    """Primal (n > d) or kernel (n < d) normal equations, solved directly."""
    sw = np.ones(len(X)) if sw is None else sw
    Xc, yc, xm, ym = _centre(X, y, sw, fit_intercept)
    n, d = X.shape
    if n > d:
        w = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(d), Xc.T @ yc)
    else:
        w = Xc.T @ np.linalg.solve(Xc @ Xc.T + alpha * np.eye(n), yc)
    return w, ym - xm @ w


@parametrize_with_checks(
    [ARRidge(), ARRidgeCV(), ARRidgeCV(criterion="sure", noise_variance=1.0), ARRidgeCV(cv=3),
     # not alpha_per_target=True: the sample-weight check sets cv=, which it (as RidgeCV's) refuses
     ARRidge(alpha=-0.5, alpha_unit="bound"),
     ARRidgeCV(alphas=[-0.8, 0.0, 1.0], alpha_unit="bound", baseline=1.0, cv=3)],
    expected_failed_checks=lambda est: {},
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# --- ARRidge ---------------------------------------------------------------


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("frac", [0.95, 0.5, 0.1])
def test_negative_alpha_matches_normal_equations_tall(fit_intercept, weighted, frac):
    X, y, sw = _problem(60, 8)
    sw = sw if weighted else None
    Xc = _centre(X, y, np.ones(60) if sw is None else sw, fit_intercept)[0]
    alpha = frac * _alpha_min(Xc)
    model = ARRidge(alpha=alpha, fit_intercept=fit_intercept).fit(X, y, sample_weight=sw)
    w, b = _oracle_fit(X, y, alpha, sw, fit_intercept)
    np.testing.assert_allclose(model.coef_, w, rtol=1e-9)
    assert model.intercept_ == pytest.approx(b, rel=1e-9, abs=1e-12)
    assert model.alpha_ == alpha
    assert model.alpha_min_ == pytest.approx(_alpha_min(Xc), rel=1e-9)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("frac", [0.9, 0.3, -2.0])  # -2: positive alpha
def test_wide_matches_kernel_form(fit_intercept, frac):
    X, y, _ = _problem(15, 40)
    Xc = X - X.mean(axis=0) if fit_intercept else X
    alpha = frac * _alpha_min(Xc)
    model = ARRidge(alpha=alpha, fit_intercept=fit_intercept).fit(X, y)
    w, b = _oracle_fit(X, y, alpha, fit_intercept=fit_intercept)
    np.testing.assert_allclose(model.coef_, w, rtol=1e-9)
    assert model.intercept_ == pytest.approx(b, rel=1e-9, abs=1e-12)
    # min-norm: the solution lies in the row space of the centred design
    np.testing.assert_allclose(Xc.T @ np.linalg.lstsq(Xc.T, model.coef_)[0], model.coef_)


@pytest.mark.parametrize("shape", [(50, 10), (10, 50)])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_targets", [None, 3])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 10.0])
def test_nonnegative_alpha_matches_sklearn_ridge(shape, fit_intercept, weighted, n_targets, alpha):
    if alpha == 0.0 and shape[0] < shape[1] and fit_intercept:
        pytest.skip("Ridge(solver='svd') keeps a rounding-level singular value after centring")
    X, y, sw = _problem(*shape, n_targets=n_targets)
    sw = sw if weighted else None
    ref = Ridge(alpha=alpha, fit_intercept=fit_intercept, solver="svd").fit(X, y, sw)
    models = [ARRidge(alpha=alpha, fit_intercept=fit_intercept)]
    if alpha > 0 or shape[0] > shape[1]:  # else LOO is 0/0: interpolation
        models.append(ARRidgeCV(alphas=[alpha], fit_intercept=fit_intercept))
    for model in models:
        model.fit(X, y, sample_weight=sw)
        np.testing.assert_allclose(model.coef_, ref.coef_, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(model.intercept_, ref.intercept_, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(model.predict(X), ref.predict(X), rtol=1e-8)


def test_dof_is_trace_of_smoother():
    X, y, _ = _problem(40, 6)
    Xc = X - X.mean(axis=0)
    for alpha in [0.9 * _alpha_min(Xc), 0.0, 5.0]:
        model = ARRidge(alpha=alpha).fit(X, y)
        S = Xc @ np.linalg.solve(Xc.T @ Xc + alpha * np.eye(6), Xc.T)
        assert model.dof_ == pytest.approx(np.trace(S), rel=1e-10)
    assert ARRidge(alpha=0.0).fit(X, y).dof_ == pytest.approx(6.0)


def test_clamp_exactly_at_bound_with_warning():
    X, y, _ = _problem(40, 6)
    bound = _alpha_min(X - X.mean(axis=0))
    with pytest.warns(UserWarning, match="spectral-safety bound") as record:
        model = ARRidge(alpha=-1e6).fit(X, y)
    message = str(record[0].message)
    assert "-1000000.0" in message and repr(model.alpha_min_) in message
    assert model.alpha_ == model.alpha_min_ == pytest.approx(bound, rel=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # at the bound itself: no clamp, no warning
        at_bound = ARRidge(alpha=model.alpha_min_).fit(X, y)
    np.testing.assert_array_equal(at_bound.coef_, model.coef_)
    w, _ = _oracle_fit(X, y, bound)
    np.testing.assert_allclose(model.coef_, w, rtol=1e-8)


@pytest.mark.parametrize("shape", [(50, 5), (8, 30)])
def test_zero_alpha_is_min_norm_least_squares(shape):
    X, y, _ = _problem(*shape)
    X = np.column_stack([X, X[:, 0] + X[:, 1]])  # collinear
    rank = min(shape[0] - 1, shape[1])
    model = ARRidge(alpha=0.0).fit(X, y)
    assert model.dof_ == pytest.approx(rank)
    assert model.alpha_min_ < -1e-3  # null directions do not pin the bound at ~0
    np.testing.assert_allclose(
        model.coef_, np.linalg.pinv(X - X.mean(0)) @ (y - y.mean()), rtol=1e-8
    )


# --- ARRidgeCV -------------------------------------------------------------


def _brute_force_loo(X, y, alphas, sw, fit_intercept):
    """-mean(sw_i * e_i^2) over explicit leave-one-out refits (RidgeCV's convention)."""
    n = len(X)
    scores = []
    for alpha in alphas:
        errors = []
        for i in range(n):
            keep = np.arange(n) != i
            w, b = _oracle_fit(X[keep], y[keep], alpha, sw[keep], fit_intercept)
            errors.append(y[i] - X[i] @ w - b)
        scores.append(-np.mean(sw * np.square(errors)))
    return np.array(scores)


@pytest.mark.parametrize("shape", [(25, 4), (8, 20)])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_loo_matches_brute_force_refits(shape, fit_intercept, weighted):
    X, y, sw = _problem(*shape)
    sw = sw if weighted else np.ones(len(X))
    bound = _alpha_min(_centre(X, y, sw, fit_intercept)[0])
    alphas = np.array([0.99 * bound, 0.5 * bound, 0.1 * bound, 1.0, 20.0])
    model = ARRidgeCV(alphas=alphas, fit_intercept=fit_intercept, store_cv_results=True)
    model.fit(X, y, sample_weight=sw)
    expected = _brute_force_loo(X, y, alphas, sw, fit_intercept)
    np.testing.assert_allclose(-model.cv_results_.mean(axis=0), expected, rtol=1e-7)
    assert model.best_score_ == pytest.approx(expected.max(), rel=1e-7)
    assert model.alpha_ == alphas[np.argmax(expected)]


def test_loo_scores_match_sklearn_ridgecv_for_positive_alphas():
    X, y, sw = _problem(30, 5, n_targets=2)
    alphas = [0.01, 0.3, 3.0, 30.0]
    ours = ARRidgeCV(alphas=alphas, store_cv_results=True).fit(X, y, sw)
    ref = RidgeCV(alphas=alphas, store_cv_results=True).fit(X, y, sample_weight=sw)
    assert ours.cv_results_.shape == ref.cv_results_.shape == (30, 2, 4)
    np.testing.assert_allclose(ours.cv_results_, ref.cv_results_, rtol=1e-9)
    assert ours.alpha_ == ref.alpha_
    assert ours.best_score_ == pytest.approx(ref.best_score_, rel=1e-10)


def _ill_conditioned(n, d, cond, seed=0):
    """Design with singular values log-spaced over ``cond`` (before centring), offset
    so that centring matters, and weights."""
    rng = np.random.default_rng(seed)
    k = min(n, d)
    left, right = (np.linalg.qr(rng.normal(size=(m, k)))[0] for m in (n, d))
    X = (left * np.geomspace(10.0, 10.0 / cond, k)) @ right.T + 5.0
    y = X @ rng.normal(size=d) + 0.1 * rng.normal(size=n) + 2.0
    return X, y, rng.uniform(0.3, 3.0, n)


def _svd_cv_scores(X, y, alphas, sw, criterion):
    """-mean(sw_i e_i^2) of LOO or GCV errors from LAPACK's SVD of the centred,
    weighted design (not its Gram matrix), all rows at once (NaN where GCV is undefined);
    and the pole -s_min^2."""
    Xc, yc, _, _ = _centre(X, y, sw, True)
    U, s, _ = np.linalg.svd(Xc, full_matrices=False)
    U, s = U[:, s > 1e-8 * s[0]], s[s > 1e-8 * s[0]]
    scores = []
    for alpha in alphas:
        F = s**2 / (s**2 + alpha)
        residuals = yc - U @ (F * (U.T @ yc))
        if criterion == "loo":
            one_minus_h = 1 - (U**2 @ F + sw / sw.sum())
        else:  # undefined (NaN) where tr H > n
            one_minus_h = 1 - (F.sum() + 1) / len(X) if F.sum() + 1 <= len(X) else np.nan
        scores.append(-np.mean((residuals / one_minus_h) ** 2))
    return np.array(scores), -s[-1] ** 2


# n > 256 rows: LOO/GCV errors are computed in several row blocks, the last one partial
@pytest.mark.parametrize("shape", [(600, 30), (300, 400)])
@pytest.mark.parametrize("weighted", [False, True])
def test_loo_over_row_blocks_matches_ridgecv_on_ill_conditioned_designs(shape, weighted):
    X, y, sw = _ill_conditioned(*shape, cond=1e4)
    sw = sw if weighted else None
    alphas = np.geomspace(1e-3, 1e2, 6)
    ours = ARRidgeCV(alphas=alphas, store_cv_results=True).fit(X, y, sw)
    ref = RidgeCV(alphas=alphas, store_cv_results=True).fit(X, y, sample_weight=sw)
    scale = np.abs(ref.cv_results_).max()  # squared errors near 0 have no relative precision
    np.testing.assert_allclose(ours.cv_results_, ref.cv_results_, rtol=1e-10, atol=1e-10 * scale)
    np.testing.assert_allclose(ours.cv_results_.mean(axis=0), ref.cv_results_.mean(axis=0), rtol=1e-10)
    assert ours.alpha_ == ref.alpha_
    assert ours.best_score_ == pytest.approx(ref.best_score_, rel=1e-10)


@pytest.mark.parametrize("shape", [(600, 30), (300, 400)])
@pytest.mark.parametrize("criterion", ["loo", "gcv"])
def test_negative_alphas_over_row_blocks_match_the_svd_of_the_design(shape, criterion):
    X, y, sw = _ill_conditioned(*shape, cond=1e2)
    _, pole = _svd_cv_scores(X, y, [], sw, criterion)
    alphas = np.array([0.85, 0.5, 0.1, -1.0]) * pole  # down to near the safe bound 0.9 * pole
    ours = ARRidgeCV(alphas=alphas, criterion=criterion, store_cv_results=True).fit(X, y, sw)
    expected, _ = _svd_cv_scores(X, y, alphas, sw, criterion)
    np.testing.assert_allclose(-ours.cv_results_.mean(axis=0), expected, rtol=1e-10)
    assert ours.alpha_min_ == pytest.approx(0.9 * pole, rel=1e-10)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_gcv_matches_formula(fit_intercept):
    X, y, _ = _problem(30, 5)
    n = len(X)
    Xc = _centre(X, y, np.ones(n), fit_intercept)[0]
    alphas = np.array([0.8, 0.3]) * _alpha_min(Xc)
    alphas = np.concatenate([alphas, [0.0, 2.0, 50.0]])
    model = ARRidgeCV(alphas, criterion="gcv", fit_intercept=fit_intercept, store_cv_results=True)
    model.fit(X, y)
    gcv = []
    for alpha in alphas:
        H = Xc @ np.linalg.solve(Xc.T @ Xc + alpha * np.eye(5), Xc.T) + fit_intercept / n
        gcv.append(n * np.sum(((np.eye(n) - H) @ y) ** 2) / (n - np.trace(H)) ** 2)
    np.testing.assert_allclose(model.cv_results_.mean(axis=0), gcv, rtol=1e-9)
    assert model.best_score_ == pytest.approx(-min(gcv), rel=1e-9)
    assert model.alpha_ == alphas[np.argmin(gcv)]


def test_undefined_criterion_skips_alphas_or_raises():
    X, y, _ = _problem(8, 20)  # n < d with an intercept: alpha <= 0 interpolates
    alphas = [-1e-3, 0.0, 1.0]
    model = ARRidgeCV(alphas=alphas, criterion="gcv", store_cv_results=True).fit(X, y)
    assert model.alpha_ == 1.0
    assert np.isnan(model.cv_results_[:, :2]).all() and np.isfinite(model.cv_results_[:, 2]).all()
    loo = ARRidgeCV(alphas=alphas, store_cv_results=True).fit(X, y)
    assert np.isnan(loo.cv_results_[:, 1]).all()  # 0/0 at alpha = 0
    with pytest.raises(ValueError, match="undefined for every alpha"):
        ARRidgeCV(alphas=[0.0]).fit(X, y)


@pytest.mark.parametrize("shape", [(40, 6), (6, 40)])
def test_default_grid_spans_safe_negative_zero_and_positive(shape):
    X, y, _ = _problem(*shape)
    model = ARRidgeCV(n_alphas=40).fit(X, y)
    grid = model.alphas_
    assert grid.size == 40 and np.all(np.diff(grid) > 0)
    assert grid[0] == model.alpha_min_ < 0 and 0.0 in grid and grid[-1] > 0
    assert model.alpha_ in grid and model.alpha_ >= model.alpha_min_
    single = ARRidge(alpha=model.alpha_).fit(X, y)
    np.testing.assert_allclose(model.coef_, single.coef_)
    assert model.dof_ == single.dof_


def test_user_alphas_below_bound_are_dropped():
    X, y, _ = _problem(40, 6)
    bound = _alpha_min(X - X.mean(axis=0))
    with pytest.warns(UserWarning, match="Dropping alphas"):
        model = ARRidgeCV(alphas=[10 * bound, 0.5 * bound, 1.0]).fit(X, y)
    np.testing.assert_allclose(model.alphas_, [0.5 * bound, 1.0])
    with pytest.raises(ValueError, match="All alphas are below"):
        ARRidgeCV(alphas=[10 * bound]).fit(X, y)


def test_scoring_uses_predictions_on_original_scale():
    X, y, _ = _problem(30, 5)
    alphas = [-1.0, 0.1, 1.0, 100.0]
    mse = ARRidgeCV(alphas=alphas, store_cv_results=True).fit(X, y)
    scored = ARRidgeCV(alphas=alphas, scoring="neg_mean_squared_error", store_cv_results=True)
    scored.fit(X, y)
    assert scored.alpha_ == mse.alpha_
    assert scored.best_score_ == pytest.approx(mse.best_score_, rel=1e-10)
    np.testing.assert_allclose((y[:, None] - scored.cv_results_) ** 2, mse.cv_results_, rtol=1e-8)


# --- validation ------------------------------------------------------------


@pytest.mark.parametrize("Est", [ARRidge, ARRidgeCV])
def test_bad_input_raises_clear_errors(Est):
    X, y, sw = _problem(20, 3)
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Est().fit(X_nan, y)
    with pytest.raises(ValueError, match="infinity"):
        Est().fit(X, np.where(np.arange(20) == 3, np.inf, y))
    with pytest.raises(ValueError, match="2D array"):
        Est().fit(X[:, 0], y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        Est().fit(X, y[:-1])
    with pytest.raises(ValueError, match="Negative values"):
        Est().fit(X, y, sample_weight=-sw)
    for eta in [0.0, 1.0, -0.5, 2.0]:
        with pytest.raises(ValueError, match="eta"):
            Est(eta=eta).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        Est().fit(X, y).predict(X[:, :2])


def test_cv_parameter_validation():
    X, y, _ = _problem(20, 3)
    with pytest.raises(ValueError, match="criterion"):
        ARRidgeCV(criterion="kfold").fit(X, y)
    with pytest.raises(ValueError, match="n_alphas"):
        ARRidgeCV(n_alphas=2).fit(X, y)
    with pytest.raises(ValueError, match="finite"):
        ARRidgeCV(alphas=[1.0, np.nan]).fit(X, y)
    with pytest.raises(ValueError, match="finite"):
        ARRidge(alpha=np.inf).fit(X, y)


# --- properties ------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(3, 30),
    d=st.integers(1, 30),
    frac=st.floats(-0.99, 5.0),
    fit_intercept=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_stationarity_property(n, d, frac, fit_intercept, seed):
    """w solves the (anti-)regularised normal equations on the row space."""
    X, y, sw = _problem(n, d, seed=seed)
    Xc, yc, _, _ = _centre(X, y, sw, fit_intercept)
    s = np.linalg.svd(Xc, compute_uv=False)[: min(n - fit_intercept, d)]
    assume(s[-1] >= 1e-3 * s[0])  # well-conditioned problems only
    alpha = frac * abs(_alpha_min(Xc))
    model = ARRidge(alpha=alpha, fit_intercept=fit_intercept).fit(X, y, sample_weight=sw)
    w = model.coef_
    gradient = Xc.T @ (Xc @ w - yc) + alpha * w
    assert np.linalg.norm(gradient) <= 1e-8 * (np.linalg.norm(Xc.T @ yc) + 1)
    assert model.dof_ == pytest.approx(np.sum(s**2 / (s**2 + alpha)), rel=1e-6)


# --- SURE, k-fold, lambda_, shapes -------------------------------------------

from sklearn.model_selection import KFold  # noqa: E402

from antireg.linear import estimate_noise_variance, sure_score  # noqa: E402


def _brute_force_sure(X, y, alphas, sigma2, fit_intercept=True):
    """SURE by its definition: refit per alpha, df = trace of the explicit smoother."""
    n = len(X)
    Xc = X - X.mean(axis=0) if fit_intercept else X
    out = []
    for alpha in alphas:
        w, b = _oracle_fit(X, y, alpha, fit_intercept=fit_intercept)
        S = Xc @ np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T)
        mse = np.mean((y - X @ w - b) ** 2)
        out.append(mse + 2 * sigma2 * (np.trace(S) + fit_intercept) / n - sigma2)
    return np.array(out)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_sure_matches_definition_and_selects_its_minimum(fit_intercept):
    X, y, _ = _problem(40, 6)
    bound = _alpha_min(_centre(X, y, np.ones(40), fit_intercept)[0])
    alphas = np.array([0.9 * bound, 0.3 * bound, 0.0, 2.0, 50.0])
    expected = _brute_force_sure(X, y, alphas, 0.3, fit_intercept)
    np.testing.assert_allclose(
        sure_score(X, y, alphas, noise_variance=0.3, fit_intercept=fit_intercept),
        expected,
        rtol=1e-9,
    )
    model = ARRidgeCV(alphas=alphas, criterion="sure", noise_variance=0.3,
                      fit_intercept=fit_intercept).fit(X, y)
    assert model.alpha_ == alphas[np.argmin(expected)]
    assert model.best_score_ == pytest.approx(-expected.min(), rel=1e-9)
    assert model.noise_variance_ == 0.3


def test_estimate_noise_variance_is_unbiased_monte_carlo():
    rng = np.random.default_rng(1)
    sigma, n, d = 0.7, 30, 8
    X = rng.normal(size=(n, d))
    beta = rng.normal(size=d)
    est = np.array(
        [estimate_noise_variance(X, X @ beta + 3.0 + sigma * rng.normal(size=n)) for _ in range(2000)]
    )
    half = 1.96 * est.std(ddof=1) / np.sqrt(est.size)
    assert abs(est.mean() - sigma**2) < half + 1e-12, (est.mean(), half)
    # SURE with "auto" uses exactly this estimate
    y = X @ beta + sigma * rng.normal(size=n)
    model = ARRidgeCV(criterion="sure").fit(X, y)
    assert model.noise_variance_ == pytest.approx(estimate_noise_variance(X, y), rel=1e-12)


@pytest.mark.parametrize("cv", [5, KFold(4, shuffle=True, random_state=0)])
@pytest.mark.parametrize("n_targets", [None, 2])
@pytest.mark.parametrize("scoring", [None, "neg_mean_squared_error"])
def test_kfold_matches_sklearn_ridgecv(cv, n_targets, scoring):
    X, y, sw = _problem(60, 7, n_targets=n_targets)
    alphas = np.geomspace(1e-2, 1e3, 12)
    ours = ARRidgeCV(alphas=alphas, cv=cv, scoring=scoring).fit(X, y, sample_weight=sw)
    ref = RidgeCV(alphas=alphas, cv=cv, scoring=scoring).fit(X, y, sample_weight=sw)
    assert ours.alpha_ == ref.alpha_
    assert ours.best_score_ == pytest.approx(ref.best_score_, rel=1e-9)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-8)


def test_kfold_negative_alpha_is_infeasible_below_a_folds_bound():
    X, y, _ = _problem(30, 5)
    folds = list(KFold(3).split(X))
    fold_bounds = [_alpha_min(X[tr] - X[tr].mean(axis=0)) for tr, _ in folds]
    full_bound = _alpha_min(X - X.mean(axis=0))
    # feasible on the full data, below the bound of the tightest fold
    alpha = 0.5 * (full_bound + max(fold_bounds))
    assert full_bound < alpha < max(fold_bounds)
    model = ARRidgeCV(alphas=[alpha, 1.0], cv=folds).fit(X, y)
    assert model.alpha_ == 1.0


@pytest.mark.parametrize("Est", [ARRidge, ARRidgeCV])
def test_lambda_is_alpha_per_sample(Est):
    X, y, sw = _problem(25, 4)
    model = Est().fit(X, y)
    assert model.lambda_ == pytest.approx(model.alpha_ / 25, rel=1e-14)
    model = Est().fit(X, y, sample_weight=sw)
    assert model.lambda_ == pytest.approx(model.alpha_ / sw.sum(), rel=1e-14)


@pytest.mark.parametrize("y_shape", [(), (1,), (3,)])
@pytest.mark.parametrize("pair", [(ARRidge(alpha=1.0), Ridge(alpha=1.0)),
                                  (ARRidgeCV(alphas=[0.1, 1.0]), RidgeCV(alphas=[0.1, 1.0])),
                                  (ARRidgeCV(alphas=[0.1, 1.0], cv=3), RidgeCV(alphas=[0.1, 1.0], cv=3))])
def test_coef_and_intercept_shapes_and_types_match_sklearn(pair, y_shape):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 4)), rng.normal(size=(20,) + y_shape)
    ours, ref = (est.fit(X, y) for est in pair)
    assert np.shape(ours.coef_) == np.shape(ref.coef_)
    assert np.shape(ours.intercept_) == np.shape(ref.intercept_)
    assert type(ours.intercept_) is type(ref.intercept_)
    ours.set_params(fit_intercept=False).fit(X, y)
    ref.set_params(fit_intercept=False).fit(X, y)
    assert type(ours.intercept_) is type(ref.intercept_)
    assert np.shape(ours.coef_) == np.shape(ref.coef_)
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-8)


def test_sure_and_kfold_bad_input():
    X, y, _ = _problem(20, 3)
    for bad in [0.0, -1.0, "estimate", np.nan]:
        with pytest.raises(ValueError, match="noise_variance"):
            ARRidgeCV(criterion="sure", noise_variance=bad).fit(X, y)
    with pytest.raises(ValueError, match="noise_variance"):
        sure_score(X, y, [1.0], noise_variance=-2.0)
    with pytest.raises(ValueError, match="least-squares fit interpolates"):
        ARRidgeCV(criterion="sure").fit(X[:4], y[:4])
    with pytest.raises(ValueError, match="alpha"):
        ARRidge(alpha="1.0").fit(X, y)
    with pytest.raises(ValueError, match="alphas"):
        ARRidgeCV(alphas="1.0").fit(X, y)
    with pytest.raises(ValueError, match="incompatible"):
        ARRidgeCV(cv=3, store_cv_results=True).fit(X, y)
    with pytest.raises(ValueError, match="cv"):
        ARRidgeCV(cv="five").fit(X, y)


# --- alpha_per_target, alpha_unit="bound", baseline ---------------------------


@pytest.mark.parametrize("y_shape", [(), (1,), (3,)])
@pytest.mark.parametrize("scoring", [None, "r2", "neg_mean_absolute_error"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("per_target", [True, False])
def test_alpha_per_target_matches_sklearn_ridgecv(y_shape, scoring, weighted, per_target):
    # RidgeCV(alpha_per_target=True, scoring=...) fails on 1-D y (IndexError); ours
    # then equals alpha_per_target=False
    sklearn_fails = per_target and scoring and not y_shape
    rng = np.random.default_rng(3)
    X = rng.normal(size=(30, 5))
    # targets that want very different alphas: pure signal, pure noise, in between
    Y = np.column_stack([X @ rng.normal(size=5), rng.normal(size=30), X[:, 0] + rng.normal(size=30)])
    y = Y[:, 0] if not y_shape else Y[:, : y_shape[0]]
    sw = rng.uniform(0.5, 2.0, 30) if weighted else None
    alphas = np.geomspace(1e-3, 1e3, 13)
    kw = dict(alphas=alphas, alpha_per_target=per_target, scoring=scoring, store_cv_results=True)
    ours = ARRidgeCV(**kw).fit(X, y, sw)
    if sklearn_fails:
        kw["alpha_per_target"] = False
    ref = RidgeCV(**kw).fit(X, y, sample_weight=sw)
    for name in ["alpha_", "best_score_", "coef_", "intercept_", "cv_results_"]:
        a, b = getattr(ours, name), getattr(ref, name)
        assert np.ndim(a) == np.ndim(b) and np.shape(a) == np.shape(b), name
        assert isinstance(a, np.ndarray) == isinstance(b, np.ndarray), name
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12, err_msg=name)
    if y_shape == (3,) and per_target:
        assert len(set(ours.alpha_)) > 1  # the targets really chose different alphas
        np.testing.assert_allclose(ours.lambda_, ours.alpha_ / (30 if sw is None else sw.sum()))
        assert ours.dof_.shape == ours.adjustment_.shape == (3,)


def _spiked_wide(n=20, d=60, seed=0):
    """Kobak et al.'s spiked design (p > n, signal along the spike): LOO prefers a
    negative alpha for target 0; targets 1 (pure noise) and 2 (dense) do not."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) + np.sqrt(0.3) * rng.normal(size=(n, 1))
    Y = np.column_stack([2 * X.sum(axis=1) / np.sqrt(d) + 0.3 * rng.normal(size=n),
                         rng.normal(size=n), X @ rng.normal(size=d) + 0.5 * rng.normal(size=n)])
    return X, Y


def _explicit_scores(X, y, alphas, sw, criterion, sigma2):
    """-GCV or -SURE by definition, with the explicit weighted smoother (n > d)."""
    n, n_eff = len(X), sw.sum()
    Xc, yc, _, _ = _centre(X, y, sw, True)
    out = []
    for alpha in alphas:
        H = Xc @ np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T)
        rss, trace = np.sum((yc - H @ yc) ** 2), np.trace(H) + 1
        out.append(-n * rss / (n - trace) ** 2 if criterion == "gcv"
                   else -(rss / n_eff + 2 * sigma2 * trace / n_eff - sigma2))
    return np.array(out)


@pytest.mark.parametrize("criterion", ["loo", "gcv", "sure"])
def test_alpha_per_target_negative_alphas_match_per_target_brute_force(criterion):
    if criterion == "loo":
        X, Y = _spiked_wide()
        sw = np.random.default_rng(1).uniform(0.5, 2.0, len(X))
    else:
        X, Y, sw = _problem(25, 4, n_targets=3)
        Y[:, 1] = np.random.default_rng(5).normal(size=25)  # a noise target
    bound = _alpha_min(_centre(X, Y, sw, True)[0])
    alphas = np.concatenate([np.array([0.95, 0.6, 0.2]) * bound, [0.3, 3.0, 30.0, 300.0]])
    kw = dict(alphas=alphas, criterion=criterion, noise_variance=0.25)
    model = ARRidgeCV(alpha_per_target=True, **kw).fit(X, Y, sample_weight=sw)
    for j in range(3):
        if criterion == "loo":
            expected = _brute_force_loo(X, Y[:, j], alphas, sw, True)
        else:
            expected = _explicit_scores(X, Y[:, j], alphas, sw, criterion, 0.25)
        assert model.alpha_[j] == alphas[np.argmax(expected)]
        assert model.best_score_[j] == pytest.approx(expected.max(), rel=1e-7)
        w, b = _oracle_fit(X, Y[:, j], model.alpha_[j], sw)
        np.testing.assert_allclose(model.coef_[j], w, rtol=1e-7, atol=1e-10)
        assert model.intercept_[j] == pytest.approx(b, rel=1e-8)
    assert len(set(model.alpha_)) > 1
    if criterion == "loo":
        assert model.alpha_.min() < 0 < model.alpha_.max()  # both signs are chosen
    shared = ARRidgeCV(**kw).fit(X, Y, sample_weight=sw)
    assert np.ndim(shared.alpha_) == 0 and np.ndim(shared.best_score_) == 0


def test_alpha_per_target_with_cv_raises_like_ridgecv():
    X, Y, _ = _problem(20, 3, n_targets=2)
    for Est in (ARRidgeCV, RidgeCV):
        with pytest.raises(ValueError, match="cv!=None and alpha_per_target=True are incompatible"):
            Est(alphas=[0.1, 1.0], cv=3, alpha_per_target=True).fit(X, Y)


@pytest.mark.parametrize("shape", [(40, 6), (8, 20)])
def test_bound_units_scale_by_the_smallest_eigenvalue(shape):
    X, y, _ = _problem(*shape)
    s_min2 = -_alpha_min(X - X.mean(axis=0), eta=0.0)
    for c in [-0.5, 0.0, 2.0]:
        model = ARRidge(alpha=c, alpha_unit="bound").fit(X, y)
        assert model.alpha_ == pytest.approx(c * s_min2, rel=1e-10, abs=1e-12)
        np.testing.assert_allclose(model.coef_, _oracle_fit(X, y, c * s_min2)[0], rtol=1e-8)
    with pytest.warns(UserWarning, match="spectral-safety bound"):
        clamped = ARRidge(alpha=-0.95, alpha_unit="bound", eta=0.1).fit(X, y)
    assert clamped.alpha_ == clamped.alpha_min_ == pytest.approx(-0.9 * s_min2, rel=1e-10)
    for bad in [-1.0, -3.0]:
        with pytest.raises(ValueError, match="> -1"):
            ARRidge(alpha=bad, alpha_unit="bound").fit(X, y)
        with pytest.raises(ValueError, match="> -1"):
            ARRidgeCV(alphas=[bad, 1.0], alpha_unit="bound").fit(X, y)


def test_bound_units_clamp_with_one_warning_per_fit():
    X, y, _ = _problem(30, 5)
    s_min2 = -_alpha_min(X - X.mean(axis=0), eta=0.0)
    grid = [-0.99, -0.95, -0.5, 0.0, 1.0]
    for cv in [None, 5]:
        with pytest.warns(UserWarning, match="Clamped alphas") as record:
            model = ARRidgeCV(alphas=grid, alpha_unit="bound", cv=cv).fit(X, y)
        assert len([w for w in record if "lamped" in str(w.message)]) == 1
        expected = np.maximum(np.array(grid) * s_min2, -0.9 * s_min2)
        np.testing.assert_allclose(model.alphas_, expected, rtol=1e-10, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ARRidgeCV(alphas=[-0.8, 0.0, 1.0], alpha_unit="bound").fit(X, y)  # nothing clamped


def test_bound_units_kfold_convert_on_each_fold():
    X, y, _ = _problem(30, 5)
    folds = list(KFold(3).split(X))
    grid = np.array([-0.85, -0.5, 0.0, 0.5, 3.0])
    model = ARRidgeCV(alphas=grid, alpha_unit="bound", cv=folds, baseline=0.0).fit(X, y)
    per_fold = []
    for train, test in folds:  # oracle: each fold's own s_min^2, plain refits, R^2
        s_min2 = -_alpha_min(X[train] - X[train].mean(axis=0), eta=0.0)
        scores = []
        for c in grid:
            w, b = _oracle_fit(X[train], y[train], c * s_min2)
            resid = y[test] - X[test] @ w - b
            scores.append(1 - np.sum(resid**2) / np.sum((y[test] - y[test].mean()) ** 2))
        per_fold.append(scores)
    mean = np.mean(per_fold, axis=0)
    assert model.best_score_ == pytest.approx(mean.max(), rel=1e-9)
    s_min2 = -_alpha_min(X - X.mean(axis=0), eta=0.0)
    assert model.alpha_ == pytest.approx(grid[np.argmax(mean)] * s_min2, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("shape", [(25, 4), (8, 20)])
@pytest.mark.parametrize("weighted", [False, True])
def test_baseline_adjustments_match_brute_force_loo(shape, weighted):
    X, y, sw = _problem(*shape)
    sw = sw if weighted else np.ones(len(X))
    s_min2 = -_alpha_min(_centre(X, y, sw, True)[0], eta=0.0)
    tau0 = 0.5 * s_min2
    adjustments = np.array([-1.35 * s_min2, -1.0 * s_min2, -0.3 * s_min2, 0.0, 2.0, 30.0])
    model = ARRidgeCV(alphas=adjustments, baseline=tau0, store_cv_results=True)
    model.fit(X, y, sample_weight=sw)
    totals = tau0 + adjustments
    assert totals[0] < 0  # a truly negative total ridge
    expected = _brute_force_loo(X, y, totals, sw, True)
    np.testing.assert_allclose(model.alphas_, totals)
    np.testing.assert_allclose(-model.cv_results_.mean(axis=0), expected, rtol=1e-7)
    best = np.argmax(expected)
    assert model.alpha_ == totals[best] and model.adjustment_ == pytest.approx(adjustments[best])
    assert model.lambda_ == pytest.approx(model.alpha_ / sw.sum(), rel=1e-14)
    # bound units relative to the baseline: c = 0 is tau0, c = -0.5 halfway to the pole
    bound = ARRidgeCV(alphas=[-0.5, 0.0], alpha_unit="bound", baseline=tau0).fit(X, y, sw)
    np.testing.assert_allclose(bound.alphas_, [tau0 - 0.5 * (tau0 + s_min2), tau0], rtol=1e-10)


def test_new_parameters_validate():
    X, y, _ = _problem(20, 3)
    with pytest.raises(ValueError, match="baseline"):
        ARRidgeCV(baseline=-1.0).fit(X, y)
    with pytest.raises(ValueError, match="alpha_unit"):
        ARRidgeCV(alpha_unit="lambda").fit(X, y)
    with pytest.raises(ValueError, match="alpha_unit"):
        ARRidge(alpha_unit="bounds").fit(X, y)
    with pytest.raises(ValueError, match="alpha_per_target"):
        ARRidgeCV(alpha_per_target="yes").fit(X, y)
