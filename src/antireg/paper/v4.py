"""v4 Exp 1–4 of arXiv:2508.17412 (*A Ridge Too Far*), as designed in docs/paper_experiments.md.

All λ / η are v4's per-sample scale (Σ̂ + λI with Σ̂ = XᵀX/n; sklearn α = n·λ); every table has a
``scale`` column saying so. The synthetic setting: p = 12, n = 48, n_test = 600, Σ = diag(MU),
x = z·diag(√μ), y = xᵀβ + N(0, σ²), no intercept (the population mean is zero).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from antireg.diagnostics import population_risk, sign_switch, sure_curve, weak_spectrum
from antireg.paper.config import PaperCfg
from antireg.paper.plots import lambda_curve, new_figure, save_all, shade_beyond, zero_line
from antireg.spectral import lambda_to_alpha

MU = np.array([4.0, 3.0, 2.2, 1.5, 1.0, 0.7, 0.45, 0.28, 0.18, 0.11, 0.07, 0.04])
PATTERNS = {
    "weak": np.array([0.08, 0.08, 0.06, 0.05, 0.05, 0.04, 0.10, 0.16, 0.28, 0.36, 0.44, 0.52]),
    "balanced": np.array([0.18, 0.16, 0.15, 0.13, 0.12, 0.11, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10]),
    "strong": np.array([0.52, 0.44, 0.36, 0.28, 0.18, 0.12, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02]),
}
SCALE = "per_sample"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _draw(rng: np.random.Generator, beta: np.ndarray, sigma: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    X = rng.standard_normal((n, MU.size)) * np.sqrt(MU)
    return X, X @ beta + sigma * rng.standard_normal(n)


def _ridge(X: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    n = X.shape[0]
    return np.linalg.solve(X.T @ X / n + lam * np.eye(X.shape[1]), X.T @ y / n)


def _ci(x: pd.Series) -> float:
    x = x.dropna()
    return float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def _main(tables: dict) -> str:
    """The main table's name: the shortest (extras are ``NAME_suffix``)."""
    return min(tables, key=len)


# ---------------------------------------------------------------- Exp 1
class Exp1Options(_Strict):
    pattern: str = Field("weak", pattern="^(weak|balanced|strong)$")
    noise_std: float = Field(0.35, gt=0)
    n_train: int = Field(48, ge=13)
    n_test: int = Field(600, ge=1)
    negative_fractions: list[float] = [0.85, 0.60, 0.25]
    positive: list[float] = [0.0, 0.01, 0.05, 0.20]
    curve_points: int = Field(60, ge=2, description="points of each side (negative, positive) of the figure's curve")
    curve_max: float = Field(1.0, gt=0, description="largest λ of the curve (v4 per-sample scale)")


def _exp1_curve_lambdas(mu_min: float, points: int, top: float) -> np.ndarray:
    """The curve's λ: −f·μ̂_min for f from 0.995 to 0 (linear), then log-spaced up to ``top``."""
    return np.r_[-mu_min * np.linspace(0.995, 0, points), np.geomspace(mu_min / 100, top, points)]


