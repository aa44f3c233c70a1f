"""``antireg advise``: is negative ridge regularization supported by *these* data?

Fits positive-only ridge (``sklearn.linear_model.RidgeCV``, LOO over positive
alphas) and the negative-capable :class:`antireg.linear.ARRidgeCV` (LOO down to
the spectral bound), reports both selections, SURE with an estimated noise
variance, the plug-in sign-switch statistic and weak-spectrum share
(arXiv:2508.17412 v4), and an honest out-of-sample estimate of the gain.

Scales: sklearn ``alpha`` (``||y - Xw||^2 + alpha ||w||^2``) and v4's per-sample
``lambda = alpha / n`` (``Sigma_hat + lambda I``, ``Sigma_hat = X^T X / n``).

Verdict rule: *supported* iff the lower end of the 95% interval of the gain of
negative-capable over positive-only ridge is > 0 **and** the negative-capable
fit on all data chooses ``alpha < 0``.  Both are needed: a positive gain with
``alpha >= 0`` would credit something other than the negative penalty, and a
negative ``alpha`` without a gain that survives resampling is noise.

The gain is measured by repeated K-fold CV with selection *inside* each
training fold (nested), so no test point influences its own alpha.  Per point
the squared-error difference ``e_pos^2 - e_neg^2`` is averaged over repeats; the
interval is a t-interval over the n points (the points are the independent
units; repeats only reduce split noise).  Gain % = mean difference / mean
positive-only squared error.

Minimal pieces implemented here because the library APIs had not landed by the
deadline (see docs/advise.md): SURE with sigma^2 from the positive-optimum
residuals, the sign-switch plug-in and the weak-spectrum share.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

WEAK_KAPPA = 0.20  # weak directions: per-sample eigenvalue <= 0.2 (features standardised; mean eigenvalue 1)


class AdviseError(ValueError):
    """Input the advisor cannot use; the message names the problem and the fix."""


@dataclass
class Advice:
    n: int
    p: int
    alpha_pos: float
    alpha_neg: float
    alpha_sure: float
    alpha_bound: float  # -s_min^2 (infeasible at or below), sklearn scale
    df_pos: float
    df_neg: float
    sigma2: float
    dR_da: float
    weak_share: float
    gain_pct: float
    gain_ci: tuple[float, float]
    supported: bool
    reason: str
    curve: dict = field(default_factory=dict)

    def lines(self) -> list[str]:
        n = self.n
        lo, hi = self.gain_ci
        edge = " (edge of grid)" if self.curve.get("neg_at_edge") else ""
        return [
            f"data: n = {n}, p = {self.p} (after one-hot), features standardised",
            "scales: sklearn alpha; v4 per-sample lambda = alpha / n",
            f"positive-only RidgeCV (LOO): alpha = {self.alpha_pos:.4g}, lambda = {self.alpha_pos / n:.4g}, "
            f"df/n = {self.df_pos / n:.3f}",
            f"negative-capable ARRidgeCV (LOO): alpha = {self.alpha_neg:.4g}, lambda = {self.alpha_neg / n:.4g}, "
            f"df/n = {self.df_neg / n:.3f}{edge}",
            f"negative-capable SURE (sigma^2 estimated = {self.sigma2:.4g}): alpha = {self.alpha_sure:.4g}, "
            f"lambda = {self.alpha_sure / n:.4g}",
            f"spectral bound: alpha > {self.alpha_bound:.4g} (lambda > {self.alpha_bound / n:.4g})",
            f"sign-switch plug-in dR/da at the positive optimum: {self.dR_da:.4g} "
            f"({'> 0: a negative adjustment is locally predicted to help' if self.dR_da > 0 else '<= 0: no'})",
            f"weak-spectrum share rho_W (lambda_j <= {WEAK_KAPPA}): {self.weak_share:.3f}",
            f"gain of negative-capable over positive-only (nested repeated CV): {self.gain_pct:.2f}% "
            f"[95% CI {lo:.2f}%, {hi:.2f}%]",
            f"verdict: negative regularization {'is' if self.supported else 'is not'} supported by these data "
            f"({self.reason})",
        ]


# ---------------------------------------------------------------- input

def load_table(data: str, target: str | None, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features (n, p) float64 with categoricals one-hot, target (n,), feature names."""
    import pandas as pd

    from antireg.data import DATASETS, load_dataset

    path = Path(data)
    if data in DATASETS and not path.exists():
        ds = load_dataset(data, data_dir)
        if ds.task != "regression":
            raise AdviseError(f"data set {data!r} is a classification task; advise needs a numeric target")
        names = list(ds.feature_names or [f"x{j}" for j in range(ds.X.shape[1])])
        frame = pd.DataFrame(np.asarray(ds.X).reshape(len(ds.y), -1), columns=names)
        frame["target"] = ds.y
        target = target or "target"
        if target != "target" and target not in names:
            raise AdviseError(f"column {target!r} not in {data!r}; available: target, {', '.join(names)}")
    else:
        if not path.is_file():
            raise AdviseError(f"{data!r} is neither a file nor a registered data set ({', '.join(DATASETS)})")
        frame = _read(path)
        if target is None:
            raise AdviseError("--target COLUMN is required for a file")
    if target not in frame.columns:
        raise AdviseError(f"no column {target!r}; available columns: {', '.join(map(str, frame.columns))}")
    y_col = frame[target]
    if not pd.api.types.is_numeric_dtype(y_col) or pd.api.types.is_bool_dtype(y_col):
        raise AdviseError(f"target {target!r} is not numeric (dtype {y_col.dtype}); choose a numeric column")
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise AdviseError("the table has no feature columns besides the target")
    missing = frame.isna()
    if missing.values.any():
        cols = missing.sum()
        where = ", ".join(f"{c}: {int(k)}" for c, k in cols[cols > 0].items())
        first = int(np.flatnonzero(missing.values.any(axis=1))[0])
        raise AdviseError(f"{int(missing.values.sum())} missing value(s) (NaN) by column: {where}; "
                          f"first in row {first}; drop or impute them first")
    categorical = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])
                   or pd.api.types.is_bool_dtype(features[c])]
    X = pd.get_dummies(features, columns=categorical, drop_first=False, dtype=float)
    if len(X) < 3:
        raise AdviseError(f"the table has {len(X)} row(s); advise needs at least 3")
    return X.to_numpy(np.float64), y_col.to_numpy(np.float64), [str(c) for c in X.columns]


