"""v4 Exp 5 of arXiv:2508.17412 (*A Ridge Too Far*): semi-synthetic signals on real covariances.

Design (/work/shared/PAPERS.md, "Semi-synthetic experiment on real covariances"): for each of seven
regression data sets the inputs are median-filled (NaN), standardised on the full data and rotated to
their principal components Z (all of them; categorical columns arrive one-hot encoded from the loaders).
μ = the PCA eigenvalues (per-sample: μⱼ = ‖Z_j‖²/N). The target is semi-synthetic, y = Zβ + N(0, σ²), with
β on base = geomspace(1, 0.15, m): strong = base (mass on the large-μ directions), weak = base reversed,
balanced = ones, each normalised and scaled so Σⱼ μⱼβⱼ² = 1 (signal variance 1). 30% of the rows are the
test set; the training set is a fraction of the remaining pool, clipped to [18, pool − 2].

All λ are v4's per-sample scale (Σ̂ + λI, Σ̂ = XᵀX/n, no intercept since Z is centred; sklearn α = n·λ via
:mod:`antireg.spectral`). λ = τ₀ + a with the conservative baseline τ₀ = 0.75·median(μ):

- ``sure_true_sigma`` (v4's selector): SURE with the true σ² over the full grid
  a ∈ τ₀·{0, logspace(−3, 1, 28)} ∪ −τ₀·{0.95, 0.90, 0.85, linspace(0.75, 0.05, 28)}
  vs the positive half.
  Its smallest λ is 0.05·τ₀ > 0: "negative" adjustments here never make the ridge itself negative.
- ``sure_estimated_sigma`` / ``loo`` (antireg's, :class:`antireg.linear.ARRidgeCV` with criterion "sure"
  and σ̂² from the OLS residuals, or exact leave-one-out): the full grid plus λ = −f·μ̂_min (truly negative,
  down to the spectral bound of the training design) vs the same selector on the positive grid.

The oracle is the test-RMSE argmin over each selector's own negative-capable grid.
"""

from __future__ import annotations

import functools
import zlib
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from antireg.diagnostics import sure_curve, weak_spectrum
from antireg.paper.config import PaperCfg
from antireg.paper.plots import new_figure, save_all, zero_line
from antireg.paper.v4 import SCALE, _ci, _Strict
from antireg.spectral import alpha_to_lambda, gram_spectrum, lambda_to_alpha, thin_svd

DATASETS = ("california", "diabetes", "abalone", "concrete", "wine", "energy", "airfoil")
ALIGNMENTS = ("strong", "weak", "balanced")
SELECTORS = ("sure_true_sigma", "sure_estimated_sigma", "loo")
# the v4 grids of the adjustment a, in units of τ₀
POSITIVE = np.concatenate([[0.0], np.logspace(-3, 1, 28)])
NEGATIVE = -np.concatenate([[0.95, 0.90, 0.85], np.linspace(0.75, 0.05, 28)])

Dataset = Literal["california", "diabetes", "abalone", "concrete", "wine", "energy", "airfoil"]
Alignment = Literal["strong", "weak", "balanced"]


class Options(_Strict):
    datasets: list[Dataset] = Field(default_factory=lambda: list(DATASETS), min_length=1)
    alignments: list[Alignment] = Field(default_factory=lambda: list(ALIGNMENTS), min_length=1)
    noise_stds: list[float] = Field([0.20, 0.50], min_length=1, description="σ of y = Zβ + N(0, σ²)")
    fractions: list[float] = Field([0.02, 0.05, 0.10], min_length=1, description="of the pool (not test)")
    test_fraction: float = Field(0.30, gt=0, lt=1)
    min_train: int = Field(18, ge=2, description="at least this many training points (v4: p + 6)")
    tau0_factor: float = Field(0.75, gt=0, description="τ₀ = tau0_factor · median(μ)")
    kappa_over_tau0: float = Field(1.0, gt=0, description="weak set W = {μⱼ ≤ κ}, κ = kappa_over_tau0 · τ₀")
    bound_fractions: list[float] = Field([0.95, 0.90, 0.75, 0.50, 0.25, 0.0],
                                         description="extra λ = −f·μ̂_min for the antireg selectors")
    eta: float = Field(0.01, gt=0, lt=1, description="ARRidgeCV's margin: α ≥ −(1 − η)·s_min²")

    @model_validator(mode="after")
    def _ranges(self) -> "Options":
        if not all(0 < v < np.inf for v in self.noise_stds):
            raise ValueError(f"noise_stds must be positive and finite, got {self.noise_stds}")
        if not all(0 < f <= 1 for f in self.fractions):
            raise ValueError(f"fractions must lie in (0, 1], got {self.fractions}")
        if not all(0 <= f < 1 - self.eta for f in self.bound_fractions):
            raise ValueError(f"bound_fractions must lie in [0, 1 - eta) = [0, {1 - self.eta:g}) so that "
                             f"ARRidgeCV keeps them, got {self.bound_fractions}")
        return self


