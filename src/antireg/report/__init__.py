"""Reports people read: paper-style tables, figures and a standalone HTML page.

``write_report(results_dir, out_dir)`` turns a sweep's ``results/`` into ``report.md``,
``report.html`` and ``figures/*.png|svg``. Names are imported on first use (matplotlib
is heavy), so ``ReportError`` is cheap to import.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {"ReportError": "results", "ReportPaths": "build", "write_report": "build"}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'antireg.report' has no attribute {name!r}")
    return getattr(importlib.import_module(f"antireg.report.{_HOMES[name]}"), name)
