"""Fuzzed inputs for the estimators and the data code: each input either works, with a
finite (and, where an oracle exists, correct) result, or is refused with a ValueError
(DataError for the data code) whose message names the problem. Nothing else escapes.

Cases per run: each test's max_examples generated inputs plus its explicit @example
regressions (inputs that once broke the library). conftest.py's "ci" profile is
derandomized, so CI runs the same inputs every time.

    test                                              generated   @example
    test_ridge_matches_normal_equations .................. 300          3
    test_ridge_cv_matches_loo_and_gcv_oracles ............ 200          0
    test_injected_faults_are_named ....................... 250          0
    test_arbitrary_arrays_fit_or_fail_cleanly ............ 300          5
    test_split_is_nested_disjoint_and_deterministic ...... 150          2
    test_split_arguments_validate ........................ 150          3
    test_calibration_metrics_validate .................... 250          3
    test_spectral_functions_validate ..................... 250          3
    test_corrupt_files_raise_data_error .................. 200          3
    test_synthetic_options_validate ...................... 100          3
    total ............................................... 2150  +      25  =  2175 cases
"""

from __future__ import annotations

import gzip
import pickle
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from antireg.calibration import accuracy, brier, ece, nll, reliability_diagram
from antireg.data import DataError, Dataset, load_dataset, make_split, n_train_for
from antireg.linear import ARRidge, ARRidgeCV
from antireg.spectral import alpha_for_dof, clamp_alpha, dof, safe_alpha_min

TINY = np.finfo(float).tiny
# Binary exponents within which every intermediate (s^2, 1/s^2, coef, scores) of a
# design with O(1) entries stays a normal float64: fits there must succeed.
SAFE_EXPONENT = 400
RESCALE = "rescale"


def fuzz(n: int, **kwargs):
    return settings(max_examples=n, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], **kwargs)


# -- estimator problems -----------------------------------------------------------------