@functools.lru_cache(maxsize=None)
def design(dataset: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(Z, μ): PCA scores (N, m) of the median-filled, standardised inputs and their per-sample
    eigenvalues μⱼ = sⱼ²/N (decreasing). Zero-variance directions are not components (abalone's three
    Sex indicators sum to 1, so it has m = 9). Cached per process; the arrays are read-only."""
    from antireg.data import load_dataset

    X = load_dataset(dataset, data_dir).X.astype(np.float64, copy=True)
    rows, cols = np.nonzero(np.isnan(X))
    X[rows, cols] = np.nanmedian(X, axis=0)[cols]
    sd = X.std(axis=0)
    if not (sd > 0).all():
        raise ValueError(f"{dataset}: constant input column(s) {np.flatnonzero(sd == 0).tolist()} "
                         "cannot be standardised")
    U, s, _ = thin_svd((X - X.mean(axis=0)) / sd)
    Z, mu = U * s, s**2 / len(X)
    Z.setflags(write=False)
    mu.setflags(write=False)
    return Z, mu


def signal(alignment: str, mu: np.ndarray) -> np.ndarray:
    """β in the PCA basis: base = geomspace(1, 0.15, m) (strong), reversed (weak) or ones (balanced),
    normalised, then scaled so Σⱼ μⱼβⱼ² = 1."""
    base = np.geomspace(1, 0.15, mu.size)
    b = {"strong": base, "weak": base[::-1], "balanced": np.ones(mu.size)}[alignment]
    b = b / np.linalg.norm(b)
    return b / np.sqrt(mu @ b**2)


def sizes(n_total: int, test_fraction: float, fraction: float, min_train: int) -> tuple[int, int]:
    """(n_test, n_train): n_test = round(test_fraction·N); n_train = round(fraction·pool) clipped to
    [min_train, pool − 2] with pool = N − n_test."""
    n_test = int(round(test_fraction * n_total))
    pool = n_total - n_test
    if pool - 2 < min_train:
        raise ValueError(f"a pool of {pool} rows is too small for min_train = {min_train}")
    return n_test, min(max(int(round(fraction * pool)), min_train), pool - 2)


def draw(cell: dict, rep: int, data_dir: str | None) -> tuple[np.ndarray, ...]:
    """(X_train, y_train, X_test, y_test) of one repeat: its own noise draw, split and subsample, seeded
    by (seed, the cell's names, rep), so a cell's rows do not depend on the rest of the config."""
    Z, mu = design(cell["dataset"], data_dir)
    key = zlib.crc32(f"{cell['dataset']}|{cell['alignment']}|{cell['noise_std']!r}|{cell['fraction']!r}".encode())
    rng = np.random.default_rng([cell["seed"], key, rep])
    y = Z @ signal(cell["alignment"], mu) + cell["noise_std"] * rng.standard_normal(len(Z))
    perm = rng.permutation(len(Z))
    test, train = perm[: cell["n_test"]], perm[cell["n_test"]:][: cell["n_train"]]
    return Z[train], y[train], Z[test], y[test]


def ridge_rmse(X: np.ndarray, y: np.ndarray, Xt: np.ndarray, yt: np.ndarray, lams: np.ndarray) -> np.ndarray:
    """Test RMSE of β̂(λ) = (XᵀX/n + λI)⁻¹Xᵀy/n for every per-sample λ, from one thin SVD:
    β̂(λ) = V diag(s/(s² + nλ)) Uᵀy (minimum norm if X is rank-deficient)."""
    U, s, Vt = thin_svd(X)
    B = Vt.T @ (s[:, None] / (s[:, None] ** 2 + len(X) * lams[None, :]) * (U.T @ y)[:, None])
    return np.sqrt(np.mean((yt[:, None] - Xt @ B) ** 2, axis=0))


def _arridgecv(X: np.ndarray, y: np.ndarray, grid: np.ndarray, eta: float, criterion: str) -> float:
    """The λ of ``grid`` that ARRidgeCV (α = n·λ, no intercept; "sure" with σ̂² = OLS residual variance)
    picks."""
    from antireg.linear import ARRidgeCV

    n = len(X)
    m = ARRidgeCV(alphas=lambda_to_alpha(grid, n), fit_intercept=False, eta=eta, criterion=criterion).fit(X, y)
    return float(grid[np.argmin(np.abs(grid - alpha_to_lambda(m.alpha_, n)))])  # the exact grid value


class Exp5:
    """Semi-synthetic experiment on real covariances; one cell = dataset × alignment × noise × fraction,
    holding all repeats. Rows: one per repeat and selector."""

    Options = Options
    NOTE = ("Caveat (v4 Exp 5): τ₀ = 0.75·median(μ) is deliberately conservative and the positive-only family "
            "cannot go below it, while the v4 grid's most negative adjustment still leaves λ = 0.05·τ₀ > 0 "
            "(total_negative_rate of sure_true_sigma is 0 by construction). The gain measures how over-shrunk "
            "the baseline is, not a benefit of a negative ridge; only the antireg rows (loo, "
            "sure_estimated_sigma) can choose λ < 0, and total_negative_rate says how often they do. "
            "λ in v4's per-sample scale; gain_pct = mean over runs of 100·(1 − RMSE_neg/RMSE_pos).")

    def cells(self, cfg: PaperCfg, data_dir: Any) -> list[dict]:
        o, out = cfg.options, []
        for ds in o["datasets"]:
            n_total = len(design(ds, data_dir)[0])
            for frac in o["fractions"]:
                n_test, n_train = sizes(n_total, o["test_fraction"], frac, o["min_train"])
                for al in o["alignments"]:
                    for sd in o["noise_stds"]:
                        out.append({"dataset": ds, "alignment": al, "noise_std": sd, "fraction": frac,
                                    "n_total": n_total, "n_test": n_test, "n_train": n_train,
                                    "seed": cfg.seed, "replications": cfg.replications,
                                    **{k: o[k] for k in ("tau0_factor", "kappa_over_tau0", "bound_fractions", "eta")}})
        return out

    def compute(self, cell: dict, data_dir: Any) -> list[dict]:
        _, mu = design(cell["dataset"], data_dir)
        t0 = cell["tau0_factor"] * float(np.median(mu))
        rho_W = weak_spectrum(mu, signal(cell["alignment"], mu), t0, cell["kappa_over_tau0"] * t0).rho_W
        lam_pos, lam_full = t0 * (1 + POSITIVE), t0 * (1 + np.union1d(NEGATIVE, POSITIVE))
        sd, eta, rows = cell["noise_std"], cell["eta"], []
        for rep in range(cell["replications"]):
            X, y, Xt, yt = draw(cell, rep, data_dir)
            mu_min = float(gram_spectrum(X, fit_intercept=False).min() / len(X))
            # ⊇ lam_full ⊇ lam_pos; + 0.0 turns −0·μ̂_min (OLS) into +0.0
            lam_neg = np.union1d(lam_full, -mu_min * np.asarray(cell["bound_fractions"])) + 0.0
            rmse = dict(zip(lam_neg, ridge_rmse(X, y, Xt, yt, lam_neg)))  # one SVD serves every λ

            def sure_true(g: np.ndarray) -> float:
                return float(g[np.argmin(sure_curve(X, y, g, sd**2))])

            picks = {"sure_true_sigma": (lam_full, sure_true),
                     "sure_estimated_sigma": (lam_neg, lambda g: _arridgecv(X, y, g, eta, "sure")),
                     "loo": (lam_neg, lambda g: _arridgecv(X, y, g, eta, "loo"))}
            for name, (grid, pick) in picks.items():
                oracle = float(min(grid, key=rmse.__getitem__))
                ln, lp = pick(grid), pick(lam_pos)
                rows.append({"dataset": cell["dataset"], "alignment": cell["alignment"], "noise": sd,
                             "fraction": cell["fraction"], "n_train": cell["n_train"], "rep": rep, "selector": name,
                             "tau0": t0, "rho_W": rho_W, "mu_hat_min": mu_min,
                             "lambda_selected": ln, "lambda_positive": lp, "lambda_oracle": oracle,
                             "selector_negative": ln < t0, "selector_total_negative": ln < 0,
                             "oracle_negative": oracle < t0, "oracle_total_negative": oracle < 0,
                             "oracle_at_edge": oracle == grid.min(),  # the grid may cut off the optimum
                             "positive_only_rmse": float(rmse[lp]), "negative_capable_rmse": float(rmse[ln]),
                             "oracle_rmse": float(rmse[oracle])})
        return rows

    def tables(self, rows: pd.DataFrame, cfg: PaperCfg) -> dict[str, pd.DataFrame]:
        name = cfg.experiment
        rows = rows.assign(gain=100 * (1 - rows.negative_capable_rmse / rows.positive_only_rmse),
                           gap=rows.negative_capable_rmse - rows.oracle_rmse,
                           win=rows.negative_capable_rmse < rows.positive_only_rmse,
                           tie=rows.negative_capable_rmse == rows.positive_only_rmse)
        main = _summary(rows, ["dataset", "alignment", "noise", "selector"],
                        rho_W=("rho_W", "first"), tau0=("tau0", "first"))
        by_fraction = _summary(rows, ["alignment", "fraction", "selector"],
                               n_train_min=("n_train", "min"), n_train_max=("n_train", "max"))
        return {name: main, f"{name}_by_fraction": by_fraction}

    def figures(self, tables: dict, out_dir: Any) -> list:
        name = next(k for k in tables if not k.endswith("_by_fraction"))
        return save_all([(gain_figure(tables[name]), f"{name}_gain",
                          f"{name}: gain (%) of the negative-capable selection over the positive-only one, per "
                          f"data set, alignment and σ, with 95% CIs over repeats × fractions; one panel per "
                          f"selector")],
                         out_dir)


def _summary(rows: pd.DataFrame, keys: list[str], **extra: tuple[str, str]) -> pd.DataFrame:
    """Per group of ``keys``: the ``extra`` named aggregations, rates, mean RMSEs, the mean per-run gain %
    100·(1 − RMSE_neg/RMSE_pos) and gap to the oracle, each with its 95% t half-width over the runs."""
    g = rows.groupby(keys, sort=False)
    t = g.agg(**extra, runs=("rep", "size"), oracle_negative_rate=("oracle_negative", "mean"),
              selector_negative_rate=("selector_negative", "mean"),
              total_negative_rate=("selector_total_negative", "mean"),
              oracle_total_negative_rate=("oracle_total_negative", "mean"),
              oracle_at_edge_rate=("oracle_at_edge", "mean"),
              positive_only_rmse=("positive_only_rmse", "mean"),
              negative_capable_rmse=("negative_capable_rmse", "mean"), oracle_rmse=("oracle_rmse", "mean"),
              gain_pct=("gain", "mean"), gap_to_oracle=("gap", "mean"), win_rate=("win", "mean"),
              tie_rate=("tie", "mean"), lambda_selected_median=("lambda_selected", "median")).reset_index()
    for col, src in (("gain_pct_ci", "gain"), ("gap_to_oracle_ci", "gap")):
        t.insert(t.columns.get_loc(col.removesuffix("_ci")) + 1, col, g[src].apply(_ci).to_numpy())
    t.insert(len(keys), "scale", SCALE)
    return t


def gain_figure(t: pd.DataFrame):
    """Bars of gain_pct (± gain_pct_ci) per data set, one bar per alignment × σ, one panel per selector."""
    selectors = list(dict.fromkeys(t.selector))
    datasets = list(dict.fromkeys(t.dataset))
    combos = list(dict.fromkeys(zip(t.alignment, t.noise)))
    fig, axes = new_figure(len(selectors), 1, 11, 2.8)
    width = 0.8 / len(combos)
    x = np.arange(len(datasets))
    for ax, sel in zip(axes[:, 0], selectors):
        s = t[t.selector == sel].set_index(["dataset", "alignment", "noise"])
        for k, (al, sd) in enumerate(combos):
            idx = [(d, al, sd) for d in datasets]
            ax.bar(x + (k - (len(combos) - 1) / 2) * width, s.loc[idx, "gain_pct"], width,
                   yerr=s.loc[idx, "gain_pct_ci"].fillna(0), capsize=2, label=f"{al}, σ={sd:g}")
        zero_line(ax, horizontal=True)
        ax.set(ylabel="gain %", title=sel, xticks=x, xticklabels=datasets)
    axes[0, 0].legend(fontsize=7, ncol=len(combos))
    return fig


EXPERIMENTS = {"v4_exp5": Exp5()}
