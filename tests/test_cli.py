"""CLI habits: kebab-case flags (old spellings kept), --set overrides, --dry-run, grouped configs, fast start."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from antireg.cli import build_parser, main
from antireg.experiments.config import apply_overrides, load_config, packaged_configs
from antireg.experiments.config import ConfigError as CfgError

TINY = {
    "experiment": "tiny_cli",
    "dataset": {"name": "diabetes"},
    "fractions": [0.2, 1.0],
    "seeds": [0, 1],
    "model": {"kind": "linear"},
    "optimizers": {"sgd": {"lr": 0.05}},
    "training": {"epochs": 5},
    "ar": {"lambda0": [0.01, 0.1]},
    "ablations": ["none", "l2"],
}


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.mark.parametrize("new, old", [
    (["--only-seed", "1"], ["--only_seed", "1"]),
    (["--only-fraction", "0.5"], ["--only_fraction", "0.5"]),
    (["--only-optimizer", "adam"], ["--only_optimizer", "adam"]),
    (["--add-baseline-zero"], ["--add_baseline_zero"]),
])  # fmt: skip
def test_kebab_and_old_spellings_parse_alike(new, old):
    parser = build_parser()
    assert vars(parser.parse_args(["run", *new])) == vars(parser.parse_args(["run", *old]))


def test_apply_overrides_sets_nested_yaml_values_without_touching_the_input():
    raw = {"seeds": [0], "training": {"epochs": 5}}
    out = apply_overrides(raw, ["seeds=[3, 4]", "training.epochs=7", "ar.lambda0=[0.001]", "device=cpu"])
    assert out == {"seeds": [3, 4], "training": {"epochs": 7}, "ar": {"lambda0": [0.001]}, "device": "cpu"}
    assert raw == {"seeds": [0], "training": {"epochs": 5}}
    with pytest.raises(CfgError, match="not a mapping"):
        apply_overrides(raw, ["seeds.x=1"])
    with pytest.raises(CfgError, match="KEY=VALUE"):
        apply_overrides(raw, ["=1"])
    with pytest.raises(CfgError, match="not valid YAML"):
        apply_overrides(raw, ["seeds=[1"])


def test_set_overrides_are_validated_like_the_file(tmp_path):
    path = _write(tmp_path, TINY)
    cfg = load_config(str(path), overrides=["seeds=[5]", "training.epochs=3"])
    assert cfg.seeds == [5] and cfg.training.epochs == 3
    with pytest.raises(CfgError, match=r"(?s)training\.epochs.*--set training\.epochs=-1"):
        load_config(str(path), overrides=["training.epochs=-1"])
    with pytest.raises(CfgError, match="unknown key"):
        load_config(str(path), overrides=["trainig.epochs=3"])


@pytest.mark.parametrize("bad", ["no_such_key=1", "training.epochs=abc", "seeds", "seeds=[0"])
def test_cli_bad_set_exits_2_and_writes_nothing(tmp_path, bad, capsys):
    out = tmp_path / "out"
    assert main(["run", "--config", str(_write(tmp_path, TINY)), "--set", bad, "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("antireg: error:") and "Traceback" not in err
    assert not out.exists()


def test_set_reaches_the_resolved_config_of_every_run(tmp_path):
    out = tmp_path / "out"
    args = ["run", "--config", str(_write(tmp_path, TINY)), "--output-dir", str(out), "--quiet",
            "--set", "seeds=[7]", "--set", "fractions=[1.0]", "--set", "ablations=[none]"]
    assert main(args) == 0
    runs = pd.read_csv(out / "results" / "tiny_cli.csv")
    assert set(runs["seed"]) == {7} and set(runs["fraction"]) == {1.0}
    configs = [json.loads(p.read_text()) for p in (out / "experiments").glob("*/config.json")]
    assert configs and all(c["seed"] == 7 for c in configs)


def test_dry_run_counts_runs_and_done_and_writes_nothing(tmp_path, capsys):
    cfg = _write(tmp_path, TINY)
    out = tmp_path / "out"
    assert main(["run", "--config", str(cfg), "--output-dir", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    # 2 seeds x 2 fractions: 1 erm + 2 AR + 2 L2 per cell
    assert "tiny_cli: 20 runs, 0 already finished, 20 to train" in text
    assert "estimated training time" in text and not out.exists()
    assert main(["run", "--config", str(cfg), "--output-dir", str(out), "--quiet", "--only-seed", "0"]) == 0
    before = _tree(out)
    assert main(["run", "--config", str(cfg), "--output-dir", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "20 runs, 10 already finished, 10 to train" in text
    lines = {ln.split()[0]: ln.split() for ln in text.splitlines()[1:] if ln.startswith("  ")}
    assert lines["erm"][1] == "4" and lines["erm"][3] == "2"
    assert _tree(out) == before


def test_dry_run_of_a_paper_config_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--config", "v4_exp1", "--output-dir", str(out), "--dry-run"]) == 0
    assert "1 cells, 0 already cached, 1 to compute" in capsys.readouterr().out
    assert not out.exists()


def test_configs_are_grouped_with_descriptions(capsys):
    assert main(["configs"]) == 0
    text = capsys.readouterr().out
    sweeps, paper, lopt = text.split("\n\n")
    names = packaged_configs()
    listed = [ln.split()[0] for block in (sweeps, paper, lopt) for ln in block.splitlines()[1:]]
    assert sorted(listed) == names
    assert "concrete_reg" in sweeps and "v4_exp1" in paper and "demo" in paper and "lopt_sam" in lopt
    assert all(len(ln.split(maxsplit=1)) == 2 for block in (sweeps, paper, lopt) for ln in block.splitlines()[1:])


def test_cli_start_does_not_import_torch():
    code = "import sys; from antireg.cli import main; main(['configs']); print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "False"


def test_report_into_an_unwritable_folder_exits_2(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--config", str(_write(tmp_path, TINY)), "--output-dir", str(out), "--quiet",
                 "--set", "seeds=[0]", "--set", "fractions=[1.0]", "--set", "ablations=[none]"]) == 0
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["report", str(out / "results"), "--out", str(blocker / "report")]) == 2
    err = capsys.readouterr().err
    assert "cannot write the report" in err and "Traceback" not in err


@pytest.mark.parametrize("flags, stacked", [([], True), (["--no-vectorise"], False), (["--vectorise"], True)])
def test_runs_train_stacked_by_default_and_one_by_one_with_no_vectorise(tmp_path, monkeypatch, flags, stacked):
    from antireg.experiments import sweep as sweep_mod

    items, real = [], sweep_mod.train_item
    monkeypatch.setattr(sweep_mod, "train_item", lambda item, *a, **k: items.append(item) or real(item, *a, **k))
    cfg = _write(tmp_path, TINY)
    assert main(["run", "--config", str(cfg), "--output-dir", str(tmp_path / "out"), "--quiet", *flags]) == 0
    assert sum(len(i.specs) for i in items) == 20
    # stacked: one item per fraction (the linear model's runs share one group); else one per run
    assert [i.vectorised for i in items] == ([True] * 2 if stacked else [False] * 20)
