"""Plotting pieces shared by the paper experiments' figures (:mod:`antireg.paper.v4`, :mod:`antireg.paper.kobak`).

matplotlib's object API (a bare :class:`~matplotlib.figure.Figure`, no pyplot), so there is no global
backend or figure state and tests can read the plotted data back from the returned figures. Artists a
test looks for carry a ``gid``: ``optimum`` (the marked argmin), ``infeasible`` (the shaded λ region
beyond the bound) and ``bound`` (the bound as a dashed line where several curves share a panel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

BAND_ALPHA = 0.2
SHADE = "0.85"


def new_figure(rows: int, cols: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure with a (rows, cols) array of axes."""
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def shade_beyond(ax: Axes, bound: float, label: str, left: float | None = None) -> None:
    """Shade λ ∈ [left, bound] (bound < 0) (infeasible or spectrally unsafe) and start the x axis at ``left``
    (default: twice the bound, so the region is visible on a symlog axis)."""
    left = 2 * bound if left is None else left
    ax.axvspan(left, bound, color=SHADE, zorder=0, label=label, gid="infeasible")
    ax.set_xlim(left=left)


def lambda_curve(ax: Axes, lams: np.ndarray, mean: np.ndarray, half: np.ndarray | None, *, opt: float,
                 bound: float | None, label: str, shade: bool = True, bound_label: str = "infeasible λ") -> Line2D:
    """A curve over λ (risk, SURE, test/CV MSE, ...) with its 95% band (``half``: half-widths, None or
    NaN for none), the optimum ``opt`` as a dot on the curve, and the λ beyond ``bound`` shaded
    (``shade``) or, for several curves in one panel, ``bound`` as a dashed line in the curve's colour
    (``bound=None``: neither, for curves sharing one bound already drawn)."""
    lams, mean = np.asarray(lams, float), np.asarray(mean, float)
    (line,) = ax.plot(lams, mean, label=label)
    color = line.get_color()
    if half is not None and np.isfinite(half).any():
        ax.fill_between(lams, mean - half, mean + half, color=color, alpha=BAND_ALPHA, lw=0)
    ax.plot([opt], [np.interp(opt, lams, mean)], "o", color=color, gid="optimum")
    if bound is not None and shade:
        shade_beyond(ax, bound, bound_label)
    elif bound is not None:
        ax.axvline(bound, color=color, ls="--", lw=0.8, gid="bound")
    return line


def zero_line(ax: Axes, horizontal: bool = False) -> None:
    """λ = 0 (ordinary least squares / the minimum-norm interpolator) as a thin dashed line."""
    (ax.axhline if horizontal else ax.axvline)(0, color="k", ls="--", lw=0.6)


def save_all(figs: list[tuple[Figure, str, str]], out_dir: str | Path) -> list[tuple[Path, Path, str]]:
    """Write each (figure, file stem, caption) as PNG and SVG under ``out_dir``; the report's triples."""
    from antireg.report.figures import save

    return [(*save(fig, Path(out_dir) / stem), caption) for fig, stem, caption in figs]
