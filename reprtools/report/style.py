"""How every figure looks and is saved: paper rc parameters, widths, colour maps, shared colour scales.

* Text is 7-9 pt, PDFs embed TrueType (Type 42) fonts (ACL/IEEE/ACM checks reject Type 3), SVG ids are
  deterministic, PNGs are 300 dpi, and saved files carry no timestamps.
* Figures are :data:`WIDTHS` wide (one or two columns of a two-column paper) and use matplotlib's constrained
  layout; they are plain :class:`~matplotlib.figure.Figure` objects on an Agg canvas, never pyplot figures.
* Colour maps are colour-blind safe: viridis (cividis for layer x layer maps) for sequential scales, and the
  ColorBrewer RdBu diverging map, centred on 0, for measures with a natural zero (a gap, a silhouette).
* :func:`shared_scale` makes the one colour scale that all comparable panels of a figure use, clipped to the
  measure's bounds from :data:`reprtools.results.MEASURES`.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import matplotlib
import numpy as np
from matplotlib.colors import Colormap, LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.textpath import TextPath
from matplotlib.ticker import FuncFormatter, MaxNLocator

from reprtools.errors import ReprtoolsError
from reprtools.fileio import atomic_path
from reprtools.results import Measure, measure

#: Figure widths in inches: one column / two columns of a typical two-column paper (ACL, NeurIPS, ICML).
WIDTHS = {"one": 3.3, "two": 6.9}
#: Formats :func:`save_figure` writes by default.
FORMATS = ("pdf", "png", "svg")
DPI = 300

SEQUENTIAL = "viridis"
LAYER_MAP = "cividis"
DIVERGING = "RdBu_r"
MISSING = "#d9d9d9"  # the colour of a cell with no value
FONT_SMALL, FONT, FONT_TITLE = 7, 8, 8

PAPER_RC = {
    "font.family": "sans-serif",
    "font.size": FONT,
    "axes.titlesize": FONT_TITLE,
    "axes.labelsize": FONT,
    "xtick.labelsize": FONT_SMALL,
    "ytick.labelsize": FONT_SMALL,
    "legend.fontsize": FONT_SMALL,
    "legend.title_fontsize": FONT,
    "figure.titlesize": 9,
    "axes.linewidth": 0.5,
    "axes.titlepad": 3.0,
    "axes.labelpad": 2.0,
    "xtick.major.width": 0.5,
    "ytick.major.width": 0.5,
    "xtick.major.size": 2.0,
    "ytick.major.size": 2.0,
    "xtick.major.pad": 1.5,
    "ytick.major.pad": 1.5,
    "lines.linewidth": 1.0,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "path",
    "svg.hashsalt": "reprtools",
    "savefig.dpi": DPI,
    "figure.dpi": 100,
    "figure.constrained_layout.h_pad": 2 / 72,
    "figure.constrained_layout.w_pad": 2 / 72,
    "figure.constrained_layout.hspace": 0.04,
    "figure.constrained_layout.wspace": 0.04,
    "axes.unicode_minus": True,
}


@contextmanager
def paper_style() -> Iterator[None]:
    """The paper rc parameters, for drawing and for saving (fonts are read when text is made, the PDF font
    type and the SVG salt when the file is written)."""
    with matplotlib.rc_context(PAPER_RC):
        yield


def width_inches(width: str | float) -> float:
    """``"one"`` / ``"two"`` (columns) or a width in inches."""
    if isinstance(width, str):
        if width not in WIDTHS:
            raise ReprtoolsError(f"width {width!r} is unknown; use 'one' (3.3 in), 'two' (6.9 in) or inches")
        return WIDTHS[width]
    w = float(width)
    if not 1.0 <= w <= 20.0:
        raise ReprtoolsError(f"width {w} in is out of range; use 'one', 'two' or 1 to 20 inches")
    return w


def new_figure(width: str | float, height: float, *, square: bool = False) -> Figure:
    """A constrained-layout figure, not registered with pyplot; call inside :func:`paper_style`.  It keeps
    matplotlib's base canvas, so nothing is rendered until it is saved (seaborn asks the canvas to draw after
    every heatmap); :func:`save_figure` renders it with Agg (PNG) or the PDF / SVG backends.  ``square``
    panels (fixed aspect) use the "compressed" variant, which closes the gaps between them."""
    return Figure(figsize=(width_inches(width), max(float(height), 1.0)),
                  layout="compressed" if square else "constrained")


# ------------------------------------------------------------------------------------------ colour scales
@dataclass(frozen=True)
class Scale:
    """One colour scale: ``norm`` and ``cmap`` for every panel that shares it, ``label`` for its colour bar."""

    norm: Normalize
    cmap: Colormap
    label: str
    centred: bool

    @property
    def limits(self) -> tuple[float, float]:
        return float(self.norm.vmin), float(self.norm.vmax)


def natural_zero(m: Measure) -> bool:
    """Whether 0 means "no relation" for ``m``, so a diverging map centred on 0 reads right: a signed measure
    with bounds symmetric about 0 and no identity value (a gap to a baseline, a silhouette), unlike a
    similarity whose values cluster near its identity 1."""
    lo, hi = m.bounds
    return m.identity is None and lo < 0 < hi and math.isclose(-lo, hi)


def _limits(values: np.ndarray, bounds: tuple[float, float], centred: bool) -> tuple[float, float]:
    lo_b, hi_b = bounds
    if values.size == 0:
        lo, hi = (lo_b, hi_b) if math.isfinite(lo_b) and math.isfinite(hi_b) else (0.0, 1.0)
    else:
        lo, hi = float(values.min()), float(values.max())
    if centred:
        top = max(abs(lo), abs(hi)) or 1.0
        lo, hi = -top, top
    lo, hi = max(lo, lo_b), min(hi, hi_b)
    if hi - lo < 1e-9:  # a single value: pad it, staying inside the bounds
        pad = 0.05 * max(abs(hi), 1.0)
        lo, hi = lo - pad, hi + pad
        if lo < lo_b:
            lo, hi = lo_b, lo_b + 2 * pad
        if hi > hi_b:
            lo, hi = hi_b - 2 * pad, hi_b
    return lo, hi


def shared_scale(metric: str, values: Iterable[float], *, label: str | None = None, cmap: str | None = None,
                 centred: bool | None = None, vmin: float | None = None, vmax: float | None = None) -> Scale:
    """The one colour scale for all comparable panels of ``metric``: limits from the data of every panel
    (or ``vmin``/``vmax``), never past the measure's bounds; diverging and symmetric about 0 where the
    measure has a natural zero or a signed measure's values straddle it (``centred`` overrides); the
    sequential map reversed where lower is better, so the bright end always means "more similar / more
    separable"; logarithmic for a measure the registry allows it for when its values span two decades."""
    m = measure(metric)
    vals = np.asarray([v for v in values], dtype=float)
    vals = vals[np.isfinite(vals)]
    straddles = vals.size > 0 and m.bounds[0] < 0 and vals.min() < 0 < vals.max()
    if centred is None:
        centred = natural_zero(m) or bool(straddles)
    lo, hi = _limits(vals, m.bounds, centred)
    lo = lo if vmin is None else max(float(vmin), m.bounds[0])
    hi = hi if vmax is None else min(float(vmax), m.bounds[1])
    log = m.log_scale_ok and not centred and lo > 0 and hi / lo > 100 and vmin is None
    norm: Normalize = LogNorm(lo, hi) if log else Normalize(lo, hi)
    name = cmap or (DIVERGING if centred else SEQUENTIAL + ("_r" if m.lower_is_better else ""))
    colours = matplotlib.colormaps[name].with_extremes(bad=MISSING)
    return Scale(norm, colours, (label or m.label) + (" (log scale)" if log else ""), centred)


