"""A sweep: expand the grid, run what is missing, aggregate.

The missing runs become tasks: one run each, or, with ``vectorise``, groups of runs
sharing an architecture, a training size and an optimizer, trained together as one
batched model (relatives' gradient rules stay one run per task). An executor
(:mod:`antireg.experiments.executors`) runs the tasks in this process, in a process
pool or on Ray; every one writes the same files, so resume is "skip run ids whose
directory is finished", whichever executor ran them.
"""

from __future__ import annotations

import math
import sys
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import pandas as pd
from tqdm import tqdm

from antireg.data import default_data_dir
from antireg.experiments import aggregate
from antireg.experiments.config import ConfigError, ExperimentCfg
from antireg.experiments.executors import make_executor
from antireg.experiments.grid import RunSpec, expand, select
from antireg.experiments.runner import (
    cached_dataset,
    dataset_for,
    execute,
    execute_group,
    group_key,
    is_done,
    remove_stale_tmp,
    resolve_device,
    sweep_settings,
    train_group,
    train_run,
    write_run,
)

MAX_GROUP = 64  # models per batched task: bounds a task's memory


class _Progress(tqdm):
    """tqdm without its monitor thread: the process pool forks while the bar is shown,
    and a fork should not copy a thread that may hold a lock."""

    monitor_interval = 0


class SweepError(Exception):
    """Some runs failed with an error (not divergence, which is a result)."""


@dataclass
class SweepResult:
    runs: pd.DataFrame
    summary: pd.DataFrame
    runs_csv: Path
    summary_csv: Path
    n_run: int
    n_skipped: int


def _check_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(f"output directory {path} is not writable ({exc.strerror}); pass --output-dir DIR") from None


def plan(
    cfg: ExperimentCfg,
    data_dir: str | Path | None = None,
    seeds: list[int] | None = None,
    fractions: list[float] | None = None,
    optimizers: list[str] | None = None,
) -> list[RunSpec]:
    """The run specs of ``cfg`` after the ``--only_*`` filters; loads the data once
    so that a missing or corrupt file fails before any run starts."""
    ds = cached_dataset(cfg.dataset.name, cfg.dataset.options, data_dir or default_data_dir())
    specs = select(expand(cfg, len(ds.y)), seeds, fractions, optimizers)
    if not specs:
        raise ConfigError(
            f"the filters select no runs: seeds {cfg.seeds}, fractions {cfg.fractions} and optimizers "
            f"{sorted(cfg.optimizers)} are available in this config"
        )
    return specs


class Task(NamedTuple):
    """A unit of work: one run, or runs trained together as one batched model."""

    specs: tuple[RunSpec, ...]
    vectorised: bool


def make_tasks(specs: list[RunSpec], todo: set[str], vectorise: bool = False, max_group: int = MAX_GROUP) -> list[Task]:
    """Tasks for the runs of ``specs`` whose ids are in ``todo``.

    Without ``vectorise``, one task per run. With it, the runs of each
    :func:`group_key` are cut into balanced batches of at most ``max_group``, and a
    batch with any unfinished run is a task. The batches come from the whole plan,
    never from what is left to do or from the number of workers: a run's numbers
    depend, in the last bits, on the batch it trains in (torch's reductions round by
    shape), so a fixed batch makes them the same whichever executor ran it and
    however often the sweep was resumed.

    Tasks come largest first, so that a pool's workers finish together rather than one
    training the biggest batch alone at the end; the order changes no run's numbers."""
    groups: dict[str, list[RunSpec]] = {}
    tasks = []
    for spec in specs:
        key = group_key(spec) if vectorise else None
        if key is not None:
            groups.setdefault(key, []).append(spec)
        elif spec.run_id in todo:
            tasks.append(Task((spec,), False))
    for members in groups.values():
        size = math.ceil(len(members) / math.ceil(len(members) / max_group))
        batches = [tuple(members[i : i + size]) for i in range(0, len(members), size)]
        tasks += [Task(batch, True) for batch in batches if any(s.run_id in todo for s in batch)]
    return sorted(tasks, key=_cost, reverse=True)


def _cost(task: Task) -> int:
    """A task's rough training work: examples × epochs over its runs."""
    return sum(s.n_train * s.training.epochs for s in task.specs)


def _execute_task(task: Task, exp_dir: Path, data_dir: Path, device: str) -> None:
    """Train a task's runs and write them where the task runs (a machine that sees ``exp_dir``)."""
    if task.vectorised:
        execute_group(task.specs, exp_dir, data_dir, device)
    else:
        execute(task.specs[0], exp_dir, data_dir, device)


def _train_task(task: Task, data_dir: Path, device: str) -> list[tuple[dict, list[dict], dict]]:
    """Train a task's runs and return their outputs, for the caller to write (remote workers)."""
    with sweep_settings():
        return train_group(task.specs, data_dir, device) if task.vectorised else [train_run(task.specs[0], data_dir, device)]


