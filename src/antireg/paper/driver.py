"""Driver of paper experiments: cells cached as JSON, resumable, optionally in a process pool.

Protocol (shared by :mod:`antireg.paper.v4` and :mod:`antireg.paper.kobak`). An experiment object has

- ``Options``: a strict pydantic model of the config's ``options`` (unknown keys refused);
- ``cells(cfg, data_dir) -> list[dict]``: JSON-able, deterministic parameters of each unit of work
  (e.g. scenario × replication chunk), seeds included;
- ``compute(cell, data_dir) -> list[dict]``: pure, seeded only from the cell; returns table rows;
- ``tables(rows: DataFrame, cfg) -> dict[str, DataFrame]``: table name → table; the main one is
  named ``cfg.experiment`` (extras ``NAME_optimum``, ``NAME_by_fraction``, ...);
- ``figures(tables, out_dir) -> list[(png, svg, caption)]`` for the report.

:func:`run_paper` stores each cell's rows in ``output_dir/experiments/NAME/<cell-hash>.json``
(atomic: complete or absent), skips finished cells, runs the others (``jobs`` processes give the
same results as one), then writes ``output_dir/results/<table>.csv`` and ``results/NAME.config.json``.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from antireg.experiments.storage import atomic_write_text
from antireg.paper.config import PaperCfg


@dataclass
class PaperResult:
    name: str
    tables: dict[str, pd.DataFrame]
    paths: dict[str, Path]
    computed: int
    cached: int
    wall_s: float
    config_path: Path = field(default=Path())


def cell_hash(cell: dict) -> str:
    """Stable name of a cell's cache file (sha1 of its canonical JSON)."""
    return hashlib.sha1(json.dumps(cell, sort_keys=True).encode()).hexdigest()[:16]


def _jsonable(obj: Any) -> Any:
    """numpy scalars (np.bool_, np.float64, ...) as their Python values, so rows may hold them."""
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"a row value of type {type(obj).__name__} is not JSON-able")


def _compute(kind: str, cell: dict, data_dir: str | None) -> list[dict]:
    from antireg.paper import EXPERIMENTS

    return EXPERIMENTS[kind].compute(cell, data_dir)


def _read_cell(path: Path) -> list[dict] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))["rows"]
    except (OSError, ValueError, KeyError):
        return None  # absent or unreadable: recompute


def plan_paper(cfg: PaperCfg, output_dir: str | Path, data_dir: str | Path | None = None) -> tuple[int, int]:
    """(cells, cells already cached) of a paper config, for ``--dry-run``; writes nothing."""
    from antireg.paper import EXPERIMENTS

    cells = EXPERIMENTS[cfg.paper].cells(cfg, None if data_dir is None else str(data_dir))
    cache = Path(output_dir) / "experiments" / cfg.experiment
    return len(cells), sum(_read_cell(cache / f"{cell_hash(c)}.json") is not None for c in cells)


def run_paper(cfg: PaperCfg, output_dir: str | Path, data_dir: str | Path | None = None,
              jobs: int = 1, progress: bool = True) -> PaperResult:
    """Run (or resume) a validated paper config; see the module docstring for the layout."""
    from antireg import __version__
    from antireg.paper import EXPERIMENTS

    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    start = time.perf_counter()
    exp = EXPERIMENTS[cfg.paper]
    out = Path(output_dir)
    ddir = None if data_dir is None else str(data_dir)
    cells = exp.cells(cfg, ddir)
    cache = out / "experiments" / cfg.experiment
    cache.mkdir(parents=True, exist_ok=True)
    rows: dict[int, list[dict]] = {}
    todo = []
    for i, cell in enumerate(cells):
        got = _read_cell(cache / f"{cell_hash(cell)}.json")
        if got is None:
            todo.append(i)
        else:
            rows[i] = got

    def store(i: int, result: list[dict]) -> None:
        atomic_write_text(cache / f"{cell_hash(cells[i])}.json",
                          json.dumps({"cell": cells[i], "rows": result}, allow_nan=True, default=_jsonable))
        rows[i] = result
        if progress:
            print(f"\r{cfg.experiment}: {len(rows)}/{len(cells)} cells", end="", flush=True)

    if jobs == 1 or len(todo) <= 1:
        for i in todo:
            store(i, exp.compute(cells[i], ddir))
    else:
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo))) as pool:
            futures = {i: pool.submit(_compute, cfg.paper, cells[i], ddir) for i in todo}
            try:
                for i, fut in futures.items():
                    store(i, fut.result())
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    if progress and todo:
        print()
    frame = pd.DataFrame([r for i in range(len(cells)) for r in rows[i]])
    tables = exp.tables(frame, cfg)
    res_dir = out / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, table in tables.items():
        paths[name] = res_dir / f"{name}.csv"
        atomic_write_text(paths[name], table.to_csv(index=False))
    conf_path = res_dir / f"{cfg.experiment}.config.json"
    atomic_write_text(conf_path, json.dumps(
        {**cfg.model_dump(mode="json"), "antireg_version": __version__, "tables": sorted(tables)}, indent=2))
    return PaperResult(cfg.experiment, tables, paths, len(todo), len(cells) - len(todo),
                       time.perf_counter() - start, conf_path)
