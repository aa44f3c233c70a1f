"""The in-memory form of a loaded data set."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Task = Literal["regression", "classification"]


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

    @property
    def n(self) -> int:
        """Number of examples."""
        return len(self.y)
