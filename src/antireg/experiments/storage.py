"""Where a sweep's files live, and the one way they are written: the only module that
knows file names and the layout of an output folder, and the only write path of every
executor (the sweep's driver writes what the workers return).

Layout of an output folder::

    experiments/<run id>/         a finished run: config.json, log.csv, diagnostics.json,
                                  outputs_test.npy, [reliability.json], metrics.json (last)
    experiments/.tmp-<id>@<host>@<pid>-<random>/   a run directory being written
    experiments/.lock-<run id>    held (flock) by the one process training that run
    results/<E>.csv, results/<E>_summary.csv       written under results/.lock-<E>
    results/<E>.config.json       the resolved config (a paper experiment's, or a sweep's from `antireg run`)

Guarantees, for any number of sweeps on one folder:

- a run is trained by one process at a time: :func:`claim` takes an exclusive
  ``flock`` on its lock file, which the kernel releases when the holder exits,
  however it dies, so a killed sweep never leaves a run stuck;
- a finished run directory is never deleted or replaced: :func:`write_run` builds
  the directory under a temporary name and renames it into place only when no
  finished run holds the name (an unfinished one, from a crash, is moved aside first);
- a run counts as finished only when :func:`finished_metrics` finds it complete and
  consistent: its metrics name its own id and hold the expected keys, its config and
  artefacts load;
- every file is written to a temporary file in the same folder and renamed
  (:func:`atomic_file`); a failed write removes its temporary file and raises
  :class:`StorageError` naming the path, so a full disk stops the sweep with one message;
- files and folders get the modes the umask asks for (``mkstemp``/``mkdtemp`` alone
  would leave them 0600/0700).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import json
import math
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from antireg.errors import ConfigError

if TYPE_CHECKING:  # storage is below the planning, which lopt's checkpoints reach through antireg.optimizers
    from antireg.experiments.grid import RunSpec

CONFIG_FILE, LOG_FILE, DIAGNOSTICS_FILE, OUTPUTS_FILE, RELIABILITY_FILE, METRICS_FILE = (
    "config.json", "log.csv", "diagnostics.json", "outputs_test.npy", "reliability.json", "metrics.json")
RUN_FILES = (CONFIG_FILE, LOG_FILE, DIAGNOSTICS_FILE, OUTPUTS_FILE, METRICS_FILE)  # reliability.json: classification
DIAGNOSTICS = ("lambda_n", "lambda_requested", "clamped", "lambda_bound", "df_per_n", "r_clip", "r_proj",
               "diverged", "divergence", "steps", "best_epoch")  # fmt: skip
# What aggregation and the report read from every run, with the types they need; a
# metrics.json without them is not a finished run (tampered, truncated by hand, foreign).
_STRINGS = ("experiment", "dataset", "method", "ablation", "optimizer", "rule_params", "run_id", "condition_id")
_INTS = ("seed", "n_train", "steps")
_NUMBERS = ("fraction", "lambda0", "decay", "lambda_n", "r_clip", "r_proj", "wall_s")
# metrics renamed since runs were first written (old → new): a resumed sweep reads its old runs
RENAMED_METRICS = {"alpha": "decay"}
TMP_PREFIX, LOCK_PREFIX = ".tmp-", ".lock-"
# a run directory being written: .tmp-<run id>@<host>@<pid>-<random>, so that the
# directories of killed writers can be told from those of live ones (remove_stale)
_TMP_NAME = re.compile(r"^\.tmp-.+@(?P<host>[^@]+)@(?P<pid>\d+)-")


class StorageError(Exception):
    """An output could not be written (disk full, read-only, not a folder): the path and the reason."""

    def __init__(self, path: str | Path, exc: OSError) -> None:
        super().__init__(Path(path), exc)  # the arguments themselves: a pool worker's error pickles back whole
        self.path, self.errno, self.reason = Path(path), exc.errno, exc.strerror or str(exc)

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"


# -- modes ----------------------------------------------------------------------------------


def umask() -> int:
    """The process umask, read without changing it where Linux shows it (os.umask can
    only read it by setting it, which races with other threads creating files)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _follow_umask(path: str | Path, directory: bool = False) -> None:
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


