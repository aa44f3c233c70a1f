"""The paper driver: resume from cached cells, jobs=2 equals jobs=1, bad configs refused."""

import json

import pandas as pd
import pytest

from antireg.experiments.config import ConfigError
from antireg.paper.config import PaperCfg, is_paper_config, load_paper_config, validate
from antireg.paper.driver import cell_hash, run_paper

OPTS = {"scenarios": [{"alignment": "weak", "noise_std": 0.15, "tau0": 0.2},
                      {"alignment": "strong", "noise_std": 0.5, "tau0": 0.1}],
        "n_test": 50, "full_points": 7, "positive_points": 4, "chunk": 1}


def _cfg():
    return validate(PaperCfg(paper="v4_exp4", replications=2, seed=5, options=OPTS))


def test_resume_and_jobs_identical(tmp_path):
    cfg = _cfg()
    full = run_paper(cfg, tmp_path / "a", progress=False)
    assert full.computed == 4 and full.cached == 0
    # keep half of the cell files, rerun: only the missing half is computed, results identical
    files = sorted((tmp_path / "a" / "experiments" / "v4_exp4").glob("*.json"))
    for f in files[:2]:
        f.unlink()
    again = run_paper(cfg, tmp_path / "a", progress=False)
    assert again.computed == 2 and again.cached == 2
    pd.testing.assert_frame_equal(full.tables["v4_exp4"], again.tables["v4_exp4"])
    par = run_paper(cfg, tmp_path / "b", jobs=2, progress=False)
    pd.testing.assert_frame_equal(full.tables["v4_exp4"], par.tables["v4_exp4"])
    written = pd.read_csv(tmp_path / "a" / "results" / "v4_exp4.csv")
    assert len(written) == 6
    conf = json.loads((tmp_path / "a" / "results" / "v4_exp4.config.json").read_text())
    assert conf["paper"] == "v4_exp4" and "antireg_version" in conf
    assert not list((tmp_path / "a").rglob("*.tmp"))
    assert cell_hash({"a": 1, "b": 2}) == cell_hash({"b": 2, "a": 1})


def test_bad_configs(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("paper: v4_exp3\noptions: {grid_pointz: 3}\n")
    with pytest.raises(ConfigError, match="options.grid_pointz"):
        load_paper_config(str(bad))
    bad.write_text("paper: v4_nope\n")
    with pytest.raises(ConfigError, match="unknown kind"):
        load_paper_config(str(bad))
    bad.write_text("paper: v4_exp4\nreplications: 0\n")
    with pytest.raises(ConfigError, match="replications"):
        load_paper_config(str(bad))
    bad.write_text("paper: v4_exp4\nextra: 1\n")
    with pytest.raises(ConfigError, match="extra"):
        load_paper_config(str(bad))
    assert is_paper_config("v4_exp1") and not is_paper_config("concrete_reg") and not is_paper_config("nope")


def test_packaged_configs_load():
    for k in range(1, 5):
        assert load_paper_config(f"v4_exp{k}").paper == f"v4_exp{k}"


def test_cli_run_writes_tables_and_report(tmp_path):
    import argparse

    from antireg.paper.cli import run

    ns = argparse.Namespace(config="v4_exp3", output_dir=str(tmp_path), data_dir=None, jobs=1, report=True, quiet=True,
                            set=None, dry_run=False)
    assert run(ns) == 0
    assert len(pd.read_csv(tmp_path / "results" / "v4_exp3.csv")) == 6
    html = (tmp_path / "report" / "v4_exp3.html").read_text()
    assert "data:image/png;base64" in html and "dR_da_at_0" in html
    assert (tmp_path / "report" / "figures" / "v4_exp3_risk.png").stat().st_size > 10_000


def test_report_renders_each_v4_figure_and_results_without_the_new_tables(tmp_path):
    from matplotlib.image import imread

    from antireg.paper.report import sections
    from antireg.report.render import FigureRef

    run_paper(validate(PaperCfg(paper="v4_exp1", options={"curve_points": 10})), tmp_path, progress=False)
    run_paper(validate(PaperCfg(paper="v4_exp2")), tmp_path, progress=False)
    figs = [b for b in sections(tmp_path / "results", tmp_path / "figs") if isinstance(b, FigureRef)]
    assert [f.png.name for f in figs] == ["v4_exp1_curve.png", "v4_exp2_weak.png"]
    for f in figs:
        assert imread(f.png).shape[0] > 300 and f.svg.is_file() and "per-sample" in f.caption
    # results of older versions (no curve / per-direction table): exp1 plots the table's λ, exp2 has no figure
    (tmp_path / "results" / "v4_exp1_curve.csv").unlink()
    (tmp_path / "results" / "v4_exp2_directions.csv").unlink()
    figs = [b for b in sections(tmp_path / "results", tmp_path / "old") if isinstance(b, FigureRef)]
    assert [f.png.name for f in figs] == ["v4_exp1_curve.png"]
