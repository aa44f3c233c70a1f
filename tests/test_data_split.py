"""The split protocol: fixed per seed, nested fractions, stratified, train-only standardisation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antireg.data import DataError, Dataset, load_dataset, make_split, make_synthetic, n_train_for

FRACTIONS = (0.05, 0.1, 0.2, 0.5, 1.0)


@pytest.fixture(scope="module")
def diabetes() -> Dataset:
    return load_dataset("diabetes")


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.mark.parametrize("name", ["diabetes", "digits"])
def test_same_seed_gives_identical_arrays(name):
    a, b = make_split(load_dataset(name), seed=3, fraction=0.2), make_split(load_dataset(name), seed=3, fraction=0.2)
    for part in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    assert not np.array_equal(a.idx_test, make_split(load_dataset(name), seed=4, fraction=0.2).idx_test)


@pytest.mark.parametrize("name", ["diabetes", "digits"])
def test_fractions_are_nested_and_val_test_fixed(name):
    ds = load_dataset(name)
    splits = [make_split(ds, seed=1, fraction=f) for f in FRACTIONS]
    for small, large in zip(splits, splits[1:]):
        assert set(small.idx_train) < set(large.idx_train)
        np.testing.assert_array_equal(small.idx_val, large.idx_val)
        np.testing.assert_array_equal(small.idx_test, large.idx_test)


def test_parts_are_disjoint_and_cover_the_data(diabetes):
    s = make_split(diabetes, seed=0)
    parts = [set(s.idx_train), set(s.idx_val), set(s.idx_test)]
    assert sum(map(len, parts)) == diabetes.n
    assert set.union(*parts) == set(range(diabetes.n))
    assert (len(s.idx_val), len(s.idx_test)) == (round(0.15 * 442), round(0.15 * 442))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(10, 3000), fraction=st.floats(0.001, 1.0), val=st.floats(0.0, 0.4), test=st.floats(0.0, 0.4))
def test_n_train_for_matches_make_split(n, fraction, val, test):
    ds = Dataset("toy", np.zeros((n, 1)), np.arange(n, dtype=np.float64), "regression")
    s = make_split(ds, seed=0, fraction=fraction, val_frac=val, test_frac=test)
    assert s.n_train == len(s.y_train) == n_train_for(n, fraction, val, test) >= 1


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan")])
def test_fraction_outside_unit_interval_is_rejected(diabetes, fraction):
    with pytest.raises(DataError, match="fraction"):
        make_split(diabetes, seed=0, fraction=fraction)
    with pytest.raises(DataError, match="fraction"):
        n_train_for(442, fraction)


def test_val_plus_test_must_leave_a_pool(diabetes):
    with pytest.raises(DataError):
        make_split(diabetes, seed=0, val_frac=0.5, test_frac=0.5)


def test_standardisation_is_fitted_on_the_training_part_only(diabetes):
    s = make_split(diabetes, seed=2, fraction=0.2)
    train_X, train_y = diabetes.X[s.idx_train], diabetes.y[s.idx_train]
    np.testing.assert_allclose(s.x_mean, train_X.mean(axis=0))
    np.testing.assert_allclose(s.x_scale, train_X.std(axis=0))
    assert (s.y_mean, s.y_scale) == pytest.approx((train_y.mean(), train_y.std()))
    np.testing.assert_allclose(s.X_train.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(s.X_train.std(axis=0), 1)
    # Val/test use the training statistics, so they are not exactly centred themselves.
    np.testing.assert_allclose(s.X_val, (diabetes.X[s.idx_val] - s.x_mean) / s.x_scale)
    assert not np.allclose(s.X_test.mean(axis=0), 0, atol=1e-3)
    assert not np.allclose(s.x_mean, diabetes.X.mean(axis=0))


def test_unscale_y_round_trips(diabetes):
    s = make_split(diabetes, seed=0, fraction=0.5)
    np.testing.assert_allclose(s.unscale_y(s.y_test), diabetes.y[s.idx_test])
    np.testing.assert_allclose(s.unscale_y(s.y_train), diabetes.y[s.idx_train])


def test_constant_column_gets_scale_one_not_nan():
    X = np.column_stack([np.arange(20.0), np.full(20, 0.1), np.zeros(20)])
    ds = Dataset("toy", X, np.full(20, 3.7), "regression")  # constant target too
    s = make_split(ds, seed=0)
    for a in (s.X_train, s.X_val, s.X_test, s.y_train):
        assert np.isfinite(a).all()
    np.testing.assert_array_equal(s.x_scale[1:], 1.0)
    assert s.y_scale == 1.0
    np.testing.assert_allclose(s.X_test[:, 1:], 0, atol=1e-15)


def test_standardize_false_leaves_values(diabetes):
    s = make_split(diabetes, seed=0, standardize=False)
    np.testing.assert_array_equal(s.X_train, diabetes.X[s.idx_train])
    np.testing.assert_array_equal(s.y_test, diabetes.y[s.idx_test])
    assert (s.y_mean, s.y_scale) == (0.0, 1.0)


def test_classification_split_is_stratified(digits):
    counts = np.bincount(digits.y)
    for f in (0.05, 1.0):
        s = make_split(digits, seed=5, fraction=f)
        for idx, share in ((s.idx_test, 0.15), (s.idx_val, 0.15), (s.idx_train, 0.7 * f)):
            got = np.bincount(digits.y[idx], minlength=10)
            # Proportional per class to within rounding (a plain shuffle misses by ~5 at these sizes).
            assert np.abs(got - counts * share).max() <= 2, (f, share, got)


def test_classification_labels_untouched_and_images_scaled_per_channel(digits):
    s = make_split(digits, seed=0, fraction=0.5)
    assert s.y_train.dtype == np.int64 and (s.y_mean, s.y_scale) == (0.0, 1.0)
    np.testing.assert_array_equal(s.y_val, digits.y[s.idx_val])
    assert s.X_train.shape[1:] == (1, 8, 8) and s.X_train.dtype == np.float32
    assert s.x_mean.shape == s.x_scale.shape == (1, 1, 1)
    assert s.x_mean.item() == pytest.approx(digits.X[s.idx_train].mean(), rel=1e-5)
    assert s.X_train.mean() == pytest.approx(0, abs=1e-5) and s.X_train.std() == pytest.approx(1, rel=1e-4)
    assert s.n_classes == 10 and s.task == "classification"


def test_synthetic_is_deterministic_and_exposes_true_coefficients():
    a = load_dataset("synthetic", n=4000, d=5, noise=0.3, seed=7)
    b = make_synthetic(n=4000, d=5, noise=0.3, seed=7)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.X.shape == (4000, 5) and a.meta["coef"].shape == (5,)
    residual = a.y - a.X @ a.meta["coef"]
    assert residual.std() == pytest.approx(0.3, rel=0.05)
    assert not np.array_equal(a.y, make_synthetic(n=4000, d=5, noise=0.3, seed=8).y)


@pytest.mark.parametrize("X, y, task, n_classes, fragment", [
    (np.array([[1.0], [np.nan]]), np.zeros(2), "regression", None, "NaN or infinite"),
    (np.ones((2, 1)), np.array([0.0, np.inf]), "regression", None, "NaN or infinite"),
    (np.ones((3, 1)), np.zeros(2), "regression", None, "shape"),
    (np.ones(3), np.zeros(3), "regression", None, "shape"),
    (np.ones((0, 2)), np.zeros(0), "regression", None, "no examples"),
    (np.array([["a"], ["b"]]), np.zeros(2), "regression", None, "numeric"),
    (np.ones((2, 1)), np.array([0, 3]), "classification", 3, r"labels must be integers in \[0, 2\]"),
    (np.ones((2, 1)), np.array([0, -1]), "classification", 3, "labels"),
    (np.ones((2, 1)), np.array([0.0, 1.0]), "classification", 3, "labels"),
    (np.ones((2, 1)), np.array([0, 1]), "classification", None, "n_classes"),
    (np.ones((2, 1)), np.array([0, 1]), "ranking", None, "task"),
])
def test_dataset_refuses_unusable_data(X, y, task, n_classes, fragment):
    with pytest.raises(DataError, match=fragment):
        Dataset("bad", X, y, task, n_classes=n_classes)


@pytest.mark.parametrize("seed", [-1, 1.5, None, "0", True])
def test_seed_must_be_a_non_negative_integer(diabetes, seed):
    with pytest.raises(DataError, match="seed must be an integer >= 0"):
        make_split(diabetes, seed=seed)