def _warm_up(spec: RunSpec, data_dir: Path) -> None:
    """Load the data set and the modules every run needs once, here: the runs in this
    process then skip it, and forked workers inherit it."""
    dataset_for(spec, data_dir)
    import torch._dynamo  # noqa: F401 - torch.optim imports it (about a second) at the first optimizer


def run_sweep(
    cfg: ExperimentCfg,
    output_dir: str | Path = ".",
    data_dir: str | Path | None = None,
    seeds: list[int] | None = None,
    fractions: list[float] | None = None,
    optimizers: list[str] | None = None,
    jobs: int = 1,
    progress: bool = True,
    *,
    executor: str | None = None,
    ray_address: str | None = None,
    device: str | None = None,
    vectorise: bool = False,
    tracking: str | None = None,
    tracking_uri: str | None = None,
) -> SweepResult:
    """Run every missing run of the (filtered) grid, then write ``results/``.

    ``executor``: ``local``, ``process`` (``jobs`` workers) or ``ray``; by default
    ``process`` when ``jobs`` > 1, else ``local``. ``device``: ``cpu``, ``cuda`` or
    ``auto`` (default: the config's). ``vectorise``: train runs that share an
    architecture, a training size and an optimizer together as one batched model.
    ``tracking="mlflow"``: log each trained run to MLflow (``tracking_uri``, default
    a SQLite store in ``output_dir``).
    """
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    if tracking not in (None, "mlflow"):
        raise ConfigError(f"tracking must be 'mlflow' or None, got {tracking!r}")
    output_dir = Path(output_dir)
    data_dir = Path(data_dir or default_data_dir()).resolve()  # absolute: workers may start elsewhere
    device = device or cfg.device
    executor = executor or ("process" if jobs > 1 else "local")
    # built first, so a bad executor or a missing Ray fails before any data is read
    run_on = make_executor(executor, jobs, ray_address, gpus=device == "cuda")
    if not run_on.remote:
        resolve_device(device)  # fail before any run; remote workers resolve it on their own machines
    specs = plan(cfg, data_dir, seeds, fractions, optimizers)
    _check_writable(output_dir)
    exp_dir = (output_dir / "experiments").resolve()
    if removed := remove_stale_tmp(exp_dir):
        print(f"antireg: removed {removed} unfinished run folder(s) of killed writers in {exp_dir}", file=sys.stderr)
    todo = [s for s in specs if not is_done(exp_dir / s.run_id)]
    for spec in todo:
        if (exp_dir / spec.run_id).exists():
            print(f"antireg: {exp_dir / spec.run_id} is incomplete or unreadable; re-running it", file=sys.stderr)
    todo_ids = {s.run_id for s in todo}
    tasks = make_tasks(specs, todo_ids, vectorise)
    if executor == "process" and len(tasks) <= 1:
        executor, run_on = "local", make_executor("local")  # a pool for one task only costs its start-up
    if not run_on.remote:
        _warm_up(specs[0], data_dir)
    tracker = None
    if tracking == "mlflow":
        from antireg.tracking import MlflowTracker

        tracker = MlflowTracker(cfg.experiment, output_dir, tracking_uri)
    if run_on.remote:
        fn = partial(_train_task, data_dir=data_dir, device=device)
    else:
        fn = partial(_execute_task, exp_dir=exp_dir, data_dir=data_dir, device=device)
    failures = {}
    with _Progress(total=len(todo), desc=cfg.experiment, unit="run", disable=not progress or not todo) as bar:
        for task, outcome in run_on.map(fn, tasks):
            new = [s for s in task.specs if s.run_id in todo_ids]  # a batch may hold finished runs too
            if isinstance(outcome, Exception):
                failures.update({s.run_id: f"{type(outcome).__name__}: {outcome}" for s in new})
            else:
                if run_on.remote:
                    outputs = dict(zip([s.run_id for s in task.specs], outcome))
                    for spec in new:
                        write_run(spec, exp_dir, *outputs[spec.run_id])
                if tracker is not None:
                    for spec in new:
                        tracker.log(spec, exp_dir / spec.run_id)
            bar.update(len(new))
    runs = aggregate.collect(specs, exp_dir)
    summary = aggregate.summarize(runs) if not runs.empty else pd.DataFrame()
    results_dir = output_dir / "results"
    runs_csv, summary_csv = results_dir / f"{cfg.experiment}.csv", results_dir / f"{cfg.experiment}_summary.csv"
    if not runs.empty:
        aggregate.write_results(runs, summary, results_dir, cfg.experiment)
    if failures:
        listing = "\n".join(f"  {rid}: {msg}" for rid, msg in sorted(failures.items()))
        raise SweepError(f"{len(failures)} of {len(todo)} runs failed (the others are saved; re-run to retry):\n{listing}")
    return SweepResult(runs, summary, runs_csv, summary_csv, len(todo), len(specs) - len(todo))