@st.composite
def problems(draw, min_n: int = 1) -> dict:
    """A small regression problem with O(1) integer entries, a structural quirk, and the
    binary exponents kx, ky by which X and y are scaled (exactly) before fitting."""
    n = draw(st.one_of(st.integers(min_n, 10), st.integers(30, 60)))
    d = draw(st.integers(1, 8 if n <= 10 else 3))  # n = 1, n < d, n = d, n >> d, d = 1
    X = draw(arrays(np.float64, (n, d), elements=st.integers(-3, 3).map(float)))
    quirk = draw(st.sampled_from(["none", "constant_column", "duplicate_rows", "duplicate_columns", "zero"]))
    i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, d - 1))
    if quirk == "constant_column":
        X[:, j] = draw(st.integers(-3, 3))
    elif quirk == "duplicate_rows":
        X[: n // 2] = X[i]
    elif quirk == "duplicate_columns":
        X[:, (j + 1) % d] = X[:, j]
    elif quirk == "zero":
        X[:] = 0.0
    y_shape = draw(st.sampled_from([(n,), (n, 1), (n, 3)]))  # single or multi-output
    y = draw(arrays(np.float64, y_shape, elements=st.integers(-5, 5).map(float)))
    sw = draw(st.one_of(st.none(), arrays(np.float64, (n,), elements=st.sampled_from([0.0, 0.5, 1.0, 3.0]))))
    exponent = st.one_of(st.integers(-6, 6), st.integers(-540, 540))
    return {"X": X, "y": y, "sw": sw, "fit_intercept": draw(st.booleans()),
            "kx": draw(exponent), "ky": draw(exponent), "eta": draw(st.sampled_from([0.05, 0.1, 0.5, 0.9]))}


base_alphas = st.one_of(st.just(0.0), st.integers(-6, 8).flatmap(
    lambda j: st.sampled_from([2.0**j, -(2.0**j)])))


def _centre(p: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The oracle's own centred, weighted design and targets (unscaled)."""
    X, Y = p["X"], p["y"].reshape(len(p["y"]), -1)
    w = np.ones(len(X)) if p["sw"] is None else p["sw"]
    xm = w @ X / w.sum() if p["fit_intercept"] else np.zeros(X.shape[1])
    ym = w @ Y / w.sum() if p["fit_intercept"] else np.zeros(Y.shape[1])
    return np.sqrt(w)[:, None] * (X - xm), np.sqrt(w)[:, None] * (Y - ym), xm, ym


def _nonzero_eigs(p: dict) -> tuple[np.ndarray, np.ndarray]:
    """(nonzero squared singular values, all singular values relative to the largest)
    of the centred design, by LAPACK's SVD."""
    s = np.linalg.svd(_centre(p)[0], compute_uv=False)
    rel = s / s.max() if s.size and s.max() > 0 else np.zeros_like(s)
    return s[rel > 1e-6] ** 2, rel


def oracle_spectrum(p: dict) -> np.ndarray:
    """The nonzero spectrum; rejects problems whose smallest singular value is too close
    to zero to call (the estimator's and the oracle's rank thresholds differ)."""
    eigs, rel = _nonzero_eigs(p)
    assume(not np.any((rel > 1e-9) & (rel < 1e-3)))
    return eigs


def oracle_bound(est, p: dict, X, y) -> tuple[np.ndarray, float] | None:
    """The problem's spectrum and safe bound −(1−η)·min(eig), or None when its weights are
    all zero (then ``est`` must refuse the fit, checked here)."""
    if p["sw"] is not None and not p["sw"].any():
        with pytest.raises(ValueError, match="non-zero"):
            est.fit(X, y, sample_weight=p["sw"])
        return None
    eigs = oracle_spectrum(p)
    return eigs, -(1 - p["eta"]) * eigs.min() if eigs.size else -np.inf


def oracle_fit(p: dict, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(coef (d, t), intercept (t,)) from the normal equations, or least squares at alpha = 0."""
    A, B, xm, ym = _centre(p)
    if alpha == 0:
        coef = np.linalg.lstsq(A, B, rcond=1e-6)[0]
    else:
        coef = np.linalg.solve(A.T @ A + alpha * np.eye(A.shape[1]), A.T @ B)
    return coef, ym - xm @ coef


def scaled(p: dict) -> tuple[np.ndarray, np.ndarray]:
    return np.ldexp(p["X"], p["kx"]), np.ldexp(p["y"], p["ky"])


def extreme(p: dict) -> bool:
    """Scales at which float64 may legitimately run out of range."""
    return max(abs(p["kx"]), abs(p["ky"]), abs(p["ky"] - p["kx"])) > SAFE_EXPONENT


def assert_close_to_oracle(est, p: dict, alpha_base: float) -> None:
    coef, intercept = oracle_fit(p, alpha_base)
    got_coef = np.ldexp(np.atleast_2d(est.coef_), p["kx"] - p["ky"])  # back to the unscaled problem
    # sklearn's types: intercept_ is the float 0.0 without an intercept
    got_intercept = np.broadcast_to(np.ldexp(np.atleast_1d(est.intercept_), -p["ky"]), np.shape(intercept))
    tol = 1e-6 * max(1.0, np.abs(coef).max(initial=0), np.abs(intercept).max())
    np.testing.assert_allclose(got_coef, coef.T, rtol=1e-6, atol=tol)
    np.testing.assert_allclose(got_intercept, intercept, rtol=1e-6, atol=tol)


def label(outcome) -> str:
    """A short name for a result or a ValueError, for hypothesis's event statistics."""
    return str(outcome)[:40] if isinstance(outcome, ValueError) else type(outcome).__name__


def expect_value_error(call, *fragments: str):
    """Run ``call``; a ValueError must name one of ``fragments`` (any message if none given)."""
    try:
        return call()
    except ValueError as e:
        message = str(e)
        assert message and "Traceback" not in message
        if fragments:
            assert any(f.lower() in message.lower() for f in fragments), (fragments, message)
        return e


def _problem(kx: int, ky: int = 0, **changes) -> dict:
    X = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    return {"X": X, "y": np.array([1.0, -1.0, 2.0]), "sw": None, "fit_intercept": True, "kx": kx, "ky": ky,
            "eta": 0.1, **changes}


@fuzz(300)
@given(p=problems(), alpha0=base_alphas)
# found by fuzzing: the Gram matrix overflowed (LinAlgError) or underflowed (silent zero coef)
@example(p=_problem(540), alpha0=1.0)
@example(p=_problem(-540), alpha0=0.0)
@example(p=_problem(-200, -200), alpha0=0.0)
def test_ridge_matches_normal_equations(p, alpha0):
    X, y = scaled(p)
    with np.errstate(over="ignore"):
        alpha = float(np.ldexp(alpha0, 2 * p["kx"]))
    assume(alpha == 0 or TINY <= abs(alpha) < np.inf)
    est = ARRidge(alpha=alpha, fit_intercept=p["fit_intercept"], eta=p["eta"])
    if (spectrum := oracle_bound(est, p, X, y)) is None:
        return
    eigs, bound = spectrum
    assume(not np.isclose(alpha0, bound, rtol=1e-6, atol=0))  # too close to call the clamp
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = expect_value_error(lambda: est.fit(X, y, sample_weight=p["sw"]), RESCALE)
    event(f"outcome: {label(outcome)}")
    if isinstance(outcome, ValueError):
        assert extreme(p), f"refused a fit at moderate scale: {outcome}"
        return
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert est.alpha_min_ == pytest.approx(np.ldexp(bound, 2 * p["kx"]), rel=1e-7)
    clamped = alpha0 < bound
    sign = ["zero", "positive", "negative"][int(np.sign(alpha0))]
    event(f"alpha: {'clamped to the bound' if clamped else sign}")
    assert any("spectral-safety bound" in str(w.message) for w in caught) == clamped
    alpha_base = bound if clamped else alpha0
    assert est.alpha_ == (est.alpha_min_ if clamped else alpha)
    assert est.alpha_ >= est.alpha_min_
    assert est.dof_ == pytest.approx(np.sum(eigs / (eigs + alpha_base)), rel=1e-6, abs=1e-9)
    assert_close_to_oracle(est, p, alpha_base)
    prediction = est.predict(X)
    # as sklearn's Ridge: a (n, 1) target gives (n,) predictions
    expected_shape = y.shape[:1] if y.ndim == 2 and y.shape[1] == 1 else y.shape
    assert prediction.shape == expected_shape and np.isfinite(prediction).all()
    wrong = np.zeros((2, X.shape[1] + 1))
    with pytest.raises(ValueError, match="features"):
        est.predict(wrong)


def oracle_gcv(p: dict, alpha: float) -> tuple[float | None, float]:
    """(GCV score -mean(r_i^2) / (1 - tr H / n)^2 or None, 1 - tr H / n) at ``alpha``."""
    A, B, _, _ = _centre(p)
    eigs, _ = _nonzero_eigs(p)
    margin = 1 - (np.sum(eigs / (eigs + alpha)) + p["fit_intercept"]) / len(A)
    if margin <= 0:
        return None, margin
    residual = B - A @ oracle_fit(p, alpha)[0]  # sqrt(sw) (y - prediction)
    return -float(np.mean(residual**2)) / margin**2, margin


def oracle_loo(p: dict, alpha: float) -> tuple[float | None, float]:
    """(brute-force LOO score -mean(sw_i e_i^2), or None where it would be inaccurate,
    and min |1 - H_ii|) at ``alpha``."""
    A, _, _, _ = _centre(p)
    w = np.ones(len(A)) if p["sw"] is None else p["sw"]
    gram = A.T @ A + alpha * np.eye(A.shape[1])
    hat = A @ (np.linalg.pinv(A) if alpha == 0 else np.linalg.solve(gram, A.T))
    if p["fit_intercept"]:
        hat += np.sqrt(np.outer(w, w)) / w.sum()
    margin = float(np.abs(1 - np.diag(hat)).min())
    if margin < 1e-2:  # some leave-one-out system is (nearly) singular
        return None, margin
    Y = p["y"].reshape(len(A), -1)
    errors = []
    for i in range(len(A)):
        keep = np.arange(len(A)) != i
        rest = {**p, "X": p["X"][keep], "y": Y[keep], "sw": w[keep]}
        if not w[keep].any():
            return None, margin
        coef, intercept = oracle_fit(rest, alpha)
        errors.append(w[i] * (Y[i] - p["X"][i] @ coef - intercept) ** 2)
    return -float(np.mean(errors)), margin


@fuzz(200)
@given(p=problems(min_n=2), alphas0=st.one_of(st.none(), st.lists(base_alphas, min_size=1, max_size=4)),
       criterion=st.sampled_from(["loo", "gcv"]))
def test_ridge_cv_matches_loo_and_gcv_oracles(p, alphas0, criterion):
    X, y = scaled(p)
    with np.errstate(over="ignore"):
        alphas = None if alphas0 is None else [float(np.ldexp(a, 2 * p["kx"])) for a in alphas0]
    assume(alphas is None or all(a == 0 or TINY <= abs(a) < np.inf for a in alphas))
    est = ARRidgeCV(alphas=alphas, fit_intercept=p["fit_intercept"], eta=p["eta"], criterion=criterion)
    oracle = oracle_loo if criterion == "loo" else oracle_gcv
    if (spectrum := oracle_bound(est, p, X, y)) is None:
        return
    eigs, bound = spectrum
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcome = expect_value_error(lambda: est.fit(X, y, sample_weight=p["sw"]),
                                     RESCALE, "undefined for every alpha", "below the spectral-safety")
    event(f"outcome: {label(outcome)}")
    if isinstance(outcome, ValueError):
        message = str(outcome)
        if RESCALE in message:
            assert extreme(p), message
        elif "undefined" in message:
            for alpha_scaled in est.alphas_:  # the oracle agrees: 1 - H_ii (1 - tr H / n) is 0
                assert oracle(p, float(np.ldexp(alpha_scaled, -2 * p["kx"])))[1] < 1e-6
        elif "below" in message:
            assert alphas0 is not None and max(alphas0) < bound * (1 - 1e-9)
        return
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert est.alpha_ in est.alphas_ and est.alpha_ >= est.alpha_min_
    assert np.isfinite(est.best_score_) and np.isfinite(est.coef_).all()
    refit = ARRidge(alpha=est.alpha_, fit_intercept=p["fit_intercept"], eta=p["eta"])
    refit.fit(X, y, sample_weight=p["sw"])
    np.testing.assert_allclose(est.coef_, refit.coef_, rtol=1e-10, atol=0)
    if alphas0 is None:
        return
    # The chosen alpha's score is the oracle's (brute-force LOO, or GCV from the normal
    # equations) and no candidate beats it; checked where 1 - H_ii (1 - tr H / n) is far
    # enough from 0 for the oracle to be accurate.
    for alpha_scaled in est.alphas_:
        alpha_base = float(np.ldexp(alpha_scaled, -2 * p["kx"]))
        score, margin = oracle(p, alpha_base)
        if score is None or margin < 1e-2:
            continue
        event(f"{criterion} score checked against the oracle")
        best = float(np.ldexp(est.best_score_, -2 * p["ky"]))
        tol = 1e-6 * max(1.0, abs(score))
        if alpha_scaled == est.alpha_:
            assert best == pytest.approx(score, abs=tol)
        assert score <= best + tol


# -- faults with a known name ------------------------------------------------------------

def _faults(X: np.ndarray, y: np.ndarray) -> dict[str, tuple[dict, dict, str]]:
    """Fault name -> (fit arguments replaced, estimator parameters, a fragment the
    ValueError's message must contain). "cv:" and "ridge:" faults are for one estimator."""
    n, eye = len(X), np.eye(*X.shape, dtype=bool)
    return {
        "nan_X": ({"X": np.where(eye, np.nan, X)}, {}, "NaN"),
        "inf_X": ({"X": np.where(eye, -np.inf, X)}, {}, "infinity"),
        "nan_y": ({"y": np.full_like(y, np.nan)}, {}, "NaN"),
        "inf_y": ({"y": np.where(np.arange(n) == 0, np.inf, y)}, {}, "infinity"),
        "X_1d": ({"X": X[:, 0]}, {}, "2D array"),
        "X_3d": ({"X": X[:, :, None]}, {}, "dim 3"),
        "y_3d": ({"y": y[:, None, None]}, {}, "dim 3"),
        "y_scalar": ({"y": np.float64(1.0)}, {}, "scalar"),
        "y_short": ({"y": y[:-1]}, {}, "inconsistent numbers of samples"),
        "no_samples": ({"X": X[:0], "y": y[:0]}, {}, "0 sample"),
        "no_features": ({"X": X[:, :0]}, {}, "0 feature"),
        "y_strings": ({"y": np.array(["a"] * n)}, {}, "convert string"),
        "sw_negative": ({"sample_weight": -np.ones(n)}, {}, "Negative values"),
        "sw_nan": ({"sample_weight": np.full(n, np.nan)}, {}, "NaN"),
        "sw_length": ({"sample_weight": np.ones(n + 1)}, {}, "sample_weight.shape"),
        "sw_zero": ({"sample_weight": np.zeros(n)}, {}, "non-zero"),
        "sw_2d": ({"sample_weight": np.ones((n, 2))}, {}, "1D array"),
        "eta_zero": ({}, {"eta": 0.0}, "eta"),
        "eta_nan": ({}, {"eta": np.nan}, "eta"),
        "eta_none": ({}, {"eta": None}, "eta"),
        "fit_intercept_text": ({}, {"fit_intercept": "no"}, "fit_intercept"),
        "ridge:alpha_nan": ({}, {"alpha": np.nan}, "finite"),
        "ridge:alpha_inf": ({}, {"alpha": np.inf}, "finite"),
        "ridge:alpha_none": ({}, {"alpha": None}, "alpha"),
        "ridge:alpha_text": ({}, {"alpha": "big"}, "alpha"),
        "cv:one_sample": ({"X": X[:1], "y": y[:1]}, {}, "n_samples >= 2"),
        "cv:alphas_nan": ({}, {"alphas": [1.0, np.nan]}, "finite"),
        "cv:alphas_2d": ({}, {"alphas": [[1.0, 2.0]]}, "1-D"),
        "cv:alphas_empty": ({}, {"alphas": []}, "nonempty"),
        "cv:alphas_ragged": ({}, {"alphas": [[1.0], [2.0, 3.0]]}, "1-D"),
        "cv:alphas_text": ({}, {"alphas": "many"}, "alphas"),
        "cv:alphas_unsafe": ({}, {"alphas": [-1e9]}, "below"),
        "cv:n_alphas_small": ({}, {"n_alphas": 2}, "n_alphas"),
        "cv:n_alphas_float": ({}, {"n_alphas": 10.5}, "n_alphas"),
        "cv:criterion": ({}, {"criterion": "kfold"}, "criterion"),
        "cv:scoring": ({}, {"scoring": "accuracyy"}, "scoring"),
        "cv:store_text": ({}, {"store_cv_results": "yes"}, "store_cv_results"),
    }


FAULTS = sorted(_faults(np.zeros((3, 2)), np.zeros(3)))
PREDICT_FAULTS = {"predict_features": "features", "predict_nan": "NaN", "predict_1d": "2D array"}


@fuzz(250)
@given(n=st.integers(3, 12), d=st.integers(1, 5), seed=st.integers(0, 2**16), cv=st.booleans(),
       fault=st.sampled_from(FAULTS + sorted(PREDICT_FAULTS)))
def test_injected_faults_are_named(n, d, seed, cv, fault):
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(n, d)), rng.normal(size=n)
    cv = {"cv": True, "ridge": False}.get(fault.partition(":")[0], cv)
    Est = ARRidgeCV if cv else ARRidge
    if fault in PREDICT_FAULTS:
        bad = {"predict_features": np.zeros((2, d + 1)), "predict_nan": np.full((2, d), np.nan),
               "predict_1d": np.zeros(d)}[fault]
        with pytest.raises(ValueError, match=PREDICT_FAULTS[fault]):
            Est().fit(X, y).predict(bad)
        return
    replaced, params, fragment = _faults(X, y)[fault]
    args = {"X": X, "y": y, "sample_weight": None, **replaced}
    with pytest.raises(ValueError, match=fragment):
        Est(**params).fit(args["X"], args["y"], sample_weight=args["sample_weight"])


# -- arbitrary arrays --------------------------------------------------------------------

any_floats = st.floats(allow_nan=True, allow_infinity=True)
any_arrays = arrays(st.sampled_from([np.float64, np.float32, np.int64, np.bool_]),
                    array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
numeric_param = (any_floats | st.integers(-3, 3) | st.none() | st.text(max_size=3)
                 | st.lists(any_floats, max_size=3))


def mostly(valid: st.SearchStrategy, junk: st.SearchStrategy) -> st.SearchStrategy:
    """``valid`` three times in four, else ``junk``."""
    return st.integers(0, 3).flatmap(lambda i: junk if i == 0 else valid)


finite_floats = st.floats(allow_nan=False, allow_infinity=False)  # 5e-324 to 1.8e308


@st.composite
def fit_inputs(draw) -> tuple:
    """(X, y, sample_weight, X to predict): half of arbitrary shapes and dtypes, half
    shape-compatible float arrays of any finite magnitude."""
    if draw(st.booleans()):
        return draw(any_arrays), draw(any_arrays), draw(st.none() | any_arrays), draw(any_arrays)
    n, d = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    elements = draw(st.sampled_from([st.floats(-1e6, 1e6), st.floats(-1e6, 1e6), finite_floats]))
    X = draw(arrays(np.float64, (n, d), elements=elements))
    y = draw(arrays(np.float64, draw(st.sampled_from([(n,), (n, 2)])), elements=elements))
    sw = draw(st.none() | arrays(np.float64, (n,), elements=st.floats(0, 1e300)))
    X_new = draw(arrays(np.float64, (draw(st.integers(1, 3)), d + draw(st.sampled_from([0, 0, 1]))),
                        elements=finite_floats))
    return X, y, sw, X_new


@fuzz(300)
@given(inputs=fit_inputs(), cv=st.booleans(),
       alpha=mostly(st.sampled_from([None, 1.0, 0.0, -1.0]) | st.floats(-10, 10), numeric_param),
       eta=mostly(st.sampled_from([0.1]) | st.floats(0.01, 0.99), numeric_param), fit_intercept=st.booleans(),
       criterion=st.sampled_from(["loo", "gcv"]),
       scoring=st.sampled_from([None, None, "r2", "neg_mean_squared_error"]))
# found by fuzzing: a 0-d y or sample_weight raised TypeError; huge weights or y
# overflowed the LOO squares with a RuntimeWarning; alpha=None raised TypeError
@example(inputs=(np.zeros((2, 1)), np.array(0.0), None, np.zeros((1, 1))), cv=False, alpha=0.0, eta=0.1,
         fit_intercept=False, criterion="loo", scoring=None)
@example(inputs=(np.zeros((2, 1)), np.array([1.34e154, 0.0]), None, np.zeros((1, 1))), cv=True, alpha=None,
         eta=0.1, fit_intercept=False, criterion="loo", scoring=None)
@example(inputs=(np.eye(3), np.arange(3.0), np.full(3, 1e308), np.eye(3)), cv=False, alpha=1.0, eta=0.1,
         fit_intercept=True, criterion="loo", scoring=None)
@example(inputs=(np.eye(3), np.arange(3.0), None, np.eye(3)), cv=False, alpha=None, eta=0.1,
         fit_intercept=True, criterion="loo", scoring=None)
@example(inputs=(np.zeros((1, 1)), np.zeros(1), np.array(0.0), np.array(0.0)), cv=False, alpha=0.0, eta=0.1,
         fit_intercept=False, criterion="loo", scoring=None)
def test_arbitrary_arrays_fit_or_fail_cleanly(inputs, cv, alpha, eta, fit_intercept, criterion, scoring):
    X, y, sw, X_new = inputs
    est = (ARRidgeCV(alphas=alpha, eta=eta, fit_intercept=fit_intercept, criterion=criterion, scoring=scoring)
           if cv else ARRidge(alpha=alpha, eta=eta, fit_intercept=fit_intercept))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no silent overflow or 0/0
        warnings.simplefilter("ignore", UserWarning)  # the documented clamping warnings
        fitted = expect_value_error(lambda: est.fit(X, y, sample_weight=sw))
        event(f"fit: {label(fitted)}")
        if isinstance(fitted, ValueError):
            return
        for value in (est.coef_, est.intercept_, est.alpha_, est.dof_):
            assert np.isfinite(value).all()
        if cv:
            assert np.isfinite(est.best_score_)
        prediction = expect_value_error(lambda: est.predict(X_new))
        event(f"predict: {label(prediction)}")
        if not isinstance(prediction, ValueError):
            assert np.isfinite(prediction).all()


# -- data: splits and standardisation ------------------------------------------------------

@st.composite
def datasets(draw) -> Dataset:
    """Tabular regression or image classification data with constant columns/channels,
    duplicate rows and magnitudes from tiny to huge."""
    n = draw(st.integers(1, 40))
    if draw(st.booleans()):
        d = draw(st.integers(1, 4))
        X = draw(arrays(np.float64, (n, d), elements=st.floats(-1e3, 1e3) | st.sampled_from([0.0, 1.0])))
        X = X * 10.0 ** draw(st.sampled_from([0, 0, -200, 200, -320, 300]))
        y = draw(arrays(np.float64, (n,), elements=st.floats(-1e3, 1e3)))
        return Dataset("fuzz", X, y, "regression")
    shape = (n, draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    X = draw(arrays(np.float32, shape, elements=st.sampled_from([0.0, 0.5, 1.0]) | st.floats(0, 1, width=32)))
    k = draw(st.integers(2, 4))
    y = draw(arrays(np.int64, (n,), elements=st.integers(0, k - 1)))
    return Dataset("fuzz", X, y, "classification", n_classes=k)


fractions = st.floats(0.0, 1.0, exclude_min=True)
held_out = st.floats(0.0, 0.45)


@fuzz(150)
@given(ds=datasets(), seed=st.integers(0, 2**40), f1=fractions, f2=fractions, val=held_out, test=held_out)
# found by fuzzing: standardising 1e300 data gave zeros (std overflowed to inf) and
# 1e-320 data gave inf (std underflowed to 0), both silently
@example(ds=Dataset("huge", np.array([[1e300], [-1e300], [0.0]]), np.zeros(3), "regression"),
         seed=0, f1=1.0, f2=1.0, val=0.0, test=0.0)
@example(ds=Dataset("tiny", np.array([[1e-320], [0.0], [3e-320]]), np.zeros(3), "regression"),
         seed=0, f1=1.0, f2=1.0, val=0.0, test=0.0)
def test_split_is_nested_disjoint_and_deterministic(ds, seed, f1, f2, val, test):
    small, large = sorted((f1, f2))
    try:
        a, b, again = (make_split(ds, seed, f, val, test) for f in (small, large, small))
    except DataError as e:
        event(f"DataError: {str(e)[:40]}")
        assert "no training pool" in str(e) or "standardise" in str(e), e
        if "standardise" in str(e):  # only data near the ends of the float range may fail
            nonzero = np.abs(ds.X[ds.X != 0])
            assert nonzero.max() > 1e150 or nonzero.min() < np.sqrt(np.finfo(ds.X.dtype).tiny), e
        return
    for part in ("idx_train", "idx_val", "idx_test", "X_train", "y_train", "X_test"):
        np.testing.assert_array_equal(getattr(a, part), getattr(again, part))  # deterministic
    parts = [a.idx_train, a.idx_val, a.idx_test]
    joined = np.concatenate(parts)
    assert len(set(joined.tolist())) == len(joined) and joined.min() >= 0 and joined.max() < ds.n  # disjoint
    assert a.n_train == len(a.idx_train) == n_train_for(ds.n, small, val, test)
    assert set(a.idx_train) <= set(b.idx_train)  # nested
    np.testing.assert_array_equal(a.idx_val, b.idx_val)
    np.testing.assert_array_equal(a.idx_test, b.idx_test)
    for X in (a.X_train, a.X_val, a.X_test, b.X_train):
        assert np.isfinite(X).all() and X.dtype == ds.X.dtype  # constant columns give 0, not NaN
    assert np.isfinite(a.y_train).all() and np.isfinite(a.y_scale) and a.y_scale > 0
    # centred on the training part, to the rounding level of the data's dtype
    axis = 0 if ds.X.ndim == 2 else (0, 2, 3)
    raw = np.abs(ds.X[a.idx_train]).max(axis=axis, keepdims=True)[0].astype(np.float64)
    tol = 10 * len(a.idx_train) * np.finfo(ds.X.dtype).eps * (1 + raw / a.x_scale)
    assert (np.abs(a.X_train.astype(np.float64).mean(axis=axis, keepdims=True)[0]) <= tol).all()


junk = st.none() | st.text(max_size=3) | st.booleans() | st.lists(st.integers(), max_size=2)


@st.composite
def split_arguments(draw) -> tuple:
    """(seed, fraction, val_frac, test_frac): valid ones, or each possibly junk."""
    if draw(st.booleans()):
        return draw(st.integers(0, 2**70)), draw(fractions), draw(held_out), draw(held_out)
    return (draw(st.integers(-3, 2**70) | st.floats(allow_nan=True) | junk),
            draw(any_floats | st.integers(-1, 2) | junk), draw(any_floats | junk),
            draw(held_out | any_floats))


@fuzz(150)
@given(arguments=split_arguments())
# found by fuzzing: these raised numpy's ValueError or TypeError instead of DataError
@example(arguments=(-1, 0.5, 0.1, 0.1))
@example(arguments=(1.5, 0.5, 0.1, 0.1))
@example(arguments=(0, "0.5", 0.1, 0.1))
def test_split_arguments_validate(arguments):
    seed, fraction, val, test = arguments
    ds = load_dataset("synthetic", n=30, d=2)
    valid = (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0
             and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (fraction, val, test))
             and 0 < fraction <= 1 and val >= 0 and test >= 0 and val + test < 1)
    try:
        split = make_split(ds, seed, fraction, val, test)
    except DataError as e:
        event("DataError")
        assert not valid or "no training pool" in str(e), e
        return
    event("split")
    assert valid and split.n_train == n_train_for(ds.n, fraction, val, test) >= 1
    assert np.isfinite(split.X_train).all()


# -- calibration ---------------------------------------------------------------------------

@st.composite
def scores_and_labels(draw):
    n, k = draw(st.integers(1, 6)), draw(st.integers(2, 5))  # "arbitrary" covers the rest
    kind = draw(st.sampled_from(["simplex", "simplex", "off_simplex", "logits", "logits", "arbitrary"]))
    if kind == "arbitrary":
        scores = draw(arrays(np.float64, array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
                             elements=any_floats))
    else:
        elements = st.floats(-1e3, 1e3) if kind == "logits" else st.floats(0, 1e3)
        scores = raw = draw(arrays(np.float64, (n, k), elements=elements))
        if kind == "simplex" and (raw.sum(axis=1) > 0).all():
            scores = raw / raw.sum(axis=1, keepdims=True)
        if kind == "off_simplex" and scores.size:
            scores = scores / max(scores.sum(axis=1).max(), 1e-9) * draw(st.floats(0.1, 0.99))
    labels = draw(st.one_of(
        arrays(np.int64, (n,), elements=st.integers(0, k - 1)),
        arrays(np.int64, (n,), elements=st.integers(-2, k + 1)),
        arrays(np.float64, (n,), elements=st.sampled_from([0.0, 1.0, 0.5, np.nan, 1e300])),
        arrays(np.int64, array_shapes(min_dims=0, max_dims=2, max_side=4), elements=st.integers(0, 3)),
        st.lists(st.integers(0, 3) | st.none() | st.text(max_size=1), max_size=6).map(
            lambda v: np.array(v, dtype=object)),
    ))
    return scores, labels


@fuzz(250)
@given(data=scores_and_labels(), logits=st.sampled_from([None, True, False, None, True, False, "yes", 0.5]),
       n_bins=st.integers(1, 20) | st.sampled_from([0, -1, 2.5, True]))
# found by fuzzing: logits spanning the float range overflowed with a RuntimeWarning;
# labels 1e300 and 2**64-1 wrapped when cast to int64 and were reported as -2**63 or -1
@example(data=(np.array([[1.7e308, -1.7e308]]), np.array([1])), logits=None, n_bins=10)
@example(data=(np.array([[0.5, 0.5]]), np.array([1e300])), logits=None, n_bins=10)
@example(data=(np.array([[0.5, 0.5]]), np.array([2**64 - 1], dtype=np.uint64)), logits=None, n_bins=10)
def test_calibration_metrics_validate(data, logits, n_bins):
    scores, labels = data
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        results = {}
        for name, metric in [("accuracy", accuracy), ("nll", nll), ("brier", brier)]:
            results[name] = expect_value_error(lambda m=metric: m(scores, labels, logits=logits))
        results["ece"] = expect_value_error(lambda: ece(scores, labels, n_bins, logits=logits))
        results["diagram"] = expect_value_error(
            lambda: reliability_diagram(scores, labels, n_bins, logits=logits))
    event(f"accuracy: {label(results['accuracy'])}")
    if isinstance(results["accuracy"], ValueError):
        message = str(results["accuracy"])
        well_shaped = scores.ndim == 2 and scores.shape[0] >= 1 and scores.shape[1] >= 2
        if logits in (None, True, False) and well_shaped and not np.isfinite(scores).all():
            assert "NaN or infinite" in message, message
        return
    k = scores.shape[1]
    assert labels.shape == (len(scores),) and ((labels >= 0) & (labels < k)).all()
    assert 0 <= results["accuracy"] <= 1 and 0 <= results["brier"] <= 2 + 1e-12
    assert np.isfinite(results["nll"]) and results["nll"] >= -1e-12
    if not isinstance(results["ece"], ValueError):
        assert 0 <= results["ece"] <= 1 + 1e-12
        assert results["diagram"]["count"].sum() == len(scores)


# -- spectral ------------------------------------------------------------------------------

eig_elements = (st.floats(allow_nan=True, allow_infinity=True) | st.floats(1e-6, 1e6)
                | st.sampled_from([0.0, -1.0, 5e-324, 1e-310]))


@fuzz(250)
@given(eigs=arrays(np.float64, st.integers(0, 6).map(lambda k: (k,)), elements=st.floats(1e-6, 1e6))
       | arrays(np.float64, st.integers(0, 6).map(lambda k: (k,)), elements=st.floats(1e-150, 1e150))
       | arrays(np.float64, array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=6),
                elements=eig_elements),
       alpha=any_floats | st.floats(-1, 10),
       eta=st.sampled_from([0.1, 0.5]) | st.floats(0.05, 0.95) | any_floats,
       target=any_floats | st.floats(0.01, 6))
# found by fuzzing: NaN eigenvalues gave NaN dof silently; an eta below eps put the bound
# on the pole; subnormal eigenvalues divided by zero
@example(eigs=np.array([1.0, np.nan]), alpha=0.0, eta=0.1, target=1.0)
@example(eigs=np.array([1.0, 2.0]), alpha=-5.0, eta=1e-300, target=1.0)
@example(eigs=np.array([5e-324]), alpha=0.0, eta=0.1, target=0.5)
def test_spectral_functions_validate(eigs, alpha, eta, target):
    valid = eigs.ndim == 1 and np.isfinite(eigs).all() and (eigs >= TINY).all()
    eta_valid = np.finfo(float).eps <= eta < 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        bound = expect_value_error(lambda: safe_alpha_min(eigs, eta), "eigs", "eta")
        event(f"safe_alpha_min: {label(bound)}")
        if isinstance(bound, ValueError):
            assert not (valid and eta_valid)
            return
        assert valid and (bound == -np.inf if eigs.size == 0 else -eigs.min() < bound < 0)
        clamped = expect_value_error(lambda: clamp_alpha(alpha, eigs, eta), "alpha must be one finite number")
        if not isinstance(clamped, ValueError):
            assert clamped[0] == max(alpha, bound) and clamped[1] == (alpha < bound)
        safe = max(alpha, bound) if np.isfinite(alpha) else 1.0
        df = dof(eigs, safe)
        assert 0 <= df and np.isfinite(df) and (safe < 0 or df <= eigs.size + 1e-9)
        root = expect_value_error(lambda: alpha_for_dof(eigs, target, eta), "target_df", "nonempty")
        if isinstance(root, ValueError):
            assert eigs.size == 0 or not (np.isfinite(target) and target > 0)
            return
        found, at_bound = root
        event(f"alpha_for_dof: {'at the bound' if at_bound else 'root'}")
        assert found >= bound
        if not at_bound:
            assert dof(eigs, found) == pytest.approx(target, rel=1e-8)
        else:
            assert dof(eigs, bound) <= target * (1 + 1e-12)


# -- data files ------------------------------------------------------------------------------

def _gz(raw: bytes) -> bytes:
    return gzip.compress(raw, mtime=0)


def _idx(magic: int, dims: list[int], body: bytes) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + body


MNIST_IMAGES, MNIST_LABELS = "mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"
VALID_LABELS = _gz(_idx(0x801, [2], bytes([3, 7])))
VALID_IMAGES = _gz(_idx(0x803, [2, 28, 28], bytes(2 * 784)))
TARGETS = {  # data set -> (file fuzzed, other files written valid)
    "concrete": ("concrete/Concrete_Data.xls", {}),
    "airfoil": ("airfoil/airfoil_self_noise.dat", {}),
    "mnist_t10k images": (MNIST_IMAGES, {MNIST_LABELS: VALID_LABELS}),
    "mnist_t10k labels": (MNIST_LABELS, {MNIST_IMAGES: VALID_IMAGES}),
    "cifar10": ("cifar10/cifar-10-batches-py/data_batch_1", {}),
}

text_cell = mostly(st.floats(-1e3, 1e3).map(str) | st.integers(0, 9).map(str),
                   st.sampled_from(["nan", "inf", "-1e400", "1e308", "", "x"]))
pickled = st.recursive(
    st.none() | st.integers() | st.floats(allow_nan=True) | st.binary(max_size=8)
    | arrays(st.sampled_from([np.uint8, np.int64, np.float64]), array_shapes(max_dims=2, max_side=4)),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from([b"data", b"labels", "data", 1]), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def file_cases(draw) -> tuple[str, bytes]:
    """(target, the fuzzed file's bytes): the target's own format half the time."""
    target = draw(st.sampled_from(sorted(TARGETS)))
    native = {"airfoil": "table", "cifar10": "pickle", "concrete": "bytes"}.get(target, "idx")
    kind = draw(st.sampled_from([native] * 5 + ["bytes", "gzip", "idx", "table", "pickle"]))
    return target, draw(file_contents(kind))


@st.composite
def file_contents(draw, kind: str) -> bytes:
    if kind == "bytes":
        return draw(st.binary(max_size=600))
    if kind == "gzip":
        return _gz(draw(st.binary(max_size=300)))
    if kind == "idx":
        magic = draw(st.sampled_from([0x801, 0x803, 0x802, 0]))
        dims = draw(st.lists(st.sampled_from([0, 1, 2, 28, 2**31]), min_size=1, max_size=3))
        body = draw(st.sampled_from([b"", bytes(2), bytes([9, 10]), bytes(2 * 784)]))
        return _gz(_idx(magic, dims, body))
    if kind == "table":
        width = draw(st.sampled_from([6, 6, 1, 5, 7]))  # the Airfoil table has 6 columns
        rows = draw(st.lists(st.lists(text_cell, min_size=width, max_size=width), max_size=4))
        return "\n".join("\t".join(r) for r in rows).encode()
    if draw(st.booleans()):  # a batch-shaped dict with fuzzed parts
        data = draw(pickled | arrays(np.uint8, (2, 3072)))
        labels = draw(pickled | st.lists(st.integers(-1, 12), min_size=2, max_size=2))
        return pickle.dumps({b"data": data, b"labels": labels}, protocol=2)
    return pickle.dumps(draw(pickled), protocol=2)


@fuzz(200)
@given(case=file_cases(), verify=st.sampled_from([False, False, True]))
# found by fuzzing: ragged CIFAR labels raised numpy's ValueError; an Airfoil "nan" loaded as data
@example(case=("cifar10", pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [[1], [1, 2]]})),
         verify=False)
@example(case=("airfoil", b"1\t2\t3\t4\t5\tnan\n"), verify=False)
@example(case=("mnist_t10k images", _gz(_idx(0x803, [2**31, 2**31, 2**31], b""))), verify=False)
def test_corrupt_files_raise_data_error(case, verify):
    target, content = case
    relpath, others = TARGETS[target]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for rel, raw in {**others, relpath: content}.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(raw)
        try:
            ds = load_dataset(target.split()[0], root, verify=verify)
        except DataError as e:
            event(f"{target}: DataError")
            assert str(e) and str(root) in str(e) or "data set" in str(e), e
            return
    event(f"{target}: loaded")
    # Only a well-formed file loads, and then it yields valid data.
    assert not verify and ds.n >= 1 and np.isfinite(ds.X).all() and np.isfinite(ds.y).all()


@st.composite
def synthetic_options(draw) -> tuple:
    """(n, d, noise, seed): valid ones, or each possibly junk."""
    if draw(st.booleans()):
        return (draw(st.integers(1, 40)), draw(st.integers(1, 6)), draw(st.floats(0, 2)),
                draw(st.integers(0, 2**40)))
    return (draw(st.integers(-2, 40) | any_floats | junk), draw(st.integers(-1, 6) | junk),
            draw(any_floats | st.floats(0, 2)), draw(st.integers(-2, 2**40) | junk))


@fuzz(100)
@given(options=synthetic_options(), extra=st.sampled_from([False, False, True]))
# found by fuzzing: TypeError for n=1.5, numpy's ValueError for seed=-1, NaN data for noise=nan
@example(options=(1.5, 2, 0.5, 0), extra=False)
@example(options=(5, 2, 0.5, -1), extra=False)
@example(options=(5, 2, float("nan"), 0), extra=False)
def test_synthetic_options_validate(options, extra):
    n, d, noise, seed = options
    options = {"n": n, "d": d, "noise": noise, "seed": seed, **({"nosie": 1.0} if extra else {})}
    try:
        ds = load_dataset("synthetic", **options)
    except DataError as e:
        event("DataError")
        assert any(word in str(e) for word in ("synthetic", "nosie")), e
        return
    event("generated")
    assert not extra and ds.X.shape == (n, d) and np.isfinite(ds.X).all() and np.isfinite(ds.y).all()
    np.testing.assert_array_equal(ds.y, load_dataset("synthetic", **options).y)
