"""Old home of building, training and executing a run, kept for the names users and tests
import from it: building and training now live in :mod:`antireg.experiments.build`, the
stacking key in :mod:`~antireg.experiments.grid`, the process settings in
:mod:`~antireg.experiments.executors`."""

from antireg.experiments.build import cached_dataset, dataset_for, prepare, resolve_device, train_group, train_run
from antireg.experiments.executors import sweep_settings
from antireg.experiments.grid import group_key

__all__ = ["cached_dataset", "dataset_for", "group_key", "prepare", "resolve_device", "sweep_settings", "train_group",
           "train_run"]  # fmt: skip
