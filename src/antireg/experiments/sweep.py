"""A sweep: expand the grid, run what is missing, aggregate.

Executors differ only in where ``runner.execute`` runs; every one writes the
same files, so resume is "skip run ids whose directory is finished".
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from antireg.data import default_data_dir, load_dataset
from antireg.experiments import aggregate
from antireg.experiments.config import ConfigError, ExperimentCfg
from antireg.experiments.grid import RunSpec, expand, select
from antireg.experiments.runner import dataset_for, execute, is_done


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
    ds = load_dataset(cfg.dataset.name, data_dir or default_data_dir(), **cfg.dataset.options)
    specs = select(expand(cfg, len(ds.y)), seeds, fractions, optimizers)
    if not specs:
        raise ConfigError(
            f"the filters select no runs: seeds {cfg.seeds}, fractions {cfg.fractions} and optimizers "
            f"{sorted(cfg.optimizers)} are available in this config"
        )
    return specs


def _run_local(todo: list[RunSpec], exp_dir: Path, data_dir: Path, bar: tqdm) -> dict[str, str]:
    failures = {}
    for spec in todo:
        try:
            execute(spec, exp_dir, data_dir)
        except Exception as exc:  # noqa: BLE001 - one broken run must not stop the sweep
            failures[spec.run_id] = f"{type(exc).__name__}: {exc}"
        bar.update()
    return failures


def _run_pool(todo: list[RunSpec], exp_dir: Path, data_dir: Path, bar: tqdm, jobs: int) -> dict[str, str]:
    failures = {}
    # spawn, not fork: forking a process that already ran torch can deadlock its thread pools
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(execute, spec, exp_dir, data_dir): spec for spec in todo}
        for fut in as_completed(futures):
            if fut.exception() is not None:
                exc = fut.exception()
                failures[futures[fut].run_id] = f"{type(exc).__name__}: {exc}"
            bar.update()
    return failures


def run_sweep(
    cfg: ExperimentCfg,
    output_dir: str | Path = ".",
    data_dir: str | Path | None = None,
    seeds: list[int] | None = None,
    fractions: list[float] | None = None,
    optimizers: list[str] | None = None,
    jobs: int = 1,
    progress: bool = True,
) -> SweepResult:
    """Run every missing run of the (filtered) grid, then write ``results/``."""
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    output_dir = Path(output_dir)
    data_dir = Path(data_dir or default_data_dir())
    specs = plan(cfg, data_dir, seeds, fractions, optimizers)
    _check_writable(output_dir)
    exp_dir = output_dir / "experiments"
    todo = [s for s in specs if not is_done(exp_dir / s.run_id)]
    with tqdm(total=len(todo), desc=cfg.experiment, unit="run", disable=not progress or not todo) as bar:
        if jobs == 1 or len(todo) <= 1:
            dataset_for(specs[0], data_dir)  # warm the cache outside the timed runs
            failures = _run_local(todo, exp_dir, data_dir, bar)
        else:
            failures = _run_pool(todo, exp_dir, data_dir, bar, min(jobs, os.cpu_count() or jobs))
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
