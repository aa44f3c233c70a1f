"""``antireg advise``: is negative ridge regularization supported by *these* data?

Fits positive-only ridge (``sklearn.linear_model.RidgeCV``, LOO over the positive part of
:class:`antireg.linear.ARRidgeCV`'s default grid) and the negative-capable ``ARRidgeCV`` on the same
grid plus negative alphas down to the spectral-safety bound, selected three ways: LOO, SURE with an
estimated noise variance, and k-fold CV.  It prints the chosen alphas, the plug-in sign-switch
statistic and weak-spectrum share (``antireg.diagnostics``, arXiv:2508.17412 v4), and an honest
out-of-sample estimate of the gain with a 95% interval.

Scales: sklearn ``alpha`` (``||y - Xw||^2 + alpha ||w||^2``) and v4's per-sample
``lambda = alpha / n`` (``Sigma_hat + lambda I``, ``Sigma_hat = X^T X / n``), converted only by
:func:`antireg.spectral.alpha_to_lambda`.

Verdict rule: *supported* iff the lower end of the 95% interval of the gain of negative-capable
(LOO) over positive-only ridge is > 0 **and** the negative-capable LOO fit on all data chooses
``alpha < 0``.  Both are needed: a positive gain with ``alpha >= 0`` would credit something other
than the negative penalty, and a negative ``alpha`` without a gain that survives resampling is noise.

The gain is measured by repeated K-fold CV with selection *inside* each training fold (nested), so
no test point influences its own alpha.  Per point the squared-error difference
``e_pos^2 - e_neg^2`` is averaged over repeats; the interval is a t-interval over the n points (the
points are the independent units; repeats only reduce split noise).  Gain % = mean difference /
mean positive-only squared error.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

WEAK_KAPPA = 0.20  # weak directions: per-sample eigenvalue <= 0.2 (v4's kappa; standardised features: mean 1)
FOLDS = 5  # k of the k-fold selector and of the nested gain


class AdviseError(ValueError):
    """Input the advisor cannot use; the message names the problem and the fix."""


@dataclass
class Selection:
    """One selector's choice on all data: alpha (sklearn scale) and df (penalised part)."""

    name: str
    alpha: float | None  # None: the selector is not available on these data (see note)
    df: float = float("nan")
    note: str = ""


