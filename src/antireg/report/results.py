"""Reading a results directory: each experiment's per-run and summary CSVs.

The summary holds, per method × ablation × optimizer × fraction, the
hyperparameters chosen on validation; :func:`chosen_runs` recovers from the
per-run CSV the seeds behind each summary row, which the significance tests
and reliability diagrams need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import pandas as pd

from antireg.experiments.aggregate import GROUP, HYPER, label  # noqa: F401 - label re-exported
from antireg.experiments.storage import paper_tables
from antireg.errors import ReportError  # noqa: F401 - re-exported

BASELINE = "erm"
LOWER_IS_BETTER = ("rmse", "mae", "nll", "ece", "brier")
HIGHER_IS_BETTER = ("r2", "accuracy")


def lower_is_better(metric: str) -> bool:
    """Direction of ``test_<name>`` / ``val_<name>`` metrics."""
    name = metric.split("_", 1)[1]
    if name not in LOWER_IS_BETTER + HIGHER_IS_BETTER:
        raise ValueError(f"no known direction for metric {metric!r}")
    return name in LOWER_IS_BETTER


def fmt_mean_ci(mean: float, ci: float) -> str:
    """``mean ± ci`` to 4 and 2 significant digits; the mean alone where the CI is undefined."""
    return f"{mean:.4g}" if math.isnan(ci) else f"{mean:.4g} ± {ci:.2g}"


def _label_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Baseline first, then AR and its ablations, then the relatives; alphabetical within."""
    key = pd.DataFrame({
        "base": frame["method"] != BASELINE, "ar": frame["method"] != "ar", "method": frame["method"],
        "abl": frame["ablation"] != "none", "ablation": frame["ablation"],
        "optimizer": frame["optimizer"], "fraction": frame["fraction"],
    })  # fmt: skip
    return frame.loc[key.sort_values(list(key.columns)).index].reset_index(drop=True)


@dataclass
class Experiment:
    """One sweep's results. ``summary`` is sorted in display order and has a ``label`` column."""

    name: str
    runs: pd.DataFrame
    summary: pd.DataFrame
    experiments_dir: Path | None

    @property
    def task(self) -> str:
        return "classification" if "test_accuracy_mean" in self.summary else "regression"

    @property
    def headline(self) -> str:
        return "test_accuracy" if self.task == "classification" else "test_rmse"

    @property
    def test_metrics(self) -> list[str]:
        """The summary's test metrics with a known direction, headline first."""
        names = [c[: -len("_mean")] for c in self.summary.columns if c.startswith("test_") and c.endswith("_mean") and not c.endswith("_diff_mean")]
        known = [m for m in names if m.split("_", 1)[1] in LOWER_IS_BETTER + HIGHER_IS_BETTER]
        return sorted(known, key=lambda m: m != self.headline)

    @property
    def labels(self) -> list[str]:
        return list(dict.fromkeys(self.summary["label"]))

    @property
    def optimizers(self) -> list[str]:
        return sorted(self.summary["optimizer"].unique())

    def colors(self) -> dict[str, tuple]:
        """A fixed colour per label, the baseline black, so figures agree with each other."""
        cmap = matplotlib.colormaps["tab10"]
        others = [lab for lab in self.labels if lab != BASELINE]
        colors = {lab: cmap(i % cmap.N) for i, lab in enumerate(others)}
        colors[BASELINE] = (0.0, 0.0, 0.0, 1.0)
        return colors


def chosen_runs(exp: Experiment) -> pd.DataFrame:
    """The per-run rows behind each summary row: same group, hyperparameters chosen on validation."""
    keys = GROUP + HYPER
    return exp.runs.merge(exp.summary[keys + ["label"]], on=keys, how="inner")


# What the report reads from a sweep's CSVs, and which of it must be numeric: anything
# else (a foreign, truncated or hand-edited file) is refused with one ReportError.
RUN_COLUMNS = ["experiment", "dataset", *GROUP, "seed", "n_train", "lambda0", "decay", "run_id", "condition_id",
               "lambda_n", "clamped", "df_per_n", "output_scale_ratio", "r_clip", "r_proj", "diverged"]
