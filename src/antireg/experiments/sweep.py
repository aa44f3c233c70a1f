"""A sweep: expand the grid, run what is missing, aggregate.

The missing runs become tasks: one run each, or, with ``vectorise``, groups of runs
sharing an architecture, a training size and an optimizer, trained together as one
batched model (relatives' gradient rules stay one run per task). An executor
(:mod:`antireg.experiments.executors`) runs the tasks in this process, in a process
pool or on Ray; every one writes the same files, so resume is "skip run ids whose
directory is finished", whichever executor ran them.

Several sweeps may share an output folder: each run is claimed before it trains
(:mod:`antireg.experiments.storage`), a sweep leaves runs another one is training to
it and waits for them at the end, and the results of an experiment are written under
a lock, from the complete set of its finished runs. Nothing is trained before the
inputs and the output folders have been checked. An interrupt (Ctrl-C, SIGTERM)
stops the sweep within seconds with :class:`Interrupted`, a full disk at the first
failed write with :class:`OutputError`; either way the finished runs are kept and
re-running the command resumes.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import pandas as pd
from tqdm import tqdm

from antireg.data import default_data_dir
from antireg.experiments import aggregate
from antireg.experiments import storage
from antireg.experiments.config import ConfigError, ExperimentCfg, memory_bytes
from antireg.errors import Interrupted, OutputError, SweepError  # noqa: F401 - re-exported
from antireg.experiments.executors import Executor, LocalExecutor, make_executor
from antireg.experiments.grid import RunSpec, expand, select
from antireg.experiments.runner import (
    Executed,
    cached_dataset,
    dataset_for,
    execute,
    execute_group,
    group_key,
    resolve_device,
    sweep_settings,
    train_group,
    train_run,
)
from antireg.experiments.storage import StorageError, claim, claim_run, is_done, remove_stale, write_run
from antireg.tracking import MlflowTracker

MAX_GROUP = 64  # models per batched task: bounds a task's memory


class _Progress(tqdm):
    """tqdm without its monitor thread: the process pool forks while the bar is shown,
    and a fork should not copy a thread that may hold a lock."""

    monitor_interval = 0


@dataclass
class SweepResult:
    runs: pd.DataFrame
    summary: pd.DataFrame
    runs_csv: Path
    summary_csv: Path
    n_run: int  # trained by this sweep
    n_skipped: int  # finished before it started
    n_elsewhere: int = 0  # finished meanwhile by another sweep on the same folder


def _check_outputs(output_dir: Path, experiment: str) -> None:
    """Before anything trains: the output folders can be written, and results/<E>.csv
    is not a paper experiment's table."""
    storage.check_writable(output_dir)
    storage.check_writable(output_dir / "experiments", "experiments folder")
    storage.check_writable(output_dir / "results", "results folder")
    for owner, tables in storage.paper_tables(output_dir / "results").items():
        if {experiment, f"{experiment}_summary"} & set(tables):
            raise ConfigError(f"results/{experiment}.csv in {output_dir} holds a table of paper experiment "
                              f"{owner!r}; give the sweep another experiment name or another --output-dir")


# Bytes of training state per parameter: the weights, their gradient, Adam's two moments,
# the trust region's θ₀, the best-validation copy, and room for temporaries.
_BYTES_PER_PARAMETER = 4 * 8


def _check_model_fits(cfg: ExperimentCfg, specs: list[RunSpec], data_dir: Path, vectorise: bool, jobs: int) -> None:
    """Build the model without memory (torch's meta device) to count its parameters, and
    refuse, naming the keys, a model that cannot be built for this data or whose runs
    training at once would not fit in half of this machine's memory."""
    import torch

    from antireg.models import make_model

    ds, m = dataset_for(specs[0], data_dir), cfg.model
    out_dim = 1 if ds.task == "regression" else int(ds.n_classes or ds.y.max() + 1)
    try:
        with torch.device("meta"):
            params = sum(p.numel() for p in make_model(m.kind, tuple(ds.X.shape[1:]), out_dim, m.width, m.depth,
                                                       m.activation).parameters())  # fmt: skip
    except ValueError as exc:
        raise ConfigError(f"model: {exc}; change model.kind, model.width or model.depth") from None
    at_once = (min(MAX_GROUP, len(specs)) if vectorise else 1) * jobs
    need, have = params * _BYTES_PER_PARAMETER * at_once, memory_bytes()
    if need > have // 2:
        raise ConfigError(
            f"model.width {m.width} and model.depth {m.depth} give {params:,} parameters per model: about "
            f"{need / 2**30:.3g} GiB for the {at_once} runs training at once, more than half of this machine's "
            f"{have / 2**30:.3g} GiB; lower model.width or model.depth" + (" or --jobs" if jobs > 1 else "")
        )


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
    return sum(map(aggregate.run_units, task.specs))


def _execute_task(task: Task, exp_dir: Path, data_dir: Path, device: str, wait: bool = False) -> Executed:
    """Train a task's runs and write them where the task runs (a machine that sees
    ``exp_dir``), leaving to another process the runs it holds (with ``wait``, waiting for them)."""
    if task.vectorised:
        return execute_group(task.specs, exp_dir, data_dir, device, wait)
    return execute(task.specs[0], exp_dir, data_dir, device, wait)


