"""One list of blocks, two renderings: Markdown (figures linked) and a self-contained
HTML page (figures inlined as base64 PNG data URIs, no scripts, no external resources)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from antireg.report.tables import Table


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Text:
    text: str


@dataclass
class FigureRef:
    png: Path
    svg: Path
    caption: str


Block = Heading | Text | Table | FigureRef


def _md_table(t: Table) -> str:
    cells = [[f"**{c}**" if (i, j) in t.bold else c for j, c in enumerate(row)] for i, row in enumerate(t.rows)]
    lines = [f"**{t.title}**", "", "| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def to_markdown(blocks: list[Block], root: Path) -> str:
    """Markdown with figure paths relative to ``root`` (the report's folder)."""
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Text):
            out.append(b.text)
        elif isinstance(b, Table):
            out.append(_md_table(b))
        else:
            png, svg = b.png.relative_to(root).as_posix(), b.svg.relative_to(root).as_posix()
            out.append(f"![{b.caption}]({png})\n\n{b.caption} ([SVG]({svg}))")
    return "\n\n".join(out) + "\n"


def _html_table(t: Table) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in t.header)
    body = "".join(
        "<tr>" + "".join(
            f"<td><strong>{e(c)}</strong></td>" if (i, j) in t.bold else f"<td>{e(c)}</td>" for j, c in enumerate(row)
        ) + "</tr>"
        for i, row in enumerate(t.rows)
    )  # fmt: skip
    return f"<table><caption>{e(t.title)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1400px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0 0.3em; font-size: 0.9em; }
caption { text-align: left; font-weight: bold; padding-bottom: 0.3em; }
th, td { border-bottom: 1px solid #ccc; padding: 0.25em 0.8em; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1em 0; } img { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #444; }
"""


def to_html(blocks: list[Block], title: str) -> str:
    """A standalone page: opens from disk with no network access."""
    e = html.escape
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Text):
            out.append(f"<p>{e(b.text)}</p>")
        elif isinstance(b, Table):
            out.append(_html_table(b))
        else:
            data = base64.b64encode(b.png.read_bytes()).decode("ascii")
            out.append(f"<figure><img src='data:image/png;base64,{data}' alt='{e(b.caption, quote=True)}'>"
                       f"<figcaption>{e(b.caption)}</figcaption></figure>")  # fmt: skip
    return (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>"
        f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(out) + "\n</body></html>\n"
    )