# -- atomic files ---------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path``,
    on any error it is removed. An OSError becomes :class:`StorageError`."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise StorageError(path, exc) from None
    try:
        with os.fdopen(fd, mode, **({"newline": "", "encoding": "utf-8"} if "b" not in mode else {})) as fh:
            yield fh
        _follow_umask(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StorageError(path, exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_file(path) as fh:
        fh.write(text)


def write_table(path: str | Path, frame: pd.DataFrame) -> Path:
    """Write ``frame`` as a CSV file (no index) at ``path``, atomically (:func:`atomic_file`)."""
    with atomic_file(path) as fh:
        frame.to_csv(fh, index=False)
    return Path(path)


# -- layout ---------------------------------------------------------------------------------


def experiments_dir(output_dir: str | Path) -> Path:
    """Where a sweep's run directories lie: ``<output>/experiments``."""
    return Path(output_dir) / "experiments"


def results_dir(output_dir: str | Path) -> Path:
    """Where a sweep's tables lie: ``<output>/results``."""
    return Path(output_dir) / "results"


def results_paths(results: str | Path, experiment: str) -> tuple[Path, Path]:
    """An experiment's runs table and summary: ``results/<E>.csv``, ``results/<E>_summary.csv``."""
    return Path(results) / f"{experiment}.csv", Path(results) / f"{experiment}_summary.csv"


def write_results(runs: pd.DataFrame, summary: pd.DataFrame, results: str | Path, experiment: str) -> tuple[Path, Path]:
    """Write an experiment's runs table (sorted by method, ablation, optimizer, seed and
    fraction, those columns first) and summary; each file atomically."""
    runs_csv, summary_csv = results_paths(results, experiment)
    try:
        runs_csv.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(runs_csv.parent, exc) from None
    order = ["experiment", "dataset", "method", "ablation", "optimizer", "seed", "fraction", "n_train"]
    write_table(runs_csv, runs[order + [c for c in runs.columns if c not in order]].sort_values(order[2:7]))
    write_table(summary_csv, summary)
    return runs_csv, summary_csv


def results_lock(results: str | Path, experiment: str) -> "Claim":
    """Wait for, and hold, the lock under which an experiment's results are written: the
    pair of files then comes from one set of runs."""
    held = claim(Path(results) / f"{LOCK_PREFIX}{experiment}", block=True)
    assert held is not None  # a blocking claim always returns one
    return held


def check_outputs(output_dir: str | Path, experiment: str) -> None:
    """Before anything trains: the output folders can be written, and results/<E>.csv
    is not a paper experiment's table."""
    check_writable(output_dir)
    check_writable(experiments_dir(output_dir), "experiments folder")
    check_writable(results_dir(output_dir), "results folder")
    for owner, tables in paper_tables(results_dir(output_dir)).items():
        if {experiment, f"{experiment}_summary"} & set(tables):
            raise ConfigError(f"results/{experiment}.csv in {output_dir} holds a table of paper experiment "
                              f"{owner!r}; give the sweep another experiment name or another --output-dir")


def check_writable(path: str | Path, what: str = "output directory") -> None:
    """Create ``path`` if needed and check that a file can be made in it: a ConfigError
    naming the folder and the reason otherwise (before anything is trained)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        reason = "not a directory" if path.exists() and not path.is_dir() else exc.strerror
        raise ConfigError(f"{what} {path} is not writable ({reason}); pass --output-dir DIR") from None


def paper_configs(results_dir: str | Path) -> list[dict]:
    """The resolved configs (``results/NAME.config.json`` with a ``paper`` key) of the paper
    experiments whose results are in ``results_dir``; unreadable files are skipped."""
    out = []
    for path in sorted(Path(results_dir).glob("*.config.json")):
        try:
            conf = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(conf, dict) and "paper" in conf:
            out.append({"experiment": path.name[: -len(".config.json")], **conf})
    return out


def config_path(results_dir: str | Path, experiment: str) -> Path:
    """Where an experiment's resolved config lies beside its results: ``results/NAME.config.json``
    (a paper experiment's has a ``paper`` key, a sweep's does not)."""
    return Path(results_dir) / f"{experiment}.config.json"


def write_sweep_config(results_dir: str | Path, experiment: str, config: dict) -> Path:
    """Write a sweep's resolved config (after ``--set`` overrides) beside its results (the
    sweep does, with its CSVs), for the report's provenance."""
    path = config_path(results_dir, experiment)
    atomic_write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return path


def paper_tables(results_dir: str | Path) -> dict[str, list[str]]:
    """The tables that paper experiments wrote into ``results_dir``, by experiment name:
    their CSVs are not sweep results."""
    found = {}
    for conf in paper_configs(results_dir):
        name = str(conf["experiment"])
        tables = conf.get("tables", [name])
        found[name] = [str(t) for t in tables] if isinstance(tables, list) else [name]
    return found


# -- claims ---------------------------------------------------------------------------------


class Claim:
    """An exclusive ``flock`` on one lock file, released by :meth:`release` or by the
    kernel when the process exits. The file is removed while still held, so that the
    next claimant finds either the held file or none: after locking, a claimant checks
    that the path still names the file it locked, and retries otherwise."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim(path: str | Path, block: bool = False) -> Claim | None:
    """Lock ``path`` (created if absent): a :class:`Claim`, or None when another
    process holds it and ``block`` is false. With ``block``, waits for the holder."""
    path = Path(path)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise StorageError(path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return Claim(path, fd)
        os.close(fd)  # the holder removed it as we waited: lock the file now at the path


def run_lock(experiments_dir: str | Path, run_id: str) -> Path:
    return Path(experiments_dir) / f"{LOCK_PREFIX}{run_id}"


def claim_run(experiments_dir: str | Path, run_id: str, block: bool = False) -> Claim | None:
    """:func:`claim` on the lock of run ``run_id``; the experiments folder is created."""
    experiments_dir = Path(experiments_dir)
    try:
        experiments_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(experiments_dir, exc) from None
    return claim(run_lock(experiments_dir, run_id), block)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists (signal 0 checks without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def remove_stale(experiments_dir: str | Path) -> int:
    """Remove what writers on this host left when they were killed: their temporary
    run directories, and lock files nobody holds; return how many directories. A
    directory of a live process (another sweep writing now), of another host, or
    without host and pid in its name is left alone. POSIX only."""
    experiments_dir = Path(experiments_dir)
    if os.name != "posix" or not experiments_dir.is_dir():
        return 0
    host, removed = socket.gethostname(), 0
    for path in experiments_dir.glob(f"{TMP_PREFIX}*"):
        match = _TMP_NAME.match(path.name)
        if match and match["host"] == host and not _alive(int(match["pid"])):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    for path in experiments_dir.glob(f"{LOCK_PREFIX}*"):
        with contextlib.suppress(StorageError):
            if (held := claim(path)) is not None:
                held.release()  # nobody held it: removed
    return removed


# -- run directories ------------------------------------------------------------------------


def read_metrics(run_dir: Path) -> dict:
    """A run's metrics, under their current names (:data:`RENAMED_METRICS`)."""
    metrics = json.loads((Path(run_dir) / METRICS_FILE).read_text())
    if isinstance(metrics, dict):
        metrics = {RENAMED_METRICS.get(k, k) if RENAMED_METRICS.get(k) not in metrics else k: v for k, v in metrics.items()}
    return metrics


def read_config(run_dir: str | Path) -> dict:
    """A run's resolved spec, with its ``run_id`` and ``condition_id``."""
    return json.loads((Path(run_dir) / CONFIG_FILE).read_text())


def read_outputs(run_dir: str | Path) -> np.ndarray:
    """A run's raw test outputs (logits for classification)."""
    return np.load(Path(run_dir) / OUTPUTS_FILE, allow_pickle=False)


def read_reliability(run_dir: str | Path) -> dict | None:
    """A classification run's reliability diagram, or None where it has none."""
    path = Path(run_dir) / RELIABILITY_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def read_run(run_dir: str | Path) -> tuple[dict, dict, list[dict]]:
    """A finished run's config (:func:`read_config`), metrics, and per-epoch log (values
    as the CSV's strings)."""
    run_dir = Path(run_dir)
    with (run_dir / LOG_FILE).open(newline="") as fh:
        history = list(csv.DictReader(fh))
    return read_config(run_dir), read_metrics(run_dir), history


def _is_number(v: object) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def problem(run_dir: str | Path) -> str | None:
    """Why ``run_dir`` is not a finished run (None when it is): a file missing or
    unreadable, metrics of another run or of the wrong shape, artefacts that do not load."""
    run_dir = Path(run_dir)
    try:
        metrics, config = read_metrics(run_dir), read_config(run_dir)
        json.loads((run_dir / DIAGNOSTICS_FILE).read_text())
        outputs = read_outputs(run_dir)
        if not (run_dir / LOG_FILE).is_file():
            return f"{LOG_FILE} is missing"
    except (OSError, ValueError, EOFError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if not isinstance(metrics, dict) or not isinstance(config, dict):
        return "metrics.json or config.json is not a JSON object"
    if metrics.get("run_id") != run_dir.name or config.get("run_id") != run_dir.name:
        return f"it holds run {metrics.get('run_id')!r}, not {run_dir.name!r}"
    bad = [k for k in _STRINGS if not isinstance(metrics.get(k), str)]
    bad += [k for k in _INTS if not isinstance(metrics.get(k), int) or isinstance(metrics.get(k), bool)]
    bad += [k for k in _NUMBERS + DIAGNOSTICS if k not in metrics or not _is_number(metrics[k])
            and k not in ("clamped", "diverged", "divergence")]  # fmt: skip
    if not any(k.startswith("val_") for k in metrics):
        bad.append("val_*")
    if bad:
        return f"metrics.json lacks or mistypes {', '.join(bad)}"
    if outputs.ndim != 2 or outputs.dtype.kind != "f":
        return f"outputs_test.npy holds a {outputs.dtype} array of shape {outputs.shape}, not test outputs"
    return None


def finished_metrics(run_dir: str | Path) -> dict | None:
    """The metrics of a finished run (:func:`problem` finds nothing wrong), or None."""
    return None if problem(run_dir) is not None else read_metrics(Path(run_dir))


def is_done(run_dir: str | Path) -> bool:
    return problem(run_dir) is None


def _json(obj: dict) -> str:
    """Strict JSON: a non-finite float (a metric undefined for this run, or one that
    overflowed) becomes null."""
    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in obj.items()}
    return json.dumps(clean, indent=2, allow_nan=False)


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["epoch"])
        writer.writeheader()
        writer.writerows(rows)


