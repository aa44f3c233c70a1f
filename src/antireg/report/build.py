"""Assemble the report of a results directory: Markdown, standalone HTML, PNG + SVG figures,
and the tables as LaTeX; headed by the provenance of the results and a table of contents."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from antireg.errors import ReportError
from antireg.experiments.storage import StorageError, atomic_write_text, paper_configs
from antireg.report import figures, provenance, tables
from antireg.report.render import Block, Code, Contents, FigureRef, Heading, Text, to_html, to_latex, to_markdown
from antireg.report.results import BASELINE, Experiment, load_experiments

TITLE = "antireg report"


@dataclass
class ReportPaths:
    """What :func:`write_report` wrote."""

    markdown: Path
    html: Path
    figures: list[Path]  # PNG and SVG
    latex: list[Path] = field(default_factory=list)  # NAME_tables.tex per experiment


def _figure(fig, stem: Path, caption: str, written: list[Path]) -> FigureRef:
    png, svg = figures.save(fig, stem)
    written += [png, svg]
    return FigureRef(png, svg, caption)


def _overview(exp: Experiment) -> str:
    r = exp.runs
    seeds = ", ".join(str(s) for s in sorted(r["seed"].unique()))
    fractions = ", ".join(f"{f:g}" for f in sorted(r["fraction"].unique()))
    return (
        f"Dataset {r['dataset'].iloc[0]} ({exp.task}); {len(r)} runs: seeds {seeds}; training fractions {fractions}; "
        f"optimizers {', '.join(exp.optimizers)}; methods {', '.join(exp.labels)}. "
        f"{BASELINE} is the λ = 0 baseline; 'ar: <ablation>' rows are AR ablations (l2 is ordinary ridge, λ > 0). "
        f"Each row uses the λ₀ (and α) chosen on validation; CIs are 95% Student-t over seeds."
    )


def _clamp_note(exp: Experiment) -> str:
    ar = exp.runs[exp.runs["method"] != BASELINE]
    k = int(ar["clamped"].eq(True).sum())
    if ar["df_per_n"].isna().all():
        return "No spectrum is known for this model, so no spectral bound or df/n applies; λ(n) is as scheduled."
    return (
        f"{k} of {len(ar)} regularised runs requested a λ below the spectral safe bound −(1−η)·s_min²/n and were "
        "clamped to it; red marks show the bound where it bit (one per clamped condition)."
    )


def _experiment_blocks(exp: Experiment, fig_dir: Path, written: list[Path], correction: tables.Correction) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, exp.name),
        Text(_overview(exp)),
        Heading(3, f"{exp.name}: {exp.headline} vs training size"),
        _figure(figures.headline_figure(exp), fig_dir / f"{exp.name}_headline",
                f"{exp.name}: {exp.headline} vs n (log), mean with 95% CI band over seeds; one panel per method "
                f"and optimizer, each beside {BASELINE} (dashed).", written),
    ]  # fmt: skip
    for metric in figures.forest_metrics(exp):
        blocks += [
            Heading(3, f"{exp.name}: {metric} difference from {BASELINE}"),
            _figure(figures.forest_figure(exp, metric), fig_dir / f"{exp.name}_forest_{metric}",
                    f"{exp.name}: {metric} of each method minus that of {BASELINE}, paired by condition (same split, "
                    f"n, initialisation, optimizer), mean over seeds with its 95% Student-t interval; an interval "
                    f"that misses the dotted zero line is a difference at the 5% level before any correction for "
                    f"multiple comparisons; a point alone: one seed, no interval.", written),
        ]  # fmt: skip
    blocks += [
        Heading(3, f"{exp.name}: tables"),
        Text(tables.table_note(correction) + " Optimizers are column groups; the correction's family is one "
             f"optimizer's columns. LaTeX of these tables: {exp.name}_tables.tex (booktabs)."),
        *[tables.compact_metric_table(exp, metric, correction) for metric in exp.test_metrics],
        tables.compact_hyper_table(exp),
        Heading(3, f"{exp.name}: λ(n) used and df/n"),
        _figure(figures.lambda_figure(exp), fig_dir / f"{exp.name}_lambda",
                f"{exp.name}: λ(n) actually used (symmetric log scale; AR < 0 < L2). {_clamp_note(exp)}", written),
        Heading(3, f"{exp.name}: diagnostics per training fraction"),
        _figure(figures.diagnostics_figure(exp), fig_dir / f"{exp.name}_diagnostics",
                f"{exp.name}: output-scale ratio ρ (healthy near 1), fractions of clipped and projected steps "
                "(mean ± 95% CI), and diverged seeds.", written),
    ]  # fmt: skip
    reliability = figures.reliability_figure(exp)
    if reliability is not None:
        blocks += [
            Heading(3, f"{exp.name}: reliability"),
            _figure(reliability, fig_dir / f"{exp.name}_reliability",
                    f"{exp.name}: reliability diagrams on the test set, {BASELINE} vs ar at the chosen λ₀, "
                    "bins pooled over seeds; ECE is the mean ± 95% CI over seeds.", written),
        ]  # fmt: skip
    return blocks


def _provenance_blocks(p: provenance.Provenance, started: float) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Provenance"), provenance.table(p, time.perf_counter() - started)]
    for r in p.configs:
        blocks.append(Code(f"{r.experiment}: {r.kind}, {r.path} (sha256 {r.sha256[:12]}…)", r.text, "json"))
    if not p.configs:
        blocks.append(Text("No config file was found beside the results or in the run folders."))
    return blocks


def _write_latex(path: Path, blocks: list[Block]) -> Path | None:
    """The tables among ``blocks`` as one LaTeX file (none: no file)."""
    found = [b for b in blocks if isinstance(b, tables.Table)]
    if not found:
        return None
    atomic_write_text(path, f"% {TITLE}: needs \\usepackage{{booktabs}}\n" + "\n".join(map(to_latex, found)))
    return path


def write_report(
    results_dir: str | Path,
    out_dir: str | Path,
    experiments_dir: str | Path | None = None,
    names: list[str] | None = None,
    correction: tables.Correction = "holm",
    command: Sequence[str] | None = None,
) -> ReportPaths:
    """Write ``report.md``, ``report.html``, ``figures/*.{png,svg}``, per experiment
    ``E_tables.tex`` (its tables in LaTeX) and, per sweep, ``E_tests.csv`` (paired tests
    against the baseline: unadjusted and ``correction``-adjusted p-values) into ``out_dir``.
    ``command`` (the CLI's argv) is quoted in the provenance header.

    ``results_dir`` holds ``E.csv`` and ``E_summary.csv`` per experiment (all of them are
    reported, or only ``names``). ``experiments_dir`` holds the run folders, read for
    reliability diagrams; by default the ``experiments`` folder beside ``results_dir``.
    Raises :class:`ReportError` when there is nothing to report.
    """
    started = time.perf_counter()
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    if experiments_dir is None and (results_dir.parent / "experiments").is_dir():
        experiments_dir = results_dir.parent / "experiments"
    papers = [c["experiment"] for c in paper_configs(results_dir) if names is None or c["experiment"] in names]
    sweep_names = None if names is None else [n for n in names if n not in papers]
    exps = [] if (papers and (sweep_names == [] or not any(results_dir.glob("*_summary.csv")))) \
        else load_experiments(results_dir, experiments_dir, sweep_names)  # fmt: skip
    try:
        return _write(results_dir, out_dir, exps, papers, correction, command, started)
    except StorageError as exc:
        raise ReportError(f"{exc}; the report in {out_dir} was not written") from None
    except OSError as exc:  # a full disk, or an --out that is a file or read-only
        raise ReportError(f"cannot write the report in {out_dir}: {exc.strerror or exc} "
                          f"({getattr(exc, 'filename', None) or out_dir})") from None


def _write(results_dir: Path, out_dir: Path, exps: list[Experiment], papers: list[str],
           correction: tables.Correction, command: Sequence[str] | None, started: float) -> ReportPaths:
    from antireg.paper.report import sections

    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    latex: list[Path] = []
    names_text = ", ".join([e.name for e in exps] + papers)
    body: list[Block] = []
    for exp in exps:
        blocks = _experiment_blocks(exp, fig_dir, written, correction)
        latex.append(_write_latex(out_dir / f"{exp.name}_tables.tex", blocks))
        body += blocks
        tests = pd.concat([tables.paired_pvalues(exp, m, correction) for m in exp.test_metrics], ignore_index=True)
        atomic_write_text(out_dir / f"{exp.name}_tests.csv", tests.to_csv(index=False))
    for name in papers:  # paper experiments (antireg.paper): their tables and curves
        blocks = sections(results_dir, fig_dir, only=name)
        latex.append(_write_latex(out_dir / f"{name}_tables.tex", blocks))
        body += blocks
    prov = provenance.collect(results_dir, exps, papers, None if command is None else list(command))
    blocks = [Heading(1, TITLE), Text(f"Experiments: {names_text}. Source: {results_dir}."), Contents(),
              *_provenance_blocks(prov, started), *body]  # fmt: skip
    paths = ReportPaths(out_dir / "report.md", out_dir / "report.html", written, [p for p in latex if p])
    atomic_write_text(paths.markdown, to_markdown(blocks, out_dir))
    atomic_write_text(paths.html, to_html(blocks, TITLE))
    return paths
