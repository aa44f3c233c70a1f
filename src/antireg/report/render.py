"""One list of blocks, two renderings: Markdown (figures linked) and a self-contained
HTML page (figures inlined as base64 PNG data URIs, no scripts, no external resources);
each table also as LaTeX (:func:`to_latex`).

Headings get anchors (``slug``, unique within the page) that a :class:`Contents` block
links to: ``<a id>`` + heading in Markdown, ``<hN id>`` in HTML."""

from __future__ import annotations

import base64
import html
import re

import pandas as pd
from dataclasses import dataclass
from pathlib import Path

from antireg.report.tables import GroupedTable, Table


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


class KeyValueTable(Table):
    """Names and long values (commits, commands, hashes): left-aligned, wrapped in HTML."""


@dataclass
class Code:
    """Preformatted text (a resolved config) under a one-line summary; folded in HTML."""

    summary: str
    text: str
    language: str = ""


@dataclass
class Contents:
    """Where the table of contents goes: links to every heading of ``levels``."""

    levels: tuple[int, ...] = (2, 3)


Block = Heading | Text | Table | FigureRef | Code | Contents


def slug(text: str) -> str:
    """An anchor id: lower case ASCII letters, digits and dashes (``tiny_linear: λ(n)`` → ``tiny-linear-n``)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def anchors(blocks: list[Block]) -> dict[int, str]:
    """A unique anchor per heading (by ``id`` of the block); repeats get ``-2``, ``-3`` … as on GitHub."""
    out, seen = {}, {}
    for b in blocks:
        if isinstance(b, Heading):
            base = slug(b.text)
            seen[base] = seen.get(base, 0) + 1
            out[id(b)] = base if seen[base] == 1 else f"{base}-{seen[base]}"
    return out


def _toc(blocks: list[Block], ids: dict[int, str], levels: tuple[int, ...]) -> list[tuple[int, str, str]]:
    """(depth from 0, text, anchor) of the headings a Contents block lists."""
    return [(levels.index(b.level), b.text, ids[id(b)]) for b in blocks if isinstance(b, Heading) and b.level in levels]


def _md_table(t: Table) -> str:
    cells = [[f"**{c}**" if (i, j) in t.bold else c for j, c in enumerate(row)] for i, row in enumerate(t.rows)]
    header = t.header
    if isinstance(t, GroupedTable):  # Markdown has one header row: the group goes into each column's name
        header = header[: t.leading] + [f"{g} · {h}" for g, h in zip(t.column_groups(), header[t.leading :])]
    lines = [f"**{t.title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def to_markdown(blocks: list[Block], root: Path) -> str:
    """Markdown with figure paths relative to ``root`` (the report's folder)."""
    ids, out = anchors(blocks), []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<a id=\"{ids[id(b)]}\"></a>\n\n{'#' * b.level} {b.text}")
        elif isinstance(b, Text):
            out.append(b.text)
        elif isinstance(b, Table):
            out.append(_md_table(b))
        elif isinstance(b, Code):
            out.append(f"{b.summary}\n\n```{b.language}\n{b.text.rstrip()}\n```")
        elif isinstance(b, Contents):
            out.append("\n".join(f"{'  ' * d}- [{t}](#{a})" for d, t, a in _toc(blocks, ids, b.levels)))
        else:
            png, svg = b.png.relative_to(root).as_posix(), b.svg.relative_to(root).as_posix()
            out.append(f"![{b.caption}]({png})\n\n{b.caption} ([SVG]({svg}))")
    return "\n\n".join(out) + "\n"


