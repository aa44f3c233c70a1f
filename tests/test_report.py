"""Report: figures' data against the CSVs, Markdown tables against pandas, and the HTML
page in a real (headless Chromium) browser.

Inputs: a tiny real sweep of a linear model (spectrum known: clamps and df/n) and a
fabricated classification sweep shaped like the runner's output (reliability.json).
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from antireg.experiments import ExperimentCfg, run_sweep
from antireg.experiments.aggregate import summarize, write_results
from antireg.report import ReportError, write_report
from antireg.report.figures import (
    BOUND_LABEL,
    diagnostics_figure,
    forest_figure,
    forest_metrics,
    headline_figure,
    lambda_figure,
    reliability_figure,
)
from antireg.report.results import load_experiments

LINEAR = {
    "experiment": "tiny_linear", "dataset": {"name": "diabetes"}, "fractions": [0.1, 0.3, 1.0], "seeds": [0, 1, 2],
    "model": {"kind": "linear"}, "optimizers": {"sgd": {"lr": 0.05}}, "training": {"epochs": 15},
    "ar": {"lambda0": [0.01, 1.0]}, "ablations": ["none", "l2"], "add_baseline_zero": True,
}  # fmt: skip
CLF = "clf_digits"
CLF_METRICS = ["test_accuracy", "test_nll", "test_ece", "test_brier", "val_accuracy", "val_nll",
               "output_scale_ratio", "r_clip", "r_proj", "df_per_n", "lambda_n", "wall_s"]  # fmt: skip
BINS = 10


def _reliability(rng: np.random.Generator, gap: float) -> dict:
    """Test-set reliability bins; the low-confidence bins are empty (null), as with 10 classes."""
    count = np.r_[np.zeros(3, int), rng.integers(1, 40, BINS - 3)]
    centre = (np.arange(BINS) + 0.5) / BINS
    conf = np.where(count > 0, centre + rng.uniform(-0.03, 0.03, BINS), np.nan)
    acc = np.clip(conf - gap + rng.normal(0, 0.03, BINS), 0, 1)
    null = lambda a: [None if np.isnan(v) else float(v) for v in a]  # noqa: E731
    return {"bin_edges": np.linspace(0, 1, BINS + 1).tolist(), "confidence": null(conf), "accuracy": null(acc),
            "count": count.tolist()}  # fmt: skip


def _fabricate_classification(root: Path) -> None:
    """A classification sweep as the runner will write it: erm, ar (λ₀ ∈ {−0.01, −0.1}) and
    ar: l2, Adam, 4 seeds, 2 fractions. AR at λ₀ = −0.1 wins on validation and, at the small
    fraction, beats the baseline on every seed (a significant difference by design)."""
    rng = np.random.default_rng(0)
    grid = [("erm", "none", 0.0), ("ar", "none", -0.01), ("ar", "none", -0.1), ("ar", "l2", 0.01), ("ar", "l2", 0.1)]
    rows = []
    for seed in range(4):
        for frac, n in ((0.1, 125), (0.5, 628)):
            base_acc = 0.80 + 0.1 * frac + rng.normal(0, 0.02)
            for method, ablation, lam0 in grid:
                erm, noise = method == "erm", rng.normal(0, 0.01)
                gain = 0.03 + noise / 3 if (lam0, frac) == (-0.1, 0.1) else noise
                acc = base_acc + (0.0 if erm else gain)
                run_id = f"{method}-{ablation}-adam-f{frac}-s{seed}-{lam0:g}"
                diverged = (ablation, lam0, seed, frac) == ("l2", 0.1, 3, 0.5)
                lam = lam0 * (125 / n) ** 0.5
                rows.append(dict(
                    experiment=CLF, dataset="digits", method=method, ablation=ablation, optimizer="adam", seed=seed,
                    fraction=frac, n_train=n, test_accuracy=acc, test_nll=0.6 - acc / 2 + rng.normal(0, 0.01),
                    test_ece=(0.08 if erm else 0.04) + rng.normal(0, 0.005), test_brier=0.3 - acc / 4,
                    val_accuracy=acc, val_nll=0.5 - acc / 2 - 0.05 * (abs(lam0) == 0.1), val_ece=0.05, val_brier=0.2,
                    lambda0=lam0, decay=0.0 if erm else 0.5, lambda_n=lam, lambda_requested=lam, clamped=False,
                    df_per_n=np.nan, output_scale_ratio=1.0 if erm else rng.uniform(0.9, 1.2), r_clip=rng.uniform(0, 0.1),
                    r_proj=0.0 if erm else rng.uniform(0, 0.3), diverged=diverged,
                    divergence="non-finite loss" if diverged else "", steps=300, best_epoch=20, run_id=run_id,
                    condition_id=f"c{seed}-{frac}", wall_s=1.0,
                ))  # fmt: skip
                run_dir = root / "experiments" / run_id
                run_dir.mkdir(parents=True)
                (run_dir / "reliability.json").write_text(json.dumps(_reliability(rng, gap=0.08 if erm else 0.03)))
    runs = pd.DataFrame(rows)
    write_results(runs, summarize(runs, select_by="val_nll", metrics=CLF_METRICS), root / "results", CLF)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """One output folder with both sweeps, as `antireg run` lays it out."""
    root = tmp_path_factory.mktemp("sweeps")
    run_sweep(ExperimentCfg.model_validate(LINEAR), root, progress=False)
    _fabricate_classification(root)
    return root


@pytest.fixture(scope="module")
def report(root):
    return write_report(root / "results", root / "report")


@pytest.fixture(scope="module")
def exps(root):
    return {e.name: e for e in load_experiments(root / "results", root / "experiments")}


def _csv(root: Path, name: str, summary: bool = True) -> pd.DataFrame:
    return pd.read_csv(root / "results" / (f"{name}_summary.csv" if summary else f"{name}.csv"))


def _rows(summary: pd.DataFrame, method: str, ablation: str, optimizer: str) -> pd.DataFrame:
    sel = (summary["method"] == method) & (summary["ablation"] == ablation) & (summary["optimizer"] == optimizer)
    return summary[sel].sort_values("n_train")


def _lines(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


LABELS = {"erm": ("erm", "none"), "ar": ("ar", "none"), "ar: l2": ("ar", "l2")}


# -- figures ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny_linear", CLF])
def test_headline_figure_plots_summary_means_and_ci_bands(root, exps, name):
    exp, summary = exps[name], _csv(root, name)
    metric = "test_rmse" if name == "tiny_linear" else "test_accuracy"
    assert exp.headline == metric
    panels = headline_figure(exp).axes  # small multiples: each method beside the baseline
    assert [set(_lines(ax)) for ax in panels] == [{"erm", "ar"}, {"erm", "ar: l2"}]
    for ax, lab, line in ((ax, lab, line) for ax in panels for lab, line in _lines(ax).items()):
        rows = _rows(summary, *LABELS[lab], "sgd" if name == "tiny_linear" else "adam")
        mean, ci = rows[f"{metric}_mean"].to_numpy(), rows[f"{metric}_ci95"].to_numpy()
        np.testing.assert_allclose(line.get_xdata(), rows["n_train"])
        np.testing.assert_allclose(line.get_ydata(), mean)
        # each line's CI band is drawn right after it: the k-th polygon belongs to the k-th line
        verts = ax.collections[ax.get_lines().index(line)].get_paths()[0].vertices
        for x, lo, hi in zip(rows["n_train"], mean - ci, mean + ci):
            ys = verts[np.isclose(verts[:, 0], x), 1]
            assert np.isclose(ys, lo).any() and np.isclose(ys, hi).any(), (lab, x)
    assert all(ax.get_xscale() == "log" for ax in panels)


def test_lambda_figure_shows_lambda_used_the_bound_where_clamped_and_df(root, exps):
    summary, runs = _csv(root, "tiny_linear"), _csv(root, "tiny_linear", summary=False)
    fig = lambda_figure(exps["tiny_linear"])
    lam_ax, df_ax = fig.axes[:2]
    lines = _lines(lam_ax)
    for lab in ("ar", "ar: l2"):
        rows = _rows(summary, *LABELS[lab], "sgd")
        np.testing.assert_allclose(lines[lab].get_ydata(), rows["lambda_n_mean"])
    assert "erm" not in lines  # λ = 0: the zero line stands for it
    clamped = runs[runs["clamped"]].drop_duplicates("condition_id")
    assert len(clamped) > 0 and (clamped["lambda_requested"] < clamped["lambda_n"]).all()
    bound = lines[BOUND_LABEL]
    assert sorted(zip(bound.get_xdata(), bound.get_ydata())) == sorted(zip(clamped["n_train"], clamped["lambda_n"]))
    df_lines = _lines(df_ax)
    assert set(df_lines) == set(LABELS)
    for lab, line in df_lines.items():
        np.testing.assert_allclose(line.get_ydata(), _rows(summary, *LABELS[lab], "sgd")["df_per_n_mean"])
    # AR raises the effective degrees of freedom above the baseline's at the smallest n
    assert df_lines["ar"].get_ydata()[0] > df_lines["erm"].get_ydata()[0] > df_lines["ar: l2"].get_ydata()[0]


def test_lambda_figure_has_no_df_panel_without_a_spectrum(exps):
    fig = lambda_figure(exps[CLF])
    assert len(fig.axes) == 1 and BOUND_LABEL not in _lines(fig.axes[0])


def test_diagnostics_figure_matches_summary_and_counts_divergences(root, exps):
    summary = _csv(root, CLF)
    rho_ax, clip_ax, proj_ax, div_ax = diagnostics_figure(exps[CLF]).axes[:4]
    for ax, col in ((rho_ax, "output_scale_ratio"), (clip_ax, "r_clip"), (proj_ax, "r_proj")):
        for lab, line in _lines(ax).items():
            np.testing.assert_allclose(line.get_ydata(), _rows(summary, *LABELS[lab], "adam")[f"{col}_mean"])
    heights = {lab: [p.get_height() for p in bars] for bars, lab in zip(div_ax.containers, ["erm", "ar", "ar: l2"])}
    for lab, h in heights.items():
        assert h == _rows(summary, *LABELS[lab], "adam")["n_diverged"].tolist()
    assert sum(map(sum, heights.values())) == 1  # the one diverged run fabricated at the chosen λ₀


def test_reliability_figure_pools_seeds_and_puts_ece_in_the_legend(root, exps):
    summary, runs = _csv(root, CLF), _csv(root, CLF, summary=False)
    fig = reliability_figure(exps[CLF])
    ax = fig.axes[0]  # adam, fraction 0.1
    for lab in ("erm", "ar"):
        row = _rows(summary, *LABELS[lab], "adam").iloc[0]
        seeds = runs[(runs["method"] == LABELS[lab][0]) & (runs["ablation"] == "none") & (runs["fraction"] == 0.1)
                     & (runs["lambda0"] == row["lambda0"])]  # fmt: skip
        assert len(seeds) == 4
        bins = [json.loads((root / "experiments" / r / "reliability.json").read_text()) for r in seeds["run_id"]]
        count = np.sum([b["count"] for b in bins], axis=0)
        ok = count > 0
        pooled = {k: np.nansum([np.array(b[k], float) * b["count"] for b in bins], axis=0)[ok] / count[ok]
                  for k in ("confidence", "accuracy")}  # fmt: skip
        line = _lines(ax)[f"{lab} (ECE {row['test_ece_mean']:.4g} ± {row['test_ece_ci95']:.2g})"]
        np.testing.assert_allclose(line.get_xdata(), pooled["confidence"])
        np.testing.assert_allclose(line.get_ydata(), pooled["accuracy"])
    assert reliability_figure(exps["tiny_linear"]) is None  # no reliability.json: no figure


# -- tables -----------------------------------------------------------------------------------

CELL = re.compile(r"^(?P<bold>\*\*)?(?P<mean>[-\d.e+]+)(?: ± (?P<ci>[\d.e+-]+))?(?P<sig>†)?(?:\*\*)?$")


def _md_table(md: str, title: str) -> pd.DataFrame:
    """Parse the Markdown table under the bold ``title`` line into mean, ci, bold, sig per cell."""
    lines = md.split(f"**{title}**\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    out = []
    for line in lines[2:]:
        label, *cells = [c.strip() for c in line.strip("|").split("|")]
        for col, cell in zip(header[1:], cells):
            m = CELL.match(cell)
            assert m, cell
            out.append({
                "label": label, "n": int(col.split("n=")[1].rstrip(")")), "mean": float(m["mean"]),
                "ci": float(m["ci"]) if m["ci"] else np.nan, "bold": bool(m["bold"]), "sig": bool(m["sig"]),
            })  # fmt: skip
    return pd.DataFrame(out)


def _expected_p(runs: pd.DataFrame, summary: pd.DataFrame, metric: str) -> dict:
    """Paired t-test p per (method, ablation, n), pairing chosen-λ₀ runs with the erm run of their condition."""
    chosen = runs.merge(summary[["method", "ablation", "optimizer", "fraction", "lambda0", "decay"]])
    base = runs[runs["method"] == "erm"].set_index("condition_id")[metric]
    out = {}
    for (method, ablation, n), g in chosen[chosen["method"] != "erm"].groupby(["method", "ablation", "n_train"]):
        out[(method, ablation, n)] = stats.ttest_rel(g[metric], base.loc[g["condition_id"]].to_numpy()).pvalue
    return out


def _holm(p: dict) -> dict:
    """Holm's step-down adjustment, written directly: the i-th smallest of m p-values is
    multiplied by m − i + 1, then made monotone, capped at 1."""
    keys = sorted(p, key=p.get)
    out, running = {}, 0.0
    for i, k in enumerate(keys):
        running = max(running, min(1.0, (len(keys) - i) * p[k]))
        out[k] = running
    return out


@pytest.mark.parametrize(
    "name, optimizer, metric",
    [("tiny_linear", "sgd", "test_rmse"), ("tiny_linear", "sgd", "test_r2"),
     (CLF, "adam", "test_accuracy"), (CLF, "adam", "test_ece")],
)  # fmt: skip
def test_markdown_tables_match_pandas(root, report, name, optimizer, metric):
    summary, runs = _csv(root, name), _csv(root, name, summary=False)
    lower = metric.split("_")[1] in ("rmse", "mae", "nll", "ece", "brier")
    title = f"{name}: {metric} ({'lower' if lower else 'higher'} is better)"  # optimizers as column groups
    table = _md_table(report.markdown.read_text(), title)
    p = _holm(_expected_p(runs[runs["optimizer"] == optimizer], summary, metric))  # one table, one family
    s = summary[summary["optimizer"] == optimizer]
    assert len(table) == len(s)
    for _, cell in table.iterrows():
        method, ablation = LABELS[cell["label"]]
        row = _rows(s, method, ablation, optimizer).set_index("n_train").loc[cell["n"]]
        assert cell["mean"] == pytest.approx(row[f"{metric}_mean"], rel=1e-3)
        assert cell["ci"] == pytest.approx(row[f"{metric}_ci95"], rel=0.06)  # two significant digits
        column = s[s["n_train"] == cell["n"]][f"{metric}_mean"]
        assert cell["bold"] == (row[f"{metric}_mean"] == (column.min() if lower else column.max()))
        assert cell["sig"] == (method != "erm" and p[(method, ablation, cell["n"])] < 0.05)
    if name == CLF and metric == "test_accuracy":  # by design: one significant cell, and not every cell
        assert table["sig"].any() and not table["sig"].all()


def test_hyperparameter_table_lists_the_chosen_lambda0_and_divergences(report):
    md = report.markdown.read_text()
    # by design: validation favours |λ₀| = 0.1, and the one diverged run is ar: l2's at fraction 0.5
    assert "| ar | -0.1 / 0.5 (0/4) | -0.1 / 0.5 (0/4) |" in md
    assert "| ar: l2 | 0.1 / 0.5 (0/4) | 0.1 / 0.5 (1/4) |" in md


# -- files, HTML, errors --------------------------------------------------------------------------


def test_report_writes_markdown_html_and_png_svg_figures(report, exps):
    figs = report.figures
    pngs = [f for f in figs if f.suffix == ".png"]
    forests = sum(len(forest_metrics(e)) for e in exps.values())  # one forest plot per metric with differences
    assert forests >= 2 and len(pngs) == 7 + forests and {f.with_suffix(".svg") for f in pngs} == {f for f in figs if f.suffix == ".svg"}
    assert all(f.stat().st_size > 1000 for f in figs)
    md = report.markdown.read_text()
    linked = re.findall(r"\]\((figures/[^)]+)\)", md)
    assert sorted(linked) == sorted(f.relative_to(report.markdown.parent).as_posix() for f in figs)
    page = report.html.read_text()
    srcs = re.findall(r"<img src='([^']+)'", page)
    assert [base64.b64decode(s.split(",", 1)[1]) for s in srcs] == [f.read_bytes() for f in pngs]
    assert not re.search(r"(src|href)=['\"](?!data:|#)", page)  # nothing to fetch: opens offline


def test_nothing_to_report_is_a_clear_error(root, tmp_path):
    with pytest.raises(ReportError, match="no E.csv"):
        write_report(tmp_path, tmp_path / "out")
    with pytest.raises(ReportError, match="no results for nope .*found: clf_digits, tiny_linear"):
        write_report(root / "results", tmp_path / "out", names=["nope"])
    only = write_report(root / "results", tmp_path / "out", names=["tiny_linear"])
    assert CLF not in only.markdown.read_text()


# -- the page in a browser ------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (CI installs Debian's chromium)")


class DevTools:
    """Minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (fds 3 and 4,
    NUL-terminated JSON), so the test needs no browser-automation package."""

    def __init__(self, user_data_dir: Path, timeout: float = 30.0):
        self._to_r, self._to_w = os.pipe()
        self._from_r, self._from_w = os.pipe()
        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=False, preexec_fn=self._child_fds,
        )  # fmt: skip
        os.close(self._to_r)
        os.close(self._from_w)
        self.deadline, self.events, self._buf, self._id = time.monotonic() + timeout, [], b"", 0

    def _child_fds(self) -> None:
        for src, dst in ((self._to_r, 3), (self._from_w, 4)):
            os.dup2(src, dst)
            os.set_inheritable(dst, True)  # dup2 onto itself would keep close-on-exec

    def _message(self) -> dict:
        while b"\0" not in self._buf:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_r], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_r, 1 << 20)
            if not chunk:
                raise EOFError("chromium closed the DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params} | ({"sessionId": session} if session else {})
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._message()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str) -> None:
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._message())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self._to_w)
        os.close(self._from_r)


def browse(page: Path, screenshot: Path, user_data_dir: Path) -> dict:
    """Load ``page`` from disk; return its images' load state, console errors and requested
    URLs, and save a full-page PNG screenshot."""
    cdp = DevTools(user_data_dir)
    try:
        target = cdp.call("Target.createTarget", url="about:blank")["targetId"]
        session = cdp.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            cdp.call(f"{domain}.enable", session)
        cdp.call("Emulation.setDeviceMetricsOverride", session, width=1280, height=900, deviceScaleFactor=1, mobile=False)
        cdp.call("Page.navigate", session, url=page.resolve().as_uri())
        cdp.wait_for("Page.loadEventFired")
        images = cdp.call("Runtime.evaluate", session, returnByValue=True, expression=(
            "Array.from(document.images, i => ({complete: i.complete, width: i.naturalWidth, alt: i.alt}))"
        ))["result"]["value"]  # fmt: skip
        size = cdp.call("Page.getLayoutMetrics", session)["cssContentSize"]
        shot = cdp.call("Page.captureScreenshot", session, format="png", captureBeyondViewport=True,
                        clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})  # fmt: skip
        screenshot.write_bytes(base64.b64decode(shot["data"]))
    finally:
        cdp.close()
    ev = [(e["method"], e["params"]) for e in cdp.events if "method" in e]
    errors = [p["entry"]["text"] for m, p in ev if m == "Log.entryAdded" and p["entry"]["level"] == "error"]
    errors += [" ".join(str(a.get("value")) for a in p["args"]) for m, p in ev
               if m == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert")]  # fmt: skip
    errors += [p["exceptionDetails"]["text"] for m, p in ev if m == "Runtime.exceptionThrown"]
    requests = [p["request"]["url"] for m, p in ev if m == "Network.requestWillBeSent"]
    return {"images": images, "errors": errors, "requests": requests}


@needs_chromium
def test_html_report_renders_in_chromium(report, tmp_path):
    shot_dir = Path(os.environ.get("ANTIREG_SCREENSHOT_DIR", tmp_path))
    shot_dir.mkdir(parents=True, exist_ok=True)
    result = browse(report.html, shot_dir / "report.png", tmp_path / "profile")
    n_figures = sum(f.suffix == ".png" for f in report.figures)
    assert len(result["images"]) == n_figures
    assert all(i["complete"] and i["width"] > 0 for i in result["images"]), result["images"]
    assert result["errors"] == []
    assert all(u.startswith(("file:", "data:")) for u in result["requests"]), result["requests"]
    assert (shot_dir / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {shot_dir / 'report.png'}")


@needs_chromium
def test_browser_check_catches_a_broken_image_and_a_console_error(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><img src='missing.png' alt='x'>"
                    "<script>console.error('boom')</script></body></html>")  # fmt: skip
    result = browse(page, tmp_path / "broken.png", tmp_path / "profile")
    assert result["images"] == [{"complete": True, "width": 0, "alt": "x"}]
    assert "boom" in result["errors"] and any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in result["errors"])


def test_report_includes_paper_experiments_beside_no_sweep(tmp_path):
    # a results folder holding only a paper experiment is reported, with its table and risk figure
    from antireg.paper.config import load_paper_config
    from antireg.paper.driver import run_paper

    run_paper(load_paper_config("v4_exp3"), tmp_path, None, jobs=1, progress=False)
    paths = write_report(tmp_path / "results", tmp_path / "report")
    md = paths.markdown.read_text(encoding="utf-8")
    assert "v4_exp3" in md and "dR_da_at_0" in md
    assert (tmp_path / "report" / "figures" / "v4_exp3_risk.png").stat().st_size > 0
    with pytest.raises(ReportError):
        write_report(tmp_path / "results", tmp_path / "r2", names=["not_there"])
