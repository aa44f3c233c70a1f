"""Where a report's numbers come from: the antireg version and git commit, the command,
each experiment's resolved config (with its SHA-256), the machine, library versions and
wall time — what a reader needs to cite the results or run them again."""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pandas as pd

import antireg
from antireg.experiments.storage import config_path
from antireg.report.results import Experiment
from antireg.report.render import KeyValueTable

LIBRARIES = ("torch", "numpy", "scipy", "pandas", "matplotlib")


@dataclass
class ConfigRecord:
    """One experiment's config file as the report shows it."""

    experiment: str
    path: Path
    sha256: str  # of the file's bytes, so ``sha256sum PATH`` gives the same
    text: str
    kind: str  # "resolved config", or "config of run <id>" where the sweep's was not saved


@dataclass
class Provenance:
    version: str
    commit: str | None  # None when antireg does not run from a git checkout
    dirty: bool | None  # tracked files differ from the commit
    command: str | None  # None when the report was built from Python
    date: str
    machine: str
    cpu_count: int | None
    python: str
    libraries: dict[str, str]
    configs: list[ConfigRecord]
    runs_wall_s: float  # sum of the sweeps' runs' own training time (wall_s)


def git_state(where: Path | None = None) -> tuple[str | None, bool | None]:
    """(``git rev-parse HEAD``, dirty) of the checkout antireg's package is tracked in, or
    (None, None) when it is not (an installed wheel, no git): the package's own
    ``__init__.py`` must be tracked, so an install inside some other repository is not mistaken
    for a checkout."""
    where = where or Path(antireg.__file__).resolve().parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=20, check=True)
        return done.stdout.strip()

    try:
        git("ls-files", "--error-unmatch", "__init__.py")
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _record(experiment: str, path: Path, kind: str) -> ConfigRecord:
    data = path.read_bytes()
    return ConfigRecord(experiment, path, hashlib.sha256(data).hexdigest(), data.decode("utf-8", "replace"), kind)


def config_records(results_dir: Path, exps: list[Experiment], papers: list[str]) -> list[ConfigRecord]:
    """Each experiment's resolved config beside its results (``results/NAME.config.json``);
    for a sweep run from Python, which does not save it, the config of its first run."""
    out = []
    for name in [e.name for e in exps] + papers:
        path = config_path(results_dir, name)
        if path.is_file():
            out.append(_record(name, path, "resolved config"))
    saved = {r.experiment for r in out}
    for exp in exps:
        if exp.name in saved or exp.experiments_dir is None:
            continue
        for run_id in exp.runs["run_id"]:
            path = exp.experiments_dir / str(run_id) / "config.json"
            if path.is_file():
                out.append(_record(exp.name, path, f"config of run {run_id} (the sweep's resolved config was not saved)"))
                break
    return out


def collect(results_dir: Path, exps: list[Experiment], papers: list[str], command: list[str] | None) -> Provenance:
    commit, dirty = git_state()
    wall = [e.runs["wall_s"] for e in exps if "wall_s" in e.runs]
    return Provenance(
        version=antireg.__version__, commit=commit, dirty=dirty,
        command=None if command is None else shlex.join(command),
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        machine=f"{platform.platform()} ({platform.machine()})", cpu_count=os.cpu_count(),
        python=platform.python_version(), libraries={n: _version(n) for n in LIBRARIES},
        configs=config_records(results_dir, exps, papers),
        runs_wall_s=float(pd.concat(wall).sum()) if wall else 0.0,
    )  # fmt: skip


def table(p: Provenance, report_s: float) -> KeyValueTable:
    """The header's key/value table; ``report_s``: the report's own time until it was rendered."""
    commit = "not a git checkout" if p.commit is None else p.commit + (" (uncommitted changes)" if p.dirty else "")
    rows = [
        ["antireg", p.version], ["git commit", commit],
        ["command", p.command or "write_report() called from Python"], ["date (UTC)", p.date],
        ["machine", p.machine], ["CPU count", str(p.cpu_count)], ["Python", p.python],
        *[[name, v] for name, v in p.libraries.items()],
        ["wall time", f"runs {p.runs_wall_s:.1f} s (sum of their wall_s); report {report_s:.1f} s"],
        *[[f"config {r.experiment}", f"sha256 {r.sha256} ({r.path.name}, {r.kind.split(' (')[0]})"] for r in p.configs],
    ]  # fmt: skip
    return KeyValueTable("Where these results come from", ["", "value"], rows)
