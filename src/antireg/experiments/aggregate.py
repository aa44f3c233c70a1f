"""Aggregate run directories into paper-style tables.

``results/<experiment>.csv`` has one row per run; ``<experiment>_summary.csv``
has, per method × ablation × optimizer × fraction, the hyperparameters chosen on
validation (mean over seeds), where each sits in its grid (``lambda0_at_edge``,
``decay_at_edge``, ``params_at_edge``; see :func:`edge_of`) and mean ± 95% CI over
seeds of every metric. :func:`edge_warnings` turns the edge marks into one line each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from antireg.experiments.grid import RunSpec
from antireg.experiments.storage import finished_metrics, read_outputs, write_results  # noqa: F401 - re-exported

GROUP = ["method", "ablation", "optimizer", "fraction"]
HYPER = ["lambda0", "decay", "rule_params"]
EDGES = ["lambda0_at_edge", "decay_at_edge", "params_at_edge"]  # where each choice sits in its grid
SUMMARY_METRICS = [
    "test_rmse", "test_mae", "test_r2", "val_rmse",
    "test_accuracy", "test_nll", "test_ece", "test_brier", "val_accuracy", "val_nll", "val_ece",
    "output_scale_ratio", "r_clip", "r_proj", "df_per_n", "lambda_n", "wall_s",
    "train_loss", "max_loss", "sharpness", "grad_norm", "surrogate_gap",  # evaluation.probes
]  # fmt: skip
# λ₀ is chosen on validation: RMSE for regression, NLL (a proper scoring rule, rarely tied
# on small validation sets, unlike accuracy) for classification; lower is better for both.
SELECT_BY = ("val_rmse", "val_nll")


def collect(specs: list[RunSpec], experiments_dir: str | Path) -> pd.DataFrame:
    """One row per finished run of ``specs``, with its output-scale ratio against its condition's baseline."""
    experiments_dir = Path(experiments_dir)
    dirs = [experiments_dir / s.run_id for s in specs]
    rows = [m for m in map(finished_metrics, dirs) if m is not None]
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["output_scale_ratio"] = _output_scale_ratio(df, experiments_dir)
    return df


def _output_scale_ratio(df: pd.DataFrame, experiments_dir: Path) -> pd.Series:
    """‖f(X_test)‖ / ‖f_base(X_test)‖ against the λ = 0 run of the same condition (ρ in docs/methods.md)."""
    base = df[df["method"] == "erm"].drop_duplicates("condition_id").set_index("condition_id")["run_id"]
    norms: dict[str, float] = {}

    def norm(run_id: str) -> float:
        if run_id not in norms:
            norms[run_id] = float(np.linalg.norm(read_outputs(experiments_dir / run_id)))
        return norms[run_id]

    def ratio(row: pd.Series) -> float:
        ref = base.get(row["condition_id"])
        return norm(row["run_id"]) / norm(ref) if ref is not None and norm(ref) > 0 else np.nan

    return df.apply(ratio, axis=1)


def label(method: str, ablation: str) -> str:
    """Legend and table name of a method/ablation pair, e.g. ``ar`` or ``ar: l2``."""
    return method if ablation == "none" else f"{method}: {ablation}"


def _ci95(x: pd.Series) -> float:
    from scipy import stats  # here, not at import: half a second a sweep's workers never need

    x = x.dropna()
    if len(x) < 2:
        return np.nan
    return float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))