def _train_task(task: Task, data_dir: Path, device: str) -> list[tuple[dict, list[dict], dict]]:
    """Train a task's runs and return their outputs, for the caller to write (remote workers)."""
    with sweep_settings():
        return train_group(task.specs, data_dir, device) if task.vectorised else [train_run(task.specs[0], data_dir, device)]


def _warm_up(spec: RunSpec, data_dir: Path) -> None:
    """Load the data set and the modules every run needs once, here: the runs in this
    process then skip it, and forked workers inherit it."""
    dataset_for(spec, data_dir)
    import torch._dynamo  # noqa: F401 - torch.optim imports it (about a second) at the first optimizer


@dataclass(frozen=True)
class SweepPlan:
    """What ``antireg run --dry-run`` prints: runs by method, how many are finished, and
    the estimated training time from one short calibration run (nothing is written)."""

    experiment: str
    by_method: dict[str, tuple[int, int]]  # method (with ablation) → (runs, already finished)
    seconds_per_unit: float  # per example × epoch, timed on the largest unfinished run
    todo_units: int
    jobs: int

    @property
    def estimate_s(self) -> float:
        return self.seconds_per_unit * self.todo_units / self.jobs

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
    jobs: int = 1, device: str | None = None, calibration_epochs: int = 2,
) -> SweepPlan:
    """The plan of :func:`run_sweep` without running it: reads the data and the
    experiments folder, trains one unfinished run for ``calibration_epochs`` epochs in
    memory to time it, and writes nothing."""
    import time

    data_dir = Path(data_dir or default_data_dir()).resolve()
    specs = plan(cfg, data_dir, seeds, fractions, optimizers)
    exp_dir = Path(output_dir) / "experiments"
    by_method: dict[str, tuple[int, int]] = {}
    todo = []
    for spec in specs:
        key = aggregate.label(spec.method, spec.ablation)
        finished = is_done(exp_dir / spec.run_id)
        n, d = by_method.get(key, (0, 0))
        by_method[key] = (n + 1, d + finished)
        if not finished:
            todo.append(spec)
    per_unit = 0.0
    if todo:
        probe = max(todo, key=aggregate.run_units)
        epochs = min(calibration_epochs, probe.training.epochs)
        probe = probe.model_copy(update={"training": probe.training.model_copy(update={"epochs": epochs})})
        _warm_up(probe, data_dir)
        start = time.perf_counter()
        with sweep_settings():
            train_run(probe, data_dir, resolve_device(device or cfg.device))
        per_unit = (time.perf_counter() - start) / (probe.n_train * epochs)
    units = sum(map(aggregate.run_units, todo))
    return SweepPlan(cfg.experiment, by_method, per_unit, units, max(jobs, 1))


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

    Raises :class:`Interrupted` on Ctrl-C or SIGTERM (see the CLI), :class:`OutputError`
    when an output cannot be written, :class:`SweepError` when runs failed.
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
    _check_model_fits(cfg, specs, data_dir, vectorise, jobs if executor == "process" else 1)
    _check_outputs(output_dir, cfg.experiment)
    exp_dir = (output_dir / "experiments").resolve()
    if removed := remove_stale(exp_dir):
        print(f"antireg: removed {removed} unfinished run folder(s) of killed writers in {exp_dir}", file=sys.stderr)
    todo = []
    for spec in specs:
        problem = storage.problem(exp_dir / spec.run_id)
        if problem is not None:
            todo.append(spec)
            if (exp_dir / spec.run_id).exists():
                print(f"antireg: {exp_dir / spec.run_id} is not a finished run ({problem}); re-running it",
                      file=sys.stderr)
    todo_ids = {s.run_id for s in todo}
    tasks = make_tasks(specs, todo_ids, vectorise)
    if executor == "process" and len(tasks) <= 1:
        executor, run_on = "local", make_executor("local")  # a pool for one task only costs its start-up
    if not run_on.remote:
        _warm_up(specs[0], data_dir)
    tracker = None
    if tracking == "mlflow":
        tracker = MlflowTracker(cfg.experiment, output_dir, tracking_uri)
    try:
        with _Progress(total=len(todo), desc=cfg.experiment, unit="run", disable=not progress or not todo) as bar:
            failures, trained, busy = _train(run_on, specs, todo_ids, vectorise, exp_dir, data_dir, device, bar,
                                             tracker)  # fmt: skip
            if busy:
                print(f"\nantireg: waiting for {len(busy)} run(s) that another sweep on {exp_dir} is training",
                      file=sys.stderr)
                fn = partial(_execute_task, exp_dir=exp_dir, data_dir=data_dir, device=device, wait=True)
                for task, outcome in LocalExecutor().map(fn, make_tasks(specs, busy, vectorise)):
                    waited = [s.run_id for s in task.specs if s.run_id in busy]
                    if isinstance(outcome, StorageError):
                        raise outcome
                    if isinstance(outcome, Exception):
                        failures.update({rid: f"{type(outcome).__name__}: {outcome}" for rid in waited})
                    else:
                        trained.update(outcome.trained)
                    bar.update(len(waited))
        results_dir = output_dir / "results"
        runs_csv, summary_csv = results_dir / f"{cfg.experiment}.csv", results_dir / f"{cfg.experiment}_summary.csv"
        # one writer at a time: the pair of files comes from one set of runs
        with claim(results_dir / f"{storage.LOCK_PREFIX}{cfg.experiment}", block=True):
            runs = aggregate.collect(specs, exp_dir)
            summary = aggregate.summarize(runs) if not runs.empty else pd.DataFrame()
            if not runs.empty:
                aggregate.write_results(runs, summary, results_dir, cfg.experiment)
                storage.write_sweep_config(results_dir, cfg.experiment, cfg.model_dump(mode="json"))
    except StorageError as exc:
        remove_stale(exp_dir)  # the temporary folders of the workers stopped mid-write
        raise OutputError(_not_saved(exc, specs, exp_dir)) from None
    except KeyboardInterrupt as exc:
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: the clean-up is nearly done anyway
            remove_stale(exp_dir)
        done = sum(is_done(exp_dir / s.run_id) for s in specs)
        signum = getattr(exc, "signum", signal.SIGINT)
        raise Interrupted(
            f"{'interrupted' if signum == signal.SIGINT else 'terminated'}: {done} of {len(specs)} runs of "
            f"{cfg.experiment} are finished and saved in {exp_dir}; run the same command again to resume "
            f"(it trains the other {len(specs) - done})", signum,
        ) from None
    remove_stale(exp_dir)  # what workers that crashed (a broken pool) left behind
    if failures:
        listing = "\n".join(f"  {rid}: {msg}" for rid, msg in sorted(failures.items()))
        raise SweepError(f"{len(failures)} of {len(todo)} runs failed (the others are saved; re-run to retry):\n{listing}")
    n_elsewhere = len(todo) - len(trained) - len(failures)
    return SweepResult(runs, summary, runs_csv, summary_csv, len(trained), len(specs) - len(todo), n_elsewhere)


