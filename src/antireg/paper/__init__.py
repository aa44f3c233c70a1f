"""Paper experiments: linear, cheap, many cells, each a table shaped like a paper's.

``EXPERIMENTS`` maps a kind (the ``paper:`` key of a config) to an object with
``Options`` (strict pydantic model), ``cells(cfg, data_dir)``, ``compute(cell, data_dir)``,
``tables(rows, cfg)`` and ``figures(tables, out_dir)``; see :mod:`antireg.paper.driver`.
Modules are imported on first use, so importing this package is cheap (no torch).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

_MODULES = {
    "v4_exp1": "antireg.paper.v4", "v4_exp2": "antireg.paper.v4", "v4_exp3": "antireg.paper.v4",
    "v4_exp4": "antireg.paper.v4",
    "v4_exp5": "antireg.paper.v4_exp5",
    "kobak_toy": "antireg.paper.kobak", "kobak_mnist_rff": "antireg.paper.kobak",
    "kobak_liver": "antireg.paper.kobak", "demo": "antireg.paper.demo",
}


class _Registry(Mapping):
    """Name → experiment object; each module exposes ``EXPERIMENTS: dict[str, obj]``."""

    def __getitem__(self, name: str) -> Any:
        if name not in _MODULES:
            raise KeyError(name)
        return importlib.import_module(_MODULES[name]).EXPERIMENTS[name]

    def __iter__(self) -> Iterator[str]:
        return iter(_MODULES)

    def __len__(self) -> int:
        return len(_MODULES)

    def __contains__(self, name: object) -> bool:
        return name in _MODULES


EXPERIMENTS: Mapping[str, Any] = _Registry()