def _read(path: Path):
    import pandas as pd

    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except ImportError as e:
            raise AdviseError(f"cannot read {path}: Parquet needs pyarrow (pip install pyarrow), or give a CSV") from e
        except Exception as e:  # noqa: BLE001 -- any parser failure means "not a Parquet table"
            raise AdviseError(f"{path} is not a readable Parquet table ({type(e).__name__}: {e})") from e
    try:
        frame = pd.read_csv(path, sep=None, engine="python")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError) as e:
        raise AdviseError(f"{path} is not a table (CSV) that can be read: {type(e).__name__}: {e}") from e
    if frame.shape[1] < 2:
        raise AdviseError(f"{path} is not a table with at least two columns (found {frame.shape[1]})")
    return frame


# ---------------------------------------------------------------- fitting

def _standardise(X_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    std[std == 0] = 1.0  # constant columns stay constant (zero after centring)
    return [(A - mean) / std for A in (X_train, *others)]


def _positive_grid(X: np.ndarray) -> np.ndarray:
    s2 = np.linalg.svd(X - X.mean(axis=0), compute_uv=False) ** 2
    s2 = s2[s2 > s2.max() * 1e-12]
    return np.geomspace(1e-3 * s2.min(), 1e3 * s2.max(), 60)


def fit_pair(X: np.ndarray, y: np.ndarray):
    """Positive-only RidgeCV and negative-capable ARRidgeCV (both LOO), fitted on standardised X."""
    from sklearn.linear_model import RidgeCV

    from antireg.linear import ARRidgeCV

    pos = RidgeCV(alphas=_positive_grid(X)).fit(X, y)
    neg = ARRidgeCV(store_cv_results=True).fit(X, y)
    return pos, neg


def gain_interval(X: np.ndarray, y: np.ndarray, *, folds: int = 5, repeats: int = 3,
                  seed: int = 0) -> tuple[float, tuple[float, float], np.ndarray]:
    """Nested repeated K-fold gain (%) of ARRidgeCV over RidgeCV, with a 95% t-interval over points.

    Returns (gain %, (low %, high %), per-point differences e_pos^2 - e_neg^2 averaged over repeats).
    """
    from scipy import stats
    from sklearn.model_selection import RepeatedKFold

    n = len(y)
    folds = max(2, min(folds, n))
    diff, base = np.zeros(n), np.zeros(n)
    for train, test in RepeatedKFold(n_splits=folds, n_repeats=repeats, random_state=seed).split(X):
        Xtr, Xte = _standardise(X[train], X[test])
        pos, neg = fit_pair(Xtr, y[train])
        e_pos = (y[test] - pos.predict(Xte)) ** 2
        e_neg = (y[test] - neg.predict(Xte)) ** 2
        diff[test] += (e_pos - e_neg) / repeats
        base[test] += e_pos / repeats
    scale = 100.0 / base.mean()
    half = stats.t.ppf(0.975, n - 1) * diff.std(ddof=1) / np.sqrt(n)
    m = diff.mean()
    return m * scale, ((m - half) * scale, (m + half) * scale), diff


def _spectrum(X: np.ndarray, y: np.ndarray):
    from antireg.spectral import thin_svd

    A = X - X.mean(axis=0)
    U, s, Vt = thin_svd(A)
    keep = s**2 > (s**2).max() * 1e-12
    return U[:, keep], s[keep], U[:, keep].T @ (y - y.mean())


def sure_curve(s: np.ndarray, Uty: np.ndarray, y: np.ndarray, alphas: np.ndarray, sigma2: float) -> np.ndarray:
    """SURE(alpha) = RSS/n + 2 sigma^2 (df + 1)/n - sigma^2 (v4; +1 for the intercept)."""
    n = len(y)
    yc = y - y.mean()
    F = s[:, None] ** 2 / (s[:, None] ** 2 + alphas)
    rss = yc @ yc - ((2 * F - F**2) * Uty[:, None] ** 2).sum(axis=0)
    return rss / n + 2 * sigma2 * (F.sum(axis=0) + 1) / n - sigma2


def advise(X_raw: np.ndarray, y: np.ndarray, *, seed: int = 0, repeats: int = 3, folds: int = 5) -> Advice:
    """Everything ``antireg advise`` prints, from raw (un-standardised, one-hot) features."""
    from antireg.spectral import dof

    n, p = X_raw.shape
    (X,) = _standardise(X_raw)
    pos, neg = fit_pair(X, y)
    U, s, Uty = _spectrum(X, y)
    eigs = s**2
    df_pos = float(dof(eigs, pos.alpha_))
    # sigma^2 from the positive optimum's residuals: RSS / (n - 1 - df)  (v4 Conventions)
    resid = y - pos.predict(X)
    sigma2 = float(resid @ resid / max(n - 1 - df_pos, 1.0))
    alphas = neg.alphas_
    sure = sure_curve(s, Uty, y, alphas, sigma2)
    loo = neg.cv_results_.mean(axis=0)
    # Plug-in sign switch at tau0 = positive optimum (per-sample scale): mu_j = s_j^2/n,
    # beta_j^2 estimated by the unbiased (Uty_j/s_j)^2 - sigma^2/s_j^2 (v4 Conventions).
    mu, tau0 = eigs / n, pos.alpha_ / n
    beta2 = (Uty / s) ** 2 - sigma2 / eigs
    dR_da = float(np.sum(2 * mu**2 / (mu + tau0) ** 3 * (tau0 * beta2 - sigma2 / n)))
    b2 = np.clip(beta2, 0, None)
    weak = mu <= WEAK_KAPPA
    weak_share = float(b2[weak].sum() / b2.sum()) if b2.sum() > 0 else float("nan")
    gain, ci, _ = gain_interval(X_raw, y, folds=folds, repeats=repeats, seed=seed)
    if ci[0] > 0 and neg.alpha_ < 0:
        supported, reason = True, f"the 95% lower bound of the gain, {ci[0]:.2f}%, is above 0 and the chosen alpha is negative"
    elif neg.alpha_ >= 0:
        supported, reason = False, "the negative-capable selector chooses alpha >= 0"
    else:
        supported, reason = False, f"alpha < 0 is chosen but the gain's 95% interval includes {ci[0]:.2f}% <= 0"
    curve = {"alphas": alphas, "loo": loo, "sure": sure, "alpha_pos": pos.alpha_, "alpha_neg": neg.alpha_,
             "alpha_sure": float(alphas[np.argmin(sure)]), "bound": -float(eigs.min()),
             "neg_at_edge": bool(neg.alpha_ in (alphas[0], alphas[-1]))}
    return Advice(n, p, float(pos.alpha_), float(neg.alpha_), curve["alpha_sure"], curve["bound"], df_pos,
                  float(neg.dof_), sigma2, dR_da, weak_share, gain, ci, supported, reason, curve)


# ---------------------------------------------------------------- report

def write_report(advice: Advice, out: Path, title: str) -> Path:
    """Criterion curves (PNG/SVG) and a self-contained HTML page, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from antireg.experiments.storage import atomic_write_text
    from antireg.report.figures import save
    from antireg.report.render import FigureRef, Heading, Text, to_html

    out.mkdir(parents=True, exist_ok=True)
    c = advice.curve
    a, bound = c["alphas"], c["bound"]
    x = np.sign(a) * np.log10(1 + np.abs(a))  # symmetric log axis: negative alphas visible
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.plot(x, c["loo"], label="LOO (ARRidgeCV)")
    ax.plot(x, c["sure"] + advice.sigma2, label="SURE + sigma^2 (estimated sigma^2)")
    xb = -np.log10(1 + abs(bound))
    ax.axvspan(min(x.min(), xb) - 0.3, xb, color="0.85", label="infeasible: alpha <= -s_min^2")
    for key, style, lab in (("alpha_pos", "g--", "positive-only optimum"), ("alpha_neg", "r-", "LOO optimum"),
                            ("alpha_sure", "m:", "SURE optimum")):
        v = c[key]
        ax.axvline(np.sign(v) * np.log10(1 + abs(v)), color=style[0], ls=style[1:], label=lab)
    ax.set_yscale("log")
    ax.set_xlabel("sign(alpha) log10(1 + |alpha|)   (sklearn alpha; lambda = alpha / n)")
    ax.set_ylabel("estimated prediction MSE")
    ax.legend(fontsize=7)
    fig.tight_layout()
    png, svg = save(fig, out / "criterion")
    blocks = [Heading(1, f"antireg advise: {title}")] + [Text(line) for line in advice.lines()]
    blocks.append(FigureRef(png, svg, "LOO and SURE over alpha; grey = infeasible region; lines = optima"))
    page = out / "advise.html"
    atomic_write_text(page, to_html(blocks, f"antireg advise: {title}"))
    return page


# ---------------------------------------------------------------- CLI

def add_subcommand(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("advise", help="is negative ridge regularization supported by your data?",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="CSV or Parquet file, or a registered data set name (e.g. diabetes)")
    p.add_argument("--target", help="target column (files: required; data sets: default 'target')")
    p.add_argument("--data-dir", help="folder of the packaged data files (default $ANTIREG_DATA_DIR)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="repeats of the 5-fold CV for the gain")
    p.add_argument("--report", type=Path, help="folder for criterion.png/svg and advise.html")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from antireg.data import DataError

    try:
        if args.repeats < 1:
            raise AdviseError(f"--repeats must be >= 1, got {args.repeats}")
        X, y, _ = load_table(args.data, args.target, args.data_dir)
        advice = advise(X, y, seed=args.seed, repeats=args.repeats)
    except (AdviseError, DataError) as e:
        print(f"antireg advise: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(advice.lines()))
    if args.report is not None:
        print(f"report: {write_report(advice, args.report, str(args.data))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="antireg")
    add_subcommand(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["advise", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