def write_run(spec: RunSpec, experiments_dir: str | Path, metrics: dict, history: list[dict], artefacts: dict) -> bool:
    """Write a trained run's directory: build it under a temporary name, then rename it
    into place. The caller holds the run's :func:`claim_run`. Returns False, writing
    nothing, when a finished run already holds the name (it is never replaced); an
    unfinished directory there (a crash's) is moved aside and removed first. Raises
    :class:`StorageError` when a file cannot be written; the temporary directory is
    removed either way."""
    experiments_dir = Path(experiments_dir)
    run_dir = experiments_dir / spec.run_id
    if is_done(run_dir):
        return False
    prefix = f"{TMP_PREFIX}{spec.run_id}@{socket.gethostname()}@{os.getpid()}-"
    current = experiments_dir
    try:
        experiments_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=experiments_dir))
    except OSError as exc:
        raise StorageError(current, exc) from None
    try:
        _follow_umask(tmp, directory=True)
        config = {"run_id": spec.run_id, "condition_id": spec.condition_id, **spec.model_dump(mode="json")}
        current = tmp / CONFIG_FILE
        current.write_text(_json(config))
        current = tmp / LOG_FILE
        _write_csv(current, history)
        current = tmp / DIAGNOSTICS_FILE
        current.write_text(_json({k: metrics[k] for k in DIAGNOSTICS}))
        current = tmp / OUTPUTS_FILE
        np.save(current, artefacts["outputs_test"])
        if "reliability" in artefacts:
            current = tmp / RELIABILITY_FILE
            current.write_text(json.dumps(artefacts["reliability"], indent=2))
        current = tmp / METRICS_FILE
        current.write_text(_json(metrics))
        current = run_dir
        if run_dir.exists() or run_dir.is_symlink():  # an unfinished directory from a crash: aside, then away
            aside = Path(tempfile.mkdtemp(prefix=prefix, dir=experiments_dir))
            os.replace(run_dir, aside / "old")
            shutil.rmtree(aside, ignore_errors=True)
        os.rename(tmp, run_dir)  # fails if anything appeared at the name meanwhile: never replaces
        return True
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and current == run_dir:
            return False
        raise StorageError(run_dir / current.relative_to(tmp) if current.is_relative_to(tmp) else current, exc) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
