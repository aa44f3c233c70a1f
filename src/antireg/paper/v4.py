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
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from antireg.diagnostics import population_risk, sign_switch, sure_curve, weak_spectrum
from antireg.paper.config import PaperCfg
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


def _no_figures(tables: dict, out_dir) -> list:
    return []


# ---------------------------------------------------------------- Exp 1
class Exp1Options(_Strict):
    pattern: str = Field("weak", pattern="^(weak|balanced|strong)$")
    noise_std: float = Field(0.35, gt=0)
    n_train: int = Field(48, ge=13)
    n_test: int = Field(600, ge=1)
    negative_fractions: list[float] = [0.85, 0.60, 0.25]
    positive: list[float] = [0.0, 0.01, 0.05, 0.20]


class Exp1:
    """Feasible negative interval: one draw; λ = −f·μ̂_min and a few positive λ; df rises above p."""

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
        rows = []
        for lam in lams:
            b = _ridge(X, y, lam)
            rows.append({"lambda": lam, "scale": SCALE, "margin": lam + mu_hat.min(),
                         "df": float((mu_hat / (mu_hat + lam)).sum()), "beta_norm": float(np.linalg.norm(b)),
                         "train_mse": float(np.mean((y - X @ b) ** 2)), "test_mse": float(np.mean((yt - Xt @ b) ** 2)),
                         "mu_hat_min": float(mu_hat.min())})
        return rows

    def tables(self, rows: pd.DataFrame, cfg: PaperCfg) -> dict[str, pd.DataFrame]:
        return {cfg.experiment: rows.sort_values("lambda").reset_index(drop=True)}

    figures = staticmethod(_no_figures)


# ---------------------------------------------------------------- Exp 2
class Exp2Options(_Strict):
    lam: float = -0.02
    kappa: float = Field(0.20, gt=0)


class Exp2:
    """Weak-spectrum statistics (population) for the three patterns at λ = −0.02."""

    Options = Exp2Options

    def cells(self, cfg: PaperCfg, data_dir: Any) -> list[dict]:
        return [{"alignment": a, **cfg.options} for a in PATTERNS]

    def compute(self, cell: dict, data_dir: Any) -> list[dict]:
        w = weak_spectrum(MU, PATTERNS[cell["alignment"]], cell["lam"], cell["kappa"])
        return [{"alignment": cell["alignment"], "lambda": w.lam, "scale": SCALE, "kappa": w.kappa,
                 "rho_W": w.rho_W, "A_W": w.A_W, "A_S": w.A_S, "M_W": w.M_W, "M_S": w.M_S,
                 "B_W": w.B_W, "B_S": w.B_S, "weak_bias_share": w.weak_bias_share}]

    def tables(self, rows: pd.DataFrame, cfg: PaperCfg) -> dict[str, pd.DataFrame]:
        return {cfg.experiment: rows.reset_index(drop=True)}

    figures = staticmethod(_no_figures)


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


def _risk_figure(tables: dict, out_dir) -> list:
    """Population risk R(τ₀ + a) over λ = τ₀ + a per scenario; infeasible λ ≤ −min μ shaded, optimum marked."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from antireg.report.figures import save

    out = []
    for name, t in tables.items():
        fig, ax = plt.subplots(figsize=(7, 4))
        lam = np.linspace(-MU.min() + 1e-3, 1.2, 400)
        for row in t.itertuples():
            r = population_risk(lam, MU, PATTERNS[row.alignment], row.noise_std**2, 48)
            (line,) = ax.plot(lam, r, label=f"{row.alignment}, σ={row.noise_std}, τ₀={row.tau0}")
            lo = row.tau0 + row.oracle_adjustment
            ax.plot([lo], [population_risk(lo, MU, PATTERNS[row.alignment], row.noise_std**2, 48)], "o",
                    color=line.get_color())
        ax.axvspan(-0.1, -MU.min(), color="0.85", label="infeasible λ ≤ −μ_min")
        ax.set(xlabel="λ = τ₀ + a (v4 per-sample scale)", ylabel="population risk R", yscale="log", xlim=(-0.1, 1.2))
        ax.legend(fontsize=7)
        png, svg = save(fig, Path(out_dir) / f"{name}_risk")
        plt.close(fig)
        out.append((png, svg, f"{name}: population risk over λ; dots mark the oracle adjustment"))
    return out


class Exp3:
    """Sign switch (population): dR/da at a = 0 against the oracle adjustment on a grid."""

    Options = Exp3Options
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
                 "agree": bool((d > 0) == (a_opt < 0))}]

    def tables(self, rows: pd.DataFrame, cfg: PaperCfg) -> dict[str, pd.DataFrame]:
        return {cfg.experiment: rows.reset_index(drop=True)}


# ---------------------------------------------------------------- Exp 4
EXP4_SCENARIOS = [("weak", 0.15, 0.20), ("weak", 0.50, 0.20), ("balanced", 0.30, 0.10), ("strong", 0.50, 0.10)]
SELECTORS = ("sure_true_sigma", "sure_estimated_sigma", "loo")


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
        t.insert(4, "scale", SCALE)
        return {cfg.experiment: t}

    figures = staticmethod(_no_figures)


EXPERIMENTS = {"v4_exp1": Exp1(), "v4_exp2": Exp2(), "v4_exp3": Exp3(), "v4_exp4": Exp4()}
