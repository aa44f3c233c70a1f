"""Config schema, run grid, runner, aggregation and sweeps."""

from antireg.experiments.config import ConfigError, ExperimentCfg, load_config
from antireg.experiments.grid import RunSpec, expand
from antireg.experiments.sweep import SweepError, SweepResult, run_sweep

__all__ = ["ConfigError", "ExperimentCfg", "RunSpec", "SweepError", "SweepResult", "expand", "load_config", "run_sweep"]
