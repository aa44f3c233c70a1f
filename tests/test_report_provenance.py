"""The report's provenance header against the run it describes, its LaTeX tables parsed
back against the summary CSV, and its table of contents against its headings."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import antireg
from antireg.experiments import ExperimentCfg, run_sweep
from antireg.experiments.storage import write_sweep_config
from antireg.report.provenance import git_state

CFG = {
    "experiment": "prov_linear", "dataset": {"name": "diabetes"}, "fractions": [0.2, 1.0], "seeds": [0, 1],
    "model": {"kind": "linear"}, "optimizers": {"sgd": {"lr": 0.05}}, "training": {"epochs": 5},
    "ar": {"lambda0": [0.1]}, "ablations": ["none", "l2"], "add_baseline_zero": True,
}  # fmt: skip
REPO = Path(antireg.__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    """A tiny sweep, its resolved config saved as `antireg run` does, reported by the CLI."""
    root = tmp_path_factory.mktemp("prov")
    cfg = ExperimentCfg.model_validate(CFG)
    run_sweep(cfg, root, progress=False)
    write_sweep_config(root / "results", cfg.experiment, cfg.model_dump(mode="json"))
    cmd = [sys.executable, "-m", "antireg", "report", str(root / "results"), "--out", str(root / "report")]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"}, timeout=300)
    assert done.returncode == 0, done.stderr
    return root


def _field(md: str, name: str) -> str:
    return re.search(rf"^\| {re.escape(name)} \| (.*) \|$", md, re.M)[1]


def test_provenance_fields_match_the_run(out):
    md = (out / "report" / "report.md").read_text(encoding="utf-8")
    assert _field(md, "antireg") == antireg.__version__
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if commit.returncode == 0:  # run from a checkout
        assert _field(md, "git commit").split()[0] == commit.stdout.strip()
    assert _field(md, "command") == f"antireg report {out / 'results'} --out {out / 'report'}"
    conf = out / "results" / "prov_linear.config.json"
    digest = hashlib.sha256(conf.read_bytes()).hexdigest()
    assert _field(md, "config prov_linear").startswith(f"sha256 {digest} (prov_linear.config.json, resolved config")
    assert json.loads(conf.read_text())["seeds"] == [0, 1]
    assert conf.read_text().strip() in md  # the resolved text itself
    wall = pd.read_csv(out / "results" / "prov_linear.csv")["wall_s"].sum()
    assert _field(md, "wall time").startswith(f"runs {wall:.1f} s")
    assert _field(md, "CPU count") == str(os.cpu_count())


def test_git_state_outside_a_checkout_is_none(tmp_path):
    assert git_state(tmp_path) == (None, None)


def _tex_rows(table: str) -> list[list[str]]:
    body = table.split("\\midrule\n", 1)[1].split("\\bottomrule", 1)[0]
    return [[c.strip() for c in line.rstrip().removesuffix("\\\\").split("&")] for line in body.strip().splitlines()]


def test_latex_tables_parse_back_to_the_summary(out):
    tex = (out / "report" / "prov_linear_tables.tex").read_text()
    tables = tex.split("\\begin{table}")[1:]
    summary = pd.read_csv(out / "results" / "prov_linear_summary.csv")
    rmse = next(t for t in tables if "\\caption{prov\\_linear: test\\_rmse (lower is better)}" in t)
    rows = _tex_rows(rmse)
    assert [r[0] for r in rows] == ["erm", "ar", "ar: l2"]
    assert all(len(r) == 1 + summary["fraction"].nunique() for r in rows)
    assert "\\multicolumn{2}{c}{sgd}" in rmse  # the optimizer spans its columns
    for (method, ablation), row in zip([("erm", "none"), ("ar", "none"), ("ar", "l2")], rows):
        s = summary[(summary["method"] == method) & (summary["ablation"] == ablation)].sort_values("fraction")
        for cell, mean in zip(row[1:], s["test_rmse_mean"]):
            value = re.sub(r"\\textbf\{(.*)\}", r"\1", cell).split(" \\ensuremath{\\pm}")[0]
            assert float(value) == pytest.approx(mean, rel=1e-3)
    best = summary.loc[summary.groupby("fraction")["test_rmse_mean"].idxmin()]
    assert sum(c.startswith("\\textbf{") for r in rows for c in r) == len(best)


def test_table_of_contents_links_resolve_to_headings(out):
    md = (out / "report" / "report.md").read_text(encoding="utf-8")
    links = re.findall(r"^\s*- \[(.+)\]\(#([a-z0-9-]+)\)$", md, re.M)
    assert len(links) >= 6
    for text, anchor in links:
        assert re.search(rf'<a id="{anchor}"></a>\n\n#+ {re.escape(text)}$', md, re.M), anchor
    page = (out / "report" / "report.html").read_text(encoding="utf-8")
    hrefs = re.findall(r"href='#([^']+)'", page)
    ids = dict(re.findall(r"<h[1-6] id='([^']+)'>([^<]*)</h", page))
    assert hrefs and all(h in ids for h in hrefs) and len(set(ids)) == len(ids)


def test_html_toc_is_validly_nested():
    """Every <ul> inside an <li>, every <li> inside a <ul>, all closed, links in order, for jumps of depth."""
    from html.parser import HTMLParser

    from antireg.report.render import _html_toc

    class Check(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[str] = []
            self.links: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag == "ul":
                assert not self.stack or self.stack[-1] == "li", self.stack
            if tag == "li":
                assert self.stack[-1] == "ul", self.stack
            if tag == "a":
                self.links.append(dict(attrs)["href"])
            self.stack.append(tag)

        def handle_endtag(self, tag):
            assert self.stack.pop() == tag

    for entries in ([(0, "a", "a"), (1, "b", "b"), (2, "c", "c"), (0, "d", "d"), (2, "e", "e"), (1, "f", "f")],
                    [(1, "x", "x"), (0, "y", "y")], [(0, "z", "z")]):
        check = Check()
        check.feed(_html_toc(entries))
        assert check.stack == [] and check.links == [f"#{e[2]}" for e in entries]
