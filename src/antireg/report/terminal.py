"""The end-of-sweep summary for a terminal: the answer first, in 80 columns.

Per optimizer and training size, the baseline (erm, λ = 0) first with its absolute value,
then every other method's difference from it, paired over seeds (same split, n,
initialisation and optimizer) with a 95% Student-t interval, sorted best first, and the
hyperparameters chosen on validation, marked ``*`` where the choice sits on its grid's
edge. A wider terminal adds the safeguard rates and divergences.
"""

from __future__ import annotations

import math
import textwrap

import pandas as pd

from antireg.experiments.aggregate import DIFF_METRICS, EDGES
from antireg.report.results import BASELINE, label, lower_is_better

WIDE = 120  # from this width on, the extra columns fit


def _num(x: float, signed: bool = True) -> str:
    return "nan" if not math.isfinite(x) else f"{x:+.3g}" if signed else f"{x:.4g}"


def _interval(mean: float, ci: float, n_seeds: int, signed: bool = True) -> str:
    """``[lo, hi]``; for the baseline's absolute value prefixed ``abs``."""
    if n_seeds < 2:
        return "1 seed: no interval"
    if not math.isfinite(ci):
        return "no interval"
    text = f"[{_num(mean - ci, signed)}, {_num(mean + ci, signed)}]"
    return text if signed else "abs " + text


def _chosen(row) -> str:
    """The hyperparameters chosen on validation, ``*`` after one on its grid's edge
    (``low``/``high``; the spectral bound and λ → 0 are legitimate ends, left unmarked)."""
    if row.method == BASELINE:
        return "-"
    edge = {e: str(getattr(row, e)) if isinstance(getattr(row, e), str) else "" for e in EDGES}
    parts = []
    if row.lambda0 != 0:
        parts.append(f"λ₀={row.lambda0:g}" + ("*" if edge["lambda0_at_edge"] in ("low", "high") else ""))
        if edge["decay_at_edge"] not in ("fixed", ""):
            parts.append(f"decay={row.decay:g}" + ("*" if edge["decay_at_edge"] in ("low", "high") else ""))
    if row.rule_params not in ("-", "") and isinstance(row.rule_params, str):
        marked = dict(m.split("=") for m in edge["params_at_edge"].split(",") if "=" in m)
        for kv in row.rule_params.split(","):
            name = kv.split("=", 1)[0]
            parts.append(kv + ("*" if marked.get(name) in ("low", "high") else ""))
    return " ".join(parts) or "-"


def summary_lines(summary: pd.DataFrame, width: int = 80) -> list[str]:
    """The summary as text lines of at most ``width`` characters (see the module docstring)."""
    metric = next((m for m in DIFF_METRICS if f"{m}_diff_mean" in summary), None)
    if summary.empty or metric is None:
        return []
    sign = 1.0 if lower_is_better(metric) else -1.0
    wide = width >= WIDE
    seeds = sorted(set(summary["n_seeds"]))
    lines = textwrap.wrap(
        f"{summary['experiment'].iloc[0]}: {metric}, difference from {BASELINE} (λ = 0) paired over "
        f"{'/'.join(map(str, seeds))} seed(s), 95% CI; {'lower' if sign > 0 else 'higher'} is better; "
        "* = chosen on its grid's edge", width)
    header = ["opt", "n", "method", f"Δ {metric}", "95% CI", "chosen"]
    if wide:
        header += ["r_clip", "r_proj", "diverged"]
    rows = []
    for (opt, frac), g in summary.groupby(["optimizer", "fraction"], sort=True):
        base = g[g["method"] == BASELINE]
        others = g[g["method"] != BASELINE].assign(_key=lambda d: sign * d[f"{metric}_diff_mean"])
        for i, r in enumerate(pd.concat([base, others.sort_values("_key", kind="stable")]).itertuples(index=False)):
            is_base = r.method == BASELINE
            d = r._asdict()
            ci = (_interval(d[f"{metric}_mean"], d[f"{metric}_ci95"], r.n_seeds, signed=False) if is_base
                  else _interval(d[f"{metric}_diff_mean"], d[f"{metric}_diff_ci95"], r.n_seeds))
            value = f"= {d[f'{metric}_mean']:.4g}" if is_base else _num(d[f"{metric}_diff_mean"])
            cells = [opt if i == 0 else "", str(r.n_train) if i == 0 else "", label(r.method, r.ablation), value, ci,
                     _chosen(r)]
            if wide:
                cells += [f"{d.get('r_clip_mean', math.nan):.3f}", f"{d.get('r_proj_mean', math.nan):.3f}",
                          f"{r.n_diverged}/{r.n_seeds}"]
            rows.append(cells)
    widths = [max(len(h), *(len(c[j]) for c in rows)) for j, h in enumerate(header)]
    right = {1, 3} | ({6, 7, 8} if wide else set())

    def fmt(cells: list[str]) -> str:
        text = "  ".join(c.rjust(w) if j in right else c.ljust(w) for j, (c, w) in enumerate(zip(cells, widths)))
        text = text.rstrip()
        return text if len(text) <= width else text[: width - 1] + "…"

    return lines + [fmt(header)] + [fmt(c) for c in rows]
