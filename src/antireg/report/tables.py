"""Paper-style tables: mean ± 95% CI per method × fraction, best per column in bold,
and a paired test against the λ = 0 baseline of the same condition."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from antireg.report.results import BASELINE, Experiment, chosen_runs, fmt_mean_ci, lower_is_better

ALPHA = 0.05
Correction = Literal["holm", "bh"]
CORRECTIONS = {"holm": "Holm's step-down correction (family-wise error)",
               "bh": "the Benjamini–Hochberg correction (false discovery rate)"}


def table_note(correction: Correction = "holm") -> str:
    """The caption of the metric tables: what the numbers and the † mark mean."""
    return (
        f"Mean ± 95% CI over seeds; bold: best in its column. † adjusted p < {ALPHA:g}: two-sided paired t-test "
        f"against {BASELINE} over seeds, each seed paired with the {BASELINE} run of its condition (same split, n, "
        f"initialisation and optimizer), at the λ₀ chosen on validation; p-values adjusted within each table "
        f"(all its methods × training sizes) by {CORRECTIONS[correction]}. Unadjusted and adjusted p-values are "
        "in the report folder's *_tests.csv."
    )


def adjust_pvalues(p: np.ndarray, correction: Correction = "holm") -> np.ndarray:
    """Multiple-comparison adjusted p-values of one family; NaN entries (no test) stay NaN
    and do not count in the family size m.

    Holm (1979): sort p₍₁₎ ≤ … ≤ p₍ₘ₎, p̃₍ᵢ₎ = maxⱼ≤ᵢ min(1, (m − j + 1) p₍ⱼ₎).
    Benjamini & Hochberg (1995): scipy's ``false_discovery_control(p, method="bh")``.
    """
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if not ok.any():
        return out
    if correction == "bh":
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    elif correction == "holm":
        q = p[ok]
        order = np.argsort(q, kind="stable")
        m = len(q)
        stepped = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * q[order]))
        adjusted = np.empty(m)
        adjusted[order] = stepped
        out[ok] = adjusted
    else:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
    return out


@dataclass
class Table:
    """A renderer-agnostic table: cell texts plus the (row, column) cells to emphasise."""

    title: str
    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)


def paired_pvalues(exp: Experiment, metric: str, correction: Correction = "holm") -> pd.DataFrame:
    """Per label × optimizer × fraction (baseline excluded): number of seed pairs, the
    two-sided paired t-test p-value of ``metric`` against the condition's baseline run,
    and ``p_adjusted`` (:func:`adjust_pvalues` within each optimizer's table).

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
    out = pd.DataFrame(rows, columns=["label", "optimizer", "fraction", "n_pairs", "p_value"])
    out["p_adjusted"] = np.nan
    for _, idx in out.groupby("optimizer", sort=False).groups.items():
        out.loc[idx, "p_adjusted"] = adjust_pvalues(out.loc[idx, "p_value"].to_numpy(), correction)
    out.insert(0, "metric", metric)
    out["correction"] = correction
    return out


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


def metric_table(exp: Experiment, metric: str, optimizer: str, correction: Correction = "holm") -> Table:
    """``metric`` mean ± CI, rows = method/ablation, columns = training fraction; † where the
    adjusted paired p-value against the baseline is below ``ALPHA``."""
    s, fracs, header = _columns(exp, optimizer)
    p = paired_pvalues(exp, metric, correction).set_index(["label", "optimizer", "fraction"])["p_adjusted"]
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
            f"{g.at[f, 'lambda0']:g} / {g.at[f, 'decay']:g} ({g.at[f, 'n_diverged']}/{g.at[f, 'n_seeds']})"
            if f in g.index else "–" for f in fracs
        ])  # fmt: skip
    return table


@dataclass
class GroupedTable(Table):
    """A table whose columns after the first ``leading`` ones come in named groups of
    ``groups[i][1]`` columns each (rendered as a spanning header row)."""

    groups: list[tuple[str, int]] = field(default_factory=list)
    leading: int = 1

    def column_groups(self) -> list[str]:
        """The group name of each grouped column, in order."""
        return [g for g, k in self.groups for _ in range(k)]


def by_optimizer(exp: Experiment, per_optimizer: list[Table], title: str) -> GroupedTable:
    """One table from per-optimizer tables (same first column, the method): optimizers as
    column groups, methods in display order, '–' where an optimizer lacks a method."""
    labels = [lab for lab in exp.labels if any(lab in (r[0] for r in t.rows) for t in per_optimizer)]
    out = GroupedTable(title, ["method"], [[lab] for lab in labels])
    for opt, t in zip(exp.optimizers, per_optimizer):
        rows = {r[0]: (i, r) for i, r in enumerate(t.rows)}
        offset = len(out.header) - 1
        out.header += t.header[1:]
        out.groups.append((opt, len(t.header) - 1))
        for i, lab in enumerate(labels):
            src, row = rows.get(lab, (None, ["–"] * len(t.header)))
            out.rows[i] += row[1:]
            out.bold |= {(i, j + offset) for (k, j) in t.bold if k == src}
    return out


def compact_metric_table(exp: Experiment, metric: str, correction: Correction = "holm") -> GroupedTable:
    """:func:`metric_table` of every optimizer side by side: one table per experiment and
    metric; bold and † as there (the correction's family is still one optimizer's table)."""
    direction = "lower" if lower_is_better(metric) else "higher"
    return by_optimizer(exp, [metric_table(exp, metric, opt, correction) for opt in exp.optimizers],
                        f"{exp.name}: {metric} ({direction} is better)")  # fmt: skip


def compact_hyper_table(exp: Experiment) -> GroupedTable:
    """:func:`hyper_table` of every optimizer side by side."""
    return by_optimizer(exp, [hyper_table(exp, opt) for opt in exp.optimizers],
                        f"{exp.name}: λ₀ / α chosen on validation (diverged / seeds)")  # fmt: skip