SUMMARY_COLUMNS = ["experiment", "dataset", *GROUP, "n_train", "lambda0", "decay", "n_seeds", "n_diverged",
                   *(f"{m}_{s}" for m in ("lambda_n", "df_per_n", "output_scale_ratio", "r_clip", "r_proj")
                     for s in ("mean", "ci95"))]
_NUMERIC = ("fraction", "seed", "n_train", "lambda0", "decay", "n_seeds", "n_diverged", "lambda_n", "df_per_n",
            "output_scale_ratio", "r_clip", "r_proj")
_FLAGS = ("clamped", "diverged")


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    fix = "re-run `antireg run` to write it again, or remove it"
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else ""
        raise ReportError(f"{path} is not a readable CSV ({type(exc).__name__}: {reason}); {fix}") from None
    if frame.empty:
        raise ReportError(f"{path} has no rows; {fix}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ReportError(f"{path} is not a sweep's results: it lacks the columns {', '.join(missing)}; {fix}")
    numeric = [c for c in frame.columns if c in _NUMERIC or c.startswith(("test_", "val_"))
               or c.endswith(("_mean", "_ci95"))]  # fmt: skip
    bad = [c for c in numeric if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])]
    bad += [c for c in _FLAGS if c in frame and not frame[c].dropna().isin([True, False]).all()]
    bad += [c for c in ("experiment", "method", "ablation", "optimizer") if frame[c].isna().any()]
    if bad:
        raise ReportError(f"{path} has unreadable values in {', '.join(bad)}; {fix}")
    # results written before relatives existed have no rule_params: they are all "-"
    return frame.assign(rule_params=frame["rule_params"].fillna("-").astype(str) if "rule_params" in frame else "-")


def load_experiments(
    results_dir: str | Path, experiments_dir: str | Path | None = None, names: list[str] | None = None
) -> list[Experiment]:
    """Every experiment ``E`` with both ``E.csv`` and ``E_summary.csv`` in ``results_dir``
    (or only ``names``), sorted by name."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ReportError(f"{results_dir} is not a folder; pass the results/ folder written by `antireg run`")
    papers = {t for tables in paper_tables(results_dir).values() for t in tables}  # not sweep results
    found = sorted(p.name[: -len("_summary.csv")] for p in results_dir.glob("*_summary.csv"))
    found = [e for e in found if (results_dir / f"{e}.csv").is_file() and not {e, f"{e}_summary"} & papers]
    if names is not None:
        missing = sorted(set(names) - set(found))
        if missing:
            available = ", ".join(found) or "none"
            raise ReportError(f"no results for {', '.join(missing)} in {results_dir} (found: {available})")
        found = [e for e in found if e in names]
    if not found:
        raise ReportError(f"no E.csv + E_summary.csv pairs in {results_dir}; run `antireg run` first")
    exps = []
    for name in found:
        runs = _read(results_dir / f"{name}.csv", RUN_COLUMNS)
        summary = _read(results_dir / f"{name}_summary.csv", SUMMARY_COLUMNS)
        metrics = [c[: -len("_mean")] for c in summary.columns if c.startswith("test_") and c.endswith("_mean") and not c.endswith("_diff_mean")]
        if not metrics or any(m not in runs for m in metrics):
            raise ReportError(f"{name}.csv and {name}_summary.csv in {results_dir} do not hold the same test metrics "
                              f"(summary: {', '.join(metrics) or 'none'}); re-run `antireg run` to write both again")
        groups = [set(map(tuple, f[GROUP].astype(str).to_numpy())) for f in (summary, runs)]
        if not groups[0] <= groups[1]:
            raise ReportError(f"{name}.csv and {name}_summary.csv in {results_dir} do not match (rows of the summary "
                              "have no runs); re-run `antireg run` to write both again")
        summary["label"] = [label(m, a) for m, a in zip(summary["method"], summary["ablation"])]
        exps.append(Experiment(name, runs, _label_order(summary), Path(experiments_dir) if experiments_dir else None))
    return exps