@dataclass
class Advice:
    n: int
    p: int
    standardized: bool
    positive: Selection
    loo: Selection
    sure: Selection
    kfold: Selection
    alpha_bound: float  # -s_min^2 (infeasible at or below), sklearn scale
    alpha_safe: float  # -(1 - eta) s_min^2, the lowest alpha on the grid
    sigma2: float
    sigma2_source: str
    sign_switch: float
    weak_share: float
    gain_pct: float
    gain_ci: tuple[float, float]
    supported: bool
    reason: str
    curve: dict = field(default_factory=dict)

    @property
    def alpha_pos(self) -> float:
        return self.positive.alpha

    @property
    def alpha_neg(self) -> float:
        return self.loo.alpha

    def _selection(self, s: Selection) -> str:
        from antireg.spectral import alpha_to_lambda

        if s.alpha is None:
            return f"{s.name}: not available ({s.note})"
        note = f" ({s.note})" if s.note else ""
        return (f"{s.name}: alpha = {s.alpha:.4g}, lambda = {alpha_to_lambda(s.alpha, self.n):.4g}, "
                f"df/n = {s.df / self.n:.3f}{note}")

    def lines(self) -> list[str]:
        from antireg.spectral import alpha_to_lambda

        lo, hi = self.gain_ci
        scaled = "standardised" if self.standardized else "kept on their own scales (--no-standardize)"
        lam0 = alpha_to_lambda(self.alpha_pos, self.n)
        switch = ("> 0: a negative adjustment is locally predicted to help" if self.sign_switch > 0
                  else "<= 0: a negative adjustment is not predicted to help")
        return [
            f"data: n = {self.n}, p = {self.p} (after one-hot), features {scaled}",
            "scales: alpha is sklearn's (||y - Xw||^2 + alpha ||w||^2); lambda = alpha / n is v4's per-sample "
            "scale (Sigma_hat + lambda I); df/n excludes the intercept",
            self._selection(self.positive),
            self._selection(self.loo),
            f"noise variance sigma^2 = {self.sigma2:.4g} ({self.sigma2_source})",
            self._selection(self.sure),
            self._selection(self.kfold),
            f"spectral bound: alpha > {self.alpha_bound:.4g} "
            f"(lambda > {alpha_to_lambda(self.alpha_bound, self.n):.4g}); grid down to the safe alpha = "
            f"{self.alpha_safe:.4g}",
            f"sign-switch plug-in dR/da at the positive optimum lambda_0 = {lam0:.4g}: {self.sign_switch:.4g} "
            f"({switch}; a plug-in indication, the verdict rests on the gain)",
            f"weak-spectrum share rho_W at lambda_0 (per-sample eigenvalue <= {WEAK_KAPPA}): {self.weak_share:.3f}",
            f"gain of negative-capable (LOO) over positive-only (nested repeated {FOLDS}-fold CV): "
            f"{self.gain_pct:.2f}% [95% CI {lo:.2f}%, {hi:.2f}%]",
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

def _standardise(X_train: np.ndarray, *others: np.ndarray, standardize: bool = True) -> list[np.ndarray]:
    if not standardize:
        return [X_train, *others]
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    std[std == 0] = 1.0  # constant columns stay constant (zero after centring)
    return [(A - mean) / std for A in (X_train, *others)]


def fit_pair(X: np.ndarray, y: np.ndarray, *, store_cv_results: bool = False):
    """Negative-capable ARRidgeCV (LOO, default grid) and positive-only RidgeCV (LOO) on that grid's
    positive alphas, so the only difference between the two is the negative part of the grid."""
    from sklearn.linear_model import RidgeCV

    from antireg.linear import ARRidgeCV

    with warnings.catch_warnings():  # LOO is undefined at alpha = 0 when p >= n; ARRidgeCV skips it by design
        warnings.simplefilter("ignore", RuntimeWarning)
        neg = ARRidgeCV(store_cv_results=store_cv_results).fit(X, y)
    pos = RidgeCV(alphas=neg.alphas_[neg.alphas_ > 0]).fit(X, y)
    return pos, neg


def gain_interval(X: np.ndarray, y: np.ndarray, *, folds: int = FOLDS, repeats: int = 3, seed: int = 0,
                  standardize: bool = True) -> tuple[float, tuple[float, float], np.ndarray]:
    """Nested repeated K-fold gain (%) of ARRidgeCV over RidgeCV, with a 95% t-interval over points.

    Returns (gain %, (low %, high %), per-point differences e_pos^2 - e_neg^2 averaged over repeats).
    """
    from scipy import stats
    from sklearn.model_selection import RepeatedKFold

    n = len(y)
    folds = max(2, min(folds, n))
    diff, base = np.zeros(n), np.zeros(n)
    for train, test in RepeatedKFold(n_splits=folds, n_repeats=repeats, random_state=seed).split(X):
        Xtr, Xte = _standardise(X[train], X[test], standardize=standardize)
        pos, neg = fit_pair(Xtr, y[train])
        e_pos = (y[test] - pos.predict(Xte)) ** 2
        e_neg = (y[test] - neg.predict(Xte)) ** 2
        diff[test] += (e_pos - e_neg) / repeats
        base[test] += e_pos / repeats
    scale = 100.0 / base.mean()
    half = stats.t.ppf(0.975, n - 1) * diff.std(ddof=1) / np.sqrt(n)
    m = diff.mean()
    return m * scale, ((m - half) * scale, (m + half) * scale), diff


def noise_variance(X: np.ndarray, y: np.ndarray, positive) -> tuple[float, str]:
    """sigma^2 for SURE and the plug-ins: the OLS residual variance
    (:func:`antireg.linear.estimate_noise_variance`, v4) when n > rank + 1.  Otherwise OLS
    interpolates and no residual degrees of freedom are left; then the LOO error of the positive
    optimum, which estimates sigma^2 plus the excess risk: an upper bound, conservative for the
    question asked (a larger sigma^2 penalises df more, so SURE leans towards alpha >= 0)."""
    from antireg.linear import estimate_noise_variance

    try:
        return float(estimate_noise_variance(X, y)), "OLS residuals, antireg.linear.estimate_noise_variance"
    except ValueError:
        return (float(-positive.best_score_),
                "n <= rank + 1, so OLS interpolates: upper bound, the LOO error of the positive optimum")


def _try_select(name: str, make, X: np.ndarray, y: np.ndarray, note: str = "") -> Selection:
    """Fit one ARRidgeCV selector; a selector the library cannot apply here is reported, not fatal."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            est = make().fit(X, y)
    except ValueError as e:
        return Selection(name, None, note=str(e).split("\n")[0])
    return Selection(name, float(est.alpha_), float(est.dof_), note)


def advise(X_raw: np.ndarray, y: np.ndarray, *, seed: int = 0, repeats: int = 3,
           standardize: bool = True) -> Advice:
    """Everything ``antireg advise`` prints, from raw (one-hot) features."""
    from sklearn.model_selection import KFold

    from antireg.diagnostics import plug_in, sign_switch, sure_curve, weak_spectrum
    from antireg.linear import ARRidgeCV
    from antireg.spectral import alpha_to_lambda, dof, gram_spectrum

    n, p = X_raw.shape
    (X,) = _standardise(X_raw, standardize=standardize)
    pos, neg = fit_pair(X, y, store_cv_results=True)
    eigs = gram_spectrum(X, True)
    positive = Selection("positive-only RidgeCV (LOO)", float(pos.alpha_), float(dof(eigs, pos.alpha_)))
    loo = Selection("negative-capable ARRidgeCV (LOO)", float(neg.alpha_), float(neg.dof_),
                    "edge of grid" if neg.alpha_ in (neg.alphas_[0], neg.alphas_[-1]) else "")
    sigma2, sigma2_source = noise_variance(X, y, pos)
    sure = _try_select("negative-capable ARRidgeCV (SURE)",
                       lambda: ARRidgeCV(criterion="sure", noise_variance=sigma2), X, y)
    k = min(FOLDS, n)
    kfold = _try_select(f"negative-capable ARRidgeCV ({k}-fold CV, R^2)",
                        lambda: ARRidgeCV(cv=KFold(k, shuffle=True, random_state=seed)), X, y)

    tau0 = alpha_to_lambda(pos.alpha_, n)  # the positive optimum, per-sample scale
    est = plug_in(X, y, sigma2=sigma2)  # mu = s^2/n, beta = V^T beta_OLS (min-norm), in Sigma_hat's eigenbasis
    switch = sign_switch(tau0, est.mu, est.beta, est.sigma2, est.n)
    weak = weak_spectrum(est.mu, est.beta, tau0, WEAK_KAPPA).rho_W
    gain, ci, _ = gain_interval(X_raw, y, repeats=repeats, seed=seed, standardize=standardize)
    if ci[0] > 0 and neg.alpha_ < 0:
        supported, reason = True, (f"the 95% lower bound of the gain, {ci[0]:.2f}%, is above 0 and the "
                                   "chosen alpha is negative")
    elif neg.alpha_ >= 0:
        supported, reason = False, "the negative-capable LOO selector chooses alpha >= 0"
    else:
        supported, reason = False, f"alpha < 0 is chosen but the gain's 95% interval reaches {ci[0]:.2f}% <= 0"
    alphas = neg.alphas_
    curve = {"alphas": alphas, "loo": neg.cv_results_.mean(axis=0), "bound": -float(eigs.min()),
             "alpha_pos": pos.alpha_, "alpha_neg": neg.alpha_,
             "sure": sure_curve(X, y, alpha_to_lambda(alphas, n), sigma2, True)}
    if sure.alpha is not None:
        curve["alpha_sure"] = sure.alpha
    return Advice(n, p, standardize, positive, loo, sure, kfold, curve["bound"], float(neg.alpha_min_), sigma2,
                  sigma2_source, switch, weak, gain, ci, supported, reason, curve)


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
    # SURE estimates the prediction error less sigma^2; shifted to be comparable with LOO
    ax.plot(x, c["sure"] + advice.sigma2, label="SURE + sigma^2 (estimated sigma^2)")
    xb = -np.log10(1 + abs(bound))
    ax.axvspan(min(x.min(), xb) - 0.3, xb, color="0.85", label="infeasible: alpha <= -s_min^2")
    for key, style, lab in (("alpha_pos", "g--", "positive-only optimum"), ("alpha_neg", "r-", "LOO optimum"),
                            ("alpha_sure", "m:", "SURE optimum")):
        if key not in c:
            continue
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
    p.add_argument("--no-standardize", dest="standardize", action="store_false",
                   help="keep the features' own scales (columns in one unit, e.g. pixels, gene expression, "
                        "or designed weak predictors: standardising erases the variance differences that "
                        "make an implicit ridge)")
    p.add_argument("--report", type=Path, help="folder for criterion.png/svg and advise.html")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from antireg.data import DataError

    try:
        if args.repeats < 1:
            raise AdviseError(f"--repeats must be >= 1, got {args.repeats}")
        X, y, _ = load_table(args.data, args.target, args.data_dir)
        advice = advise(X, y, seed=args.seed, repeats=args.repeats, standardize=args.standardize)
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
