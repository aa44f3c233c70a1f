"""Kobak, Lomond & Sanchez (JMLR 21(169), 2020), *The optimal ridge penalty for real-world
high-dimensional data can be zero or negative due to implicit ridge regularization*:
the spiked toy model, MNIST random Fourier features, and liver.toxicity.

Scale: Kobak's unnormalised penalty, ``β̂(λ) = (XᵀX + λI)⁻¹Xᵀy``: scikit-learn's α (every table
says ``scale = sklearn_alpha`` and gives v4's per-sample ``lambda_per_sample = α/n`` beside it,
converted by :func:`antireg.spectral.alpha_to_lambda`). Every λ grid is one negative part
``−f·(1−η)·s²_min`` (f in (0, 1]; s²_min the smallest nonzero squared singular value of the
(centred) training design, the worst over all replications, so each grid point is feasible and
spectrally safe in every replication: ``α ≥ −(1−η)s²_min``, :func:`antireg.spectral.safe_alpha_min`),
then 0, then a log-spaced positive part. All α of a grid come from one thin SVD per training set
(:func:`antireg.spectral.thin_svd`): ``β̂(α) = V diag(s/(s²+α)) Uᵀy``; with p > n the centred
design's zero singular value (from the intercept) is dropped, so ``α = 0`` is the minimum-norm
interpolator.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats
from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

from antireg.paper.config import PaperCfg
from antireg.paper.plots import lambda_curve, new_figure, save_all, zero_line
from antireg.spectral import ETA, alpha_to_lambda, center_design, safe_alpha_min, thin_svd

# Every compute() works on n ≈ 64-row matrices, where BLAS threads only spin against each other and against
# other processes (a 64 × 64 eigh on the shared 2-core machine: 14 ms with 2 threads, 0.6 ms with 1);
# parallelism comes from the driver's --jobs processes instead.
ONE_BLAS_THREAD = threadpool_limits.wrap(limits=1)

SCALE = "sklearn_alpha"
EDGE = {"lower": " (on the grid's lower edge: the safety bound)",
        "upper": " (on the grid's upper edge: widen positive_max)"}
NOTE = ("λ is Kobak's unnormalised penalty (XᵀX + λI), i.e. scikit-learn's α; lambda_per_sample = α/n is "
        "v4's scale. Negative λ stop at the spectral-safety bound −(1−η)·s²_min of the worst training design; "
        "the shaded region of each figure is infeasible or unsafe. An optimum flagged at_grid_edge='lower' "
        "sits at that bound (widening the grid would cross it); 'upper' at the largest λ (widen positive_max).")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Grid(_Strict):
    """The λ grid (α scale): negative points −f·(1−η)s²_min for f = k/negative_points, 0, positive points."""

    negative_points: int = Field(30, ge=0)
    eta: float = Field(ETA, gt=0, lt=1, description="spectral-safety margin of the negative end")
    positive_min: float = Field(0.01, gt=0)
    positive_max: float = Field(1e4, gt=0)
    positive_points: int = Field(60, ge=1)


def lambda_grid(s2_min: float, grid: dict) -> np.ndarray:
    """Increasing α grid: ``safe_alpha_min([s2_min], η)·(k/K)`` for k = K..1, 0, then geomspace."""
    bound = safe_alpha_min([s2_min], grid["eta"])
    k = grid["negative_points"]
    negative = bound * np.arange(k, 0, -1) / k if k else np.zeros(0)
    positive = np.geomspace(grid["positive_min"], grid["positive_max"], grid["positive_points"])
    return np.concatenate([negative, [0.0], positive])


def ridge_path(X: np.ndarray, y: np.ndarray, alphas: np.ndarray, fit_intercept: bool
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients for every α from one thin SVD of the (centred) design.

    Returns ``(coefs (p, m[, t]), intercepts (m[, t]), eigs)`` with ``coefs[:, j] = V diag(s/(s²+α_j)) Uᵀy``
    (``y`` of shape (n,) or (n, t)), intercept ``ȳ − x̄ᵀβ̂``, and ``eigs = s²`` (nonzero only).
    """
    A, x_off, _ = center_design(X, fit_intercept)
    y_off = y.mean(axis=0) if fit_intercept else np.zeros(y.shape[1:])
    U, s, Vt = thin_svd(A)
    uty = (U.T @ (y - y_off)).reshape(s.size, -1)  # (r, t)
    f = s[:, None] / (s[:, None] ** 2 + alphas[None, :])  # (r, m)
    coefs = (Vt.T @ (f[:, :, None] * uty[:, None, :]).reshape(s.size, -1)).reshape(X.shape[1], alphas.size,
                                                                                   *y.shape[1:])
    return coefs, y_off - np.tensordot(x_off, coefs, axes=1), s**2


