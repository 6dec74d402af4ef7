"""Line plots by layer: is a difference between two methods larger than the noise of retraining one?

:func:`seed_floor_plot` reads two kinds of rows (metric ``dissimilarity`` = 1 - debiased linear CKA):

* ``comparison == "seed_floor"``: per method (``method``) and layer, how much two seeds of it differ, with an
  interval over the seed pairs (``ci_low``, ``ci_high``) -- the noise floor;
* ``comparison == "methods"``: per pair of methods (``method`` = A, ``reference`` = B) and layer, their
  dissimilarity over cross-seed pairs with its interval, and ``exceeds_seed_floor`` (1 where the difference
  lies beyond both methods' floors).

Each method pair gets a panel: the difference with its interval as a black line and band, each method's floor
as a band in that method's colour (the same colour in every panel), and the layers beyond both floors marked.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from reprtools.errors import ReprtoolsError
from reprtools.report import labels
from reprtools.report.style import new_figure, paper_style, width_inches
from reprtools.results import METHODS, SEED_FLOOR, measure, method_label

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

METRIC = "dissimilarity"
FLAG = "exceeds_seed_floor"


def _by_layer(rows: "pd.DataFrame") -> "pd.DataFrame":
    return rows[rows["layer"] >= 0].sort_values("layer")


def _band(ax, rows: "pd.DataFrame", colour, *, line: str = "-", marker: str | None = None) -> None:
    """``value`` by layer as a line (with markers for a few layers), and its interval as a band where there
    is one."""
    marker = marker if len(rows) <= 16 else None
    ax.plot(rows["layer"], rows["value"], color=colour, ls=line, marker=marker, ms=2.5, lw=1.0)
    if rows[["ci_low", "ci_high"]].notna().all(axis=1).any():
        ax.fill_between(rows["layer"], rows["ci_low"], rows["ci_high"], color=colour, alpha=0.22, lw=0)


def _panels(floor: "pd.DataFrame", pairs: "pd.DataFrame") -> list[tuple[str, str, str]]:
    """(method A, method B, lang) per panel; one panel of all floors when no pair was measured."""
    keys = dict.fromkeys(zip(pairs["method"], pairs["reference"], pairs["lang"]))
    if keys:
        return sorted(keys, key=lambda k: (labels.model_key("", k[0]), labels.model_key("", k[1]), k[2]))
    return [("", "", lang) for lang in dict.fromkeys(floor["lang"])]


def _colours(methods) -> dict[str, tuple]:
    order = sorted(set(methods), key=lambda m: labels.model_key("", m))
    palette = sns.color_palette("colorblind", max(len(order), 3))
    return {m: palette[i % len(palette)] for i, m in enumerate(order)}


def seed_floor_plot(df: "pd.DataFrame", *, width: str | float = "two") -> "Figure":
    """Per method pair and layer: the method difference with its interval beside each method's seed floor,
    layers where the difference exceeds both floors marked (see the module docstring)."""
    floor = _by_layer(df[(df["comparison"] == SEED_FLOOR) & (df["metric"] == METRIC)])
    pair_rows = df[(df["comparison"] == METHODS)]
    pairs = _by_layer(pair_rows[pair_rows["metric"] == METRIC])
    flags = _by_layer(pair_rows[pair_rows["metric"] == FLAG])
    if floor.empty and pairs.empty:
        raise ReprtoolsError(f"no {SEED_FLOOR!r} or {METHODS!r} rows with metric {METRIC!r}; train several "
                             "seeds per method and probe them together to measure the seed floor")
    panels = _panels(floor, pairs)
    colours = _colours(list(floor["method"]) + list(pairs["method"]) + list(pairs["reference"]))
    ncols = min(len(panels), 3 if width_inches(width) > 4 else 1)
    nrows = math.ceil(len(panels) / ncols)
    with paper_style():
        fig = new_figure(width, nrows * 1.55 + 0.55)
        axs = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
        for ax in axs.flat[len(panels):]:
            ax.remove()
        for ax, (a, b, lang) in zip(axs.flat, panels):
            _draw_panel(ax, floor, pairs, flags, a, b, lang, colours)
        for ax in axs[:, 0]:
            ax.set_ylabel(measure(METRIC).label)
        _legend(fig, colours, marked=bool((flags["value"] == 1).any()), paired=not pairs.empty,
                ncols=4 if width_inches(width) > 4 else 2)
    return fig


def _draw_panel(ax, floor, pairs, flags, a: str, b: str, lang: str, colours) -> None:
    several_langs = floor["lang"].nunique() > 1 or pairs["lang"].nunique() > 1
    for method in ([a, b] if a else list(dict.fromkeys(floor["method"]))):
        _band(ax, floor[(floor["method"] == method) & (floor["lang"] == lang)], colours[method], line="--")
    if a:
        sel = lambda rows: rows[(rows["method"] == a) & (rows["reference"] == b) & (rows["lang"] == lang)]  # noqa: E731
        diff = sel(pairs)
        _band(ax, diff, "black", marker="o")
        beyond = sel(flags).loc[lambda r: r["value"] == 1, "layer"]
        hit = diff[diff["layer"].isin(beyond)]
        ax.plot(hit["layer"], hit["value"], ls="none", marker="*", ms=7 if len(diff) <= 16 else 5, color="black",
                mfc="white", mew=0.6)
    title = f"{method_label(a)} vs. {method_label(b)}" if a else "Seed noise floor"
    ax.set_title(title + (f" ({labels.language_name(lang)})" if several_langs and lang else ""))
    ax.set_xlabel("Layer")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.axhline(0.0, color="0.6", lw=0.5, zorder=0)
    ax.grid(axis="y", lw=0.3, color="0.85")
    ax.spines[["top", "right"]].set_visible(False)


def _legend(fig, colours, *, marked: bool, paired: bool, ncols: int) -> None:
    """One legend for the figure: a band and a line per method's floor, the difference, the marks."""
    handles = [(Patch(facecolor=c, alpha=0.22, lw=0), Line2D([], [], color=c, ls="--")) for c in colours.values()]
    names = [f"{method_label(m)} seed floor" for m in colours]
    if paired:
        handles.append((Patch(facecolor="black", alpha=0.22, lw=0), Line2D([], [], color="black", marker="o", ms=2.5)))
        names.append("method difference")
    if marked:
        handles.append(Line2D([], [], ls="none", marker="*", ms=7, color="black", mfc="white"))
        names.append("beyond both seed floors")
    fig.legend(handles, names, loc="outside lower center", ncols=min(len(handles), ncols), frameon=False)

