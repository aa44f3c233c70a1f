"""Config schema, grid, runner, aggregation and resume, end to end on tiny sweeps."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from antireg.cli import main
from antireg.data import n_train_for
from antireg.experiments import ConfigError, ExperimentCfg, expand, load_config, run_sweep
from antireg.experiments import storage
from antireg.experiments import sweep as sweep_mod
from antireg.experiments.config import packaged_configs
from antireg.experiments.storage import remove_stale

TINY = {
    "experiment": "tiny",
    "dataset": {"name": "diabetes"},
    "fractions": [0.2, 1.0],
    "seeds": [0, 1],
    "model": {"kind": "linear"},
    "optimizers": {"sgd": {"lr": 0.05}},
    "training": {"epochs": 15},
    "ar": {"lambda0": [0.01, 0.1]},
    "ablations": ["none", "l2", "no_trust_region"],
}
RUN_COLUMNS = [
    "experiment", "dataset", "method", "ablation", "optimizer", "seed", "fraction", "n_train", "lambda0",
    "decay", "lambda_n", "test_rmse", "test_mae", "test_r2", "val_rmse", "output_scale_ratio", "r_clip", "r_proj",
    "df_per_n", "diverged", "wall_s",
]  # fmt: skip


def _cfg(**changes) -> ExperimentCfg:
    return ExperimentCfg.model_validate({**TINY, **changes})


def _write(tmp_path: Path, data: dict | str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


# -- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"fractons": [0.5]}, "did you mean 'fractions'"),
        ({"fractions": [0.0]}, "fractions.0"),
        ({"fractions": [1.5]}, "fractions.0"),
        ({"seeds": "zero"}, "seeds"),
        ({"optimizers": {"rmsprop": {"lr": 0.1}}}, "optimizers"),
        ({"ar": {"lambda0": [-0.1]}}, "ar.lambda0.0"),
        ({"ar": {"lamda0": [0.1]}}, "did you mean 'lambda0'"),
        ({"ablations": ["no_clip"]}, "ablations.0"),
        ({"experiment": "../escape"}, "experiment"),
        ({"fractions": []}, "fractions"),
        ({"split": {"val_frac": 0.6, "test_frac": 0.5}}, "val_frac + test_frac"),
    ],
)
def test_bad_configs_name_the_key(tmp_path, change, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(str(_write(tmp_path, {**TINY, **change})))
    assert fragment in str(err.value)


def test_the_old_decay_key_alpha_still_works_with_a_warning_and_keeps_the_run_ids(tmp_path):
    new = _cfg(ar={"lambda0": [0.01], "decay": [0.5, 1.0]})
    with pytest.warns(FutureWarning, match=r"ar\.alpha is deprecated: rename it ar\.decay"):
        old = load_config(str(_write(tmp_path, {**TINY, "ar": {"lambda0": [0.01], "alpha": [0.5, 1.0]}})))
    assert old == new
    ids = [s.run_id for s in expand(new, 442)]
    assert [s.run_id for s in expand(old, 442)] == ids
    # the id hashes the decay under its old name, as every run id written before the rename did
    spec = next(s for s in expand(new, 442) if s.method == "ar")
    assert spec.model_dump(by_alias=True)["alpha"] == spec.decay and "alpha" not in spec.model_dump()
    with pytest.raises(ConfigError, match="give ar.decay only"):
        load_config(str(_write(tmp_path, {**TINY, "ar": {"alpha": [1.0], "decay": [1.0]}})))


def test_training_protocol_options_change_run_ids_only_away_from_their_defaults(tmp_path):
    ids = [s.run_id for s in expand(_cfg(), 442)]
    at_defaults = _cfg(training={"epochs": 15, "replacement": False, "max_steps": None, "keep": "best"})
    assert [s.run_id for s in expand(at_defaults, 442)] == ids
    budget = _cfg(seeds=[0], fractions=[0.2], training={"epochs": 15, "max_steps": 3, "keep": "last"})
    assert not {s.run_id for s in expand(budget, 442)} & set(ids)
    result = run_sweep(budget, tmp_path, progress=False)
    assert (result.runs["steps"] == 3).all()  # full batch: one step an epoch, cut at the budget


def test_probes_report_sharpness_on_the_training_set(tmp_path):
    cfg = _cfg(seeds=[0], fractions=[0.2], ablations=["none"], evaluation={"probes": {"rho": 0.05, "ascent_steps": 3}})
    assert not {s.run_id for s in expand(cfg, 442)} & {s.run_id for s in expand(_cfg(seeds=[0], fractions=[0.2]), 442)}
    result = run_sweep(cfg, tmp_path, progress=False)
    runs = result.runs
    assert (runs["max_loss"] >= runs["train_loss"]).all() and (runs["sharpness"] >= 0).all()
    assert (runs["sharpness"] == runs["max_loss"] - runs["train_loss"]).all()
    assert "sharpness_mean" in result.summary


def test_malformed_yaml_and_missing_config(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(_write(tmp_path, "experiment: [unclosed")))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(str(_write(tmp_path, "- a list")))
    with pytest.raises(ConfigError, match="(?i)did you mean 'concrete_reg'"):
        load_config("concrete_rge")


def test_unsafe_yaml_tags_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    text = f"!!python/object/apply:os.system ['touch {marker}']"
    with pytest.raises(ConfigError):
        load_config(str(_write(tmp_path, text)))
    assert not marker.exists()


def test_learned_optimizer_config_given_to_run_points_to_lopt():
    with pytest.raises(ConfigError, match="antireg lopt train --config lopt_sam"):
        load_config("lopt_sam")


def test_packaged_configs_load_by_name_and_path():
    names = packaged_configs()
    assert {"diabetes_reg", "concrete_reg", "airfoil_reg"} <= set(names)
    from antireg.paper.config import is_paper_config, load_paper_config

    for name in names:
        path = str(Path(__file__).parents[1] / "configs" / f"{name}.yaml")
        if name.startswith("lopt_"):  # lopt configs have their own schema
            continue
        load = load_paper_config if is_paper_config(name) else load_config
        assert load(name) == load(path)


# -- grid -----------------------------------------------------------------------------------


def test_grid_shares_one_baseline_per_condition_and_maps_ablations():
    specs = expand(_cfg(), n_total=442)
    baselines = [s for s in specs if s.method == "erm"]
    ar = [s for s in specs if s.method == "ar"]
    assert len(baselines) == 2 * 2 * 1  # seeds × fractions × optimizers, not × λ₀
    assert len(ar) == 2 * 2 * 3 * 2
    assert len({s.run_id for s in specs}) == len(specs)
    n0 = n_train_for(442, 0.2)
    assert all(s.n0 == n0 for s in specs)
    for s in ar:
        assert (s.lambda0 > 0) == (s.ablation == "l2")
        assert (s.trust_factor is None) == (s.ablation == "no_trust_region")
    conditions = {s.condition_id for s in baselines}
    assert {s.condition_id for s in ar} == conditions
    assert all(b.grad_clip is None and b.trust_factor is None for b in baselines)


def test_run_ids_are_deterministic_and_content_addressed():
    a, b = expand(_cfg(), 442), expand(_cfg(), 442)
    assert [s.run_id for s in a] == [s.run_id for s in b]
    changed = expand(_cfg(training={"epochs": 16}), 442)
    assert not {s.run_id for s in a} & {s.run_id for s in changed}


def test_run_ids_of_existing_configs_stay_put():
    """Fields added to RunSpec must not move the ids of finished runs (resume would redo them)."""
    ids = [s.run_id for s in expand(_cfg(), 442)]
    assert ids[:4] == ["erm-none-sgd-f0.2-s0-bfa33cc178ff", "ar-none-sgd-f0.2-s0-cefcda4f27e5",
                       "ar-none-sgd-f0.2-s0-178b8f16ba58", "ar-l2-sgd-f0.2-s0-40d2fd0474a9"]  # fmt: skip
    bound = expand(_cfg(ar={**TINY["ar"], "lambda0_unit": "bound"}), 442)
    assert not {s.run_id for s in bound if s.method == "ar"} & set(ids)


# -- end to end -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    return out, run_sweep(_cfg(), out, progress=False)


def test_sweep_writes_both_csvs_with_the_columns(finished):
    out, result = finished
    runs = pd.read_csv(out / "results" / "tiny.csv")
    summary = pd.read_csv(out / "results" / "tiny_summary.csv")
    assert set(RUN_COLUMNS) <= set(runs.columns)
    assert len(runs) == result.n_run == len(expand(_cfg(), 442))
    assert runs["run_id"].is_unique
    # one summary row per method × ablation × optimizer × fraction
    assert len(summary) == 2 * (1 + 3)
    for col in ("test_rmse_mean", "test_rmse_ci95", "output_scale_ratio_mean", "n_seeds", "n_diverged"):
        assert col in summary.columns
    assert (summary["n_seeds"] == 2).all()
    # linear model: df/n is defined; the baseline's equals rank/n
    base = runs[runs["method"] == "erm"]
    np.testing.assert_allclose(base["df_per_n"], 11 / base["n_train"], rtol=1e-8)
    assert (runs.loc[runs["lambda0"] < 0, "df_per_n"].values > 11 / runs.loc[runs["lambda0"] < 0, "n_train"].values).all()


def test_summary_selects_lambda0_on_validation_and_ci_is_student_t(finished):
    from scipy import stats

    out, _ = finished
    runs = pd.read_csv(out / "results" / "tiny.csv")
    summary = pd.read_csv(out / "results" / "tiny_summary.csv")
    row = summary[(summary["ablation"] == "none") & (summary["fraction"] == 0.2)].iloc[0]
    group = runs[(runs["method"] == "ar") & (runs["ablation"] == "none") & (runs["fraction"] == 0.2)]
    best = group.groupby("lambda0")["val_rmse"].mean().idxmin()
    assert row["lambda0"] == best
    chosen = group[group["lambda0"] == best]["test_rmse"]
    assert row["test_rmse_mean"] == pytest.approx(chosen.mean())
    assert row["test_rmse_ci95"] == pytest.approx(stats.t.ppf(0.975, 1) * chosen.std(ddof=1) / np.sqrt(2))


def test_output_scale_ratio_is_the_output_norm_ratio_to_the_conditions_baseline(finished):
    out, _ = finished
    runs = pd.read_csv(out / "results" / "tiny.csv")
    exp = out / "experiments"
    for _, r in runs.sample(5, random_state=0).iterrows():
        base = runs[(runs["method"] == "erm") & (runs["condition_id"] == r["condition_id"])].iloc[0]
        want = np.linalg.norm(np.load(exp / r["run_id"] / "outputs_test.npy")) / np.linalg.norm(
            np.load(exp / base["run_id"] / "outputs_test.npy"))
        assert r["output_scale_ratio"] == pytest.approx(want)
    assert (runs.loc[runs["method"] == "erm", "output_scale_ratio"] == 1.0).all()


def test_run_directory_holds_config_metrics_log_and_diagnostics(finished):
    out, _ = finished
    run_dir = next((out / "experiments").glob("ar-none-*"))
    config = json.loads((run_dir / "config.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    log = pd.read_csv(run_dir / "log.csv")
    diag = json.loads((run_dir / "diagnostics.json").read_text())
    assert config["run_id"] == run_dir.name == metrics["run_id"]
    assert list(log.columns[:3]) == ["epoch", "train_loss", "val_loss"]
    assert {"lambda", "grad_norm", "clip_events", "proj_events"} <= set(log.columns)
    assert len(log) == 15 and (log["lambda"] == metrics["lambda_n"]).all()
    assert log["proj_events"].sum() / log["steps"].sum() == pytest.approx(diag["r_proj"])
    assert not list((out / "experiments").glob(".tmp-*"))


def test_stale_tmp_dirs_of_dead_writers_on_this_host_are_removed(tmp_path):
    spec = expand(_cfg(), 442)[0]
    exp = tmp_path / "experiments"
    # a writer SIGKILLed mid-write leaves its temporary directory behind
    script = (
        "import os, signal, sys, numpy as np\n"
        "from antireg.experiments import storage\n"
        "from antireg.experiments.grid import RunSpec\n"
        "spec = RunSpec.model_validate_json(sys.argv[1])\n"
        "os.rename = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
        "storage.write_run(spec, sys.argv[2], {k: 0 for k in storage.DIAGNOSTICS}, [], {'outputs_test': np.zeros(3)})\n"
    )
    killed = subprocess.Popen([sys.executable, "-c", script, spec.model_dump_json(), str(exp)])
    assert killed.wait() == -9
    [dead] = exp.glob(".tmp-*")
    live = exp / f".tmp-{spec.run_id}@{socket.gethostname()}@{os.getpid()}-abc"  # a sweep writing now
    elsewhere = exp / f".tmp-{spec.run_id}@another-host.example@{killed.pid}-abc"  # its pid means nothing here
    legacy = exp / f".tmp-{spec.run_id}-abc"  # older name, without host and pid
    for d in (live, elsewhere, legacy):
        d.mkdir()
    assert remove_stale(exp) == 1
    assert not dead.exists() and live.is_dir() and elsewhere.is_dir() and legacy.is_dir()
    assert remove_stale(exp) == 0 and remove_stale(tmp_path / "missing") == 0


def test_a_run_written_before_the_decay_rename_counts_as_finished(finished, tmp_path):
    out, _ = finished
    run_dir = tmp_path / "old-run"
    shutil.copytree(next((out / "experiments").glob("ar-none-*")), run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["alpha"] = metrics.pop("decay")  # what a run written before the rename holds
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    run_dir = run_dir.rename(tmp_path / metrics["run_id"])
    assert storage.finished_metrics(run_dir)["decay"] == metrics["alpha"]


def test_rerun_skips_everything_and_reproduces_the_numbers(finished, tmp_path):
    out, first = finished
    again = run_sweep(_cfg(), out, progress=False)
    assert again.n_run == 0 and again.n_skipped == first.n_run
    fresh = run_sweep(_cfg(), tmp_path, progress=False)
    cols = ["test_rmse", "val_rmse", "lambda_n", "r_proj"]
    pd.testing.assert_frame_equal(first.runs.sort_values("run_id")[cols].reset_index(drop=True),
                                  fresh.runs.sort_values("run_id")[cols].reset_index(drop=True))


def test_resume_after_interruption_runs_only_what_is_missing(tmp_path, monkeypatch):
    real = sweep_mod.train_item
    calls = []

    def dies_after_five(item, *args, **kwargs):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(item.specs[0].run_id)
        return real(item, *args, **kwargs)

    monkeypatch.setattr(sweep_mod, "train_item", dies_after_five)
    with pytest.raises(KeyboardInterrupt):  # one run per work item (test_signals interrupts stacked ones)
        run_sweep(_cfg(), tmp_path, progress=False, vectorise=False)
    assert not list((tmp_path / "results").iterdir())  # checked writable before training, nothing written
    (tmp_path / "experiments" / "stale-unfinished-dir").mkdir()  # a crash leftover without metrics
    monkeypatch.setattr(sweep_mod, "train_item", real)
    result = run_sweep(_cfg(), tmp_path, progress=False, vectorise=False)
    total = len(expand(_cfg(), 442))
    assert (result.n_run, result.n_skipped) == (total - 5, 5)
    runs = pd.read_csv(tmp_path / "results" / "tiny.csv")
    assert len(runs) == total and runs["run_id"].is_unique


def test_only_filters_and_add_baseline(tmp_path):
    cfg = _cfg(add_baseline_zero=False, seeds=[0, 1, 2])
    result = run_sweep(cfg, tmp_path, seeds=[2], fractions=[0.2], progress=False)
    assert set(result.runs["seed"]) == {2} and set(result.runs["fraction"]) == {0.2}
    assert "erm" not in set(result.runs["method"]) and result.runs["output_scale_ratio"].isna().all()
    with pytest.raises(ConfigError, match="select no runs"):
        run_sweep(cfg, tmp_path, seeds=[9], progress=False)


def test_process_pool_gives_identical_files(finished, tmp_path):
    out, first = finished
    pooled = run_sweep(_cfg(), tmp_path, jobs=2, progress=False)
    for run_id in first.runs["run_id"]:
        a = json.loads((out / "experiments" / run_id / "metrics.json").read_text())
        b = json.loads((tmp_path / "experiments" / run_id / "metrics.json").read_text())
        a.pop("wall_s"), b.pop("wall_s")
        assert a == b


# -- CLI ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["run", "--config", "no_such_config"], "not found"),
        (["run", "--config", "diabetes_reg", "--only_fraction", "1.5"], "fraction must be in (0, 1]"),
        (["run", "--config", "concrete_reg", "--data-dir", "/nonexistent/data"], "Concrete_Data.xls"),
        (["run", "--config", "diabetes_reg", "--only_seed", "99"], "select no runs"),
        (["run", "--config", "diabetes_reg", "--jobs", "0"], "--jobs"),
    ],
)
def test_cli_errors_exit_2_without_traceback_or_files(tmp_path, args, fragment):
    proc = subprocess.run(
        [sys.executable, "-m", "antireg", *args, "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "results").exists() and not (tmp_path / "out" / "experiments").exists()


def test_cli_unwritable_output_dir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["run", "--config", str(_write(tmp_path, TINY)), "--output-dir", str(blocker / "sub")]) == 2
    assert "not writable" in capsys.readouterr().err


def test_python_m_antireg_run_is_the_cli(tmp_path):
    cfg = _write(tmp_path, {**TINY, "seeds": [0], "fractions": [1.0], "ablations": ["none"]})
    proc = subprocess.run(
        [sys.executable, "-m", "antireg.run", "--config", str(cfg), "--output-dir", str(tmp_path), "--quiet"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_csv(tmp_path / "results" / "tiny.csv")) == 3


# -- classification -------------------------------------------------------------------------

CLS = {
    "experiment": "tiny_cls",
    "dataset": {"name": "digits"},
    "fractions": [0.1],
    "seeds": [0, 1],
    "model": {"kind": "mlp", "width": 32, "depth": 1},
    "optimizers": {"adam": {"lr": 0.01}},
    "training": {"epochs": 5, "batch_size": 64},
    "evaluation": {"ece_bins": 10},
    "ar": {"lambda0": [0.01, 10.0], "decay": [0.5], "center": "init", "ntk": True},
    "ablations": ["none"],
}


def test_classification_sweep_metrics_reliability_and_ntk_clamp(tmp_path):
    from antireg.calibration import classification_metrics

    result = run_sweep(ExperimentCfg.model_validate(CLS), tmp_path, progress=False)
    runs = result.runs
    for col in ("test_accuracy", "test_nll", "test_ece", "test_brier", "val_accuracy", "val_nll", "output_scale_ratio", "df_per_n"):
        assert col in runs.columns and runs[col].notna().all(), col
    assert "test_accuracy_mean" in result.summary.columns
    # the NTK of n points of a wide MLP has full rank: df(0)/n = 1, and AR raises it
    base = runs[runs["method"] == "erm"]
    np.testing.assert_allclose(base["df_per_n"], 1.0, rtol=1e-9)
    ar = runs[runs["method"] == "ar"]
    assert (ar["df_per_n"] > 1.0).all()
    # λ₀ = 10 is far beyond the NTK's bound: clamped there, never beyond
    strong = ar[ar["lambda0"] == -10.0]
    assert strong["clamped"].all() and (strong["lambda_n"] > strong["lambda_requested"]).all()
    # the saved logits and reliability diagram reproduce the reported metrics
    from antireg.data import load_dataset, make_split

    row = ar.iloc[0]
    run_dir = tmp_path / "experiments" / row["run_id"]
    logits = np.load(run_dir / "outputs_test.npy")
    y = make_split(load_dataset("digits"), int(row["seed"]), 0.1).y_test
    m = classification_metrics(logits, y, 10, logits=True)
    assert m["accuracy"] == pytest.approx(row["test_accuracy"]) and m["ece"] == pytest.approx(row["test_ece"])
    rel = json.loads((run_dir / "reliability.json").read_text())
    assert len(rel["bin_edges"]) == 11 and sum(rel["count"]) == len(y)


# -- relatives ------------------------------------------------------------------------------


def test_relatives_grid_methods_and_validation(tmp_path):
    cfg = _cfg(relatives={"sam": {"rho": [0.01, 0.05]}, "igr": {}, "flooding": {"b": 0.1}},
               relatives_with_ar=True, ablations=["none"])
    specs = expand(cfg, 442)
    per_condition = 1 + 2 + (2 + 1 + 1) + (2 + 1 + 1) * 2  # baseline, AR λ₀s, relatives, relatives with AR
    assert len(specs) == 2 * 2 * per_condition
    sam = [s for s in specs if s.method == "sam"]
    assert {s.rule_params["rho"] for s in sam} == {0.01, 0.05}
    assert all(s.lambda0 == 0 and s.grad_clip is None for s in sam)
    combo = [s for s in specs if s.method == "ar+sam"]
    assert all(s.lambda0 < 0 and s.rule == "sam" and s.trust_factor is not None for s in combo)
    for bad, fragment in [({"sam": {"roh": 0.1}}, "valid parameters: rho"), ({"adamw": {}}, "unknown relative"),
                          ({"sam": {"rho": []}}, "at least one value"), ({"sam": {"rho": -1.0}}, "rho must be > 0")]:
        with pytest.raises(ConfigError, match=fragment):
            load_config(str(_write(tmp_path, {**TINY, "relatives": bad})))


def test_relatives_run_side_by_side_and_are_chosen_on_validation(tmp_path):
    cfg = _cfg(seeds=[0], fractions=[0.2], relatives={"sam": {"rho": [0.01, 0.5]}, "igr": {}},
               ablations=["none"], model={"kind": "mlp", "width": 8, "depth": 1})
    result = run_sweep(cfg, tmp_path, progress=False)
    runs, summary = result.runs, result.summary
    sam = runs[runs["method"] == "sam"]
    assert set(sam["rule_params"]) == {"rho=0.01", "rho=0.5"}
    assert sam["test_rmse"].nunique() == 2  # the parameter reached the rule
    row = summary[summary["method"] == "sam"].iloc[0]
    assert row["rule_params"] == sam.loc[sam["val_rmse"].idxmin(), "rule_params"]
    igr = runs[runs["method"] == "igr"].iloc[0]
    erm = runs[runs["method"] == "erm"].iloc[0]
    assert igr["test_rmse"] != erm["test_rmse"]  # IGR got the optimizer's lr and did something