def path_fit(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One thin SVD of the centred design, kept for every α: ``(x̄, ȳ, s, Vᵀ, Uᵀ(y−ȳ) of shape (r, t))``."""
    A, x_off, _ = center_design(X, True)
    y_off = y.mean(axis=0)
    U, s, Vt = thin_svd(A)
    return x_off, y_off, s, Vt, (U.T @ (y - y_off)).reshape(s.size, -1)


def path_predict(P: np.ndarray, s: np.ndarray, uty: np.ndarray, y_off: np.ndarray, alphas: np.ndarray
                 ) -> np.ndarray:
    """Predictions (n_test, m, t) of every α: ``ȳ + P diag(s/(s²+α)) Uᵀ(y−ȳ)`` with ``P = (X_test − x̄)V``,
    the same as :func:`ridge_path`'s ``X_test β̂(α) + intercept`` without forming the (p, m, t) coefficients."""
    f = s[:, None] / (s[:, None] ** 2 + alphas[None, :])  # (r, m)
    return (P @ (f[:, :, None] * uty[:, None, :]).reshape(s.size, -1)).reshape(P.shape[0], alphas.size, -1) + y_off


def mean_ci(a: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 95% t-interval half-width along ``axis`` (NaN half-width for one value)."""
    k = a.shape[axis]
    half = stats.t.ppf(0.975, k - 1) * a.std(axis=axis, ddof=1) / np.sqrt(k) if k > 1 else np.full(
        np.delete(a.shape, axis), np.nan)
    return a.mean(axis=axis), half


def _edge(j: int, m: int, negative_points: int) -> str:
    """Which end of the grid an argmin index sits at ('lower' = the spectral bound)."""
    return "lower" if j == 0 and negative_points else ("upper" if j == m - 1 else "interior")


def _optimum(lams: np.ndarray, curve: np.ndarray, half: np.ndarray, grid: dict) -> dict:
    j = int(np.argmin(curve))
    zero = int(np.flatnonzero(lams == 0.0)[0])
    return {"lambda_opt": float(lams[j]), "scale": SCALE, "opt": float(curve[j]), "opt_ci": float(half[j]),
            "at_zero": float(curve[zero]), "at_zero_ci": float(half[zero]),
            "at_grid_edge": _edge(j, lams.size, grid["negative_points"])}


def _main(tables: dict) -> str:
    """The main table's name: the shortest (extras are ``NAME_suffix``)."""
    return min(tables, key=len)


LAMBDA_AXIS = "λ (Kobak's penalty = sklearn α scale; symlog)"


def _lambda_limits(curves: pd.DataFrame) -> tuple[float, float]:
    """x limits of a panel of curves: the grid's span, a little beyond the most negative bound (symlog's own
    margins would add decades of empty negative axis)."""
    return 1.5 * float(curves.lambda_bound.min()), float(curves["lambda"].max())


# ----------------------------------------------------------------------------- toy model
class ToyOptions(_Strict):
    n: int = Field(64, ge=2)
    rho: float = Field(0.1, ge=0)
    snr: float = Field(10.0, gt=0)
    noise_var: float = Field(1.0, gt=0)
    p_curves: list[int] = Field([50, 75, 150, 1000], min_length=1)
    p_scan: list[int] = [20, 30, 40, 56, 72, 100, 200, 300, 500, 750, 1500]
    grid: Grid = Field(default_factory=Grid)


def toy_beta(p: int, rho: float, snr: float, noise_var: float) -> np.ndarray:
    """β ∝ 1 with βᵀΣβ = SNR·σ² for Σ = I + ρ11ᵀ: βᵀΣβ = b²p(1 + ρp) for β = b·1."""
    return np.full(p, np.sqrt(snr * noise_var / (p * (1 + rho * p))))


def toy_nmse(coefs: np.ndarray, beta: np.ndarray, rho: float, snr: float, noise_var: float) -> np.ndarray:
    """Normalised test MSE of each column of ``coefs``: ((β̂−β)ᵀΣ(β̂−β) + σ²)/((SNR+1)σ²), Σ = I + ρ11ᵀ.

    The expected squared error of a new (x, y) over var(y) = βᵀΣβ + σ² (Kobak et al. 2020, Sec. 3)."""
    e = coefs - beta[:, None]
    return ((e**2).sum(axis=0) + rho * e.sum(axis=0) ** 2 + noise_var) / ((snr + 1) * noise_var)


def toy_draw(rng: np.random.Generator, n: int, beta: np.ndarray, rho: float, noise_var: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """x = z + √ρ·g·1 (z ~ N(0, I), g ~ N(0, 1)) has covariance I + ρ11ᵀ; y = xᵀβ + N(0, σ²)."""
    X = rng.standard_normal((n, beta.size)) + np.sqrt(rho) * rng.standard_normal((n, 1))
    return X, X @ beta + np.sqrt(noise_var) * rng.standard_normal(n)


class Toy:
    """Spiked toy model: NMSE over λ for each p, 100 replications; optimal λ against p.

    No intercept and no standardisation: x has mean zero and known unit-scale covariance, and the
    NMSE formula is the exact expected test error of β̂ (checked against Monte Carlo in the tests).
    """

    Options = ToyOptions
    NOTE = NOTE

    def cells(self, cfg: PaperCfg, data_dir: Any) -> list[dict]:
        o = cfg.options
        ps = list(dict.fromkeys(o["p_curves"] + o["p_scan"]))
        return [{"p": p, "curve": p in o["p_curves"], "seed": cfg.seed, "reps": cfg.replications,
                 **{k: o[k] for k in ("n", "rho", "snr", "noise_var", "grid")}} for p in ps]

    @ONE_BLAS_THREAD
    def compute(self, cell: dict, data_dir: Any) -> list[dict]:
        p, n, rho, snr, s2 = cell["p"], cell["n"], cell["rho"], cell["snr"], cell["noise_var"]
        beta = toy_beta(p, rho, snr, s2)
        draws = [toy_draw(np.random.default_rng([cell["seed"], p, r]), n, beta, rho, s2)
                 for r in range(cell["reps"])]
        svds = [thin_svd(X) for X, _ in draws]
        s2_min = min(float(s.min()) ** 2 for _, s, _ in svds)
        lams = lambda_grid(s2_min, cell["grid"])
        nmse = np.empty((len(draws), lams.size))
        for r, ((U, s, Vt), (_, y)) in enumerate(zip(svds, draws)):
            coefs = Vt.T @ ((s / (s**2 + lams[:, None])) * (U.T @ y)).T
            nmse[r] = toy_nmse(coefs, beta, rho, snr, s2)
        mean, half = mean_ci(nmse)
        bound = safe_alpha_min([s2_min], cell["grid"]["eta"])
        return [{"p": p, "curve": cell["curve"], "lambda": float(a), "scale": SCALE,
                 "lambda_per_sample": float(alpha_to_lambda(a, n)), "nmse_mean": float(m), "nmse_ci": float(h),
                 "reps": len(draws), "lambda_bound": bound, "s2_min": s2_min}
                for a, m, h in zip(lams, mean, half)]

    def tables(self, rows: pd.DataFrame, cfg: PaperCfg) -> dict[str, pd.DataFrame]:
        opt = []
        for p, g in rows.groupby("p", sort=True):
            o = _optimum(g["lambda"].to_numpy(), g["nmse_mean"].to_numpy(), g["nmse_ci"].to_numpy(),
                         cfg.options["grid"])
            opt.append({"p": p, "lambda_opt": o["lambda_opt"], "scale": SCALE,
                        "lambda_opt_per_sample": float(alpha_to_lambda(o["lambda_opt"], cfg.options["n"])),
                        "nmse_opt": o["opt"], "nmse_opt_ci": o["opt_ci"], "nmse_at_zero": o["at_zero"],
                        "nmse_at_zero_ci": o["at_zero_ci"], "optimum_negative": o["lambda_opt"] < 0,
                        "lambda_bound": g["lambda_bound"].iloc[0], "at_grid_edge": o["at_grid_edge"]})
        main = rows[rows["curve"]].drop(columns="curve").sort_values(["p", "lambda"]).reset_index(drop=True)
        return {cfg.experiment: main, f"{cfg.experiment}_optimum": pd.DataFrame(opt)}

    @staticmethod
    def figure(main: pd.DataFrame, opt: pd.DataFrame) -> Figure:
        """Left: NMSE over λ per p (mean, 95% band), each p's optimum as a dot and its spectral-safety
        bound dashed. Right: the optimal λ against p over the p-scan, λ = 0 dashed, beyond the bound grey."""
        fig, axes = new_figure(1, 2, 5.5, 4.0)
        ax, bx = axes[0]
        for p, g in main.groupby("p"):
            lambda_curve(ax, g["lambda"].to_numpy(), g.nmse_mean.to_numpy(), g.nmse_ci.to_numpy(),
                         opt=float(opt.loc[opt.p == p, "lambda_opt"].iloc[0]), bound=float(g.lambda_bound.iloc[0]),
                         label=f"p = {p}", shade=False)
        zero_line(ax)
        ax.set(xscale="symlog", xlabel=LAMBDA_AXIS, ylabel="NMSE (mean, 95% CI)", ylim=(0, 1.2),
               xlim=_lambda_limits(main))
        ax.legend(fontsize=7)
        bx.plot(opt.p, opt.lambda_opt, "o-", label="optimal λ")
        bx.fill_between(opt.p, opt.lambda_bound, opt.lambda_bound.min() * 1.5, color="0.85", lw=0,
                        label="beyond the safety bound", gid="infeasible")
        zero_line(bx, horizontal=True)
        n = (opt.lambda_opt / opt.lambda_opt_per_sample).dropna()  # α = n·λ gives n back
        bx.set(xscale="log", yscale="symlog", xlabel=f"p (n = {n.iloc[0]:.0f})" if len(n) else "p",
               ylabel="optimal λ (sklearn α scale; symlog)")
        bx.legend(fontsize=7)
        return fig

    def figures(self, tables: dict, out_dir: Path) -> list:
        name = _main(tables)
        return save_all([(self.figure(tables[name], tables[f"{name}_optimum"]), f"{name}_curves",
                          f"{name}: NMSE over λ (sklearn α scale; mean, 95% CI; dashed = each p's spectral-safety "
                          "bound, dots = optima) and the optimal λ against p (dashed = 0, grey = beyond the bound)")],
                        out_dir)


# -------------------------------------------------------------------------- MNIST (RFF)
class MnistGrid(Grid):
    positive_min: float = Field(0.1, gt=0)
    positive_max: float = Field(1e6, gt=0)


class MnistOptions(_Strict):
    n_train: int = Field(64, ge=3)
    projections: int = Field(1000, ge=1)
    weight_std: float = Field(0.1, gt=0, description="projection weights N(0, weight_std²): 0.1 = variance 0.01")
    n_test: int | None = Field(None, ge=1, description="first n_test t10k images (default: all 10000)")
    pixels: str = Field("standardized", pattern="^(standardized|unit)$",
                        description="z-score each pixel over the training split, or keep pixels in [0, 1]")
    standardize: bool = Field(True, description="z-score the features on each training set")
    chunk: int = Field(25, ge=1)
    grid: MnistGrid = Field(default_factory=MnistGrid)


def rff(pixels: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Random Fourier features [cos(xW), sin(xW)] of flattened (standardised) pixels."""
    Z = pixels @ W
    return np.concatenate([np.cos(Z), np.sin(Z)], axis=1)


@functools.lru_cache(maxsize=1)  # chunks in one process (and the tests) load and standardise once
def _mnist(data_dir: Any, n_test: int | None, pixels: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from antireg.data import load_dataset

    train, test = load_dataset("mnist_train", data_dir), load_dataset("mnist_t10k", data_dir)
    k = test.n if n_test is None else min(n_test, test.n)
    Xtr, Xte = train.X.reshape(train.n, -1), test.X[:k].reshape(k, -1).astype(np.float64)
    if pixels == "standardized":  # per pixel over the 60000 training images; never-lit pixels stay 0
        mu, sd = Xtr.mean(axis=0, dtype=np.float64), Xtr.std(axis=0, dtype=np.float64)
        sd[sd == 0] = 1.0
        Xtr, Xte = ((Xtr - mu) / sd).astype(np.float32), (Xte - mu) / sd
    # the training pool stays float32 (rows are converted when drawn); the test set is used whole
    return Xtr, train.y.astype(np.float64), Xte, test.y[:k].astype(np.float64)


def _mnist_projection(seed: int, projections: int, weight_std: float) -> np.ndarray:
    """The one fixed projection of an experiment (replications redraw the training set, not W)."""
    return weight_std * np.random.default_rng([seed, 784]).standard_normal((784, projections))


def _mnist_train(Xpool: np.ndarray, ypool: np.ndarray, W: np.ndarray, seed: int, rep: int, n: int,
                 standardize: bool):
    """Replication ``rep``'s training set: n random training images; features (standardised on
    these n rows when asked), and the mean and scale applied."""
    idx = np.random.default_rng([seed, rep]).choice(len(ypool), n, replace=False)
    F = rff(Xpool[idx].astype(np.float64), W)
    mu, sd = (F.mean(axis=0), F.std(axis=0)) if standardize else (np.zeros(F.shape[1]), np.ones(F.shape[1]))
    sd[sd == 0] = 1.0
    return (F - mu) / sd, ypool[idx], mu, sd


class MnistRff:
    """MNIST with 1000 Gaussian projections (cos and sin: p = 2000), n = 64 training images from the
    official training split, the digit as a numeric target, tested on the 10000 t10k images.

    Features are standardised on each training set; the intercept is fitted (the centred design has
    rank n − 1: its zero singular value is dropped).
    """

    Options = MnistOptions
    NOTE = NOTE

    def cells(self, cfg: PaperCfg, data_dir: Any) -> list[dict]:
        o = cfg.options
        return [{"seed": cfg.seed, "replications": cfg.replications,
                 "reps": list(range(s, min(s + o["chunk"], cfg.replications))),
                 **{k: o[k] for k in ("n_train", "projections", "weight_std", "n_test", "pixels", "standardize",
                                      "grid")}}
                for s in range(0, cfg.replications, o["chunk"])]

    @ONE_BLAS_THREAD
    def compute(self, cell: dict, data_dir: Any) -> list[dict]:
        Xpool, ypool, Xtest, ytest = _mnist(data_dir, cell["n_test"], cell["pixels"])
        W = _mnist_projection(cell["seed"], cell["projections"], cell["weight_std"])
        # the worst smallest nonzero s² over ALL replications fixes one feasible grid for every chunk, so each
        # chunk redoes the other replications' small (n × 2·projections) SVDs; its own fits are kept
        s2_min, fits = np.inf, {}
        for rep in range(cell["replications"]):
            F, y, mu, sd = _mnist_train(Xpool, ypool, W, cell["seed"], rep, cell["n_train"], cell["standardize"])
            fit = path_fit(F, y)
            s2_min = min(s2_min, float(fit[2].min()) ** 2)
            if rep in cell["reps"]:
                fits[rep] = fit, mu, sd
        lams = lambda_grid(s2_min, cell["grid"])
        Ftest = rff(Xtest, W)
        rows = []
        for rep, ((x_off, y_off, s, Vt, uty), mu, sd) in fits.items():
            # P = ((Ftest − μ)/σ − x̄)V without forming the standardised (n_test, p) test features
            P = Ftest @ (Vt.T / sd[:, None]) - (mu / sd + x_off) @ Vt.T
            mse = ((path_predict(P, s, uty, y_off, lams)[:, :, 0] - ytest[:, None]) ** 2).mean(axis=0)
            rows += [{"rep": rep, "lambda": float(a), "test_mse": float(e), "s2_min_rep": float(s.min()) ** 2}
                     for a, e in zip(lams, mse)]
        return rows

    def tables(self, rows: pd.DataFrame, cfg: PaperCfg) -> dict[str, pd.DataFrame]:
        n, grid = cfg.options["n_train"], cfg.options["grid"]
        piv = rows.pivot(index="rep", columns="lambda", values="test_mse")
        lams = piv.columns.to_numpy(float)
        mean, half = mean_ci(piv.to_numpy())
        s2_min = float(rows["s2_min_rep"].min())
        bound = safe_alpha_min([s2_min], grid["eta"])
        main = pd.DataFrame({"lambda": lams, "scale": SCALE, "lambda_per_sample": alpha_to_lambda(lams, n),
                             "test_mse_mean": mean, "test_mse_ci": half, "reps": len(piv),
                             "lambda_bound": bound, "s2_min": s2_min})
        o = _optimum(lams, mean, half, grid)
        # per-replication optimum: how often it is negative
        rep_opt = lams[np.argmin(piv.to_numpy(), axis=1)]
        opt = pd.DataFrame([{"lambda_opt": o["lambda_opt"], "scale": SCALE,
                             "lambda_opt_per_sample": float(alpha_to_lambda(o["lambda_opt"], n)),
                             "test_mse_opt": o["opt"], "test_mse_opt_ci": o["opt_ci"],
                             "test_mse_at_zero": o["at_zero"], "test_mse_at_zero_ci": o["at_zero_ci"],
                             "optimum_negative": o["lambda_opt"] < 0, "rep_optimum_negative_rate": float(
                                 (rep_opt < 0).mean()), "lambda_bound": bound, "at_grid_edge": o["at_grid_edge"],
                             "reps": len(piv)}])
        return {cfg.experiment: main, f"{cfg.experiment}_optimum": opt}

    @staticmethod
    def figure(t: pd.DataFrame, o: pd.DataFrame) -> Figure:
        """Test MSE over λ (mean, 95% band), the optimum as a dot, λ beyond the safety bound grey;
        an optimum on the grid's edge is said in the title."""
        fig, axes = new_figure(1, 1, 7.0, 4.0)
        ax = axes[0, 0]
        lambda_curve(ax, t["lambda"].to_numpy(), t.test_mse_mean.to_numpy(), t.test_mse_ci.to_numpy(),
                     opt=float(o.lambda_opt.iloc[0]), bound=float(t.lambda_bound.iloc[0]),
                     label="test MSE (mean, 95% CI)", bound_label="beyond the safety bound")
        zero_line(ax)
        ax.set(xscale="symlog", xlabel=LAMBDA_AXIS, ylabel="test MSE (digit value)",
               title=f"optimum λ = {o.lambda_opt.iloc[0]:.4g}{EDGE.get(str(o.at_grid_edge.iloc[0]), '')}")
        ax.legend(fontsize=7)
        return fig

    def figures(self, tables: dict, out_dir: Path) -> list:
        name = _main(tables)
        o = tables[f"{name}_optimum"]
        return save_all([(self.figure(tables[name], o), f"{name}_curve",
                          f"{name}: test MSE over λ (sklearn α scale); dot = optimum"
                          f"{EDGE.get(str(o.at_grid_edge.iloc[0]), '')}; grey = beyond the spectral-safety bound")],
                        out_dir)


# ------------------------------------------------------------------------ liver.toxicity
class LiverGrid(Grid):
    positive_min: float = Field(0.1, gt=0)
    positive_max: float = Field(1e6, gt=0)


class LiverOptions(_Strict):
    folds: int = Field(10, ge=2)
    random_genes: int = Field(50, ge=1)
    grid: LiverGrid = Field(default_factory=LiverGrid)


def liver_data(data_dir: Any) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Standardised genes (64, 3116), standardised responses (64, 10) and the response names."""
    from antireg.data import load_dataset

    ds = load_dataset("liver_toxicity", data_dir)
    z = lambda a: (a - a.mean(axis=0)) / a.std(axis=0)  # noqa: E731
    return z(ds.X), z(ds.meta["responses"]), tuple(ds.meta["response_names"])


def _folds(n: int, k: int, seed: int, rep: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold

    return list(KFold(k, shuffle=True, random_state=int(np.random.default_rng([seed, rep]).integers(2**31)))
                .split(np.zeros(n)))


def fold_fits(X: np.ndarray, Y: np.ndarray, folds: list) -> list[tuple]:
    """Per fold, what every α's test prediction needs, from one thin SVD of the centred training design:
    ``(P = (X_test − x̄)V, s, Uᵀ(y−ȳ), ȳ, Y_test)`` (all of size n, never p × m)."""
    out = []
    for train, test in folds:
        x_off, y_off, s, Vt, uty = path_fit(X[train], Y[train])
        out.append(((X[test] - x_off) @ Vt.T, s, uty, y_off, Y[test]))
    return out


def cv_mse(fits: list[tuple], lams: np.ndarray) -> np.ndarray:
    """k-fold CV MSE, shape (m, t): the mean over folds of each fold's test MSE (as GridSearchCV scores)."""
    return sum(((path_predict(P, s, uty, y_off, lams) - Yt[:, None, :]) ** 2).mean(axis=0)
               for P, s, uty, y_off, Yt in fits) / len(fits)


def cv_curves(X: np.ndarray, Y: np.ndarray, lams: np.ndarray, folds: list) -> np.ndarray:
    """k-fold CV MSE, shape (m, t), every α and every response in closed form (:func:`fold_fits`)."""
    return cv_mse(fold_fits(X, Y, folds), lams)


def _liver_columns(p: int, genes: str, k: int, seed: int, rep: int) -> np.ndarray:
    """All genes, or replication ``rep``'s sorted random subset of k."""
    return np.arange(p) if genes == "all" else np.sort(
        np.random.default_rng([seed, rep, 50]).choice(p, k, replace=False))


class Liver:
    """liver.toxicity: for each of the 10 clinical responses, repeated 10-fold CV MSE over λ with all
    3116 genes and with 50 random genes (a new random subset per replication), and its optimum.

    Genes and responses are standardised on all 64 rats (as Kobak did); CV MSE is therefore in units
    of each response's variance (1 ≈ predicting the mean). Replications redraw the fold assignment.
    """

    Options = LiverOptions
    NOTE = NOTE

    def cells(self, cfg: PaperCfg, data_dir: Any) -> list[dict]:
        # one cell per gene set: its λ grid needs the worst s²_min over every replication's folds
        o = cfg.options
        return [{"genes": genes, "reps": cfg.replications, "seed": cfg.seed, "folds": o["folds"],
                 "random_genes": o["random_genes"], "grid": o["grid"]} for genes in ("all", "random")]

    @ONE_BLAS_THREAD
    def compute(self, cell: dict, data_dir: Any) -> list[dict]:
        X, Y, names = liver_data(data_dir)
        fits, labels = [], []
        for rep in range(cell["reps"]):  # one SVD per fold, for the bound and every α
            cols = _liver_columns(X.shape[1], cell["genes"], cell["random_genes"], cell["seed"], rep)
            fits.append(fold_fits(X[:, cols], Y, _folds(X.shape[0], cell["folds"], cell["seed"], rep)))
            labels.append(f"{cell['genes']} {cols.size}")
        s2_min = min(float(f[1].min()) ** 2 for rep in fits for f in rep)
        lams = lambda_grid(s2_min, cell["grid"])
        rows = []
        for rep, (rep_fits, label) in enumerate(zip(fits, labels)):
            cv = cv_mse(rep_fits, lams)
            rows += [{"genes": label, "rep": rep, "response": names[k], "lambda": float(a), "cv_mse": float(cv[j, k]),
                      "s2_min": s2_min} for k in range(len(names)) for j, a in enumerate(lams)]
        return rows

    def tables(self, rows: pd.DataFrame, cfg: PaperCfg) -> dict[str, pd.DataFrame]:
        grid, n_train = cfg.options["grid"], 64 * (cfg.options["folds"] - 1) / cfg.options["folds"]
        best, curves = [], []
        for (genes, resp), g in rows.groupby(["genes", "response"], sort=False):
            piv = g.pivot(index="rep", columns="lambda", values="cv_mse")
            lams = piv.columns.to_numpy(float)
            mean, half = mean_ci(piv.to_numpy())
            o = _optimum(lams, mean, half, grid)
            bound = safe_alpha_min([float(g.s2_min.iloc[0])], grid["eta"])
            best.append({"response": resp, "genes": genes, "lambda_opt": o["lambda_opt"], "scale": SCALE,
                         "lambda_opt_per_sample": float(alpha_to_lambda(o["lambda_opt"], n_train)),
                         "cv_mse_opt": o["opt"], "cv_mse_at_zero": o["at_zero"],
                         "cv_mse_at_largest_lambda": float(mean[-1]), "optimum_sign": (
                             "negative" if o["lambda_opt"] < 0 else "zero" if o["lambda_opt"] == 0 else "positive"),
                         "rep_optimum_negative_rate": float((lams[np.argmin(piv.to_numpy(), axis=1)] < 0).mean()),
                         "lambda_bound": bound, "at_grid_edge": o["at_grid_edge"], "reps": len(piv)})
            curves.append(pd.DataFrame({"response": resp, "genes": genes, "lambda": lams, "scale": SCALE,
                                        "cv_mse_mean": mean, "cv_mse_ci": half, "lambda_bound": bound}))
        return {cfg.experiment: pd.DataFrame(best),
                f"{cfg.experiment}_curves": pd.concat(curves, ignore_index=True)}

    @staticmethod
    def cv_figure(curves: pd.DataFrame, best: pd.DataFrame) -> Figure:
        """One panel per gene set: CV MSE over λ per response (mean, 95% band), optima as dots, each
        curve's spectral-safety bound dashed."""
        settings = list(dict.fromkeys(curves.genes))
        fig, axes = new_figure(1, len(settings), 6.0, 4.2)
        for ax, genes in zip(axes[0], settings):
            for resp, g in curves[curves.genes == genes].groupby("response", sort=False):
                opt = best.loc[(best.genes == genes) & (best.response == resp), "lambda_opt"].iloc[0]
                lambda_curve(ax, g["lambda"].to_numpy(), g.cv_mse_mean.to_numpy(), g.cv_mse_ci.to_numpy(),
                             opt=float(opt), bound=float(g.lambda_bound.iloc[0]), label=resp, shade=False)
            zero_line(ax)
            ax.set(xscale="symlog", title=f"{genes} genes", xlabel=LAMBDA_AXIS, xlim=_lambda_limits(
                curves[curves.genes == genes]), ylabel="10-fold CV MSE (standardised response)", ylim=(0, 1.6))
            ax.legend(fontsize=6, ncol=2)
        return fig

    @staticmethod
    def optimum_figure(best: pd.DataFrame) -> Figure:
        """The optimal λ per response, one marker series per gene set, its safety bound dashed in the
        same colour, λ = 0 dashed black (symlog axis)."""
        fig, axes = new_figure(1, 1, 8.0, 3.8)
        ax = axes[0, 0]
        responses = list(dict.fromkeys(best.response))
        x = np.arange(len(responses))
        for k, (genes, g) in enumerate(best.groupby("genes", sort=False)):
            g = g.set_index("response").loc[responses]
            (line,) = ax.plot(x + 0.1 * (2 * k - 1), g.lambda_opt, "o", label=f"{genes} genes")
            ax.axhline(float(g.lambda_bound.min()), color=line.get_color(), ls="--", lw=0.8,
                       label=f"safety bound ({genes})", gid="bound")
        zero_line(ax, horizontal=True)
        ax.set_xticks(x, responses, rotation=30, ha="right", fontsize=7)
        ax.set(yscale="symlog", ylabel="optimal λ (sklearn α scale; symlog)")
        ax.margins(y=0.1)  # keep the largest optimum off the frame
        ax.legend(fontsize=7)
        return fig

    def figures(self, tables: dict, out_dir: Path) -> list:
        name = _main(tables)
        best = tables[name]
        return save_all([
            (self.optimum_figure(best), f"{name}_optimum",
             f"{name}: optimal λ per response (sklearn α scale), all genes vs random genes; dashed = 0 and each "
             "gene set's spectral-safety bound"),
            (self.cv_figure(tables[f"{name}_curves"], best), f"{name}_cv",
             f"{name}: CV MSE over λ per response; dots = optima; dashed = the spectral-safety bound")], out_dir)


EXPERIMENTS = {"kobak_toy": Toy(), "kobak_mnist_rff": MnistRff(), "kobak_liver": Liver()}