def summarize(df: pd.DataFrame, select_by: str | None = None, metrics: list[str] = SUMMARY_METRICS) -> pd.DataFrame:
    """Per group, pick (λ₀, decay) with the lowest mean ``select_by`` over seeds, then
    report mean and 95% CI (Student t over seeds) of each metric for that pick."""
    metrics = [m for m in metrics if m in df.columns]
    select_by = select_by or next(c for c in SELECT_BY if c in df.columns)
    df = df.assign(rule_params=df["rule_params"].fillna("-") if "rule_params" in df else "-")
    rows, scores = [], {}
    for key, group in df.groupby(GROUP, sort=True):
        means = group.groupby(HYPER)[select_by].mean().fillna(np.inf)
        lam0, decay, rule_params = means.idxmin()
        scores[key] = means.min()
        chosen = group[(group["lambda0"] == lam0) & (group["decay"] == decay) & (group["rule_params"] == rule_params)]
        row = dict(zip(GROUP, key))
        row.update(
            experiment=chosen["experiment"].iloc[0], dataset=chosen["dataset"].iloc[0],
            n_train=int(chosen["n_train"].iloc[0]), lambda0=lam0, decay=decay, rule_params=rule_params,
            n_seeds=len(chosen), n_diverged=int(chosen["diverged"].sum()), **_edges(group, chosen),
        )  # fmt: skip
        for m in metrics:
            row[f"{m}_mean"] = chosen[m].mean()
            row[f"{m}_ci95"] = _ci95(chosen[m])
        row["_chosen"] = chosen
        rows.append(row)
    _mark_zero(rows, scores)
    _paired_differences(rows, df)
    first = ["experiment", "dataset", *GROUP, "n_train", *HYPER, *EDGES, "n_seeds", "n_diverged"]
    out = pd.DataFrame(rows)
    return out[first + [c for c in out.columns if c not in first]] if rows else out


DIFF_METRICS = ("test_rmse", "test_accuracy", "test_nll")  # the headline metrics, as differences from erm


def _paired_differences(rows: list[dict], df: pd.DataFrame) -> None:
    """Add ``{m}_diff_mean`` / ``{m}_diff_ci95``: the chosen runs minus the erm run of the same
    condition (split, n, initialisation, optimizer), paired over seeds; 0 ± 0 for erm itself."""
    base = df[df["method"] == "erm"].drop_duplicates("condition_id").set_index("condition_id") \
        if "condition_id" in df else None
    for row in rows:
        chosen = row.pop("_chosen")
        for m in DIFF_METRICS:
            if base is None or m not in df:
                continue
            d = chosen[m].to_numpy() - base[m].reindex(chosen["condition_id"]).to_numpy()
            d = pd.Series(d[np.isfinite(d)])
            row[f"{m}_diff_mean"] = d.mean() if len(d) else np.nan
            row[f"{m}_diff_ci95"] = _ci95(d)


def edge_of(value: float, grid) -> str:
    """Where a chosen value sits in the grid it was chosen from: ``"fixed"`` (a grid of one
    value: nothing was chosen), ``"low"`` / ``"high"`` (its smallest / largest value: the
    optimum may lie outside, so the grid should be widened) or ``""`` (interior)."""
    grid = sorted(set(grid))
    if len(grid) == 1:
        return "fixed"
    return "low" if np.isclose(value, grid[0]) else "high" if np.isclose(value, grid[-1]) else ""


# A choice at the low end of AR's |λ₀| grid whose validation score is within this relative
# distance of the λ = 0 baseline's has reached λ → 0: smaller |λ₀| can only come closer still.
ZERO_RTOL = 1e-3


def _mark_zero(rows: list[dict], scores: dict[tuple, float]) -> None:
    """Re-mark ``"low"`` as ``"zero"`` for AR cells whose chosen mean validation score is within
    ``ZERO_RTOL`` of the erm baseline of the same optimizer × fraction (``scores``: per GROUP key)."""
    for row in rows:
        if row["method"] != "ar" or row["lambda0_at_edge"] != "low" or row["lambda0"] >= 0:
            continue
        base = scores.get(("erm", "none", row["optimizer"], row["fraction"]))
        score = scores[tuple(row[g] for g in GROUP)]
        if base is not None and np.isfinite(base) and abs(score - base) <= ZERO_RTOL * abs(base):
            row["lambda0_at_edge"] = "zero"


def _parse_params(cell: str) -> dict[str, str]:
    """``"eps=0.01,gamma=0.1"`` (runner.format_params) back to ``{"eps": "0.01", "gamma": "0.1"}``."""
    return dict(kv.split("=", 1) for kv in cell.split(",")) if cell not in ("-", "") else {}


