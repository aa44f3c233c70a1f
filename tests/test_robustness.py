"""Faults and bad input: a killed sweep resumes losing nothing; fuzzed configs never crash."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from antireg.experiments import ConfigError, expand, load_config

SWEEP = {
    "experiment": "killme",
    "dataset": {"name": "diabetes"},
    "fractions": [0.2, 0.5],
    "seeds": [0, 1, 2],
    "model": {"kind": "mlp", "width": 16, "depth": 1},
    "optimizers": {"adam": {"lr": 0.01}},
    "training": {"epochs": 40},
    "ar": {"lambda0": [0.01, 0.1]},
    "ablations": ["none", "l2"],
}


def _antireg(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "antireg", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finished(out: Path) -> list[Path]:
    exp = out / "experiments"
    return [d for d in exp.iterdir() if not d.name.startswith(".")] if exp.exists() else []


def test_sigkill_mid_sweep_then_resume_loses_and_duplicates_nothing(tmp_path):
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(yaml.safe_dump(SWEEP))
    total = len(expand(load_config(str(cfg)), 442))
    out = tmp_path / "out"
    proc = _antireg("run", "--config", str(cfg), "--output-dir", str(out), "--quiet", cwd=tmp_path)
    deadline = time.time() + 120
    while len(_finished(out)) < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = len(_finished(out))
    assert 0 < killed_at < total, "the kill must land mid-sweep"
    # every directory named after a run is complete: nothing half-written is visible
    for d in _finished(out):
        json.loads((d / "metrics.json").read_text())
        assert (d / "config.json").is_file() and (d / "log.csv").is_file()
    assert not list((out / "results").glob("*.csv"))

    again = _antireg("run", "--config", str(cfg), "--output-dir", str(out), "--quiet", cwd=tmp_path)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    runs = pd.read_csv(out / "results" / "killme.csv")
    assert len(runs) == total and runs["run_id"].is_unique
    assert len(_finished(out)) == total
    assert not list((out / "experiments").glob(".tmp-*")), "a folder the kill left half-written is cleaned up"

    # and the numbers equal an uninterrupted sweep's, bit for bit
    clean = tmp_path / "clean"
    ref = _antireg("run", "--config", str(cfg), "--output-dir", str(clean), "--quiet", cwd=tmp_path)
    ref.communicate(timeout=300)
    a = runs.drop(columns="wall_s").sort_values("run_id").reset_index(drop=True)
    b = pd.read_csv(clean / "results" / "killme.csv").drop(columns="wall_s").sort_values("run_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_corrupt_run_directory_is_reported_and_rerun(tmp_path, capsys):
    from antireg.experiments import ExperimentCfg, run_sweep

    cfg = ExperimentCfg.model_validate({**SWEEP, "seeds": [0], "fractions": [0.2], "ablations": ["none"]})
    first = run_sweep(cfg, tmp_path, progress=False)
    victim = _finished(tmp_path)[0]
    (victim / "metrics.json").write_text('{"test_rmse": 1.')  # truncated by a crash or a full disk
    again = run_sweep(cfg, tmp_path, progress=False)
    assert again.n_run == 1
    assert "re-running" in capsys.readouterr().err
    assert len(again.runs) == len(first.runs)
    json.loads((victim / "metrics.json").read_text())


# -- fuzzing the config schema ------------------------------------------------------------

numbers = st.one_of(st.integers(-5, 5), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([1e300, -1e300, 1e6, 1e-300, 2**32, 2**63, 2**64]))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=8))
grids = st.lists(st.one_of(numbers, st.booleans(), st.text(max_size=4)), min_size=1, max_size=4)  # several values
VALID = yaml.safe_load(json.dumps({**SWEEP, "relatives": {"sam": {"rho": [0.05]}}}))


def _mutations():
    keys = ["experiment", "dataset", "fractions", "seeds", "model", "optimizers", "training", "ar", "ablations",
            "safeguards", "split", "relatives", "evaluation", "add_baseline_zero", "unknown_key", "fractons"]
    names = ["name", "lr", "kind", "width", "depth", "epochs", "batch_size", "lambda0", "alpha", "rho", "b", "gamma",
             "grad_clip", "trust_radius", "val_frac", "options", "n", "d", "sam", "gsam", "flooding", "adam", "bogus"]
    nested = st.recursive(st.one_of(scalars, grids), lambda inner: st.dictionaries(st.sampled_from(names), inner,
                                                                                   max_size=3), max_leaves=6)
    return st.dictionaries(st.sampled_from(keys), st.one_of(scalars, grids, nested), min_size=1, max_size=4)


def _accepted_runs_can_be_written(cfg) -> None:
    """What an accepted config makes must be writable later: strict JSON, no overflow."""
    for spec in expand(cfg, 442)[:20]:
        json.dumps(spec.model_dump(mode="json"), allow_nan=False)
        assert 0 <= spec.seed < 2**32 and abs(spec.lambda0) <= 1e6


@given(changes=_mutations())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzzed_configs_validate_or_fail_with_config_error(tmp_path, changes):
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump({**VALID, **changes}))
    try:
        cfg = load_config(str(path))
        _accepted_runs_can_be_written(cfg)
    except ConfigError as exc:
        assert str(exc) and "Traceback" not in str(exc)


VALID_TEXT = yaml.safe_dump(VALID)
hostile = st.one_of(
    st.integers(1, 200).map(lambda k: "[" * k + "1" + "]" * k),  # nesting
    st.integers(1, 60).map(lambda k: "{a: " * k + "1" + "}" * k),
    st.just("&a [0.05, 0.1]"), st.just("*a"), st.just("{<<: *a}"),  # anchors, aliases, merge keys
    st.just("!!python/object/apply:os.system [echo pwned]"),  # code, which the safe loader refuses anyway
    st.lists(numbers.map(str), min_size=1, max_size=4).map(lambda v: "[" + ", ".join(v) + "]"),
)


@given(key=st.sampled_from(["dataset", "seeds", "fractions", "relatives", "ar", "notakey"]), value=hostile,
       where=st.sampled_from(["top", "options", "grid"]))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hostile_yaml_never_crashes(tmp_path, key, value, where):
    text = {"top": f"{VALID_TEXT}{key}: {value}\n",
            "options": VALID_TEXT.replace("name: diabetes", f"name: diabetes\n  options: {{x: {value}}}"),
            "grid": VALID_TEXT.replace("- 0.05", f"- {value}")}[where]  # fmt: skip
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    try:
        cfg = load_config(str(path))
        _accepted_runs_can_be_written(cfg)
    except ConfigError as exc:
        assert str(exc) and "Traceback" not in str(exc)


@given(text=st.text(max_size=200))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arbitrary_text_as_config_never_crashes(tmp_path, text):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config(str(path))


@pytest.mark.parametrize("text, fragment", [
    ("experiment: x\ndataset: {name: diabetes}\nfractions: [0.5]\nseeds: [0]\noptimizers: {adam: {lr: 0.1}}\nsafegaurds: {}\n",
     "did you mean 'safeguards'"),
    ("experiment: [unclosed", "not valid YAML"),
    ("experiment: x\ndataset: {name: nosuch}\nfractions: [0.5]\nseeds: [0]\noptimizers: {adam: {lr: 0.1}}\n",
     "unknown data set 'nosuch'"),
])
def test_cli_bad_input_exits_2_with_one_message(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    proc = _antireg("run", "--config", str(path), "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and fragment in err and "Traceback" not in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


# -- resource bombs -------------------------------------------------------------------------

BILLION_LAUGHS = "\n".join(["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
                           + [f"{c}: &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")])


@pytest.mark.parametrize("where", ["options", "relatives"])
def test_yaml_alias_bomb_is_refused_before_anything_expands(tmp_path, where):
    body = BILLION_LAUGHS.replace("\n", "\n  ")
    text = yaml.safe_dump({k: v for k, v in SWEEP.items() if k != "dataset"})
    text += ("dataset:\n  name: diabetes\n  options:\n    " + body.replace("\n  ", "\n    ") if where == "options"
             else "dataset: {name: diabetes}\nrelatives:\n  sam:\n    " + body.replace("\n  ", "\n    "))
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    assert len(text) < 1000
    with pytest.raises(ConfigError, match="anchors and aliases"):
        load_config(str(path))


def test_deep_nesting_and_huge_files_are_config_errors(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text(yaml.safe_dump(SWEEP) + "relatives: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError, match="nested deeper than"):
        load_config(str(path))
    path.write_text("# padding\n" * 200_000)
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_config(str(path))


@pytest.mark.parametrize("change, fragment", [
    ({"dataset": {"name": "synthetic", "options": {"n": 1000, "d": 10**9}}}, "lower dataset.options.n or d"),
    ({"seeds": list(range(2000)), "ar": {"lambda0": [0.001 * (i + 1) for i in range(100)]}}, "the grid has"),
    ({"relatives": {"sam": {"rho": [0.01 * (i + 1) for i in range(200)]},
                    "gsam": {"rho": [0.1] * 1, "alpha": [0.01 * (i + 1) for i in range(101)],
                             "lr_min": [0.0] * 1, "rho_min": [0.01 * (i + 1) for i in range(100)]}}}, "10000 combinations"),
])
def test_sizes_are_checked_before_planning(tmp_path, change, fragment):
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump({**SWEEP, **change}))
    with pytest.raises(ConfigError, match=fragment):
        expand(load_config(str(path)), 442)


def test_a_model_too_large_or_unbuildable_is_refused_before_training(tmp_path):
    from antireg.experiments import ExperimentCfg, run_sweep

    for model, fragment in [({"kind": "mlp", "width": 65536, "depth": 64}, "lower model.width or model.depth"),
                            ({"kind": "cnn", "width": 8, "depth": 10}, "cnn needs images")]:
        cfg = ExperimentCfg.model_validate({**SWEEP, "dataset": {"name": "digits"}, "model": model})
        with pytest.raises(ConfigError, match=fragment):
            run_sweep(cfg, tmp_path, progress=False)
    assert not (tmp_path / "experiments").exists()


def test_learned_optimizer_checkpoint_bombs_are_refused_before_allocation(tmp_path):
    import zipfile

    import torch

    from antireg.lopt.io import CheckpointError, load_lopt, read_header, save_lopt
    from antireg.lopt.optimizer import Arch, LOptNet

    inflating = tmp_path / "zip_bomb.pt"  # a small file whose one record inflates to 200 MiB
    with zipfile.ZipFile(inflating, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("archive/data/0", "w", force_zip64=True) as fh:
            for _ in range(200):
                fh.write(bytes(1 << 20))
    assert inflating.stat().st_size < 1 << 20
    with pytest.raises(CheckpointError, match="uncompressed"):
        read_header(inflating)
    good = save_lopt(LOptNet(Arch(hidden=4)), tmp_path / "good.pt")
    blob = torch.load(good, weights_only=True)
    header = json.loads(blob["header"])
    for arch in ({**header["arch"], "hidden": 10**9}, {**header["arch"], "step_size": float("inf")}, "lstm"):
        huge = tmp_path / "huge_arch.pt"
        torch.save({"header": json.dumps({**header, "arch": arch}), "state_dict": {}}, huge)
        assert huge.stat().st_size < 8192
        with pytest.raises(CheckpointError, match="architecture"):
            load_lopt(huge)
    (tmp_path / "not_zip.pt").write_bytes(b"\x80\x02not a zip archive")
    with pytest.raises(CheckpointError, match="not a torch archive"):
        load_lopt(tmp_path / "not_zip.pt")
    assert load_lopt(good).arch.hidden == 4


# -- validation up front --------------------------------------------------------------------


def test_grad_clip_inf_means_off_end_to_end(tmp_path):
    from antireg.experiments import ExperimentCfg, run_sweep

    small = {**SWEEP, "seeds": [0], "fractions": [0.2], "ablations": ["none"], "training": {"epochs": 5}}
    path = tmp_path / "inf.yaml"
    path.write_text(yaml.safe_dump(small).replace("ablations:", "safeguards: {grad_clip: .inf}\nablations:"))
    off = run_sweep(load_config(str(path)), tmp_path / "inf", progress=False)
    null = run_sweep(ExperimentCfg.model_validate({**small, "safeguards": {"grad_clip": None}}), tmp_path / "null",
                     progress=False)
    assert (off.runs["r_clip"] == 0).all()
    cols = ["run_id", "test_rmse", "val_rmse"]
    pd.testing.assert_frame_equal(off.runs.sort_values("run_id")[cols].reset_index(drop=True),
                                  null.runs.sort_values("run_id")[cols].reset_index(drop=True))


@pytest.mark.parametrize("change, fragment", [
    ({"optimizers": {"adam": {"lr": float("inf")}}}, "optimizers.adam.lr"),
    ({"ar": {"lambda0": [float("inf")]}}, "ar.lambda0.0"),
    ({"ar": {"lambda0": [1e300]}}, "ar.lambda0.0"),
    ({"ar": {"decay": [float("inf")]}}, "ar.decay.0"),
    ({"ar": {"alpha": [float("inf")]}}, "ar.decay.0"),  # the deprecated key names its new one
    ({"safeguards": {"trust_radius": float("inf")}}, "safeguards.trust_radius"),
    ({"seeds": [2**64]}, "seeds.0"),
    ({"training": {"epochs": 10**12}}, "training.epochs"),
    ({"relatives": {"sam": {"rho": [0.05, -1.0]}}}, "rho must be > 0"),  # the second value of the grid
    ({"relatives": {"sam": {"rho": [0.05, float("nan")]}}}, "finite numbers"),
    ({"relatives": {"sam": {"rho": [{"a": 1}]}}}, "finite numbers"),
    ({"relatives": {"flooding": {"b": ["abc"]}}}, "flooding"),
    ({"experiment": "cv_summary"}, "reserved"),
])
def test_every_value_is_validated_up_front(tmp_path, change, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**SWEEP, **change}))
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_config(str(path))


# -- run state ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    from antireg.experiments import ExperimentCfg, run_sweep

    cfg = ExperimentCfg.model_validate({**SWEEP, "seeds": [0, 1], "fractions": [0.2], "ablations": ["none"],
                                        "training": {"epochs": 5}})
    out = tmp_path_factory.mktemp("small")
    return cfg, out, run_sweep(cfg, out, progress=False)


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("tamper", ["empty_object", "list", "missing_outputs", "wrong_types", "other_id", "no_config"])
def test_tampered_run_directories_are_reported_and_rerun(tmp_path, small_sweep, capsys, tamper):
    import shutil

    from antireg.experiments import run_sweep

    cfg, src, first = small_sweep
    out = _copy(src, tmp_path / "out")
    exp = out / "experiments"
    victim, other = sorted(d for d in exp.iterdir() if not d.name.startswith("."))[:2]
    metrics = json.loads((victim / "metrics.json").read_text())
    if tamper == "empty_object":
        (victim / "metrics.json").write_text("{}")
    elif tamper == "list":
        (victim / "metrics.json").write_text("[]")
    elif tamper == "missing_outputs":
        (victim / "outputs_test.npy").unlink()
    elif tamper == "wrong_types":
        (victim / "metrics.json").write_text(json.dumps({**metrics, "seed": "zero", "val_rmse": [1]}))
    elif tamper == "other_id":  # a run's directory copied under another run's id
        shutil.rmtree(victim)
        shutil.copytree(other, victim)
    else:
        (victim / "config.json").unlink()
    again = run_sweep(cfg, out, progress=False)
    assert again.n_run == 1 and f"{victim} is not a finished run" in capsys.readouterr().err
    runs = pd.read_csv(out / "results" / "killme.csv")
    assert len(runs) == len(first.runs) and runs["run_id"].is_unique and runs["seed"].dtype.kind == "i"
    cols = ["run_id", "test_rmse", "output_scale_ratio"]
    pd.testing.assert_frame_equal(runs.sort_values("run_id")[cols].reset_index(drop=True),
                                  first.runs.sort_values("run_id")[cols].reset_index(drop=True))


# -- disks and output paths -----------------------------------------------------------------


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_stops_at_the_first_failed_write_and_resumes(tmp_path, monkeypatch):
    import numpy as np

    from antireg.experiments import ExperimentCfg, run_sweep
    from antireg.experiments import jobs
    from antireg.experiments.sweep import OutputError

    cfg = ExperimentCfg.model_validate({**SWEEP, "seeds": [0, 1], "fractions": [0.2], "training": {"epochs": 5}})
    trained, saves, real_save, real_train = [], [], np.save, jobs.train_run

    def save(path, array):  # the disk fills up at the fourth run's outputs
        saves.append(path)
        return real_save(path, array) if len(saves) <= 3 else _enospc()

    monkeypatch.setattr(jobs, "train_run", lambda spec, *a: trained.append(spec) or real_train(spec, *a))
    monkeypatch.setattr(np, "save", save)
    with pytest.raises(OutputError) as err:
        run_sweep(cfg, tmp_path, progress=False, vectorise=False)  # one run per work item: train_run counts them
    message = str(err.value)
    total = len(expand(cfg, 442))
    assert "No space left on device" in message and f"3 of {total} runs are saved" in message
    assert f"{total - 3} are not" in message and "run the same command again" in message
    assert len(trained) == 4, "the sweep stops at the first failed write"
    assert not [p.name for p in (tmp_path / "experiments").iterdir() if p.name.startswith(".")]
    assert not list((tmp_path / "results").iterdir())
    monkeypatch.setattr(np, "save", real_save)
    assert run_sweep(cfg, tmp_path, progress=False, vectorise=False).n_run == total - 3


def test_full_disk_at_the_results_lists_them_unwritten_and_leaves_no_temp_file(tmp_path, small_sweep, monkeypatch):
    from antireg.experiments import run_sweep
    from antireg.experiments import storage
    from antireg.experiments.sweep import OutputError

    cfg, src, _ = small_sweep
    out = _copy(src, tmp_path / "out")
    for csv in (out / "results").iterdir():
        csv.unlink()
    monkeypatch.setattr(storage.os, "replace", _enospc)
    with pytest.raises(OutputError, match="the results were not written"):
        run_sweep(cfg, out, progress=False)
    assert not list((out / "results").iterdir())


def test_a_write_error_crosses_from_a_pool_worker_whole():
    import pickle

    from antireg.experiments.storage import StorageError

    err = pickle.loads(pickle.dumps(StorageError("/x/metrics.json", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))))
    assert isinstance(err, StorageError) and err.errno == errno.ENOSPC
    assert str(err) == "cannot write /x/metrics.json: No space left on device"


@pytest.mark.parametrize("jobs", [1, 2])
def test_real_full_tmpfs(tmp_path, jobs):
    """On a real 200 KiB file system (root only), the disk fills mid-sweep."""
    from antireg.experiments import ExperimentCfg, run_sweep
    from antireg.experiments.sweep import OutputError

    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("needs root and mount -t tmpfs")
    try:
        cfg = ExperimentCfg.model_validate({**SWEEP, "training": {"epochs": 2}})
        with pytest.raises(OutputError, match="No space left on device") as err:
            run_sweep(cfg, disk, jobs=jobs, progress=False)
        saved = [d for d in (disk / "experiments").iterdir() if not d.name.startswith(".")]
        assert f"{len(saved)} of " in str(err.value) and 0 < len(saved)
        assert not [p for p in (disk / "experiments").iterdir() if p.name.startswith(".")]
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@pytest.mark.parametrize("blocked", ["results", "experiments", "report"])
def test_unwritable_outputs_are_refused_before_training(tmp_path, capsys, blocked):
    from antireg.cli import main

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**SWEEP, "seeds": [0], "fractions": [0.2]}))
    out = tmp_path / "out"
    out.mkdir()
    (out / blocked).write_text("a file where a folder should be")
    assert main(["run", "--config", str(cfg), "--output-dir", str(out), "--report", "--quiet"]) == 2
    assert "not writable (not a directory)" in capsys.readouterr().err
    assert not (out / "experiments").is_dir() or not any((out / "experiments").iterdir())


def test_files_and_folders_follow_the_umask(tmp_path, small_sweep):
    from antireg.experiments import run_sweep
    from antireg.lopt.io import save_lopt
    from antireg.lopt.optimizer import Arch, LOptNet

    cfg, _, _ = small_sweep
    old = os.umask(0o002)
    try:
        run_sweep(cfg.model_copy(update={"seeds": [0]}), tmp_path, progress=False)
        checkpoint = save_lopt(LOptNet(Arch(hidden=4)), tmp_path / "lopt.pt")
    finally:
        os.umask(old)
    run_dir = next(d for d in (tmp_path / "experiments").iterdir() if not d.name.startswith("."))
    assert run_dir.stat().st_mode & 0o777 == 0o775
    for path in [*run_dir.iterdir(), *(tmp_path / "results").iterdir(), checkpoint]:
        assert path.stat().st_mode & 0o777 == 0o664, path


# -- antireg report on bad input ------------------------------------------------------------


@pytest.mark.parametrize("damage", ["empty", "header_only", "binary", "foreign", "truncated", "strings", "dir"])
def test_report_on_corrupt_input_is_one_message_exit_2(tmp_path, small_sweep, capsys, damage):
    from antireg.cli import main

    _, src, _ = small_sweep
    results = _copy(src / "results", tmp_path / "results")
    runs = results / "killme.csv"
    text = runs.read_text()
    if damage == "empty":
        runs.write_text("")
    elif damage == "header_only":
        runs.write_text(text.splitlines()[0] + "\n")
    elif damage == "binary":
        runs.write_bytes(bytes(range(256)) * 8)
    elif damage == "foreign":
        runs.write_text("a,b\n1,2\n")
    elif damage == "truncated":
        runs.write_text(text[: len(text) // 3])
    elif damage == "strings":
        pd.read_csv(runs).assign(seed="zero").to_csv(runs, index=False)
    else:
        runs.unlink()
        runs.mkdir()
    assert main(["report", str(results), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert err.count("antireg: error:") == 1 and "Traceback" not in err


def test_paper_tables_beside_sweep_results_are_not_sweep_results(tmp_path, small_sweep, capsys):
    from antireg.cli import main
    from antireg.experiments import run_sweep

    cfg, src, _ = small_sweep
    out = _copy(src, tmp_path / "out")
    results = out / "results"
    (results / "toy.csv").write_text("lam,nmse\n-0.1,0.5\n")
    (results / "toy_summary.csv").write_text("best_lam\n-0.1\n")
    (results / "toy.config.json").write_text(json.dumps({"experiment": "toy", "paper": "elsewhere",
                                                         "tables": ["toy", "toy_summary"]}))
    paths = main(["report", str(results), "--out", str(tmp_path / "report")])
    assert paths == 0, capsys.readouterr().err
    with pytest.raises(ConfigError, match="paper experiment 'toy'"):  # a sweep named like it would overwrite it
        run_sweep(cfg.model_copy(update={"experiment": "toy"}), out, progress=False)
    assert (results / "toy.csv").read_text() == "lam,nmse\n-0.1,0.5\n"
