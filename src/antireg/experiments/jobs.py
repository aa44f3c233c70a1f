"""The one job every executor runs: train a work item's runs and return their outputs.

The job writes nothing. The sweep claims the runs before it hands them out and writes
what comes back (:mod:`antireg.experiments.storage`), whichever executor ran the job —
this process, a pool's worker or a Ray node — so a sweep has one write path, and a
worker needs no access to the output folder.
"""

from __future__ import annotations

from pathlib import Path

from antireg.experiments.build import RunOutput, dataset_for, train_group, train_run
from antireg.experiments.executors import sweep_settings
from antireg.experiments.grid import RunSpec, WorkItem


def train_item(item: WorkItem, data_dir: str | Path, device: str) -> list[RunOutput]:
    """Train ``item``'s runs under :func:`sweep_settings`: one by one, or stacked as one
    model; the outputs in the order of ``item.specs``."""
    with sweep_settings():
        return train_group(item.specs, data_dir, device) if item.vectorised else [train_run(item.specs[0], data_dir, device)]


def warm_up(spec: RunSpec, data_dir: str | Path) -> None:
    """Load the data set and the modules every run needs once, here: the runs in this
    process then skip it, and forked workers inherit it."""
    dataset_for(spec, data_dir)
    import torch._dynamo  # noqa: F401 - torch.optim imports it (about a second) at the first optimizer
