"""The ``antireg`` command.

Errors a user can fix (config, data, paths) print one message and exit with
status 2, without a traceback and without writing results.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from antireg import advise
from antireg.data import cli as data_cli
from antireg.lopt import cli as lopt_cli
from antireg.optimizers import OPTIMIZER_NAMES, kind_of

# the demo: where negative ridge helps and where it does not, in seconds, no download
DEFAULT_CONFIG = "demo"


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"fraction must be in (0, 1], got {text}")
    return value


def _optimizer_name(text: str) -> str:
    try:
        kind_of(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    from antireg import __version__

    parser = argparse.ArgumentParser(prog="antireg", description="Anti-Regularization and its relatives: sweeps and tables.")
    parser.add_argument("--version", action="version", version=f"antireg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a sweep from a YAML config and aggregate its results")
    run.add_argument("--config", default=DEFAULT_CONFIG,
                     help=f"YAML file or packaged config name (default {DEFAULT_CONFIG}; see `antireg configs`)")
    # kebab-case, with the earlier snake_case spellings still accepted
    run.add_argument("--only-seed", "--only_seed", dest="only_seed", type=int, action="append", metavar="SEED",
                     help="run only this seed (repeatable)")
    run.add_argument("--only-fraction", "--only_fraction", dest="only_fraction", type=_fraction, action="append",
                     metavar="F", help="only this training fraction (repeatable)")
    run.add_argument("--only-optimizer", "--only_optimizer", dest="only_optimizer", type=_optimizer_name,
                     action="append", metavar="NAME",
                     help=f"only this optimizer of the config (a kind: {', '.join(OPTIMIZER_NAMES)}, maybe with a "
                          "_label; repeatable)")
    run.add_argument("--add-baseline-zero", "--add_baseline_zero", dest="add_baseline_zero", action="store_true",
                     help="add the λ = 0 ERM baseline runs (needed for ρ)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override a config key (dotted, value in YAML), e.g. --set seeds=[0,1] (repeatable)")
    run.add_argument("--dry-run", action="store_true",
                     help="print the plan (runs by method, what is done, estimated time) and write nothing")
    run.add_argument("--output-dir", type=Path, default=Path("."), help="where experiments/ and results/ go (default .)")
    run.add_argument("--data-dir", type=Path, default=None,
                     help="data folder (default $ANTIREG_DATA_DIR, else the per-user data folder; see `antireg data list`)")
    run.add_argument("--jobs", type=int, default=1,
                     help="worker processes (default 1); with --executor ray, the CPUs of a local Ray instance")
    run.add_argument("--executor", choices=["local", "process", "ray"], default=None,
                     help="where runs train: this process, a process pool, or Ray (default: process if --jobs > 1)")
    run.add_argument("--ray-address", default=None, metavar="ADDR",
                     help="with --executor ray: an existing Ray cluster (e.g. ray://head:10001); default a local instance")
    run.add_argument("--device", choices=["cpu", "cuda", "auto"], default=None,
                     help="train on cpu, cuda, or auto (CUDA when present); default the config's device (auto)")
    run.add_argument("--vectorise", action=argparse.BooleanOptionalAction, default=True,
                     help="train runs sharing an architecture, training size, optimizer and gradient rule as one "
                          "stacked model (default on; --no-vectorise trains them one by one)")
    run.add_argument("--tracking", choices=["mlflow"], default=None,
                     help="log each run to MLflow (default store: mlflow.db in the output dir)")
    run.add_argument("--tracking-uri", default=None, metavar="URI", help="MLflow tracking URI instead of the default store")
    run.add_argument("--report", action="store_true", help="write the report (report/ in the output dir) at the end")
    run.add_argument("--quiet", action="store_true", help="no progress bar or table")
    report = sub.add_parser("report", help="tables, figures and an HTML page from results/")
    report.add_argument("results_dir", type=Path, nargs="?", default=Path("results"),
                        help="a results/ folder written by `antireg run` (default ./results)")
    report.add_argument("--out", type=Path, default=Path("report"), help="output folder (default report/)")
    report.add_argument("--experiments-dir", type=Path, default=None,
                        help="per-run directories (default: experiments/ beside results_dir)")
    report.add_argument("--only", action="append", metavar="EXPERIMENT", help="report only this experiment (repeatable)")
    report.add_argument("--correction", choices=["holm", "bh"], default="holm",
                        help="multiple-comparison correction of the paired tests in each table: Holm "
                             "(family-wise, default) or Benjamini-Hochberg (false discovery rate)")
    sub.add_parser("configs", help="list the packaged configs")
    lopt_cli.add_subcommand(sub)
    data_cli.add_subcommand(sub)
    advise.add_subcommand(sub)
    return parser


def _configs_text(names: list[str]) -> str:
    """The packaged configs grouped by the command that runs them, each with its first comment line."""
    from antireg.experiments.config import resolve_config_path
    from antireg.paper.config import is_paper_config

    groups: dict[str, list[str]] = {"sweeps (antireg run --config NAME)": [],
                                    "paper experiments (antireg run --config NAME)": [],
                                    "learned optimizers' meta-training (antireg lopt train --config NAME)": []}
    keys = list(groups)
    width = max(map(len, names))
    for name in names:
        lines = resolve_config_path(name).read_text(encoding="utf-8").splitlines()
        about = next((ln.lstrip("# ").strip() for ln in lines if ln.startswith("#")), "")
        about = about if len(about) <= 100 else about[:99] + "…"
        meta_training = name.startswith("lopt_") and not name.startswith("lopt_eval_")  # lopt_eval_*: sweeps
        group = keys[2] if meta_training else keys[1] if is_paper_config(name) else keys[0]
        groups[group].append(f"  {name:<{width}}  {about}")
    return "\n\n".join(f"{g}:\n" + "\n".join(rows) for g, rows in groups.items() if rows)


def _print_summary(summary, console) -> None:
    from antireg.report.terminal import summary_lines

    for line in summary_lines(summary, console.width):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _run(args: argparse.Namespace) -> int:
    from antireg.paper import cli as paper_cli

    if paper_cli.is_paper_config(args.config):
        return paper_cli.run(args)
    from rich.console import Console

    from antireg.experiments.aggregate import edge_warnings
    from antireg.experiments.config import load_config
    from antireg.experiments.sweep import run_sweep

    cfg = load_config(args.config, overrides=args.set or ())
    if args.add_baseline_zero:
        cfg = cfg.model_copy(update={"add_baseline_zero": True})
    if args.dry_run:
        from antireg.experiments.dryrun import dry_run

        print(dry_run(cfg, args.output_dir, args.data_dir, args.only_seed, args.only_fraction, args.only_optimizer,
                      jobs=args.jobs, device=args.device, vectorise=args.vectorise).text())
        return 0
    if args.report:  # before training, not after it
        from antireg.experiments.storage import check_writable

        check_writable(args.output_dir / "report", "report folder")
    result = run_sweep(
        cfg, args.output_dir, args.data_dir, args.only_seed, args.only_fraction, args.only_optimizer,
        jobs=args.jobs, progress=not args.quiet, executor=args.executor, ray_address=args.ray_address,
        device=args.device, vectorise=args.vectorise, tracking=args.tracking, tracking_uri=args.tracking_uri,
    )  # fmt: skip
    if args.report:
        from antireg.report import write_report  # matplotlib: seconds to import, only when asked

        paths = write_report(args.output_dir / "results", args.output_dir / "report", names=[cfg.experiment],
                             command=["antireg", *sys.argv[1:]])  # fmt: skip
    if not args.quiet:
        console = Console(width=None if sys.stdout.isatty() else 80)
        _print_summary(result.summary, console)
        for line in edge_warnings(result.summary):
            console.print(line)
        console.print(f"{result.n_run} runs trained, {result.n_skipped} already finished. "
                      f"Results: {result.runs_csv} and {result.summary_csv}")
        if args.report:
            console.print(f"Report: {paths.html} and {paths.markdown}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from antireg.report import write_report

    paths = write_report(args.results_dir, args.out, args.experiments_dir, args.only, args.correction,
                         command=["antireg", *sys.argv[1:]])  # fmt: skip
    print(f"Report: {paths.html} and {paths.markdown} ({len(paths.figures)} figure files)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from antireg.errors import ConfigError, DataError, Interrupted, ReportError, SweepError, stop_on_signals
    from antireg.experiments.config import packaged_configs

    try:
        with stop_on_signals():  # SIGINT → exit 130, SIGTERM → 143; a second one is ignored
            if args.command == "advise":
                return advise.run(args)
            if args.command == "configs":
                print(_configs_text(packaged_configs()))
                return 0
            if args.command == "lopt":
                return lopt_cli.run(args, main)
            if args.command == "data":
                return data_cli.run(args)
            return _report(args) if args.command == "report" else _run(args)
    except (ConfigError, DataError, ReportError) as exc:
        print(f"antireg: error: {exc}", file=sys.stderr)
        return 2
    except SweepError as exc:
        print(f"antireg: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:  # a sweep's message says how many runs are saved and how to resume
        print(f"antireg: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("antireg: interrupted; finished runs are saved, re-run to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
