"""Paper-style tables: mean ± 95% CI per method × fraction, best per column in bold,
and a paired test against the λ = 0 baseline of the same condition."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from antireg.report.results import BASELINE, Experiment, chosen_runs, fmt_mean_ci, lower_is_better

ALPHA = 0.05
TABLE_NOTE = (
    f"Mean ± 95% CI over seeds; bold: best in its column. † p < {ALPHA:g}, two-sided paired t-test against "
    f"{BASELINE} over seeds, each seed paired with the {BASELINE} run of its condition (same split, n, "
    "initialisation and optimizer), at the λ₀ chosen on validation."
)


@dataclass
class Table:
    """A renderer-agnostic table: cell texts plus the (row, column) cells to emphasise."""

    title: str
    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)


def paired_pvalues(exp: Experiment, metric: str) -> pd.DataFrame:
    """Per label × optimizer × fraction (baseline excluded): number of seed pairs and the
    two-sided paired t-test p-value of ``metric`` against the condition's baseline run.

    A t-test rather than Wilcoxon: with the usual 3–5 seeds the signed-rank test
    cannot reach p < 0.05 at all.
    """
    chosen = chosen_runs(exp)
    base = exp.runs[exp.runs["method"] == BASELINE].drop_duplicates("condition_id")[["condition_id", metric]]
    pairs = chosen[chosen["method"] != BASELINE].merge(base, on="condition_id", suffixes=("", "_base"))
    rows = []
    for (lab, opt, frac), g in pairs.groupby(["label", "optimizer", "fraction"], sort=False):
        g = g[np.isfinite(g[metric]) & np.isfinite(g[f"{metric}_base"])]
        rows.append({"label": lab, "optimizer": opt, "fraction": frac, "n_pairs": len(g),
                     "p_value": _paired_p(g[metric].to_numpy(), g[f"{metric}_base"].to_numpy())})  # fmt: skip
    return pd.DataFrame(rows, columns=["label", "optimizer", "fraction", "n_pairs", "p_value"])


def _paired_p(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2:
        return math.nan
    if np.array_equal(a, b):  # identical runs: no evidence of a difference (scipy would say NaN)
        return 1.0
    with warnings.catch_warnings():  # near-identical pairs only cost precision, which is fine here
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_rel(a, b).pvalue)


def _columns(exp: Experiment, optimizer: str) -> tuple[pd.DataFrame, list[float], list[str]]:
    s = exp.summary[exp.summary["optimizer"] == optimizer]
    fracs = sorted(s["fraction"].unique())
    n = s.drop_duplicates("fraction").set_index("fraction")["n_train"]
    return s, fracs, [f"{f:g} (n={n[f]})" for f in fracs]


def metric_table(exp: Experiment, metric: str, optimizer: str) -> Table:
    """``metric`` mean ± CI, rows = method/ablation, columns = training fraction."""
    s, fracs, header = _columns(exp, optimizer)
    p = paired_pvalues(exp, metric).set_index(["label", "optimizer", "fraction"])["p_value"]
    mean = s.pivot(index="label", columns="fraction", values=f"{metric}_mean").reindex(index=exp.labels, columns=fracs)
    ci = s.pivot(index="label", columns="fraction", values=f"{metric}_ci95").reindex(index=exp.labels, columns=fracs)
    mean = mean.dropna(how="all")
    best = mean.min() if lower_is_better(metric) else mean.max()
    table = Table(
        title=f"{exp.name}, {optimizer}: {metric} ({'lower' if lower_is_better(metric) else 'higher'} is better)",
        header=["method", *header], rows=[],
    )  # fmt: skip
    for i, lab in enumerate(mean.index):
        cells = [lab]
        for j, f in enumerate(fracs):
            m = mean.at[lab, f]
            if math.isnan(m):
                cells.append("–")
                continue
            mark = "†" if p.get((lab, optimizer, f), math.nan) < ALPHA else ""
            cells.append(fmt_mean_ci(m, ci.at[lab, f]) + mark)
            if m == best[f]:
                table.bold.add((i, j + 1))
        table.rows.append(cells)
    return table


def hyper_table(exp: Experiment, optimizer: str) -> Table:
    """λ₀ / α chosen on validation, and the seeds that diverged, per method × fraction."""
    s, fracs, header = _columns(exp, optimizer)
    table = Table(f"{exp.name}, {optimizer}: λ₀ / α chosen on validation (diverged / seeds)", ["method", *header], [])
    for lab, g in s.groupby("label", sort=False):
        g = g.set_index("fraction")
        table.rows.append([lab] + [
            f"{g.at[f, 'lambda0']:g} / {g.at[f, 'alpha']:g} ({g.at[f, 'n_diverged']}/{g.at[f, 'n_seeds']})"
            if f in g.index else "–" for f in fracs
        ])  # fmt: skip
    return table
