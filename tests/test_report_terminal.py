"""The end-of-sweep terminal summary: 80 columns, baseline first, paired differences (golden output)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from antireg.experiments.config import ExperimentCfg
from antireg.experiments.sweep import run_sweep
from antireg.report.terminal import summary_lines

GOLDEN = Path(__file__).parent / "golden" / "summary_tiny_80.txt"
CFG = {
    "experiment": "tiny_terminal", "dataset": {"name": "diabetes"}, "fractions": [0.2, 1.0], "seeds": [0, 1, 2],
    "model": {"kind": "linear"}, "optimizers": {"sgd": {"lr": 0.05}}, "training": {"epochs": 5},
    "ar": {"lambda0": [0.01, 0.1]}, "ablations": ["none", "l2", "no_trust_region"],
}  # fmt: skip


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("summary")
    result = run_sweep(ExperimentCfg.model_validate(CFG), out, progress=False)
    return result.summary, result.runs


def test_golden_80_columns(sweep):
    text = "\n".join(summary_lines(sweep[0], 80)) + "\n"
    if os.environ.get("ANTIREG_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
    assert all(len(line) <= 80 for line in text.splitlines())


def test_differences_are_paired_over_seeds(sweep):
    summary, runs = sweep
    base = runs[runs["method"] == "erm"].set_index("condition_id")["test_rmse"]
    for r in summary[summary["method"] != "erm"].itertuples():
        chosen = runs[(runs["method"] == r.method) & (runs["ablation"] == r.ablation) & (runs["fraction"] == r.fraction)
                      & (runs["lambda0"] == r.lambda0) & (runs["decay"] == r.decay)]
        d = chosen["test_rmse"].to_numpy() - base.loc[chosen["condition_id"]].to_numpy()
        assert r.test_rmse_diff_mean == pytest.approx(d.mean(), rel=1e-12, abs=1e-15)
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        assert r.test_rmse_diff_ci95 == pytest.approx(half, rel=1e-12, abs=1e-15)


def test_baseline_first_then_best_first(sweep):
    lines = summary_lines(sweep[0], 80)
    body = lines[lines.index(next(ln for ln in lines if ln.startswith("opt"))) + 1:]
    groups, current = [], None
    for ln in body:
        if ln[:10].strip():  # a new optimizer × n block
            current = []
            groups.append(current)
        current.append(ln)
    assert len(groups) == 2
    for g in groups:
        assert g[0].split()[2] == "erm" and "= " in g[0]
        diffs = [float(ln[30:41]) for ln in g[1:]]
        assert diffs == sorted(diffs)


def test_one_seed_says_so_and_wide_terminals_get_more_columns(sweep):
    one = sweep[0].assign(n_seeds=1)
    assert all("1 seed: no interval" in ln for ln in summary_lines(one, 80)[3:])
    assert "nan" not in "\n".join(summary_lines(one, 80))
    wide = summary_lines(sweep[0], 140)
    assert "r_clip" in wide[1] and "diverged" in wide[1] and max(map(len, wide)) > 80
    assert summary_lines(pd.DataFrame(), 80) == []
