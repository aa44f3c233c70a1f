"""Calibration metrics against independent oracles: a direct loop, sklearn, formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.special import softmax
from sklearn.metrics import log_loss

from antireg.calibration import accuracy, brier, classification_metrics, ece, nll, reliability_diagram


def ece_loop(probs: np.ndarray, y: np.ndarray, n_bins: int) -> float:
    """Guo et al. (2017) written out sample by sample: bins (lo, hi], 0 in the first."""
    n = len(y)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        conf_sum = acc_sum = 0.0
        m = 0
        for i in range(n):
            c = max(probs[i])
            if lo < c <= hi or (b == 0 and c == 0.0):
                m += 1
                conf_sum += c
                acc_sum += float(int(np.argmax(probs[i])) == y[i])
        if m:
            total += m / n * abs(acc_sum / m - conf_sum / m)
    return total


def random_problem(seed: int, n: int, k: int, scale: float = 2.0):
    rng = np.random.default_rng(seed)
    logits = scale * rng.standard_normal((n, k))
    return logits, softmax(logits, axis=1), rng.integers(0, k, size=n)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 200),
    k=st.integers(2, 12),
    n_bins=st.integers(1, 30),
    scale=st.floats(0.0, 8.0),
)
@example(seed=0, n=5, k=6, n_bins=6, scale=0.0)  # every confidence exactly on the edge 1/6
def test_ece_matches_direct_loop(seed, n, k, n_bins, scale):
    logits, probs, y = random_problem(seed, n, k, scale)
    assert ece(probs, y, n_bins) == pytest.approx(ece_loop(probs, y, n_bins), abs=1e-12)
    assert ece(logits, y, n_bins) == pytest.approx(ece_loop(probs, y, n_bins), abs=1e-12)


def test_ece_on_bin_edges_uses_right_closed_bins():
    # Top-label confidences exactly on the edges 0.6 and 0.2 of 5 bins belong to
    # (0.4, 0.6] and (0.0, 0.2].
    probs = np.array([[0.6, 0.1, 0.1, 0.1, 0.1], [0.2, 0.2, 0.2, 0.2, 0.2]])
    rd = reliability_diagram(probs, np.array([0, 3]), n_bins=5)
    np.testing.assert_array_equal(rd["count"], [1, 0, 1, 0, 0])
    assert ece(probs, np.array([0, 3]), n_bins=5) == pytest.approx(ece_loop(probs, np.array([0, 3]), 5))


def test_ece_against_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.classification")
    logits, probs, y = random_problem(0, 500, 10)
    theirs = tm.multiclass_calibration_error(
        torch.tensor(probs, dtype=torch.float64), torch.tensor(y), num_classes=10, n_bins=15, norm="l1"
    )
    assert ece(probs, y) == pytest.approx(float(theirs), abs=1e-6)


def test_perfectly_calibrated_predictions_have_near_zero_ece():
    # Labels drawn from the predicted distribution itself: calibrated by construction,
    # so ECE is sampling noise only, O(sqrt(bins/n)).
    rng = np.random.default_rng(1)
    n, k = 200_000, 4
    probs = softmax(rng.standard_normal((n, k)) * 1.5, axis=1)
    y = (rng.random((n, 1)) > np.cumsum(probs, axis=1)).sum(axis=1)
    assert ece(probs, y) < 0.01
    # Labels equal to the arg-max: always right, so under-confident by the mean gap.
    assert ece(probs, probs.argmax(axis=1)) > 0.2


def test_reliability_diagram_bins():
    logits, probs, y = random_problem(2, 300, 6)
    rd = reliability_diagram(logits, y, n_bins=10)
    assert rd["count"].sum() == 300
    np.testing.assert_allclose(rd["edges"], np.linspace(0, 1, 11))
    filled = rd["count"] > 0
    conf = rd["confidence"][filled]
    assert np.all((conf > rd["edges"][:-1][filled]) & (conf <= rd["edges"][1:][filled]))
    assert np.all(np.isnan(rd["accuracy"][~filled]))
    # The count-weighted accuracy over bins is the overall accuracy.
    overall = np.sum(rd["accuracy"][filled] * rd["count"][filled]) / 300
    assert overall == pytest.approx(accuracy(probs, y))


def test_nll_matches_sklearn_log_loss():
    logits, probs, y = random_problem(3, 400, 7)
    expected = log_loss(y, probs, labels=np.arange(7))
    assert nll(probs, y) == pytest.approx(expected, rel=1e-10)
    assert nll(logits, y) == pytest.approx(expected, rel=1e-10)
    as_torch = torch.tensor(logits, dtype=torch.float32), torch.tensor(y)
    assert nll(*as_torch) == pytest.approx(expected, rel=1e-5)


def test_nll_of_logits_is_stable_for_extreme_logits():
    logits = np.array([[1000.0, 0.0], [0.0, -1000.0]])
    assert nll(logits, np.array([1, 0])) == pytest.approx(500.0)


def test_brier_matches_direct_formula():
    logits, probs, y = random_problem(4, 250, 5)
    onehot = np.eye(5)[y]
    expected = np.mean([np.sum((probs[i] - onehot[i]) ** 2) for i in range(250)])
    assert brier(logits, y) == pytest.approx(expected, rel=1e-12)
    assert brier(np.eye(5)[y], y) == 0.0
    assert brier(np.eye(5)[(y + 1) % 5], y) == 2.0


def test_accuracy_and_metrics_dict():
    probs = np.array([[0.7, 0.3], [0.4, 0.6], [0.9, 0.1]])
    y = np.array([0, 0, 0])
    assert accuracy(probs, y) == pytest.approx(2 / 3)
    m = classification_metrics(probs, y, n_bins=5)
    assert set(m) == {"accuracy", "nll", "ece", "brier"}
    assert m["ece"] == pytest.approx(ece_loop(probs, y, 5))


def test_logits_flag_overrides_detection():
    # A logit row that happens to look like a probability vector.
    scores = np.array([[0.25, 0.75]])
    assert nll(scores, [1], logits=False) == pytest.approx(-np.log(0.75))
    assert nll(scores, [1], logits=True) == pytest.approx(-np.log(softmax([0.25, 0.75])[1]))
    with pytest.raises(ValueError, match="not probability vectors"):
        nll(np.array([[2.0, -1.0]]), [0], logits=False)


@pytest.mark.parametrize(
    "scores, y, n_bins, match",
    [
        (np.ones(3), [0, 1, 0], 15, "shape"),
        (np.ones((3, 1)), [0, 0, 0], 15, "k >= 2"),
        (np.zeros((0, 3)), [], 15, "n >= 1"),
        (np.ones((3, 2)), [0, 1], 15, "labels must have shape"),
        (np.ones((3, 2)), [0, 2, 1], 15, "labels must lie"),
        (np.ones((3, 2)), [0, -1, 1], 15, "labels must lie"),
        (np.ones((3, 2)), [0, 0.5, 1], 15, "integers"),
        (np.array([[0.5, np.nan], [0.5, 0.5]]), [0, 1], 15, "NaN"),
        (np.ones((2, 2)), [0, 1], 0, "n_bins"),
        (np.ones((2, 2)), [0, 1], 2.5, "n_bins"),
    ],
)
def test_bad_input_raises_value_error(scores, y, n_bins, match):
    with pytest.raises(ValueError, match=match):
        ece(scores, np.asarray(y), n_bins)