def _html_table(t: Table) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in t.header)
    if isinstance(t, GroupedTable):  # a first header row spanning each group's columns
        spans = "".join(f"<th colspan='{k}' class='group'>{e(g)}</th>" for g, k in t.groups)
        head = f"<th colspan='{t.leading}'></th>{spans}</tr><tr>{head}"
    body = "".join(
        "<tr>" + "".join(
            f"<td><strong>{e(c)}</strong></td>" if (i, j) in t.bold else f"<td>{e(c)}</td>" for j, c in enumerate(row)
        ) + "</tr>"
        for i, row in enumerate(t.rows)
    )  # fmt: skip
    kind = " class='kv'" if isinstance(t, KeyValueTable) else ""
    return f"<table{kind}><caption>{e(t.title)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_toc(entries: list[tuple[int, str, str]]) -> str:
    """Nested lists, valid HTML: a deeper entry opens a list inside the previous (still open) item."""
    out, depth, open_item = ["<ul>"], 0, False
    for d, text, anchor in entries:
        if d > depth:
            while depth < d:
                out.append("<ul>" if open_item else "<li><ul>")
                depth, open_item = depth + 1, False
        else:
            if open_item:
                out.append("</li>")
            while depth > d:
                out.append("</ul></li>")
                depth -= 1
        out.append(f"<li><a href='#{anchor}'>{html.escape(text)}</a>")
        open_item = True
    if open_item:
        out.append("</li>")
    return "".join(out + ["</ul></li>"] * depth + ["</ul>"])


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1400px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0 0.3em; font-size: 0.9em; }
caption { text-align: left; font-weight: bold; padding-bottom: 0.3em; }
th, td { border-bottom: 1px solid #ccc; padding: 0.25em 0.8em; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1em 0; } img { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #444; }
table.kv td { text-align: left; white-space: normal; overflow-wrap: anywhere; }
th.group { text-align: center; border-bottom: 1px solid #888; }
nav.toc ul { margin: 0.2em 0; } nav.toc li { margin: 0.1em 0; }
details pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
"""


def to_html(blocks: list[Block], title: str) -> str:
    """A standalone page: opens from disk with no network access."""
    e = html.escape
    ids, out = anchors(blocks), []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level} id='{ids[id(b)]}'>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Text):
            out.append(f"<p>{e(b.text)}</p>")
        elif isinstance(b, Table):
            out.append(_html_table(b))
        elif isinstance(b, Code):
            out.append(f"<details><summary>{e(b.summary)}</summary><pre>{e(b.text)}</pre></details>")
        elif isinstance(b, Contents):
            out.append(f"<nav class='toc'>{_html_toc(_toc(blocks, ids, b.levels))}</nav>")
        else:
            data = base64.b64encode(b.png.read_bytes()).decode("ascii")
            out.append(f"<figure><img src='data:image/png;base64,{data}' alt='{e(b.caption, quote=True)}'>"
                       f"<figcaption>{e(b.caption)}</figcaption></figure>")  # fmt: skip
    return (
        f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>"
        f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(out) + "\n</body></html>\n"
    )


# LaTeX's special characters, and the report's Unicode symbols that its default (non-Unicode) engines lack.
_LATEX = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
          "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
          "±": r"\ensuremath{\pm}", "†": r"\textsuperscript{\dag}", "–": "--", "—": "---", "−": "-",
          "λ": r"\ensuremath{\lambda}", "₀": r"\ensuremath{_0}", "α": r"\ensuremath{\alpha}",
          "ρ": r"\ensuremath{\rho}", "η": r"\ensuremath{\eta}", "·": r"\ensuremath{\cdot}",
          "≤": r"\ensuremath{\le}", "≥": r"\ensuremath{\ge}"}  # fmt: skip


def latex_escape(text: str) -> str:
    """``text`` as LaTeX source that compiles with pdfLaTeX: specials escaped, symbols as macros."""
    return "".join(_LATEX.get(c, c) for c in str(text))


def to_latex(t: Table) -> str:
    """A ``booktabs`` table (``pandas`` Styler) with the caption, bold best cells and, for a
    :class:`~antireg.report.tables.GroupedTable`, a spanning header row per group."""
    if isinstance(t, GroupedTable):
        columns = pd.MultiIndex.from_tuples([("", h) for h in t.header[: t.leading]]
                                            + list(zip(t.column_groups(), t.header[t.leading :])))  # fmt: skip
    else:
        columns = pd.Index(t.header)
    frame = pd.DataFrame(t.rows, columns=columns)
    bold = pd.DataFrame("", index=frame.index, columns=frame.columns)
    for i, j in t.bold:
        bold.iat[i, j] = "textbf: --rwrap;"
    styler = frame.style.hide(axis="index").format(latex_escape).format_index(latex_escape, axis=1)
    styler = styler.apply(lambda _: bold, axis=None)
    return styler.to_latex(caption=latex_escape(t.title), hrules=True, multicol_align="c", position="htbp",
                           position_float="centering")  # fmt: skip