class Exp1:
    """Feasible negative interval: one draw; λ = −f·μ̂_min and a few positive λ; df rises above p.

    Tables: ``v4_exp1`` (the listed λ) and ``v4_exp1_curve`` (the same columns on a dense λ grid from
    −0.995·μ̂_min to ``curve_max``, for the figure; its test-MSE argmin is the marked optimum).
    """

    Options = Exp1Options

    def cells(self, cfg: PaperCfg, data_dir: Any) -> list[dict]:
        return [{"seed": cfg.seed, **cfg.options}]

    def compute(self, cell: dict, data_dir: Any) -> list[dict]:
        rng = np.random.default_rng(cell["seed"])
        beta = PATTERNS[cell["pattern"]]
        X, y = _draw(rng, beta, cell["noise_std"], cell["n_train"])
        Xt, yt = _draw(rng, beta, cell["noise_std"], cell["n_test"])
        mu_hat = np.linalg.eigvalsh(X.T @ X / X.shape[0])
        lams = [-f * mu_hat.min() for f in cell["negative_fractions"]] + list(cell["positive"])
        curve = _exp1_curve_lambdas(mu_hat.min(), cell["curve_points"], cell["curve_max"])
        rows = []
        for lam, on_curve in [(v, False) for v in lams] + [(v, True) for v in curve]:
            b = _ridge(X, y, lam)
            rows.append({"lambda": lam, "scale": SCALE, "margin": lam + mu_hat.min(),
                         "df": float((mu_hat / (mu_hat + lam)).sum()), "beta_norm": float(np.linalg.norm(b)),
                         "train_mse": float(np.mean((y - X @ b) ** 2)), "test_mse": float(np.mean((yt - Xt @ b) ** 2)),
                         "mu_hat_min": float(mu_hat.min()), "curve": on_curve})
        return rows

    def tables(self, rows: pd.DataFrame, cfg: PaperCfg) -> dict[str, pd.DataFrame]:
        def part(on_curve: bool) -> pd.DataFrame:
            return rows[rows.curve == on_curve].drop(columns="curve").sort_values("lambda").reset_index(drop=True)

        return {cfg.experiment: part(False), f"{cfg.experiment}_curve": part(True)}

    @staticmethod
    def figure(points: pd.DataFrame, curve: pd.DataFrame) -> Figure:
        """Test and train MSE over λ (left) and df (right); λ ≤ −μ̂_min shaded, the test-MSE argmin of
        ``curve`` marked, the table's λ as open markers; symlog λ axis, linear within ±μ̂_min."""
        mu_min = float(curve.mu_hat_min.iloc[0])
        lam = curve["lambda"].to_numpy()
        fig, axes = new_figure(1, 2, 5.2, 3.8)
        ax, bx = axes[0]
        opt = float(lam[np.argmin(curve.test_mse.to_numpy())])
        lambda_curve(ax, lam, curve.test_mse, None, opt=opt, bound=-mu_min, label="test MSE",
                     bound_label="infeasible λ ≤ −μ̂_min")
        ax.plot(lam, curve.train_mse, label="train MSE")
        ax.plot(points["lambda"], points.test_mse, "o", mfc="none", color="C0", label="table's λ (test)")
        # the MSE diverges at the bound: cap the axis at 20× the optimum so the minimum stays readable
        ax.set(yscale="log", ylabel="MSE", title=f"test-MSE optimum λ = {opt:.3g}",
               ylim=(None, 20 * float(curve.test_mse.min())))
        bx.plot(lam, curve.df, label="df = Σ μ̂/(μ̂+λ)")
        bx.plot(points["lambda"], points.df, "o", mfc="none", color="C0", label="table's λ")
        bx.axhline(len(MU), color="0.4", ls=":", label=f"p = {len(MU)}")
        shade_beyond(bx, -mu_min, "infeasible λ ≤ −μ̂_min")
        bx.set(yscale="log", ylabel="effective degrees of freedom")
        for a in (ax, bx):
            a.set_xscale("symlog", linthresh=mu_min)
            a.set_xlabel("λ (v4 per-sample scale; symlog, linear within ±μ̂_min)")
            zero_line(a)
            a.legend(fontsize=7)
        return fig

    def figures(self, tables: dict, out_dir: Any) -> list:
        name = _main(tables)
        curve = tables.get(f"{name}_curve", tables[name])  # results of older versions have no curve table
        return save_all([(self.figure(tables[name], curve), f"{name}_curve",
                          f"{name}: test/train MSE and df over λ (v4 per-sample scale); grey = infeasible "
                          "λ ≤ −μ̂_min; dot = test-MSE optimum on the curve's grid")], out_dir)


# ---------------------------------------------------------------- Exp 2
class Exp2Options(_Strict):
    lam: float = -0.02
    kappa: float = Field(0.20, gt=0)


