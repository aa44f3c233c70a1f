"""Behaviour pins: refactors must not move run ids or results.

The goldens in ``tests/golden/pins/`` were written by the code before the restructuring
of issue 14 (commit 40c3a39) with ``python tests/test_behaviour_pins.py``:

- ``run_ids.json``: the sorted run ids of every packaged sweep config (a resumed sweep
  finds its finished runs only when these stay put);
- ``<config>-<trainer>.csv``: the runs table of a small grid of ``concrete_reg``,
  ``digits_cls`` and ``concrete_relatives``, trained one by one and (AR/L2/ERM) as one
  stacked model. Every column except the wall times must match: text, integer and
  boolean columns exactly, float columns to ``FLOAT_RTOL``.

Why not every float bit for bit: on the machine that wrote them they are (set
``ANTIREG_PINS_EXACT=1`` to demand it when checking a refactor there), but the float64
evaluation (metrics, the spectral bound) runs through numpy's BLAS/LAPACK, whose kernels
depend on the CPU: on another AMD EPYC the metrics moved by up to 1.9e-7 relative
(an R² near zero amplifies a 5e-8 change of the MSE) and the bound by 1e-14, with every
training column identical. A change of behaviour (an operation reordered in training, a
different checkpoint, a λ off by its margin) moves them by far more.

A renamed results column is compared under its new name through ``RENAMED``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

GOLDEN = Path(__file__).parent / "golden" / "pins"
# old column name → new column name, for columns renamed since the goldens were written
RENAMED: dict[str, str] = {"alpha": "decay", "rho": "output_scale_ratio"}
UNTIMED = ("wall_s",)
FLOAT_RTOL = 1e-6  # float32 has ulp 6e-8: sixteen ulps, five times the largest cross-CPU difference seen

# (config, trainer, overrides, seeds, fractions, optimizers)
SMALL_GRIDS = [
    ("concrete_reg", "sequential", ["training.epochs=15", "ar.lambda0=[0.001,0.1]"], [0, 1], [0.05, 0.2], None),
    ("concrete_reg", "vectorised", ["training.epochs=15", "ar.lambda0=[0.001,0.1]"], [0, 1], [0.05, 0.2], None),
    ("digits_cls", "sequential", ["training.epochs=2", "ar.lambda0=[0.001,0.1]"], [0], [0.05], None),
    ("digits_cls", "vectorised", ["training.epochs=2", "ar.lambda0=[0.001,0.1]"], [0], [0.05], None),
    ("concrete_relatives", "sequential", ["training.epochs=10"], [0], [0.05], ["sgd"]),
]


def _sweep_configs() -> list[str]:
    from antireg.experiments.config import packaged_configs
    from antireg.paper.config import is_paper_config

    return [n for n in packaged_configs() if not n.startswith("lopt_") and not is_paper_config(n)]


def run_ids(data_dir: str) -> dict[str, dict]:
    """Per packaged sweep config: how many runs, the sha256 of its sorted run ids, the first three."""
    from antireg.experiments.config import load_config
    from antireg.experiments.grid import expand
    from antireg.experiments.runner import cached_dataset

    out = {}
    for name in _sweep_configs():
        cfg = load_config(name)
        try:
            n_total = len(cached_dataset(cfg.dataset.name, cfg.dataset.options, data_dir).y)
        except Exception:  # a data set this machine does not hold (CIFAR-10): pinned by size instead
            n_total = 60000
        ids = sorted(s.run_id for s in expand(cfg, n_total))
        out[name] = {"n": len(ids), "sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(), "first": ids[:3]}
    return out


def small_grid(name, trainer, overrides, seeds, fractions, optimizers, out: Path, data_dir: str) -> Path:
    from antireg.experiments.config import load_config
    from antireg.experiments.sweep import run_sweep

    cfg = load_config(name, overrides=overrides)
    result = run_sweep(cfg, out, data_dir, seeds, fractions, optimizers, progress=False,
                       vectorise=trainer == "vectorised")  # fmt: skip
    return Path(result.runs_csv)


def _comparable(df: pd.DataFrame) -> pd.DataFrame:
    df = df.rename(columns=RENAMED)
    df = df[sorted(c for c in df.columns if not c.startswith(UNTIMED))]
    return df.sort_values("run_id").reset_index(drop=True)


def _data_dir() -> str:
    from antireg.data import default_data_dir

    return str(default_data_dir())


def test_run_ids_of_packaged_configs_unchanged():
    want = json.loads((GOLDEN / "run_ids.json").read_text())
    got = run_ids(_data_dir())
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], name


@pytest.mark.parametrize("grid", SMALL_GRIDS, ids=[f"{g[0]}-{g[1]}" for g in SMALL_GRIDS])
def test_small_grid_results_unchanged(grid, tmp_path):
    name, trainer = grid[:2]
    want = _comparable(pd.read_csv(GOLDEN / f"{name}-{trainer}.csv"))
    got = _comparable(pd.read_csv(small_grid(*grid, tmp_path, _data_dir())))
    assert list(got.columns) == list(want.columns)
    if os.environ.get("ANTIREG_PINS_EXACT") == "1":
        pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=False)
        return
    floats = [c for c in want.columns if pd.api.types.is_float_dtype(want[c]) or pd.api.types.is_float_dtype(got[c])]
    exact = [c for c in want.columns if c not in floats]
    pd.testing.assert_frame_equal(got[exact], want[exact], check_exact=True, check_dtype=False)
    pd.testing.assert_frame_equal(got[floats].astype(float), want[floats].astype(float), check_exact=False,
                                  rtol=FLOAT_RTOL, atol=0.0)  # fmt: skip


if __name__ == "__main__":  # rewrite the goldens (only when a change of results is intended and explained)
    import shutil
    import tempfile

    GOLDEN.mkdir(parents=True, exist_ok=True)
    data_dir = sys.argv[1] if len(sys.argv) > 1 else _data_dir()
    (GOLDEN / "run_ids.json").write_text(json.dumps(run_ids(data_dir), indent=1, sort_keys=True) + "\n")
    for grid in SMALL_GRIDS:
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copyfile(small_grid(*grid, Path(tmp), data_dir), GOLDEN / f"{grid[0]}-{grid[1]}.csv")
