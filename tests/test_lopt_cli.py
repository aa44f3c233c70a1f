"""``antireg lopt train`` / ``eval``: configs, errors, and a test-sized run end to end, in which
the learned optimizer trains in an ``antireg run`` sweep beside SGD, Adam, SAM, AR and L2."""

import argparse
from pathlib import Path

import pandas as pd
import pytest
import yaml

from antireg import cli as main_cli
from antireg.experiments.config import ConfigError, load_config, packaged_configs
from antireg.lopt import cli, read_header
from antireg.lopt.config import load
from antireg.optimizers import LearnedCfg

HERE = Path(__file__).resolve().parent
TINY_TRAIN, TINY_EVAL = HERE / "lopt_tiny_train.yaml", HERE / "lopt_tiny_eval.yaml"


def lopt(argv: list[str]) -> int:
    """``antireg lopt ...`` through this package's own parser and dispatcher."""
    parser = argparse.ArgumentParser()
    cli.add_subcommand(parser.add_subparsers(dest="command", required=True))
    return cli.run(parser.parse_args(["lopt", *argv]), main_cli.main)


TRAIN_CONFIGS = [n for n in packaged_configs() if n.startswith("lopt_") and n not in cli.EVAL_CONFIGS]


@pytest.mark.parametrize("name", TRAIN_CONFIGS)
def test_packaged_train_configs_validate(name: str) -> None:
    cfg = load(name)
    assert cfg.name == name and cfg.specs()


def test_packaged_eval_configs_are_sweeps_of_every_trained_optimizer() -> None:
    """Each evaluation sweep names every packaged learned optimizer by its checkpoint, beside SGD and Adam."""
    assert set(cli.EVAL_CONFIGS) <= set(packaged_configs())
    for name in cli.EVAL_CONFIGS:
        cfg = load_config(name)
        learned = {k: v.checkpoint for k, v in cfg.optimizers.items() if isinstance(v, LearnedCfg)}
        assert cfg.experiment == name and sorted(learned.values()) == sorted(TRAIN_CONFIGS)
        assert {"sgd", "adam"} <= set(cfg.optimizers) and "sam" in cfg.relatives and "l2" in cfg.ablations


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"objective": {"rule": "samm"}}, r"objective\.rule.*unknown rule 'samm'"),
        ({"objective": {"rule": "sam", "params": {"radius": 0.1}}}, r"objective\.params.*valid parameters: rho"),
        ({"objective": {"rule": "gsam", "params": {"rho": 0.1, "rho_min": 0.01}}}, r"constant rho"),
        ({"meta": {"iterations": 0}}, r"meta\.iterations"),
        ({"metaa": {}}, r"metaa: unknown key; did you mean 'meta'\? \(allowed: .*meta"),
        ({"tasks": [{"dataset": "diabetes", "models": ["mlp"], "widths": [8], "n_train": [10]}]}, r"classification"),
    ],
)
def test_bad_train_config_names_the_key(tmp_path, change: dict, message: str) -> None:
    raw = yaml.safe_load(TINY_TRAIN.read_text()) | change
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    with pytest.raises(ConfigError, match=message):
        lopt(["train", "--config", str(tmp_path / "bad.yaml"), "--output-dir", str(tmp_path)])
    assert not (tmp_path / "lopt").exists()


def test_main_cli_exits_2_on_bad_config(tmp_path, capsys) -> None:
    sub = next(a for a in main_cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    if "lopt" not in sub.choices:
        pytest.skip("antireg.cli does not register the lopt subcommand yet")
    (tmp_path / "bad.yaml").write_text("name: x\ntasks: []\n")
    assert main_cli.main(["lopt", "train", "--config", str(tmp_path / "bad.yaml"), "--output-dir", str(tmp_path)]) == 2
    assert "tasks" in capsys.readouterr().err


def test_eval_with_missing_checkpoint_exits_2_before_training(tmp_path, capsys) -> None:
    assert lopt(["eval", "--config", str(TINY_EVAL), "--output-dir", str(tmp_path)]) == 2
    assert "lopt_tiny.pt not found" in capsys.readouterr().err
    assert not (tmp_path / "experiments").exists() or not any((tmp_path / "experiments").iterdir())


def test_train_then_eval_end_to_end(tmp_path, capsys) -> None:
    assert lopt(["train", "--config", str(TINY_TRAIN), "--output-dir", str(tmp_path)]) == 0
    header = read_header(tmp_path / "lopt" / "lopt_tiny.pt")
    assert header["arch"] == {"kind": "mlp", "hidden": 8, "step_size": 0.02}
    assert header["info"]["config"]["objective"]["rule"] == "sam"
    assert len(pd.read_csv(tmp_path / "lopt" / "lopt_tiny_log.csv")) == 6

    assert lopt(["eval", "--config", str(TINY_EVAL), "--output-dir", str(tmp_path)]) == 0
    runs = pd.read_csv(tmp_path / "results" / "lopt_tiny_eval.csv")
    summary = pd.read_csv(tmp_path / "results" / "lopt_tiny_eval_summary.csv")
    # seeds × optimizers × (erm, ar, l2, sam): the learned optimizer on the same splits as the others
    assert len(runs) == 2 * 3 * 4 and set(runs["optimizer"]) == {"sgd", "adam", "learned_tiny"}
    assert set(zip(runs["method"], runs["ablation"])) == {("erm", "none"), ("ar", "none"), ("ar", "l2"), ("sam", "none")}
    assert runs.groupby("optimizer")["condition_id"].nunique().eq(2).all()  # two seeds' splits each
    learned = runs[runs["optimizer"] == "learned_tiny"]
    assert not learned["diverged"].any() and learned[["test_accuracy", "test_nll", "val_nll"]].notna().all().all()
    assert (learned["best_epoch"] >= 0).all()  # chosen on validation, like every run
    assert (runs["max_loss"] >= runs["train_loss"]).all() and (runs["sharpness"] >= 0).all()  # probes on every run
    cells = summary[summary["optimizer"] == "learned_tiny"]
    assert len(cells) == 4 and (cells["n_seeds"] == 2).all() and cells["test_accuracy_ci95"].notna().all()
    # the same sweep as `antireg run`: run again by it, every run is found finished
    capsys.readouterr()
    assert main_cli.main(["run", "--config", str(TINY_EVAL), "--output-dir", str(tmp_path), "--quiet"]) == 0
    again = pd.read_csv(tmp_path / "results" / "lopt_tiny_eval.csv")
    pd.testing.assert_frame_equal(again, runs)


def test_learned_optimizer_under_the_former_protocol(tmp_path) -> None:
    """The option the learned-optimizer protocol needs: a fixed step budget of batches drawn with
    replacement, and the final state, not the best-validation one."""
    assert lopt(["train", "--config", str(TINY_TRAIN), "--output-dir", str(tmp_path)]) == 0
    former = ["--set", "training.replacement=true", "--set", "training.max_steps=7", "--set", "training.keep=last",
              "--only-optimizer", "learned_tiny", "--only-seed", "0"]
    assert main_cli.main(["run", "--config", str(TINY_EVAL), "--output-dir", str(tmp_path), "--quiet", *former]) == 0
    runs = pd.read_csv(tmp_path / "results" / "lopt_tiny_eval.csv")
    assert set(runs["optimizer"]) == {"learned_tiny"} and (runs["steps"] == 7).all() and not runs["diverged"].any()
