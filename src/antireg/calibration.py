"""Classification metrics on predicted probabilities or logits: accuracy, NLL,
Brier score, expected calibration error (ECE) and reliability-diagram data.

Every function takes ``scores`` of shape (n, k), k ≥ 2 classes, and integer labels
``y`` of shape (n,). ``scores`` are probabilities or logits:

- ``logits=None`` (default) decides from the values: rows that lie on the
  probability simplex (entries in [0, 1], row sums 1 within 1e-4) are taken as
  probabilities, anything else as logits and passed through a softmax. Pass
  ``logits=True`` or ``False`` to decide yourself.

Numpy arrays and torch tensors are accepted; all arithmetic is float64 numpy.
ECE follows Guo, Pleiss, Sun, Weinberger (2017), *On Calibration of Modern Neural
Networks*, ICML: top-label confidence, equal-width bins.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.special import log_softmax, softmax

_SIMPLEX_TOL = 1e-4


def _to_numpy(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _prepare(scores: Any, y: Any, logits: bool | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate the inputs and return (probabilities, log-probabilities, labels)."""
    if logits not in (None, True, False):
        raise ValueError(f"logits must be None, True or False, got {logits!r}")
    try:
        s = _to_numpy(scores).astype(np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"scores must be a numeric array of shape (n, k): {e}") from e
    try:
        labels = _to_numpy(y)
    except ValueError as e:  # ragged nested sequences
        raise ValueError(f"labels must be a 1-D array of class indices: {e}") from e
    if s.ndim != 2 or s.shape[0] < 1 or s.shape[1] < 2:
        raise ValueError(f"scores must have shape (n, k) with n >= 1 and k >= 2 classes, got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    if labels.shape != (s.shape[0],):
        raise ValueError(f"labels must have shape ({s.shape[0]},) like scores {s.shape}, got {labels.shape}")
    integral = labels.dtype.kind in "iu" or (
        labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels))
    )
    if not integral:
        raise ValueError("labels must be integers (class indices)")
    if labels.min() < 0 or labels.max() >= s.shape[1]:  # before the cast, which could wrap
        raise ValueError(f"labels must lie in [0, {s.shape[1] - 1}], got [{labels.min()}, {labels.max()}]")
    labels = labels.astype(np.int64)

    in_unit = np.all((s >= 0) & (s <= 1))
    on_simplex = bool(in_unit and np.allclose(s.sum(axis=1), 1.0, rtol=0, atol=_SIMPLEX_TOL))
    if logits is None:
        logits = not on_simplex
    if logits:
        with np.errstate(over="ignore"):
            spread = s.max(axis=1) - s.min(axis=1)
        if not np.all(np.isfinite(spread)):
            raise ValueError("logits span more than float64's range (max - min overflows); rescale them")
        return softmax(s, axis=1), log_softmax(s, axis=1), labels
    if not on_simplex:
        raise ValueError("logits=False but the rows of scores are not probability vectors")
    # Clip like sklearn.metrics.log_loss so that a confident mistake costs a large, finite NLL.
    return s, np.log(np.clip(s, np.finfo(np.float64).eps, 1.0)), labels


def accuracy(scores: Any, y: Any, *, logits: bool | None = None) -> float:
    """Fraction of samples whose arg-max class equals the label (ties: lowest index)."""
    p, _, labels = _prepare(scores, y, logits)
    return float(np.mean(p.argmax(axis=1) == labels))


def nll(scores: Any, y: Any, *, logits: bool | None = None) -> float:
    """Mean cross-entropy −(1/n) Σᵢ log p_{i, yᵢ} (natural log)."""
    _, log_p, labels = _prepare(scores, y, logits)
    return float(-np.mean(log_p[np.arange(labels.size), labels]))


def brier(scores: Any, y: Any, *, logits: bool | None = None) -> float:
    """Multi-class Brier score (1/n) Σᵢ Σ_k (p_ik − 1[yᵢ = k])², in [0, 2].

    This is Brier's original (1950) convention, summed over classes and not divided
    by k. For two classes it is twice sklearn's binary ``brier_score_loss``.
    """
    p, _, labels = _prepare(scores, y, logits)
    p = p.copy()
    p[np.arange(labels.size), labels] -= 1.0
    return float(np.mean(np.sum(p**2, axis=1)))


def reliability_diagram(
    scores: Any, y: Any, n_bins: int = 15, *, logits: bool | None = None
) -> dict[str, np.ndarray]:
    """Per-bin statistics of the top-label confidence cᵢ = max_k p_ik.

    Bins are equal-width with edges b/B, b = 0..B; bin b holds the confidences in
    (edges[b], edges[b+1]] — closed on the right, as in Guo et al. (2017) — and a
    confidence of exactly 0 (impossible for a top label, kept for completeness)
    goes to the first bin.

    Returns a dict of arrays: ``edges`` (B+1,), ``confidence`` and ``accuracy``
    (B,), the mean confidence and the fraction correct per bin (NaN for an empty
    bin), and ``count`` (B,), the number of samples per bin (sums to n).
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    p, _, labels = _prepare(scores, y, logits)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == labels).astype(np.float64)
    edges = np.arange(n_bins + 1) / n_bins  # exactly b/B, unlike linspace's b·(1/B)
    # side="left" returns i with edges[i-1] < c <= edges[i]: the right-closed bin i-1.
    bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, weights=conf, minlength=n_bins) / count
        mean_acc = np.bincount(bins, weights=correct, minlength=n_bins) / count
    return {"edges": edges, "confidence": mean_conf, "accuracy": mean_acc, "count": count}


def ece(scores: Any, y: Any, n_bins: int = 15, *, logits: bool | None = None) -> float:
    """Expected calibration error, ECE = Σ_b (|B_b|/n) · |acc(B_b) − conf(B_b)|.

    Top-label confidence in ``n_bins`` equal-width bins; see
    :func:`reliability_diagram` for the bin convention. Guo et al. (2017).
    """
    rd = reliability_diagram(scores, y, n_bins, logits=logits)
    filled = rd["count"] > 0
    gaps = np.abs(rd["accuracy"][filled] - rd["confidence"][filled])
    return float(np.sum(rd["count"][filled] * gaps) / rd["count"].sum())


def classification_metrics(
    scores: Any, y: Any, n_bins: int = 15, *, logits: bool | None = None
) -> dict[str, float]:
    """accuracy, nll, ece and brier of one set of predictions, as a dict."""
    return {
        "accuracy": accuracy(scores, y, logits=logits),
        "nll": nll(scores, y, logits=logits),
        "ece": ece(scores, y, n_bins, logits=logits),
        "brier": brier(scores, y, logits=logits),
    }