def _train(
    run_on: Executor, specs: list[RunSpec], todo_ids: set[str], vectorise: bool, exp_dir: Path, data_dir: Path,
    device: str, bar: tqdm, tracker,
) -> tuple[dict[str, str], set[str], set[str]]:
    """Train the runs of ``todo_ids`` on ``run_on``. Returns the failed runs (id → error),
    the ids trained here, and those left to another sweep that holds their claims. A
    :class:`StorageError` stops at once: closing the executor cancels its other tasks."""
    failures: dict[str, str] = {}
    trained: set[str] = set()
    busy: set[str] = set()
    claims: dict[str, storage.Claim] = {}
    try:
        if run_on.remote:  # the workers return results and this process writes them: it claims them
            for run_id in sorted(todo_ids):
                if (held := claim_run(exp_dir, run_id)) is not None:
                    claims[run_id] = held
            busy = todo_ids - set(claims)
            fn = partial(_train_task, data_dir=data_dir, device=device)
        else:
            fn = partial(_execute_task, exp_dir=exp_dir, data_dir=data_dir, device=device)
        with contextlib.closing(run_on.map(fn, make_tasks(specs, todo_ids - busy, vectorise))) as outcomes:
            for task, outcome in outcomes:
                new = [s for s in task.specs if s.run_id in todo_ids and s.run_id not in busy]
                if isinstance(outcome, StorageError):
                    raise outcome
                if isinstance(outcome, Exception):
                    failures.update({s.run_id: f"{type(outcome).__name__}: {outcome}" for s in new})
                    continue
                if run_on.remote:
                    outputs = dict(zip([s.run_id for s in task.specs], outcome))
                    outcome = Executed([s.run_id for s in new if write_run(s, exp_dir, *outputs[s.run_id])], [])
                trained.update(outcome.trained)
                busy.update(outcome.busy)
                if tracker is not None:
                    for run_id in outcome.trained:
                        tracker.log(exp_dir / run_id, *storage.read_run(exp_dir / run_id))
                bar.update(len([s for s in new if s.run_id not in busy]))
    finally:
        for held in claims.values():
            held.release()
    return failures, trained, busy


def _not_saved(exc: StorageError, specs: list[RunSpec], exp_dir: Path, shown: int = 20) -> str:
    """The message of a sweep stopped by a failed write: what is saved, what is not, the fix."""
    missing = [s.run_id for s in specs if not is_done(exp_dir / s.run_id)]
    saved = len(specs) - len(missing)
    lines = [f"{exc}; stopped at the first failed write. {saved} of {len(specs)} runs are saved in {exp_dir}"]
    if missing:
        lines[0] += f"; {len(missing)} are not:"
        lines += [f"  {rid}" for rid in missing[:shown]]
        if len(missing) > shown:
            lines.append(f"  ... and {len(missing) - shown} more")
    else:
        lines[0] += "; the results were not written"
    lines.append("Free space (or fix the folder) and run the same command again: it resumes from the saved runs.")
    return "\n".join(lines)