def text_inches(text: str, size: float = FONT) -> float:
    """Width in inches of the longest line of ``text`` set at ``size`` pt (measured from the glyph outlines)."""
    with paper_style():
        widths = [TextPath((0, 0), line, size=size).get_extents().width for line in str(text).split("\n")]
    return max(widths, default=0.0) / 72.0


def wrap_to(text: str, width_in: float, size: float = FONT) -> str:
    """``text`` broken at spaces into lines no wider than ``width_in`` (a single long word stays whole)."""
    lines = [""]
    for word in str(text).split(" "):
        trial = f"{lines[-1]} {word}".strip()
        if lines[-1] and text_inches(trial, size) > width_in:
            lines.append(word)
        else:
            lines[-1] = trial
    return "\n".join(lines)


def colorbar(fig: Figure, scale: Scale, axes: Sequence[Any], *, location: str = "auto", label: str | None = None):
    """One colour bar for ``axes`` (all drawn with ``scale``), thin and labelled; ``location="auto"`` puts it
    on the right when its label fits along the figure's height (broken before a parenthesis if need be),
    else below, half the figure wide, the figure made taller to hold it."""
    mappable = matplotlib.cm.ScalarMappable(norm=scale.norm, cmap=scale.cmap)
    label = scale.label if label is None else label
    if location == "auto":
        room = fig.get_figheight() - 0.45
        location = "right"
        if text_inches(label) > room:
            wrapped = label.replace(" (", "\n(", 1)
            label, location = (wrapped, "right") if text_inches(wrapped) <= room else (label, "bottom")
    if location in ("right", "left"):
        cb = fig.colorbar(mappable, ax=list(axes), location=location, fraction=0.05, aspect=25, pad=0.02)
    else:
        fig.set_figheight(fig.get_figheight() + 0.4)
        cb = fig.colorbar(mappable, ax=list(axes), location=location, fraction=0.3, shrink=0.5, pad=0.03,
                          aspect=0.5 * fig.get_figwidth() / 0.08)  # 0.08 in thick
    cb.set_label(label, fontsize=FONT)
    cb.ax.tick_params(labelsize=FONT_SMALL, width=0.5, length=2)
    cb.outline.set_linewidth(0.4)
    return cb


