import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antireg.spectral import (
    alpha_for_dof,
    center_design,
    clamp_alpha,
    dof,
    gram_spectrum,
    safe_alpha_min,
    thin_svd,
)


def _design(n, d, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def _svd_eigs(A):
    s = np.linalg.svd(A, compute_uv=False)
    return s[s > 1e-8 * s[0]] ** 2


@pytest.mark.parametrize("shape", [(40, 7), (7, 40), (12, 12)])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_gram_spectrum_matches_svd_of_centred_design(shape, fit_intercept):
    X = _design(*shape) + 3.0  # offset so that centring matters
    Xc = X - X.mean(axis=0) if fit_intercept else X
    np.testing.assert_allclose(
        gram_spectrum(X, fit_intercept=fit_intercept), _svd_eigs(Xc), rtol=1e-9
    )


def test_gram_spectrum_with_weights_is_that_of_sqrt_weighted_design():
    X = _design(30, 5) + 1.0
    sw = np.random.default_rng(1).uniform(0.2, 3.0, 30)
    A = np.sqrt(sw)[:, None] * (X - np.average(X, axis=0, weights=sw))
    np.testing.assert_allclose(gram_spectrum(X, sample_weight=sw), _svd_eigs(A), rtol=1e-9)


def test_gram_spectrum_drops_null_directions():
    X = _design(50, 6)
    X = np.column_stack([X, X[:, 0] - 2 * X[:, 1]])  # rank 6 of 7
    eigs = gram_spectrum(X)
    assert eigs.size == 6
    np.testing.assert_allclose(eigs, _svd_eigs(X - X.mean(axis=0)), rtol=1e-8)
    # a single sample has nothing left after centring
    assert gram_spectrum(X[:1]).size == 0


@pytest.mark.parametrize("shape", [(30, 5), (5, 30)])
def test_thin_svd_reconstructs_with_orthonormal_factors(shape):
    A = _design(*shape)
    U, s, Vt = thin_svd(A)
    r = min(shape)
    assert U.shape == (shape[0], r) and s.shape == (r,) and Vt.shape == (r, shape[1])
    assert np.all(np.diff(s) <= 0)
    np.testing.assert_allclose(U * s @ Vt, A, atol=1e-12)
    np.testing.assert_allclose(U.T @ U, np.eye(r), atol=1e-10)
    np.testing.assert_allclose(Vt @ Vt.T, np.eye(r), atol=1e-10)


@pytest.mark.parametrize("shape", [(600, 7), (7, 600), (300, 280)])  # several row blocks each
@pytest.mark.parametrize("scale", [1.0, 1e200, 1e-200])  # and the rescaled Gram matrix
@pytest.mark.parametrize("rank_deficient", [False, True])
def test_thin_svd_overwrite_a_writes_the_same_factors_into_a(shape, scale, rank_deficient):
    A, tall = _design(*shape), shape[0] >= shape[1]
    if rank_deficient and tall:
        A[:, -1] = A[:, 0]  # a repeated column: one direction fewer
    elif rank_deficient:
        A[-1] = A[0]  # a repeated row
    A *= scale
    U0, s0, Vt0 = thin_svd(A)
    work = A.copy()
    U, s, Vt = thin_svd(work, overwrite_a=True)
    assert np.shares_memory(U if tall else Vt, work)  # the large factor lives in A's memory
    r = min(shape) - rank_deficient
    assert U.shape == (shape[0], r) and s.shape == (r,) and Vt.shape == (r, shape[1])
    np.testing.assert_array_equal(s, s0)
    np.testing.assert_allclose(U, U0, rtol=0, atol=1e-13)
    np.testing.assert_allclose(Vt, Vt0, rtol=0, atol=1e-13)
    # the oracle: LAPACK's SVD of A itself
    s_ref = np.linalg.svd(A / scale, compute_uv=False)[:r] * scale
    np.testing.assert_allclose(s, s_ref, rtol=1e-10)
    np.testing.assert_allclose((U * (s / scale)) @ Vt, A / scale, atol=1e-11)
    np.testing.assert_allclose(U.T @ U, np.eye(r), atol=1e-10)


def test_center_design_weighted_mean_and_scaling():
    X = _design(10, 3)
    sw = np.arange(1.0, 11.0)
    A, offset, sqrt_sw = center_design(X, True, sw)
    np.testing.assert_allclose(offset, np.average(X, axis=0, weights=sw))
    np.testing.assert_allclose(A, np.sqrt(sw)[:, None] * (X - offset))
    np.testing.assert_allclose(np.sqrt(sw) @ A, 0.0, atol=1e-12)


@pytest.mark.parametrize("shape", [(40, 6), (6, 40)])
def test_dof_is_trace_of_dense_smoother(shape):
    X = _design(*shape)
    eigs = gram_spectrum(X, fit_intercept=False)
    d = shape[1]
    for alpha in [-0.8 * eigs.min(), -0.1 * eigs.min(), 0.5, 30.0]:
        if shape[0] < d:  # kernel form, valid for any alpha != 0 off the spectrum
            S = X @ X.T @ np.linalg.inv(X @ X.T + alpha * np.eye(shape[0]))
        else:
            S = X @ np.linalg.solve(X.T @ X + alpha * np.eye(d), X.T)
        assert dof(eigs, alpha) == pytest.approx(np.trace(S), rel=1e-10)


def test_dof_is_vectorised_and_exceeds_rank_for_negative_alpha():
    eigs = np.array([4.0, 2.0, 1.0])
    alphas = np.array([[-0.5, 0.0], [1.0, 2.0]])
    out = dof(eigs, alphas)
    assert out.shape == (2, 2)
    assert out[0, 1] == pytest.approx(3.0)
    assert out[0, 0] > 3.0
    assert out[1, 0] == pytest.approx(4 / 5 + 2 / 3 + 1 / 2)


def test_safe_alpha_min_formula_and_validation():
    eigs = np.array([9.0, 4.0, 2.0])
    assert safe_alpha_min(eigs) == pytest.approx(-0.9 * 2.0)
    assert safe_alpha_min(eigs, eta=0.5) == pytest.approx(-1.0)
    assert safe_alpha_min(np.array([])) == -np.inf
    for eta in [0.0, 1.0, -0.1, 1.5]:
        with pytest.raises(ValueError, match="eta"):
            safe_alpha_min(eigs, eta)
    with pytest.raises(ValueError, match="positive"):
        safe_alpha_min(np.array([1.0, 0.0]))


def test_clamp_alpha():
    eigs = np.array([5.0, 1.0])
    assert clamp_alpha(-10.0, eigs) == (pytest.approx(-0.9), True)
    assert clamp_alpha(-0.9, eigs) == (-0.9, False)
    assert clamp_alpha(3.0, eigs) == (3.0, False)
    with pytest.raises(ValueError, match="finite"):
        clamp_alpha(np.nan, eigs)
    with pytest.raises(ValueError, match="eta"):
        clamp_alpha(1.0, eigs, eta=1.0)


@pytest.mark.parametrize("target", [0.01, 1.0, 2.5, 3.0, 5.0, 12.0])
def test_alpha_for_dof_round_trip(target):
    eigs = np.array([50.0, 7.0, 3.0, 0.5])
    alpha, clamped = alpha_for_dof(eigs, target)
    assert not clamped
    assert alpha >= safe_alpha_min(eigs)
    assert dof(eigs, alpha) == pytest.approx(target, rel=1e-10)


def test_alpha_for_dof_unreachable_target_returns_bound():
    eigs = np.array([50.0, 7.0, 3.0, 0.5])
    bound = safe_alpha_min(eigs, eta=0.1)
    assert dof(eigs, bound) < 14.0
    assert alpha_for_dof(eigs, 14.0) == (bound, True)


@pytest.mark.parametrize("target", [0.0, -1.0, np.nan, np.inf])
def test_alpha_for_dof_rejects_bad_targets(target):
    with pytest.raises(ValueError, match="target_df"):
        alpha_for_dof(np.array([1.0, 2.0]), target)


@settings(max_examples=50, deadline=None)
@given(
    log_eigs=st.lists(st.floats(-3, 3), min_size=1, max_size=20),
    frac=st.floats(0.01, 0.99),
    eta=st.floats(0.05, 0.9),
)
def test_alpha_for_dof_round_trip_property(log_eigs, frac, eta):
    eigs = 10.0 ** np.array(log_eigs)
    target = frac * dof(eigs, safe_alpha_min(eigs, eta))
    alpha, clamped = alpha_for_dof(eigs, target, eta)
    assert not clamped
    assert dof(eigs, alpha) == pytest.approx(target, rel=1e-8)
    # dof strictly decreasing through the root
    assert dof(eigs, alpha + 1e-6 * (abs(alpha) + 1)) < dof(eigs, alpha)


def test_every_default_margin_is_the_one_constant():
    """η has one default: every public function, estimator and config that takes it defaults to spectral.ETA."""
    import inspect

    from antireg import linear, ntk, safeguards, schedules, spectral
    from antireg.experiments.config import SafeguardsCfg
    from antireg.optim import AntiReg
    from antireg.paper import demo, kobak

    fns = [spectral.safe_alpha_min, spectral.clamp_alpha, spectral.alpha_for_dof, ntk.safe_lambda_min,
           safeguards.spectral_clamp, schedules.dof_target, linear.ARRidge, linear.ARRidgeCV, AntiReg]
    for fn in fns:
        assert inspect.signature(fn).parameters["eta"].default is spectral.ETA, fn
    assert SafeguardsCfg.model_fields["spectral_eta"].default is spectral.ETA
    for mod in (demo, kobak):
        models = [m for m in vars(mod).values() if inspect.isclass(m) and "eta" in getattr(m, "model_fields", {})]
        assert models and all(m.model_fields["eta"].default is spectral.ETA for m in models), mod
