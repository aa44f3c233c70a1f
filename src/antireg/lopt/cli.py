"""``antireg lopt train`` and ``antireg lopt eval``.

The main CLI registers these with :func:`add_subcommand` and dispatches to
:func:`run`, mapping ConfigError (which CheckpointError is) and DataError to exit status 2.
``lopt eval`` is ``antireg run`` on each of its sweep configs (by default
:data:`EVAL_CONFIGS`), in which learned optimizers are optimizers beside SGD and Adam.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Callable

# The held-out tasks of the learned-optimizer evaluation, one sweep each.
EVAL_CONFIGS = ("lopt_eval_digits_mlp", "lopt_eval_digits_cnn", "lopt_eval_mnist_mlp")


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    """Add ``lopt train`` and ``lopt eval`` to the ``antireg`` command's subparsers."""
    lopt = subparsers.add_parser("lopt", help="learned optimizers: meta-train, evaluate against baselines")
    actions = lopt.add_subparsers(dest="lopt_command", required=True)
    train = actions.add_parser("train", help="meta-train a learned optimizer and save it to <output-dir>/lopt/<name>.pt")
    train.add_argument("--config", required=True, help="YAML file or packaged config name (e.g. lopt_sam)")
    evaluate = actions.add_parser(
        "eval", help="learned optimizers beside SGD, Adam, SAM, AR and L2 on held-out tasks: `antireg run` on "
        f"each config (default {', '.join(EVAL_CONFIGS)}); results to <output-dir>/results/")  # fmt: skip
    evaluate.add_argument("--config", action="append", default=None,
                          help="a sweep config (YAML file or packaged name) naming learned optimizers by checkpoint; "
                               "repeatable (default: the packaged evaluation)")  # fmt: skip
    for p in (train, evaluate):
        p.add_argument("--output-dir", type=Path, default=Path("."), help="where lopt/ and results/ go (default .)")
        p.add_argument("--data-dir", type=Path, default=None,
                       help="data folder (default $ANTIREG_DATA_DIR, else the per-user data folder)")  # fmt: skip
    train.add_argument("--seed", type=int, default=None, help="the meta-training seed (default the config's)")
    evaluate.add_argument("--seed", type=int, action="append", default=None, help="run only this seed (repeatable)")


def _train(args: argparse.Namespace) -> int:
    import torch

    from antireg.lopt.config import load
    from antireg.lopt.io import save_lopt
    from antireg.lopt.meta import meta_train
    from antireg.lopt.objectives import MetaObjective
    from antireg.optimizers.learned import LOptNet
    from antireg.lopt.tasks import load_pools, sample_task

    cfg = load(args.config)
    seed = cfg.seed if args.seed is None else args.seed
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(seed)
    net = LOptNet(cfg.optimizer.arch())
    objective = MetaObjective(cfg.objective.rule, cfg.objective.params, cfg.objective.data)
    specs = cfg.specs()
    load_pools(specs, args.data_dir, cfg.split_seed)
    every = max(1, cfg.meta.iterations // 10)

    def show(record: dict) -> None:
        if record["iteration"] % every == 0 or record["iteration"] == cfg.meta.iterations - 1:
            print(f"iteration {record['iteration']:5d}  train loss {record['train_loss']:.4f}  "
                  f"meta-grad norm {record['meta_grad_norm']:.3g}  {record['wall_s']:.0f}s  {record['task']}",
                  flush=True)  # fmt: skip

    history = meta_train(net, lambda rng: sample_task(specs, rng, args.data_dir, cfg.split_seed), objective,
                         cfg.meta.settings(), seed, show)  # fmt: skip
    out = args.output_dir / "lopt"
    info = {"config": cfg.model_dump(mode="json"), "seed": seed, "wall_s": history[-1]["wall_s"],
            "skipped": sum(r["skipped"] for r in history)}  # fmt: skip
    path = save_lopt(net, out / f"{cfg.name}.pt", info)
    with open(out / f"{cfg.name}_log.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    print(f"meta-trained {cfg.name} in {info['wall_s']:.0f}s ({info['skipped']} segments skipped): {path}")
    return 0


def _eval(args: argparse.Namespace, antireg: Callable[[list[str]], int]) -> int:
    """``antireg run --config C`` for each config C, with the same folders and seeds; the
    first failing sweep's exit status (its message printed by ``antireg run``) stops the rest."""
    common = ["--output-dir", str(args.output_dir)] + (["--data-dir", str(args.data_dir)] if args.data_dir else [])
    common += [arg for seed in args.seed or () for arg in ("--only-seed", str(seed))]
    for config in args.config or EVAL_CONFIGS:
        if status := antireg(["run", "--config", str(config), *common]):
            return status
    return 0


def run(args: argparse.Namespace, antireg: Callable[[list[str]], int]) -> int:
    """Dispatch ``antireg lopt <train|eval>``; ``antireg`` is the main command (``antireg.cli.main``,
    handed in rather than imported, since it imports this module), which ``eval`` runs sweeps with."""
    return _train(args) if args.lopt_command == "train" else _eval(args, antireg)
