"""The report's figures, built with matplotlib's object API (no pyplot, so no global
backend or figure state: saving uses the Agg/SVG canvases directly).

Every function returns a :class:`~matplotlib.figure.Figure` whose lines carry the
legend label of their method, so tests can read the plotted data back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from antireg.report.results import BASELINE, Experiment, ReportError, chosen_runs, fmt_mean_ci, lower_is_better

BAND_ALPHA = 0.12
BOUND_LABEL = "safe bound (clamped runs)"
DIAGNOSTICS = [
    ("output_scale_ratio", "ρ = ‖f‖ / ‖f_base‖"), ("r_clip", "r_clip (clipped steps)"), ("r_proj", "r_proj (projected steps)"),
]  # fmt: skip


def _grid(rows: int, cols: int, width: float, height: float, **kw) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width * cols + 2.0, height * rows), layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False, **kw)


def _mean_band(ax: Axes, x: np.ndarray, mean: pd.Series, ci: pd.Series, lab: str, color) -> None:
    """Mean line with its 95% CI band (no band where the CI is undefined, i.e. one seed)."""
    mean, ci = mean.to_numpy(float), ci.to_numpy(float)
    ax.plot(x, mean, marker="o", ms=4, label=lab, color=color, ls="--" if lab == BASELINE else "-")
    ax.fill_between(x, mean - ci, mean + ci, color=color, alpha=BAND_ALPHA, lw=0)


def _legend(fig: Figure, axes: np.ndarray, order: list[str]) -> None:
    """One legend for all panels, in display order (a label may be missing from some panels)."""
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    labels = sorted(handles, key=lambda lab: order.index(lab) if lab in order else len(order))
    fig.legend([handles[lab] for lab in labels], labels, loc="outside right upper", fontsize="small")


def _per_optimizer(exp: Experiment, optimizer: str) -> pd.DataFrame:
    """Summary rows of one optimizer by n; stable, so labels keep the display order."""
    return exp.summary[exp.summary["optimizer"] == optimizer].sort_values("n_train", kind="stable")


def _log_n_axis(ax: Axes, n: pd.Series) -> None:
    """Log-scaled n, ticked at the sizes actually trained on."""
    ticks = sorted(n.unique())
    ax.set_xscale("log")
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("training size n (log scale)")


def headline_figure(exp: Experiment) -> Figure:
    """Headline test metric vs n (log) as small multiples: one panel per optimizer (row) and
    method (column), each method drawn with the baseline, so two CI bands at most overlap."""
    metric, colors = exp.headline, exp.colors()
    methods = [lab for lab in exp.labels if lab != BASELINE] or [BASELINE]
    fig, axes = _grid(len(exp.optimizers), len(methods), 3.2, 2.9, sharex=True, sharey=True)
    for row, opt in zip(axes, exp.optimizers):
        groups = dict(list(_per_optimizer(exp, opt).groupby("label", sort=False)))
        for ax, method in zip(row, methods):
            for lab in dict.fromkeys([BASELINE, method]):
                if lab in groups:
                    g = groups[lab]
                    _mean_band(ax, g["n_train"].to_numpy(float), g[f"{metric}_mean"], g[f"{metric}_ci95"], lab,
                               colors[lab])  # fmt: skip
            _log_n_axis(ax, exp.summary["n_train"])
            ax.set_title(f"{method} vs {BASELINE} · {opt}", fontsize="medium")
            ax.grid(alpha=0.3)
        row[0].set_ylabel(f"{metric} (mean ± 95% CI)")
    for ax in axes[:-1].flat:
        ax.set_xlabel("")
    _drop_empty(fig)
    _legend(fig, axes, exp.labels)
    return fig


def forest_metrics(exp: Experiment) -> list[str]:
    """The test metrics whose paired differences from the baseline the summary holds."""
    return [m for m in exp.test_metrics if f"{m}_diff_mean" in exp.summary]


def forest_figure(exp: Experiment, metric: str) -> Figure:
    """Forest plot: per method and training size, the mean paired difference ``metric − baseline``
    over seeds with its 95% interval (a point alone where one seed gives no interval); one
    panel per optimizer; the dotted line is no difference."""
    colors, lower = exp.colors(), lower_is_better(metric)
    s = exp.summary[exp.summary["label"] != BASELINE]
    n_rows = max((s["optimizer"] == opt).sum() for opt in exp.optimizers)
    fig, axes = _grid(1, len(exp.optimizers), 4.6, 0.9 + 0.28 * n_rows, sharex=True)
    for ax, opt in zip(axes[0], exp.optimizers):
        rows = s[s["optimizer"] == opt].sort_values("n_train", kind="stable")
        if rows.empty:
            continue  # an empty panel, dropped below
        rows = pd.concat([g for _, g in rows.groupby("label", sort=False)])  # methods in blocks, n within
        y = np.arange(len(rows))[::-1]
        for lab, idx in rows.groupby("label", sort=False).indices.items():
            g = rows.iloc[idx]
            ci = g[f"{metric}_diff_ci95"].to_numpy(float)
            ax.errorbar(g[f"{metric}_diff_mean"], y[idx], xerr=np.where(np.isfinite(ci), ci, 0.0), fmt="o", ms=4,
                        capsize=3, color=colors[lab], label=lab)  # fmt: skip
        ax.axvline(0.0, color="gray", lw=0.8, ls=":")
        ax.set_yticks(y, [f"{lab} · n={n}" for lab, n in zip(rows["label"], rows["n_train"])], fontsize="small")
        ax.set_xlabel(f"{metric} − {BASELINE} ({'< 0' if lower else '> 0'} is better)")
        ax.set_title(f"{exp.name} · {opt}", fontsize="medium")
        ax.grid(alpha=0.3, axis="x")
    _drop_empty(fig)
    return fig


def _drop_empty(fig: Figure) -> None:
    """Remove panels with nothing drawn (a method an optimizer did not run, say)."""
    for ax in list(fig.axes):
        if not (ax.lines or ax.collections or ax.patches or ax.containers):
            fig.delaxes(ax)


def lambda_figure(exp: Experiment) -> Figure:
    """λ(n) used vs n, with the spectral bound where runs were clamped to it; df/n vs n
    in a second column where a spectrum is known."""
    colors = exp.colors()
    has_df = "df_per_n_mean" in exp.summary and exp.summary["df_per_n_mean"].notna().any()
    fig, axes = _grid(len(exp.optimizers), 2 if has_df else 1, 4.2, 3.2)
    clamped = exp.runs[exp.runs["clamped"].eq(True)].drop_duplicates("condition_id")
    for row, opt in zip(axes, exp.optimizers):
        s = _per_optimizer(exp, opt)
        ax = row[0]
        for lab, g in s[s["method"] != BASELINE].groupby("label", sort=False):
            ax.plot(g["n_train"], g["lambda_n_mean"], marker="o", ms=4, label=lab, color=colors[lab])
        bound = clamped[clamped["optimizer"] == opt]
        if len(bound):
            # a clamped run's λ is the bound −(1−η)·s_min²/n of its own training set
            ax.plot(bound["n_train"], bound["lambda_n"], ls="none", marker="_", ms=14, mew=2, color="red",
                    label=BOUND_LABEL)  # fmt: skip
        values = np.abs(np.r_[s["lambda_n_mean"], bound["lambda_n"]])
        nonzero = values[np.isfinite(values) & (values > 0)]
        ax.set_yscale("symlog", linthresh=nonzero.min() if len(nonzero) else 1e-6)
        ax.axhline(0.0, color="gray", lw=0.8)
        ax.set(ylabel="λ(n) used (mean over seeds)", title=f"λ(n) · {opt}")
        if has_df:
            for lab, g in s.groupby("label", sort=False):
                if g["df_per_n_mean"].notna().any():
                    row[1].plot(g["n_train"], g["df_per_n_mean"], marker="o", ms=4, label=lab, color=colors[lab],
                                ls="--" if lab == BASELINE else "-")  # fmt: skip
            row[1].set(ylabel="df(λ)/n", title=f"df/n · {opt}")
        for a in row:
            _log_n_axis(a, exp.summary["n_train"])
            a.grid(alpha=0.3)
    _legend(fig, axes, exp.labels)
    return fig


def diagnostics_figure(exp: Experiment) -> Figure:
    """ρ, r_clip, r_proj (mean ± CI) and the number of diverged seeds, per fraction."""
    colors = exp.colors()
    fig, axes = _grid(len(exp.optimizers), len(DIAGNOSTICS) + 1, 3.3, 2.8)
    for row, opt in zip(axes, exp.optimizers):
        s = _per_optimizer(exp, opt)
        fracs = sorted(s["fraction"].unique())
        n = s.drop_duplicates("fraction").set_index("fraction")["n_train"]
        groups = list(s.groupby("label", sort=False))
        for ax, (col, title) in zip(row, DIAGNOSTICS):
            for lab, g in groups:
                _mean_band(ax, g["fraction"].map(fracs.index).to_numpy(float), g[f"{col}_mean"], g[f"{col}_ci95"],
                           lab, colors[lab])  # fmt: skip
            ax.set_title(f"{title} · {opt}", fontsize="medium")
        row[0].axhline(1.0, color="gray", lw=0.8, ls=":")  # ρ near 1 is healthy
        width = 0.8 / len(groups)
        for i, (lab, g) in enumerate(groups):
            row[-1].bar(g["fraction"].map(fracs.index) + (i - (len(groups) - 1) / 2) * width, g["n_diverged"],
                        width, label=lab, color=colors[lab])  # fmt: skip
        row[-1].set_title(f"diverged seeds · {opt}", fontsize="medium")
        row[-1].set_ylim(0, s["n_seeds"].max())
        row[-1].yaxis.get_major_locator().set_params(integer=True)
        for ax in row:
            ax.set_xticks(range(len(fracs)), [f"{f:g}\nn={n[f]}" for f in fracs], fontsize="small")
            ax.set_xlabel("training fraction")
            ax.grid(alpha=0.3)
    _legend(fig, axes, exp.labels)
    return fig


def pool_reliability(bins: list[dict]) -> dict[str, np.ndarray]:
    """Pool per-seed reliability bins: counts add, confidence and accuracy are count-weighted."""
    edges = np.asarray(bins[0]["bin_edges"], float)
    if any(not np.allclose(b["bin_edges"], edges) for b in bins):
        raise ReportError("reliability.json files of one condition use different bins")
    counts = np.array([b["count"] for b in bins], float)
    count = counts.sum(axis=0)

    def weighted(key: str) -> np.ndarray:
        values = np.nan_to_num(np.array([b[key] for b in bins], float))  # empty bins may hold null
        with np.errstate(invalid="ignore", divide="ignore"):
            return (values * counts).sum(axis=0) / count

    return {"bin_edges": edges, "confidence": weighted("confidence"), "accuracy": weighted("accuracy"), "count": count}


def _reliability_files(exp: Experiment, runs: pd.DataFrame) -> list[dict]:
    paths = [exp.experiments_dir / rid / "reliability.json" for rid in runs["run_id"]] if exp.experiments_dir else []
    return [json.loads(p.read_text()) for p in paths if p.is_file()]


def reliability_figure(exp: Experiment) -> Figure | None:
    """Reliability diagrams, AR vs baseline at the chosen λ₀, seeds pooled; one panel per
    optimizer × fraction. ``None`` when no run wrote ``reliability.json``."""
    chosen = chosen_runs(exp)
    chosen = chosen[chosen["label"].isin([BASELINE, "ar"])]
    curves = {
        (lab, opt, frac): files
        for (lab, opt, frac), g in chosen.groupby(["label", "optimizer", "fraction"])
        if (files := _reliability_files(exp, g))
    }
    if not curves:
        return None
    fracs = sorted(chosen["fraction"].unique())
    n = chosen.drop_duplicates("fraction").set_index("fraction")["n_train"]
    summary = exp.summary.set_index(["label", "optimizer", "fraction"])
    colors = exp.colors()
    fig, axes = _grid(len(exp.optimizers), len(fracs), 2.9, 2.9, sharex=True, sharey=True)
    for opt, row in zip(exp.optimizers, axes):
        for frac, ax in zip(fracs, row):
            if not any((lab, opt, frac) in curves for lab in (BASELINE, "ar")):
                continue  # nothing to draw: the panel is dropped below
            ax.plot([0, 1], [0, 1], color="gray", lw=0.8, ls=":")
            for lab in (BASELINE, "ar"):
                if (lab, opt, frac) not in curves:
                    continue
                pooled = pool_reliability(curves[lab, opt, frac])
                ok = pooled["count"] > 0
                ece = summary.loc[(lab, opt, frac)]
                ax.plot(pooled["confidence"][ok], pooled["accuracy"][ok], marker="o", ms=3, color=colors[lab],
                        ls="--" if lab == BASELINE else "-",
                        label=f"{lab} (ECE {fmt_mean_ci(ece['test_ece_mean'], ece['test_ece_ci95'])})")  # fmt: skip
            ax.set_title(f"{opt} · n={n[frac]}", fontsize="medium")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize="x-small", loc="upper left")
            ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal")
        row[0].set_ylabel("accuracy")
    for ax in axes[-1]:
        ax.set_xlabel("confidence")
    _drop_empty(fig)
    return fig


def save(fig: Figure, stem: Path) -> tuple[Path, Path]:
    """Write ``stem.png`` and ``stem.svg``; SVG without a date, so reruns give the same file."""
    png, svg = stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.svg"
    fig.savefig(png, dpi=110)
    fig.savefig(svg, metadata={"Date": None})
    return png, svg
