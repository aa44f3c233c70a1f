"""A sweep: plan the grid, train what is missing, store every run, aggregate.

The missing runs become work items (:func:`~antireg.experiments.grid.make_work`): one run
each, or, with ``vectorise``, batches of runs sharing an architecture, a training size and
an optimizer, trained together as one stacked model. An executor
(:mod:`antireg.experiments.executors`) runs the one job (:func:`~antireg.experiments.jobs.train_item`)
on them in this process, in a process pool or on Ray, and returns the outputs; this
driver writes them (:mod:`antireg.experiments.storage`), whichever executor ran them, so
resume is "skip run ids whose directory is finished".

Several sweeps may share an output folder: the driver claims the runs it will train
before handing them out, leaves runs another sweep holds to it and waits for them at
the end, and writes an experiment's results under a lock, from the complete set of its
finished runs. Nothing is trained before the inputs and the output folders have been
checked. An interrupt (Ctrl-C, SIGTERM) stops the sweep within seconds with
:class:`Interrupted`, a full disk at the first failed write with :class:`OutputError`;
either way the finished runs are kept and re-running the command resumes.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from antireg.data import default_data_dir
from antireg.errors import ConfigError, Interrupted, OutputError, SweepError
from antireg.experiments import aggregate, storage
from antireg.experiments.build import cached_dataset, check_model_fits, resolve_device
from antireg.experiments.config import ExperimentCfg
from antireg.experiments.executors import Executor, LocalExecutor, make_executor
from antireg.experiments.grid import MAX_GROUP, RunSpec, WorkItem, expand, make_work, select
from antireg.experiments.jobs import train_item, warm_up
from antireg.experiments.storage import Claim, StorageError, claim_run, is_done, remove_stale, write_run
from antireg.optimizers import resolve_checkpoints
from antireg.tracking import MlflowTracker

__all__ = ["Interrupted", "OutputError", "SweepError", "SweepResult", "plan", "run_sweep"]
make_tasks = make_work  # its old name, which tests import


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


def plan(
    cfg: ExperimentCfg,
    data_dir: str | Path | None = None,
    seeds: list[int] | None = None,
    fractions: list[float] | None = None,
    optimizers: list[str] | None = None,
    output_dir: str | Path = ".",
) -> list[RunSpec]:
    """The run specs of ``cfg`` after the ``--only_*`` filters; loads the data, and each
    learned optimizer's checkpoint (found under ``output_dir``), once, so that a missing or
    corrupt file fails before any run starts."""
    ds = cached_dataset(cfg.dataset.name, cfg.dataset.options, data_dir or default_data_dir())
    cfg = cfg.model_copy(update={"optimizers": resolve_checkpoints(cfg.optimizers, output_dir)})
    specs = select(expand(cfg, len(ds.y)), seeds, fractions, optimizers)
    if not specs:
        raise ConfigError(
            f"the filters select no runs: seeds {cfg.seeds}, fractions {cfg.fractions} and optimizers "
            f"{sorted(cfg.optimizers)} are available in this config"
        )
    return specs


class _Ledger:
    """What the sweep has done so far: runs trained and written here, failed runs (id →
    error), and the progress bar; and the one place that writes a returned work item."""

    def __init__(self, exp_dir: Path, bar: tqdm, tracker: MlflowTracker | None) -> None:
        self.exp_dir, self.bar, self.tracker = exp_dir, bar, tracker
        self.trained: set[str] = set()
        self.failures: dict[str, str] = {}

    def record(self, item: WorkItem, outcome: list | Exception, mine: set[str]) -> None:
        """Write the runs of ``item`` in ``mine`` (this sweep holds their claims) from the
        job's ``outcome``, or record its error for them. A :class:`StorageError` stops the sweep."""
        wanted = [s for s in item.specs if s.run_id in mine]
        if isinstance(outcome, StorageError):
            raise outcome
        if isinstance(outcome, Exception):
            self.failures.update({s.run_id: f"{type(outcome).__name__}: {outcome}" for s in wanted})
        else:
            outputs = dict(zip([s.run_id for s in item.specs], outcome))
            for spec in wanted:
                if write_run(spec, self.exp_dir, *outputs[spec.run_id]):
                    self.trained.add(spec.run_id)
                    if self.tracker is not None:
                        self.tracker.log(self.exp_dir / spec.run_id, *storage.read_run(self.exp_dir / spec.run_id))
        self.bar.update(len(wanted))


def _claim(exp_dir: Path, run_ids: Iterable[str], block: bool) -> dict[str, Claim]:
    """Claims on the runs of ``run_ids`` not finished meanwhile, taken in run-id order (so
    that sweeps waiting on each other's runs never deadlock); those another process holds
    are left out, unless ``block``, which waits for them."""
    claims = {}
    for run_id in sorted(run_ids):
        if (held := claim_run(exp_dir, run_id, block)) is None:
            continue
        if is_done(exp_dir / run_id):  # finished by another sweep while we looked
            held.release()
        else:
            claims[run_id] = held
    return claims


def _train(run_on: Executor, specs: list[RunSpec], todo: set[str], vectorise: bool, exp_dir: Path,
           job: partial, ledger: _Ledger) -> set[str]:
    """Claim what this sweep can of ``todo``, train it on ``run_on`` and write it; return the
    runs left to other sweeps that hold them. Closing the executor on a failed write
    cancels its other items."""
    claims = _claim(exp_dir, todo, block=False)
    try:
        with contextlib.closing(run_on.map(job, make_work(specs, set(claims), vectorise))) as outcomes:
            for item, outcome in outcomes:
                ledger.record(item, outcome, set(claims))
    finally:
        for held in claims.values():
            held.release()
    busy = {rid for rid in todo - set(claims) if not is_done(exp_dir / rid)}
    ledger.bar.update(len(todo) - len(claims) - len(busy))  # finished by another sweep before we could claim them
    return busy


