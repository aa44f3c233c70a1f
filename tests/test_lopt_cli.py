"""``antireg lopt train`` / ``eval``: configs, errors, and a test-sized run end to end."""

import argparse
from pathlib import Path

import pandas as pd
import pytest
import yaml

from antireg import cli as main_cli
from antireg.experiments.config import ConfigError, packaged_configs
from antireg.lopt import cli, read_header
from antireg.lopt.config import EvalCfg, TrainCfg, load

HERE = Path(__file__).resolve().parent
TINY_TRAIN, TINY_EVAL = HERE / "lopt_tiny_train.yaml", HERE / "lopt_tiny_eval.yaml"


def lopt(argv: list[str]) -> int:
    """``antireg lopt ...`` through this package's own parser and dispatcher."""
    parser = argparse.ArgumentParser()
    cli.add_subcommand(parser.add_subparsers(dest="command", required=True))
    return cli.run(parser.parse_args(["lopt", *argv]))


@pytest.mark.parametrize("name", [n for n in packaged_configs() if n.startswith("lopt_")])
def test_packaged_configs_validate(name: str) -> None:
    cfg = load(name, EvalCfg if name == "lopt_eval" else TrainCfg)
    assert cfg.name == name and cfg.specs()


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


def test_eval_with_missing_checkpoint_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="lopt_tiny.pt not found"):
        lopt(["eval", "--config", str(TINY_EVAL), "--output-dir", str(tmp_path)])


def test_train_then_eval_end_to_end(tmp_path) -> None:
    assert lopt(["train", "--config", str(TINY_TRAIN), "--output-dir", str(tmp_path)]) == 0
    header = read_header(tmp_path / "lopt" / "lopt_tiny.pt")
    assert header["arch"] == {"kind": "mlp", "hidden": 8, "step_size": 0.02}
    assert header["info"]["config"]["objective"]["rule"] == "sam"
    assert len(pd.read_csv(tmp_path / "lopt" / "lopt_tiny_log.csv")) == 6

    assert lopt(["eval", "--config", str(TINY_EVAL), "--output-dir", str(tmp_path)]) == 0
    runs = pd.read_csv(tmp_path / "results" / "lopt_tiny_eval.csv")
    summary = pd.read_csv(tmp_path / "results" / "lopt_tiny_eval_summary.csv")
    assert len(runs) == 2 * (1 + 1 + 2 + 1)  # seeds × (learned + sgd + adam grid + sam)
    assert set(summary["method"]) == {"tiny_lo", "sgd", "adam", "sam"}
    assert (summary["n_seeds"] == 2).all() and (summary["n_diverged"] == 0).all()
    for m in ("test_accuracy", "test_nll", "max_loss", "sharpness", "grad_norm", "surrogate_gap"):
        assert summary[f"{m}_mean"].notna().all() and summary[f"{m}_ci95"].notna().all()
    assert (runs["max_loss"] >= runs["train_loss"]).all()
    assert summary.set_index("method").loc["tiny_lo", "hyper"] == "checkpoint=lopt_tiny.pt"
    adam = summary.set_index("method").loc["adam", "hyper"]
    best = runs[runs["method"] == "adam"].groupby("hyper")["val_nll"].mean().idxmin()
    assert adam == best
