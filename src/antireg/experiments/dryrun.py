"""``antireg run --dry-run``: a sweep's plan and its estimated training time, writing nothing."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from antireg.data import default_data_dir
from antireg.experiments import aggregate, storage
from antireg.experiments.build import resolve_device
from antireg.experiments.config import ExperimentCfg
from antireg.experiments.grid import WorkItem, make_work, run_units
from antireg.experiments.jobs import train_item, warm_up
from antireg.experiments.sweep import plan


@dataclass(frozen=True)
class SweepPlan:
    """What ``antireg run --dry-run`` prints: runs by method, how many are finished, and
    the estimated training time from one short calibration run (nothing is written)."""

    experiment: str
    by_method: dict[str, tuple[int, int]]  # method (with ablation) → (runs, already finished)
    seconds_per_unit: float  # per example × epoch of a run, timed on the largest unfinished work item
    seconds_per_run: float  # what a run costs whatever its epochs: building, spectrum, evaluation
    todo_units: int
    todo_runs: int
    jobs: int

    @property
    def estimate_s(self) -> float:
        return (self.seconds_per_unit * self.todo_units + self.seconds_per_run * self.todo_runs) / self.jobs

    def text(self) -> str:
        total, done = (sum(v[i] for v in self.by_method.values()) for i in (0, 1))
        width = max(map(len, self.by_method))
        lines = [f"{self.experiment}: {total} runs, {done} already finished, {total - done} to train"]
        lines += [f"  {m:<{width}}  {n:>5} runs  {d:>5} done" for m, (n, d) in self.by_method.items()]
        if total > done:
            lines.append(f"estimated training time: {_duration(self.estimate_s)} with {self.jobs} job(s) "
                         "(from a short calibration run; nothing was written)")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def dry_run(
    cfg: ExperimentCfg, output_dir: str | Path = ".", data_dir: str | Path | None = None,
    seeds: list[int] | None = None, fractions: list[float] | None = None, optimizers: list[str] | None = None,
    jobs: int = 1, device: str | None = None, vectorise: bool = True, calibration_epochs: tuple[int, int] = (2, 12),
) -> SweepPlan:
    """The plan of :func:`~antireg.experiments.sweep.run_sweep` without running it: reads
    the data and the experiments folder, trains the largest unfinished work item (one run,
    or with ``vectorise`` a stacked batch of runs) in memory for each of the two
    ``calibration_epochs`` counts to time it, and writes nothing. The difference of the two
    times gives the cost of an epoch, the rest the fixed cost of a run (building it, its
    spectrum, its evaluation), which dominates a short calibration of a stacked batch."""
    data_dir = Path(data_dir or default_data_dir()).resolve()
    specs = plan(cfg, data_dir, seeds, fractions, optimizers, output_dir)
    exp_dir = storage.experiments_dir(output_dir)
    by_method: dict[str, tuple[int, int]] = {}
    todo = []
    for spec in specs:
        key = aggregate.label(spec.method, spec.ablation)
        finished = storage.is_done(exp_dir / spec.run_id)
        n, d = by_method.get(key, (0, 0))
        by_method[key] = (n + 1, d + finished)
        if not finished:
            todo.append(spec)
    per_unit = per_run = 0.0
    if todo:
        probe = max(make_work(specs, {s.run_id for s in todo}, vectorise), key=lambda w: sum(map(run_units, w.specs)))
        warm_up(probe.specs[0], data_dir)
        units, seconds = [], []
        for epochs in calibration_epochs:
            epochs = min(epochs, probe.specs[0].training.epochs)
            short = WorkItem(tuple(s.model_copy(update={"training": s.training.model_copy(update={"epochs": epochs})})
                                   for s in probe.specs), probe.vectorised)  # fmt: skip
            start = time.perf_counter()
            train_item(short, data_dir, resolve_device(device or cfg.device))
            seconds.append(time.perf_counter() - start)
            units.append(sum(s.n_train * epochs for s in short.specs))
        if units[1] > units[0]:
            per_unit = max(seconds[1] - seconds[0], 0.0) / (units[1] - units[0])
        per_run = max(seconds[0] - per_unit * units[0], 0.0) / len(probe.specs)
        if per_unit == 0.0:  # one length only (one-epoch runs) or timing noise: all of it per unit
            per_unit, per_run = seconds[0] / units[0], 0.0
    return SweepPlan(cfg.experiment, by_method, per_unit, per_run, sum(map(run_units, todo)), len(todo), max(jobs, 1))