class Exp2:
    """Weak-spectrum statistics (population) for the three patterns at λ = −0.02.

    Tables: ``v4_exp2`` (the statistics per alignment) and ``v4_exp2_directions`` (per eigendirection
    j: μⱼ, βⱼ, whether j ∈ W, and its bias term μⱼλ²βⱼ²/(μⱼ+λ)², whose sums over W and S are B_W
    and B_S).
    """

    Options = Exp2Options

    def cells(self, cfg: PaperCfg, data_dir: Any) -> list[dict]:
        return [{"alignment": a, **cfg.options} for a in PATTERNS]

    def compute(self, cell: dict, data_dir: Any) -> list[dict]:
        beta, lam = PATTERNS[cell["alignment"]], cell["lam"]
        w = weak_spectrum(MU, beta, lam, cell["kappa"])
        bias = MU * lam**2 * beta**2 / (MU + lam) ** 2
        return [{"alignment": cell["alignment"], "lambda": w.lam, "scale": SCALE, "kappa": w.kappa,
                 "rho_W": w.rho_W, "A_W": w.A_W, "A_S": w.A_S, "M_W": w.M_W, "M_S": w.M_S,
                 "B_W": w.B_W, "B_S": w.B_S, "weak_bias_share": w.weak_bias_share}] + [
            {"alignment": cell["alignment"], "lambda": w.lam, "scale": SCALE, "direction": j, "mu": float(MU[j]),
             "beta": float(beta[j]), "weak": bool(w.weak[j]), "bias_term": float(bias[j])} for j in range(MU.size)]

    def tables(self, rows: pd.DataFrame, cfg: PaperCfg) -> dict[str, pd.DataFrame]:
        per_dir = rows["direction"].notna() if "direction" in rows else pd.Series(False, index=rows.index)
        main = rows[~per_dir].dropna(axis=1, how="all").reset_index(drop=True)
        dirs = rows[per_dir].dropna(axis=1, how="all").astype({"direction": int, "weak": bool})
        return {cfg.experiment: main, f"{cfg.experiment}_directions": dirs.reset_index(drop=True)}

    @staticmethod
    def figure(stats: pd.DataFrame, dirs: pd.DataFrame) -> Figure:
        """Left: each eigendirection's bias term over μⱼ per alignment, W = {μ ≤ κ} shaded. Right: W's
        share of the coefficient mass (A), the signal (M) and the bias at λ (B), per alignment."""
        fig, axes = new_figure(1, 2, 5.2, 3.8)
        ax, bx = axes[0]
        kappa, lam = float(stats.kappa.iloc[0]), float(stats["lambda"].iloc[0])
        for a, g in dirs.groupby("alignment", sort=False):
            ax.plot(g.mu, g.bias_term, "o-", ms=4, label=a)
        ax.axvspan(dirs.mu.min() / 1.5, kappa, color="0.9", zorder=0, label=f"weak W: μ ≤ κ = {kappa:g}",
                   gid="weak")
        ax.set(xscale="log", yscale="log", xlabel="population eigenvalue μⱼ",
               ylabel=f"bias term μⱼλ²βⱼ²/(μⱼ+λ)² at λ = {lam:g}", title="bias per eigendirection")
        ax.legend(fontsize=7)
        shares = {"A: Σ_W β² share": stats.A_W / (stats.A_W + stats.A_S),
                  "M: Σ_W μβ² share": stats.M_W / (stats.M_W + stats.M_S),
                  "B: weak-bias share": stats.weak_bias_share}
        x, width = np.arange(len(stats)), 0.8 / len(shares)
        for k, (lab, v) in enumerate(shares.items()):
            bx.bar_label(bx.bar(x + (k - 1) * width, v, width, label=lab), fmt="%.2f", fontsize=6)
        bx.set_xticks(x, list(stats.alignment))
        bx.set(ylim=(0, 1), ylabel="share of W (weak directions)", title=f"W's shares at λ = {lam:g} (per-sample)")
        bx.legend(fontsize=7)
        return fig

    def figures(self, tables: dict, out_dir: Any) -> list:
        name = _main(tables)
        if f"{name}_directions" not in tables:  # results of older versions
            return []
        return save_all([(self.figure(tables[name], tables[f"{name}_directions"]), f"{name}_weak",
                          f"{name}: bias per eigendirection (W shaded) and W's shares of A, M and B by alignment "
                          "(λ in v4 per-sample scale)")], out_dir)


# ---------------------------------------------------------------- Exp 3
class Scenario(_Strict):
    alignment: str = Field(pattern="^(weak|balanced|strong)$")
    noise_std: float = Field(gt=0)
    tau0: float = Field(gt=0)


EXP3_SCENARIOS = [("weak", 0.15, 0.20), ("weak", 0.50, 0.20), ("balanced", 0.30, 0.10),
                  ("balanced", 0.50, 0.20), ("strong", 0.30, 0.10), ("strong", 0.50, 0.10)]


def _scen(rows: list[tuple]) -> list[Scenario]:
    return [Scenario(alignment=a, noise_std=s, tau0=t) for a, s, t in rows]


