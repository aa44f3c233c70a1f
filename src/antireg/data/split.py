"""The experimental protocol's train/validation/test split.

For one seed the split is fixed: a seeded ordering of the examples (stratified
by class for classification) puts the test set first, then the validation set,
then the training pool. ``fraction`` keeps a prefix of the pool, so for one seed
smaller fractions are nested subsets of larger ones, while validation and test
sets never change. Standardisation is fitted on the (subsampled) training part
only and applied to validation and test.

Tabular features are standardised per column; images per channel (mean and
standard deviation over all training pixels of that channel), keeping their
(n, C, H, W) shape. Regression targets are standardised too; classification
labels are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from .dataset import Dataset, Task, all_finite, check_int, check_number
from .files import DataError

P = TypeVar("P")


# eq=False: the fields are arrays, whose element-wise == has no single truth value.
@dataclass(frozen=True, eq=False)
class Split:
    """Standardised train/validation/test arrays plus what is needed to undo the scaling.

    ``X_std = (X - x_mean) / x_scale`` and, for regression, ``y_std = (y - y_mean) / y_scale``;
    for classification y_mean is 0.0 and y_scale 1.0. ``idx_*`` are the rows of
    the data set that each part holds.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_train: int
    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: float
    y_scale: float
    task: Task
    n_classes: int | None
    idx_train: np.ndarray
    idx_val: np.ndarray
    idx_test: np.ndarray

    def unscale_y(self, pred: P) -> P:
        """Map standardised regression predictions (numpy, torch or float) back to original units."""
        return pred * self.y_scale + self.y_mean


def _sizes(n_total: int, fraction: float, val_frac: float, test_frac: float) -> tuple[int, int, int]:
    """(n_test, n_val, n_train) for a data set of n_total examples; sizes are rounded."""
    fraction = check_number(fraction, "fraction")
    val_frac, test_frac = check_number(val_frac, "val_frac"), check_number(test_frac, "test_frac")
    if not 0 < fraction <= 1:
        raise DataError(f"fraction must be in (0, 1], got {fraction}")
    if not (val_frac >= 0 and test_frac >= 0 and val_frac + test_frac < 1):
        raise DataError(f"val_frac and test_frac must be >= 0 with sum < 1, got {val_frac} and {test_frac}")
    n_test, n_val = round(test_frac * n_total), round(val_frac * n_total)
    n_pool = n_total - n_test - n_val
    if n_pool < 1:
        raise DataError(f"{n_total} examples leave no training pool after validation and test sets")
    return n_test, n_val, max(1, round(fraction * n_pool))


def n_train_for(n_total: int, fraction: float, val_frac: float = 0.15, test_frac: float = 0.15) -> int:
    """The training-set size :func:`make_split` produces, computed without loading data."""
    return _sizes(n_total, fraction, val_frac, test_frac)[2]


def _order(y: np.ndarray, stratify: bool, rng: np.random.Generator) -> np.ndarray:
    """A seeded ordering of the examples; stratified so that every prefix is.

    For stratification each class's examples, in random order, get keys evenly
    spaced in [0, 1) (with random jitter inside their slot); sorting by key
    interleaves the classes so any prefix holds each class in proportion (to
    within one example), and so do the test, validation and training slices.
    """
    if not stratify:
        return rng.permutation(len(y))
    key = np.empty(len(y))
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        key[members] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    return np.argsort(key, kind="stable")


def _fit_scale(a: np.ndarray, axis: int | tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over ``axis``; a constant slice gets scale 1, not 0."""
    mean = a.mean(axis=axis, keepdims=True, dtype=np.float64)[0]
    std = a.std(axis=axis, keepdims=True, dtype=np.float64)[0]
    # ptp, not std == 0: the std of a constant float column can come out as 1e-17.
    scale = np.where(np.ptp(a, axis=axis, keepdims=True)[0] > 0, std, 1.0)
    return mean.astype(a.dtype), scale.astype(a.dtype)


def make_split(ds: Dataset, seed: int, fraction: float = 1.0, val_frac: float = 0.15,
               test_frac: float = 0.15, standardize: bool = True) -> Split:
    """Split ``ds`` for one seed and training fraction, standardised on the training part.

    A data set with its own test part, ``ds.meta["test_rows"]`` (MNIST's t10k images), keeps it:
    the test set is exactly those rows, and validation set and training pool are drawn, in the
    seeded order, from the other rows only. ``test_frac`` must then give that many rows, so that
    :func:`n_train_for` still gives the training sizes.

    Raises DataError when fraction is outside (0, 1], the fractions leave no training pool,
    the seed is not a non-negative integer, ``test_frac`` does not match the data set's own test
    part, or the data cannot be standardised in float range.
    """
    n_test, n_val, n_train = _sizes(ds.n, fraction, val_frac, test_frac)
    stratify, rng = ds.task == "classification", np.random.default_rng(check_int(seed, "seed"))
    fixed = ds.meta.get("test_rows")
    if fixed is None:
        order = _order(ds.y, stratify, rng)
    else:
        fixed = np.asarray(fixed, dtype=np.int64)
        if len(fixed) != n_test:
            raise DataError(f"data set {ds.name!r} has its own test set of {len(fixed)} of its {ds.n} rows, but "
                            f"test_frac = {test_frac} asks for {n_test}; set split.test_frac to "
                            f"{len(fixed) / ds.n:.12g} ({len(fixed)}/{ds.n})")
        rest = np.setdiff1d(np.arange(ds.n), fixed)
        order = np.concatenate([fixed, rest[_order(ds.y[rest], stratify, rng)]])
    idx_test, idx_val = order[:n_test], order[n_test:n_test + n_val]
    idx_train = order[n_test + n_val:][:n_train]

    X_train = ds.X[idx_train]
    # Tabular: one statistic per column; images (n, C, H, W): one per channel.
    axis = 0 if ds.X.ndim == 2 else (0, *range(2, ds.X.ndim))
    with np.errstate(all="ignore"):  # over- and underflow are reported below
        x_mean, x_scale = _fit_scale(X_train, axis)
        if not standardize:
            x_mean, x_scale = np.zeros_like(x_mean), np.ones_like(x_scale)
        y_mean, y_scale = 0.0, 1.0
        if standardize and ds.task == "regression":
            m, s = _fit_scale(ds.y[idx_train], 0)
            y_mean, y_scale = float(m), float(s)

    def finite(a: np.ndarray) -> np.ndarray:
        if not all_finite(np.asarray(a)):
            raise DataError(f"data set {ds.name!r} is too large or too small in magnitude to standardise "
                            f"in {ds.X.dtype} (the statistics or scaled values overflow or underflow); "
                            f"rescale it, or pass standardize=False")
        return a

    for statistic in (x_mean, x_scale, y_mean, y_scale):
        finite(statistic)

    def x(part: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return finite((part - x_mean) / x_scale)

    def y(idx: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return finite((ds.y[idx] - y_mean) / y_scale) if ds.task == "regression" else ds.y[idx]

    return Split(x(X_train), y(idx_train), x(ds.X[idx_val]), y(idx_val), x(ds.X[idx_test]), y(idx_test),
                 n_train=len(idx_train), x_mean=x_mean, x_scale=x_scale, y_mean=y_mean, y_scale=y_scale,
                 task=ds.task, n_classes=ds.n_classes,
                 idx_train=idx_train, idx_val=idx_val, idx_test=idx_test)
