"""``antireg run --config v4_exp1`` for paper experiments."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table as RichTable

from antireg.paper.config import is_paper_config, load_paper_config
from antireg.experiments.storage import atomic_write_text
from antireg.paper.driver import run_paper

__all__ = ["is_paper_config", "run"]


def run(args: argparse.Namespace) -> int:
    """Run a paper config (``args.config``) into ``args.output_dir``; print the main table and the wall
    time; with ``args.report`` write ``report/NAME.md`` and ``.html``. ConfigError/DataError propagate
    (antireg.cli maps them to exit 2); Ctrl-C returns 130 with the finished cells kept."""
    from antireg.data import default_data_dir
    from antireg.report.render import Heading, Text, to_html, to_markdown

    from antireg.paper.report import sections

    cfg = load_paper_config(args.config, args.set or ())
    data_dir = args.data_dir if args.data_dir is not None else default_data_dir()
    console = Console(quiet=bool(args.quiet))
    if args.dry_run:
        from antireg.paper.driver import plan_paper

        n, cached = plan_paper(cfg, args.output_dir, data_dir)
        print(f"{cfg.experiment} ({cfg.paper}): {n} cells, {cached} already cached, {n - cached} to compute; "
              "nothing was written")
        return 0
    try:
        res = run_paper(cfg, args.output_dir, data_dir, jobs=args.jobs, progress=not args.quiet)
    except KeyboardInterrupt:
        console.print("interrupted: finished cells are cached; rerun the same command to resume")
        return 130
    from antireg.paper import EXPERIMENTS

    main = res.tables[res.name]
    text = getattr(EXPERIMENTS[cfg.paper], "text", None)
    if text is not None:  # an experiment with its own compact terminal form (the demo)
        console.print(text(main), markup=False, highlight=False, soft_wrap=True)
    else:
        table = RichTable(title=f"{res.name} (λ in v4 per-sample scale unless the column says otherwise)")
        for col in main.columns:
            table.add_column(str(col), overflow="fold")
        for row in main.itertuples(index=False):
            table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
        console.print(table)
    console.print(f"{res.name}: {res.computed} cells computed, {res.cached} cached, wall {res.wall_s:.1f} s; "
                  f"tables in {Path(args.output_dir) / 'results'}")
    if args.report:
        rep = Path(args.output_dir) / "report"
        rep.mkdir(parents=True, exist_ok=True)
        blocks = [Heading(1, res.name), Text(f"Wall time {res.wall_s:.1f} s.")]
        blocks += sections(Path(args.output_dir) / "results", rep / "figures", only=res.name)
        atomic_write_text(rep / f"{res.name}.md", to_markdown(blocks, rep))
        atomic_write_text(rep / f"{res.name}.html", to_html(blocks, res.name))
        console.print(f"report: {rep / (res.name + '.html')}")
    return 0