def _edges(group: pd.DataFrame, chosen: pd.DataFrame) -> dict[str, str]:
    """Edge marks of one cell's choice against the values its runs tried.

    λ₀ is compared in magnitude (AR's is stored negative); :func:`_mark_zero` later re-marks
    a ``"low"`` AR choice that equals the λ = 0 baseline as ``"zero"``. An AR choice at the top of its
    |λ₀| grid is marked ``"bound"``, not ``"high"``, when it reached the spectral bound:
    the clamp moved λ to −(1−η)·μ_min/n in every chosen seed (so larger |λ₀| give the same
    runs), or λ₀ is in units of the bound (``lambda0_unit: bound``) with |λ₀| ≥ 1, past
    which the objective of a linear model is unbounded below (docs/experiments.md).
    """
    lam0, decay = float(chosen["lambda0"].iloc[0]), float(chosen["decay"].iloc[0])
    lam_edge = edge_of(abs(lam0), group["lambda0"].abs())
    if lam_edge == "high" and lam0 < 0:
        clamped = "clamped" in chosen and chosen["clamped"].eq(True).all()
        in_bound_units = "lambda0_unit" in chosen and (chosen["lambda0_unit"] == "bound").all()
        if clamped or (in_bound_units and abs(lam0) >= 1.0):
            lam_edge = "bound"
    grids: dict[str, list[str]] = {}
    for cell in group["rule_params"].unique():
        for name, value in _parse_params(cell).items():
            grids.setdefault(name, []).append(value)
    marks = []
    for name, value in _parse_params(chosen["rule_params"].iloc[0]).items():
        try:
            mark = edge_of(float(value), [float(v) for v in grids[name]])
        except ValueError:  # a non-numeric parameter has no order, so no edge
            mark = "fixed" if len(set(grids[name])) == 1 else ""
        if mark:
            marks.append(f"{name}={mark}")
    return {
        "lambda0_at_edge": lam_edge,
        "decay_at_edge": edge_of(decay, group["decay"]),
        "params_at_edge": ",".join(marks),
    }


def edge_warnings(summary: pd.DataFrame) -> list[str]:
    """One line per chosen λ₀, decay or relative parameter at the edge of its grid, saying which
    cell, which value and which config key to widen; ``"fixed"`` (one-value grids) and
    interior choices give no line. A λ₀ that reached the spectral bound (``"bound"``) or
    λ → 0 (``"zero"``) gets a line saying so instead: that end of the grid is legitimate."""
    if summary.empty or "lambda0_at_edge" not in summary:
        return []
    marks = summary[EDGES].astype(object)
    summary = summary.assign(**marks.where(marks.notna(), ""))  # a CSV reads "" back as NaN
    lines = []
    for row in summary.itertuples(index=False):
        cell = f"{row.experiment} {row.method}/{row.ablation}/{row.optimizer}/fraction {row.fraction:g}"
        lam = f"{abs(row.lambda0):g}"
        if row.lambda0_at_edge == "bound":
            lines.append(f"{cell}: |λ₀| = {lam}, the largest of its grid, reached the spectral bound; nothing to widen")
        elif row.lambda0_at_edge == "zero":
            lines.append(
                f"{cell}: |λ₀| = {lam}, the smallest of its grid, already matches the λ = 0 baseline on validation "
                f"(within {ZERO_RTOL:.1%}): the best is no anti-regularization; nothing to widen"
            )
        else:
            lines += _widen(cell, "|λ₀|", lam, "ar.lambda0", row.lambda0_at_edge)
        if row.decay_at_edge == "low" and row.decay == 0:
            lines.append(f"{cell}: decay = 0 (none) is the smallest of its grid and the smallest allowed; nothing to widen")
        else:
            lines += _widen(cell, "decay", f"{row.decay:g}", "ar.decay", row.decay_at_edge)
        values = _parse_params(row.rule_params)
        for mark in filter(None, str(row.params_at_edge).split(",")):
            name, edge = mark.split("=")
            lines += _widen(cell, name, values[name], f"relatives.{row.method.removeprefix('ar+')}.{name}", edge)
    return lines


def _widen(cell: str, name: str, value: str, key: str, edge: str) -> list[str]:
    """The warning for a choice at the ``low`` or ``high`` end of its grid; none otherwise."""
    if edge not in ("low", "high"):
        return []
    side, where = ("smallest", "below") if edge == "low" else ("largest", "above")
    return [f"{cell}: {name} = {value} is the {side} of its grid; add {key} values {where} {value}"]