def _wait_for(busy: set[str], specs: list[RunSpec], vectorise: bool, exp_dir: Path, job: partial, ledger: _Ledger) -> None:
    """Train here, item by item, the runs other sweeps held: each item's claims are waited
    for, and what they left unfinished trains (a batch trains whole, as it was planned)."""
    for item in make_work(specs, busy, vectorise):
        waited = [s.run_id for s in item.specs if s.run_id in busy]
        claims = _claim(exp_dir, waited, block=True)
        try:
            if claims:
                [(_, outcome)] = LocalExecutor().map(job, [item])
                ledger.record(item, outcome, set(claims))
        finally:
            for held in claims.values():
                held.release()
        ledger.bar.update(len(waited) - len(claims))  # finished by the sweeps that held them


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
    vectorise: bool = True,
    tracking: str | None = None,
    tracking_uri: str | None = None,
) -> SweepResult:
    """Run every missing run of the (filtered) grid, then write ``results/``.

    ``executor``: ``local``, ``process`` (``jobs`` workers) or ``ray``; by default
    ``process`` when ``jobs`` > 1, else ``local``. ``device``: ``cpu``, ``cuda`` or
    ``auto`` (default: the config's). ``vectorise`` (default on): train runs that
    share an architecture, a training size, an optimizer and a gradient rule together as
    one stacked model (:func:`~antireg.experiments.grid.group_key`); off, one by one.
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
    specs = plan(cfg, data_dir, seeds, fractions, optimizers, output_dir)
    check_model_fits(cfg, specs[0], data_dir, (min(MAX_GROUP, len(specs)) if vectorise else 1)
                     * (jobs if executor == "process" else 1))  # fmt: skip
    storage.check_outputs(output_dir, cfg.experiment)
    exp_dir = storage.experiments_dir(output_dir).resolve()
    if removed := remove_stale(exp_dir):
        print(f"antireg: removed {removed} unfinished run folder(s) of killed writers in {exp_dir}", file=sys.stderr)
    todo = set()
    for spec in specs:
        if (problem := storage.problem(exp_dir / spec.run_id)) is not None:
            todo.add(spec.run_id)
            if (exp_dir / spec.run_id).exists():
                print(f"antireg: {exp_dir / spec.run_id} is not a finished run ({problem}); re-running it",
                      file=sys.stderr)
    if executor == "process" and len(make_work(specs, todo, vectorise)) <= 1:
        run_on = make_executor("local")  # a pool for one item only costs its start-up
    if not run_on.remote:
        warm_up(specs[0], data_dir)
    tracker = MlflowTracker(cfg.experiment, output_dir, tracking_uri) if tracking == "mlflow" else None
    job = partial(train_item, data_dir=data_dir, device=device)
    try:
        with _Progress(total=len(todo), desc=cfg.experiment, unit="run", disable=not progress or not todo) as bar:
            ledger = _Ledger(exp_dir, bar, tracker)
            if busy := _train(run_on, specs, todo, vectorise, exp_dir, job, ledger):
                print(f"\nantireg: waiting for {len(busy)} run(s) that another sweep on {exp_dir} is training",
                      file=sys.stderr)
                _wait_for(busy, specs, vectorise, exp_dir, job, ledger)
        results = storage.results_dir(output_dir)
        with storage.results_lock(results, cfg.experiment):  # one writer at a time: both files from one set of runs
            runs = aggregate.collect(specs, exp_dir)
            summary = aggregate.summarize(runs) if not runs.empty else pd.DataFrame()
            if not runs.empty:
                storage.write_results(runs, summary, results, cfg.experiment)
                storage.write_sweep_config(results, cfg.experiment, cfg.model_dump(mode="json"))
    except StorageError as exc:  # write_run removed its temporary folder
        raise OutputError(_not_saved(exc, specs, exp_dir)) from None
    except KeyboardInterrupt as exc:
        with contextlib.suppress(KeyboardInterrupt):  # a write cut short; a second Ctrl-C: nearly done anyway
            remove_stale(exp_dir)
        done = sum(is_done(exp_dir / s.run_id) for s in specs)
        signum = getattr(exc, "signum", signal.SIGINT)
        raise Interrupted(
            f"{'interrupted' if signum == signal.SIGINT else 'terminated'}: {done} of {len(specs)} runs of "
            f"{cfg.experiment} are finished and saved in {exp_dir}; run the same command again to resume "
            f"(it trains the other {len(specs) - done})", signum,
        ) from None
    if ledger.failures:
        listing = "\n".join(f"  {rid}: {msg}" for rid, msg in sorted(ledger.failures.items()))
        raise SweepError(f"{len(ledger.failures)} of {len(todo)} runs failed (the others are saved; re-run to "
                         f"retry):\n{listing}")  # fmt: skip
    n_elsewhere = len(todo) - len(ledger.trained) - len(ledger.failures)
    return SweepResult(runs, summary, *storage.results_paths(results, cfg.experiment), len(ledger.trained),
                       len(specs) - len(todo), n_elsewhere)  # fmt: skip


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
