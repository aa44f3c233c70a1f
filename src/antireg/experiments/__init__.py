"""Sweeps, one concern per module: config (schema), grid (planning), build (a run), jobs,
executors, storage (files), sweep (the driver), dryrun, aggregate (tables).

Names are imported on first use, so ``antireg.experiments.config`` (read by every CLI
command) does not pull in torch through the sweep.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "ConfigError": "config", "ExperimentCfg": "config", "load_config": "config",
    "RunSpec": "grid", "expand": "grid",
    "SweepError": "sweep", "SweepResult": "sweep", "run_sweep": "sweep",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'antireg.experiments' has no attribute {name!r}")
    return getattr(importlib.import_module(f"antireg.experiments.{_HOMES[name]}"), name)
