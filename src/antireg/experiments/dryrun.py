"""``antireg run --dry-run``: a sweep's plan and its estimated training time, writing nothing."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from antireg.data import default_data_dir
from antireg.experiments import aggregate, storage
from antireg.experiments.build import resolve_device
from antireg.experiments.config import ExperimentCfg
from antireg.experiments.grid import WorkItem, make_work
from antireg.experiments.jobs import train_item, warm_up
from antireg.experiments.sweep import plan


@dataclass(frozen=True)
class SweepPlan:
    """What ``antireg run --dry-run`` prints: runs by method, how many are finished, and
    the estimated training time from short calibration runs (nothing is written)."""

    experiment: str
    by_method: dict[str, tuple[int, int]]  # method (with ablation) → (runs, already finished)
    work_s: float  # one process's seconds for every unfinished work item, from the calibration
    jobs: int

    @property
    def estimate_s(self) -> float:
        return self.work_s / self.jobs

    def text(self) -> str:
        total, done = (sum(v[i] for v in self.by_method.values()) for i in (0, 1))
        width = max(map(len, self.by_method))
        lines = [f"{self.experiment}: {total} runs, {done} already finished, {total - done} to train"]
        lines += [f"  {m:<{width}}  {n:>5} runs  {d:>5} done" for m, (n, d) in self.by_method.items()]
        if total > done:
            lines.append(f"estimated training time: {_duration(self.estimate_s)} with {self.jobs} job(s) "
                         "(from short calibration runs; nothing was written)")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def dry_run(
    cfg: ExperimentCfg, output_dir: str | Path = ".", data_dir: str | Path | None = None,
    seeds: list[int] | None = None, fractions: list[float] | None = None, optimizers: list[str] | None = None,
    jobs: int = 1, device: str | None = None, vectorise: bool = True,
    calibration_epochs: tuple[int, int] = (2, 32),
) -> SweepPlan:
    """The plan of :func:`~antireg.experiments.sweep.run_sweep` without running it: reads
    the data and the experiments folder, times work items in memory, and writes nothing.

    The smallest and the largest unfinished work item (one run, or with ``vectorise`` a
    stacked batch of runs) each train for both ``calibration_epochs`` counts: the
    difference gives the item's cost of an epoch, the rest its fixed cost (building the
    runs, spectra, evaluation). An epoch is modelled as ``b + c·(examples of the item)``
    through the two items, the fixed cost as one amount per run."""
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
    items = make_work(specs, {s.run_id for s in todo}, vectorise)
    work_s = 0.0
    if items:
        warm_up(items[0].specs[0], data_dir)
        by_size = sorted(items, key=_examples)
        ends = [by_size[0], by_size[-1]] if len(by_size) > 1 else by_size  # one item: timed once
        timed = [_calibrate(i, calibration_epochs, data_dir, device or cfg.device) for i in ends]
        (x0, epoch0, _), (x1, epoch1, _) = timed[0], timed[-1]
        slope = (epoch1 - epoch0) / (x1 - x0) if x1 > x0 else epoch1 / x1
        base = max(epoch1 - slope * x1, 0.0)
        per_run = sum(fixed for _, _, fixed in timed) / sum(len(i.specs) for i in ends)
        work_s = sum(per_run * len(i.specs) + i.specs[0].training.epochs * (base + slope * _examples(i)) for i in items)
    return SweepPlan(cfg.experiment, by_method, work_s, max(jobs, 1))


def _examples(item: WorkItem) -> int:
    """Training examples one epoch of ``item`` passes over, all its runs together."""
    return sum(s.n_train for s in item.specs)


def _calibrate(item: WorkItem, epochs: tuple[int, int], data_dir: Path, device: str) -> tuple[int, float, float]:
    """(examples, seconds per epoch, fixed seconds) of ``item``, from training it for both
    ``epochs`` counts (at most its own)."""
    counts = sorted({min(e, item.specs[0].training.epochs) for e in epochs})
    seconds = []
    for e in counts:
        short = WorkItem(tuple(s.model_copy(update={"training": s.training.model_copy(update={"epochs": e})})
                               for s in item.specs), item.vectorised)  # fmt: skip
        start = time.perf_counter()
        train_item(short, data_dir, resolve_device(device))
        seconds.append(time.perf_counter() - start)
    if len(counts) == 1:  # one-epoch runs: all of it per epoch
        return _examples(item), seconds[0] / counts[0], 0.0
    per_epoch = max(seconds[1] - seconds[0], 0.0) / (counts[1] - counts[0])
    return _examples(item), per_epoch, max(seconds[0] - per_epoch * counts[0], 0.0)