class Exp3Options(_Strict):
    scenarios: list[Scenario] = Field(default_factory=lambda: _scen(EXP3_SCENARIOS))
    n_train: int = Field(48, ge=1)
    grid_points: int = Field(401, ge=3)


def exp3_figure(t: pd.DataFrame) -> Figure:
    """Population risk R(λ) over λ = τ₀ + a for each scenario; λ ≤ −min μ (infeasible) shaded, the oracle
    λ = τ₀ + a* marked as a dot and the baseline τ₀ as a cross."""
    fig, axes = new_figure(1, 1, 7.5, 4.2)
    ax = axes[0, 0]
    bound = -float(MU.min())
    dense = np.linspace(bound + 1e-3, 1.2, 400)
    for row in t.itertuples():
        n = int(getattr(row, "n_train", Exp3Options().n_train))  # results of older versions lack n_train
        opt = row.tau0 + row.oracle_adjustment
        lam = np.union1d(dense, [opt, row.tau0])
        r = population_risk(lam, MU, PATTERNS[row.alignment], row.noise_std**2, n)
        line = lambda_curve(ax, lam, r, None, opt=opt, bound=None,
                            label=f"{row.alignment}, σ={row.noise_std}, τ₀={row.tau0}")
        ax.plot([row.tau0], [np.interp(row.tau0, lam, r)], "x", color=line.get_color())
    shade_beyond(ax, bound, "infeasible λ ≤ −min μ", left=-0.1)
    zero_line(ax)
    # the risk diverges at the bound: cap the axis so the minima stay readable
    ax.set(xlabel="λ = τ₀ + a (v4 per-sample scale)", ylabel="population risk R (log)", yscale="log",
           ylim=(None, 1.0))
    ax.set_xlim(right=1.2)
    ax.legend(fontsize=7)
    return fig


def _risk_figure(tables: dict, out_dir: Any) -> list:
    name = _main(tables)
    return save_all([(exp3_figure(tables[name]), f"{name}_risk",
                      f"{name}: population risk over λ; dots = oracle λ = τ₀ + a*, crosses = baseline τ₀; "
                      "grey = infeasible λ ≤ −min μ")], out_dir)


class Exp3:
    """Sign switch (population): dR/da at a = 0 against the oracle adjustment on a grid."""

    Options = Exp3Options
    figure = staticmethod(exp3_figure)
    figures = staticmethod(_risk_figure)

    def cells(self, cfg: PaperCfg, data_dir: Any) -> list[dict]:
        o = cfg.options
        return [{**s, "n_train": o["n_train"], "grid_points": o["grid_points"]} for s in o["scenarios"]]

    def compute(self, cell: dict, data_dir: Any) -> list[dict]:
        beta, t0, s2, n = PATTERNS[cell["alignment"]], cell["tau0"], cell["noise_std"] ** 2, cell["n_train"]
        d = sign_switch(t0, MU, beta, s2, n)
        a = np.linspace(-t0 + 0.001, 1, cell["grid_points"])
        a_opt = float(a[np.argmin(population_risk(t0 + a, MU, beta, s2, n))])
        return [{"alignment": cell["alignment"], "noise_std": cell["noise_std"], "tau0": t0, "scale": SCALE,
                 "dR_da_at_0": d, "negative_predicted": bool(d > 0), "oracle_adjustment": a_opt,
                 "oracle_sign": "negative" if a_opt < 0 else ("zero" if a_opt == 0 else "positive"),
                 "agree": bool((d > 0) == (a_opt < 0)), "n_train": n}]

    def tables(self, rows: pd.DataFrame, cfg: PaperCfg) -> dict[str, pd.DataFrame]:
        return {cfg.experiment: rows.reset_index(drop=True)}


# ---------------------------------------------------------------- Exp 4
EXP4_SCENARIOS = [("weak", 0.15, 0.20), ("weak", 0.50, 0.20), ("balanced", 0.30, 0.10), ("strong", 0.50, 0.10)]
SELECTORS = ("sure_true_sigma", "sure_estimated_sigma", "loo")
MSE_COLUMNS = ("positive_only_test_mse", "negative_capable_test_mse", "oracle_test_mse")