# -------------------------------------------------------------------------------------------- layer axes
class _CellLocator(MaxNLocator):
    """Ticks at the centres of heatmap cells (``i + 0.5``) for "nice" cell indices; how many fit is decided
    by matplotlib at draw time from the final axes size (``nbins="auto"``)."""

    def __init__(self, n_cells: int):
        super().__init__(nbins="auto", integer=True, steps=[1, 2, 5, 10], min_n_ticks=2)
        self.n_cells = n_cells

    def __call__(self):
        ticks = self.tick_values(0, self.n_cells - 1)
        return [t + 0.5 for t in ticks if 0 <= t <= self.n_cells - 1]


def layer_ticks(ax, layers: Sequence[int], axis: str = "x") -> None:
    """Label a heatmap axis whose cells are ``layers`` with as many layer numbers as fit, upright."""
    layers = [int(x) for x in layers]
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(_CellLocator(len(layers)))
    target.set_major_formatter(FuncFormatter(
        lambda x, _pos: str(layers[int(x - 0.5)]) if 0 <= int(x - 0.5) < len(layers) else ""))
    ax.tick_params(axis=axis, labelrotation=0, length=2)


# ------------------------------------------------------------------------------------------------ saving
_METADATA = {"pdf": {"CreationDate": None, "ModDate": None}, "svg": {"Date": None}, "png": {}}


def save_figure(fig: Figure, out_dir: str | os.PathLike, stem: str, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``fig`` as ``out_dir/stem.<format>`` for each of ``formats`` (pdf, png at 300 dpi, svg), each
    through a temporary file renamed into place, so nothing half-written is left; returns the paths."""
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    fmts = [f.lower().lstrip(".") for f in formats]
    bad = [f for f in fmts if f not in _METADATA]
    if bad or not fmts:
        raise ReprtoolsError(f"figure format(s) {', '.join(bad) or '(none)'} unsupported; use pdf, png and/or svg")
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReprtoolsError(f"cannot create {out_dir} ({exc.strerror}); choose a writable output directory") from None
    written = []
    engine = fig.get_layout_engine()
    with paper_style():
        try:
            for fmt in fmts:
                final = Path(out_dir) / f"{stem}.{fmt}"
                with atomic_path(final) as tmp, open(tmp, "wb") as fh:
                    fig.savefig(fh, format=fmt, dpi=DPI, metadata=_METADATA[fmt], facecolor="white")
                written.append(final)
                fig.set_layout_engine("none")  # laid out once: the other formats reuse the positions
        finally:
            fig.set_layout_engine(engine)
    return written
