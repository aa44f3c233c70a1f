"""Report blocks for paper experiments found in a results folder (``results/NAME.config.json``
with a ``paper`` key): each table as a report Table, each experiment's figures, and its notes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from antireg.experiments.storage import paper_configs
from antireg.report.render import Block, FigureRef, Heading, Text
from antireg.report.tables import Table


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def frame_table(title: str, frame: pd.DataFrame) -> Table:
    """A DataFrame as a report Table (floats to 4 significant digits)."""
    return Table(title, [str(c) for c in frame.columns], [[_fmt(v) for v in row] for row in frame.itertuples(index=False)])


def sections(results_dir: str | Path, fig_dir: str | Path | None = None, only: str | None = None) -> list[Block]:
    """Blocks for every paper experiment in ``results_dir``: heading, λ-scale note, experiment notes,
    each table, and the experiment's figures (written under ``fig_dir``, default results_dir/../report/figures);
    ``only`` keeps one experiment by name."""
    from antireg.paper import EXPERIMENTS

    results_dir = Path(results_dir)
    fig_dir = Path(fig_dir) if fig_dir is not None else results_dir.parent / "report" / "figures"
    blocks: list[Block] = []
    for conf in paper_configs(results_dir):
        name = conf["experiment"]
        if only is not None and name != only:
            continue
        tables = {t: pd.read_csv(results_dir / f"{t}.csv") for t in conf.get("tables", [name])
                  if (results_dir / f"{t}.csv").is_file()}
        blocks.append(Heading(2, f"{name} ({conf['paper']})"))
        exp = EXPERIMENTS[conf["paper"]] if conf["paper"] in EXPERIMENTS else None
        note = getattr(exp, "NOTE", "")
        if note:
            blocks.append(Text(note))
        for t, frame in tables.items():
            blocks.append(frame_table(t, frame))
        if exp is not None:
            fig_dir.mkdir(parents=True, exist_ok=True)
            for png, svg, caption in exp.figures(tables, fig_dir):
                blocks.append(FigureRef(Path(png), Path(svg), caption))
    return blocks