class Exp4Options(_Strict):
    scenarios: list[Scenario] = Field(default_factory=lambda: _scen(EXP4_SCENARIOS))
    n_train: int = Field(48, ge=14)
    n_test: int = Field(600, ge=1)
    full_points: int = Field(61, ge=3)
    positive_points: int = Field(31, ge=2)
    bound_fractions: list[float] = Field([0.95, 0.9, 0.75, 0.5, 0.25],
                                         description="extra λ = −f·μ̂_min for the antireg selectors")
    chunk: int = Field(20, ge=1)


class Exp4:
    """Automatic selection over the negative-capable family, 80 replications per scenario.

    ``sure_true_sigma`` (v4's): SURE with the true σ² over a ∈ linspace(−τ₀+0.001, 1, 61) vs SURE over
    the positive grid a ∈ linspace(0, 1, 31). antireg's ``sure_estimated_sigma`` (σ̂² from
    :func:`antireg.linear.estimate_noise_variance`) and ``loo`` (:class:`antireg.linear.ARRidgeCV`)
    select over the full grid plus λ = −f·μ̂_min (truly negative, down to the spectral bound), against
    the same selector on the positive grid. Oracle: test-MSE argmin over the full v4 grid.
    """

    Options = Exp4Options

    def cells(self, cfg: PaperCfg, data_dir: Any) -> list[dict]:
        o, out = cfg.options, []
        for k, s in enumerate(o["scenarios"]):
            for start in range(0, cfg.replications, o["chunk"]):
                reps = list(range(start, min(start + o["chunk"], cfg.replications)))
                out.append({**s, "scenario": k, "seed": cfg.seed, "reps": reps,
                            **{key: o[key] for key in ("n_train", "n_test", "full_points", "positive_points",
                                                       "bound_fractions")}})
        return out

    def compute(self, cell: dict, data_dir: Any) -> list[dict]:
        from antireg.linear import ARRidgeCV, estimate_noise_variance

        beta, t0, sd, n = PATTERNS[cell["alignment"]], cell["tau0"], cell["noise_std"], cell["n_train"]
        lam_full = t0 + np.linspace(-t0 + 0.001, 1, cell["full_points"])
        lam_pos = t0 + np.linspace(0, 1, cell["positive_points"])
        rows = []
        for rep in cell["reps"]:
            rng = np.random.default_rng([cell["seed"], cell["scenario"], rep])
            X, y = _draw(rng, beta, sd, n)
            Xt, yt = _draw(rng, beta, sd, cell["n_test"])
            mu_min = np.linalg.eigvalsh(X.T @ X / n).min()
            lam_neg = np.union1d(lam_full, -mu_min * np.asarray(cell["bound_fractions"]))

            def test_mse(lam: float) -> float:
                return float(np.mean((yt - Xt @ _ridge(X, y, lam)) ** 2))

            full_mse = np.array([test_mse(lam) for lam in lam_full])
            oracle = lam_full[np.argmin(full_mse)]
            s2_hat = float(estimate_noise_variance(X, y, fit_intercept=False))

            def loo(grid: np.ndarray) -> float:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    m = ARRidgeCV(alphas=lambda_to_alpha(grid, n), fit_intercept=False, eta=0.01).fit(X, y)
                return float(m.alpha_ / n)

            picks = {
                "sure_true_sigma": (lam_full, lam_pos, lambda g: g[np.argmin(sure_curve(X, y, g, sd**2))]),
                "sure_estimated_sigma": (lam_neg, lam_pos, lambda g: g[np.argmin(sure_curve(X, y, g, s2_hat))]),
                "loo": (lam_neg, lam_pos, loo),
            }
            for name, (g_neg, g_pos, pick) in picks.items():
                ln, lp = float(pick(g_neg)), float(pick(g_pos))
                rows.append({"alignment": cell["alignment"], "noise_std": sd, "tau0": t0, "selector": name,
                             "rep": rep, "lambda_selected": ln, "lambda_positive": lp, "lambda_oracle": float(oracle),
                             "selector_negative": ln < t0, "selector_below_zero": ln < 0, "oracle_negative": oracle < t0,
                             "positive_only_test_mse": test_mse(lp), "negative_capable_test_mse": test_mse(ln),
                             "oracle_test_mse": float(full_mse.min())})
        return rows

    def tables(self, rows: pd.DataFrame, cfg: PaperCfg) -> dict[str, pd.DataFrame]:
        rows = rows.assign(diff=rows.negative_capable_test_mse - rows.positive_only_test_mse)
        keys = ["alignment", "noise_std", "tau0", "selector"]
        g = rows.groupby(keys, sort=False)
        t = g.agg(replications=("rep", "size"), oracle_negative_rate=("oracle_negative", "mean"),
                  selector_negative_rate=("selector_negative", "mean"),
                  selector_below_zero_rate=("selector_below_zero", "mean"),
                  positive_only_test_mse=("positive_only_test_mse", "mean"),
                  negative_capable_test_mse=("negative_capable_test_mse", "mean"),
                  oracle_test_mse=("oracle_test_mse", "mean"),
                  diff_negative_minus_positive=("diff", "mean")).reset_index()
        t["diff_ci95"] = g["diff"].apply(_ci).to_numpy()
        t["gap_to_oracle"] = t.negative_capable_test_mse - t.oracle_test_mse
        for col in MSE_COLUMNS:  # the 95% CI of each mean, for the figure
            t[f"{col}_ci95"] = g[col].apply(_ci).to_numpy()
        t.insert(4, "scale", SCALE)
        return {cfg.experiment: t}

    @staticmethod
    def figure(t: pd.DataFrame) -> Figure:
        """Top row, one panel per scenario: mean test MSE (95% CI) of each selector on the positive grid
        and on the negative-capable grid, the oracle's as a grey band. Bottom: the paired difference
        negative-capable − positive-only per selector and scenario, with its 95% CI (below 0 = helps)."""
        scen = list(dict.fromkeys(zip(t.alignment, t.noise_std, t.tau0)))
        fig, axes = new_figure(2, len(scen), 3.4, 3.2)
        labels = {"positive_only_test_mse": "positive-only", "negative_capable_test_mse": "negative-capable"}
        for ax, key in zip(axes[0], scen):
            g = t[(t.alignment == key[0]) & (t.noise_std == key[1]) & (t.tau0 == key[2])]
            x = np.arange(len(g))
            for k, (col, lab) in enumerate(labels.items()):
                ax.errorbar(x + 0.15 * (2 * k - 1), g[col], yerr=g.get(f"{col}_ci95"), fmt="o", ms=4, capsize=3,
                            label=lab, color=f"C{k}")
            o, oh = float(g.oracle_test_mse.iloc[0]), float(g.get("oracle_test_mse_ci95", pd.Series([0])).iloc[0])
            ax.axhspan(o - oh, o + oh, color="0.85", zorder=0)
            ax.axhline(o, color="0.4", lw=1, label="oracle (95% CI)")
            ax.set_xticks(x, [s.replace("_", "\n") for s in g.selector], fontsize=7)
            ax.set_title(f"{key[0]}, σ={key[1]}, τ₀={key[2]}", fontsize=9)
        axes[0, 0].set_ylabel("test MSE (mean over reps)")
        axes[0, 0].legend(fontsize=7)
        gs = axes[1, 0].get_gridspec()
        for ax in axes[1]:
            ax.remove()
        bx = fig.add_subplot(gs[1, :])
        x = np.arange(len(scen))
        sels = list(dict.fromkeys(t.selector))
        for k, sel in enumerate(sels):
            g = t[t.selector == sel]
            bx.errorbar(x + 0.12 * (k - (len(sels) - 1) / 2), g.diff_negative_minus_positive, yerr=g.diff_ci95,
                        fmt="o", capsize=3, label=sel)
        zero_line(bx, horizontal=True)
        bx.set_xticks(x, [f"{a}, σ={s}, τ₀={t0}" for a, s, t0 in scen])
        bx.set(ylabel="negative − positive test MSE\n(paired mean, 95% CI)")
        bx.legend(fontsize=7)
        return fig

    def figures(self, tables: dict, out_dir: Any) -> list:
        name = _main(tables)
        return save_all([(self.figure(tables[name]), f"{name}_selectors",
                          f"{name}: test MSE of each selector restricted to positive λ vs allowed negative λ "
                          "(v4 per-sample scale), the oracle's as a grey band; below, the paired difference "
                          "(negative < 0 = helps), 95% CIs over replications")], out_dir)


EXPERIMENTS = {"v4_exp1": Exp1(), "v4_exp2": Exp2(), "v4_exp3": Exp3(), "v4_exp4": Exp4()}
