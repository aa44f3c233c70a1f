"""``antireg lopt train`` and ``antireg lopt eval``.

The main CLI registers these with :func:`add_subcommand` and dispatches to
:func:`run`, mapping ConfigError (which CheckpointError is) and DataError to exit status 2.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

SHOWN = ["test_accuracy", "test_nll", "max_loss", "sharpness", "grad_norm", "surrogate_gap"]


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    """Add ``lopt train`` and ``lopt eval`` to the ``antireg`` command's subparsers."""
    lopt = subparsers.add_parser("lopt", help="learned optimizers: meta-train, evaluate against baselines")
    actions = lopt.add_subparsers(dest="lopt_command", required=True)
    helps = {
        "train": "meta-train a learned optimizer and save it to <output-dir>/lopt/<name>.pt",
        "eval": "run learned optimizers and baselines on held-out tasks; results to <output-dir>/results/",
    }
    for name, text in helps.items():
        p = actions.add_parser(name, help=text)
        p.add_argument("--config", required=True, help="YAML file or packaged config name (e.g. lopt_sam)")
        p.add_argument("--output-dir", type=Path, default=Path("."), help="where lopt/ and results/ go (default .)")
        p.add_argument("--data-dir", type=Path, default=None,
                       help="data folder (default $ANTIREG_DATA_DIR, else the per-user data folder)")  # fmt: skip
        p.add_argument("--seed", type=int, default=None, help="train: the meta-training seed; eval: run only this seed")


def _train(args: argparse.Namespace) -> int:
    import torch

    from antireg.lopt.config import TrainCfg, load
    from antireg.lopt.io import save_lopt
    from antireg.lopt.meta import meta_train
    from antireg.lopt.objectives import MetaObjective
    from antireg.lopt.optimizer import LOptNet
    from antireg.lopt.tasks import load_pools, sample_task

    cfg = load(args.config, TrainCfg)
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


def _eval(args: argparse.Namespace) -> int:
    import torch

    from antireg.lopt.config import EvalCfg, load
    from antireg.lopt.evaluate import evaluate, summarize, write_results

    cfg = load(args.config, EvalCfg)
    torch.set_num_threads(cfg.threads)
    seeds = None if args.seed is None else [args.seed]
    df = evaluate(cfg, args.output_dir, args.data_dir, seeds, progress=lambda line: print(line, flush=True))
    summary = summarize(df)
    runs, summ = write_results(df, summary, args.output_dir / "results", cfg.name)
    table = summary[["task", "method", "hyper"]].copy()
    for m in SHOWN:
        table[m] = [f"{a:.4g} ± {b:.2g}" for a, b in zip(summary[f"{m}_mean"], summary[f"{m}_ci95"])]
    print(f"mean ± 95% CI over {summary['n_seeds'].max()} seed(s); baseline settings chosen on validation NLL")
    print(table.to_string(index=False))
    print(f"Results: {runs} and {summ}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch ``antireg lopt <train|eval>``."""
    return _train(args) if args.lopt_command == "train" else _eval(args)
