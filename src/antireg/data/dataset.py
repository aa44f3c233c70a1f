"""The in-memory form of a loaded data set."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Literal

import numpy as np

from .files import DataError

Task = Literal["regression", "classification"]


# -- the data code's argument checks, shared by loaders, generators and splits -------

def check_int(value: Any, name: str, minimum: int = 0) -> int:
    """``value`` as an int ``>= minimum``, else DataError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_number(value: Any, name: str) -> float:
    """``value`` as a float, else DataError naming ``name``; callers check the range
    (NaN passes here and fails any range comparison there)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise DataError(f"{name} must be a number, got {value!r}")
    return float(value)


def all_finite(a: np.ndarray) -> bool:
    """True when ``a`` has no NaN or infinity (min and max propagate NaN: no mask is allocated)."""
    return a.size == 0 or a.dtype.kind in "biu" or bool(np.isfinite(a.min()) and np.isfinite(a.max()))


# eq=False: the fields are arrays, whose element-wise == has no single truth value.
@dataclass(frozen=True, eq=False)
class Dataset:
    """A whole data set (the pool that :func:`antireg.data.make_split` divides).

    Attributes:
        name: registry name, e.g. "concrete".
        X: tabular data as float64 (n, d); images as float32 in [0, 1] with shape
            (n, C, H, W), whose flat view is ``X.reshape(n, -1)``.
        y: float64 targets (regression) or int64 labels 0..n_classes-1.
        task: "regression" or "classification".
        n_classes: number of classes, None for regression.
        feature_names: column names for tabular data, else None.
        meta: extra facts about the data; the synthetic generator stores its true
            coefficients here as ``meta["coef"]`` (and ``meta["noise"]``, ``meta["seed"]``).
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    task: Task
    n_classes: int | None = None
    feature_names: tuple[str, ...] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse data that no split or model can use; every loader passes through here."""
        where = f"data set {self.name!r}"
        if self.task not in ("regression", "classification"):
            raise DataError(f"{where}: task must be 'regression' or 'classification', got {self.task!r}")
        X, y = self.X, self.y
        if not (isinstance(X, np.ndarray) and isinstance(y, np.ndarray)
                and X.dtype.kind in "fiu" and y.dtype.kind in "fiu"):
            raise DataError(f"{where}: X and y must be numeric numpy arrays")
        if X.ndim < 2 or y.ndim != 1 or len(X) != len(y):
            raise DataError(f"{where}: X must have shape (n, d) or (n, C, H, W) and y shape (n,), "
                            f"got X {X.shape} and y {y.shape}")
        if len(y) == 0:
            raise DataError(f"{where} has no examples")
        if not (all_finite(X) and all_finite(y)):
            raise DataError(f"{where} contains NaN or infinite values; clean the source file "
                            f"or drop those rows")
        if self.task == "classification":
            k = check_int(self.n_classes, f"{where}: n_classes", 1)
            if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= k:
                raise DataError(f"{where}: labels must be integers in [0, {k - 1}], "
                                f"got {y.dtype} in [{y.min()}, {y.max()}]")

    @property
    def n(self) -> int:
        """Number of examples."""
        return len(self.y)
