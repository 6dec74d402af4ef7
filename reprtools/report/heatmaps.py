"""Heatmaps of a results frame (:mod:`reprtools.results` schema), drawn with :func:`seaborn.heatmap`.

Every function takes the frame, picks its rows by the ``comparison`` column and the metric, and returns a
:class:`~matplotlib.figure.Figure` (not a pyplot figure).  Comparable panels share one colour scale
(:func:`reprtools.report.style.shared_scale`) and one colour bar; cells without a value are masked (grey).

* :func:`layer_heatmap` -- a measure per layer: checkpoints x layers, a panel per language (or the reverse);
* :func:`separability_heatmap` -- models x layers, a panel (and colour bar) per separability measure;
* :func:`language_pair_heatmap` -- language x language within each model, at a few layers;
Layer x layer CKA maps live in :mod:`reprtools.report.layer_cka`.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Sequence

import numpy as np
import seaborn as sns

from reprtools.errors import ReprtoolsError
from reprtools.report import labels
from reprtools.report.select import chance_text, check_unique, rows_of, with_cosine_gap
from reprtools.report.style import (
    FONT,
    FONT_SMALL,
    MISSING,
    Scale,
    colorbar,
    layer_ticks,
    new_figure,
    paper_style,
    shared_scale,
    text_inches,
    width_inches,
    wrap_to,
)
from reprtools.results import CROSSLINGUAL, SEPARABILITY, SHIFT, measure, measures_of

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

#: The separability measures, in panel order.
SEPARABILITY_METRICS = measures_of(SEPARABILITY)
_GID = "reprtools-heatmap"


def heatmap_meshes(fig: "Figure") -> list:
    """The heatmap panels' QuadMesh artists (not the colour bars'), in panel order."""
    return [c for ax in fig.axes for c in ax.collections if c.get_gid() == _GID]


def _fmt(values: np.ndarray) -> str:
    finite = np.abs(values[np.isfinite(values)])
    top = float(finite.max()) if finite.size else 1.0
    return ".2f" if top < 10 else ".1f" if top < 100 else ".0f"


def draw_heatmap(ax, data: "pd.DataFrame", scale: Scale, *, annotate: bool = False, square: bool = False):
    """``data`` (rows x columns, NaN = no value) on ``ax`` with ``scale``, missing cells masked; returns the
    QuadMesh.  Tick labels are the frame's index and columns, upright."""
    values = data.to_numpy(dtype=float)
    sns.heatmap(data.astype(float), ax=ax, mask=np.isnan(values), cmap=scale.cmap, norm=scale.norm,
                vmin=scale.norm.vmin, vmax=scale.norm.vmax, cbar=False, square=square,
                annot=bool(annotate and np.isfinite(values).any()), fmt=_fmt(values),
                annot_kws={"fontsize": FONT_SMALL}, linewidths=0.4 if max(values.shape) <= 16 else 0,
                linecolor="white", xticklabels=True, yticklabels=True)
    mesh = ax.collections[-1]
    mesh.set_gid(_GID)
    for text in ax.texts:  # typographic minus, and no "-0.00"
        value = text.get_text()
        text.set_text(value.lstrip("-") if float(value) == 0 else value.replace("-", "\u2212"))
    ax.set_facecolor(MISSING)
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(axis="both", length=0, labelrotation=0)
    return mesh


def _grid(width: str | float, n_panels: int, max_cols: int, panel_h: float, *, narrow_cols: int = 2,
          extra_h: float = 0.55):
    """A figure with ``n_panels`` axes in rows of at most ``max_cols`` (in a one-column figure: one column,
    or ``narrow_cols`` for more than three panels); unused cells removed."""
    narrow = 1 if n_panels <= 3 else narrow_cols
    ncols = max(1, min(n_panels, max_cols if width_inches(width) > 4 else narrow))
    nrows = math.ceil(n_panels / ncols)
    fig = new_figure(width, nrows * panel_h + extra_h)
    axs = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axs.flat[n_panels:]:
        ax.remove()
    return fig, list(axs.flat[:n_panels]), ncols


def _annotate_ok(width: str | float, ncols: int, n_rows: int, n_cols: int) -> bool:
    """Write values into cells when the grid is small and a cell is wide enough for "0.00" at 7 pt."""
    cell_w = (width_inches(width) - 1.6) / (ncols * n_cols)
    return n_rows <= 10 and n_cols <= 12 and cell_w >= 0.32


def _label_panels(axes, ncols: int, *, xlabel: str = "Layer") -> None:
    """y tick labels on the left column only, x tick labels and the x label on the bottom panel of each
    column."""
    n = len(axes)
    for k, ax in enumerate(axes):
        if k % ncols:
            ax.tick_params(axis="y", labelleft=False)
        if k + ncols < n:
            ax.tick_params(axis="x", labelbottom=False)
        else:
            ax.set_xlabel(xlabel)


def _row_labels(sel: "pd.DataFrame", comparison: str) -> "pd.DataFrame":
    """``sel`` with ``_row`` (the model, or "model vs. reference" for a comparison other than the shift
    against the base) and ``_key`` (its sort key)."""
    sel = sel.copy()
    vs = comparison != SHIFT
    sel["_row"] = [labels.model_label(c, m) + (f" vs. {r}" if vs and r else "")
                   for c, m, r in zip(sel["checkpoint"], sel["method"], sel["reference"])]
    sel["_key"] = [(labels.model_key(c, m), labels.model_key(r)) for c, m, r in
                   zip(sel["checkpoint"], sel["method"], sel["reference"])]
    return sel


def layer_heatmap(df: "pd.DataFrame", metric: str, comparison: str = SHIFT, panels: str = "lang", *,
                  width: str | float = "two", annotate: bool | None = None) -> "Figure":
    """A per-language measure by layer: ``panels="lang"`` gives a panel per language with rows = checkpoints
    (or checkpoint pairs), ``panels="checkpoint"`` a panel per checkpoint with rows = languages; columns are
    layers.  All panels share one colour scale and one colour bar."""
    if panels not in ("lang", "checkpoint"):
        raise ReprtoolsError(f"panels={panels!r} is unknown; use 'lang' or 'checkpoint'")
    sel = _row_labels(rows_of(df, comparison, metric), comparison)
    check_unique(sel, ["_row", "lang", "layer"], f"{comparison} {metric}")
    models = list(dict.fromkeys(sel.sort_values("_key", kind="stable")["_row"]))
    langs = labels.ordered_langs(sel["lang"])
    table = sel.pivot(index=["_row", "lang"], columns="layer", values="value")
    if panels == "lang":  # a panel per language: its rows are the models
        cube = [(labels.language_name(lang), table.xs(lang, level="lang").reindex(models)) for lang in langs]
    else:
        names = [labels.language_name(x) for x in langs]
        cube = [(model, table.xs(model, level="_row").reindex(langs).set_axis(names)) for model in models]
    layers = sorted(sel["layer"].unique())
    cube = [(title, data.reindex(columns=layers)) for title, data in cube]
    return _layer_panels(cube, [shared_scale(metric, sel["value"])], width, annotate)


def _layer_panels(panels, scales: Sequence[Scale], width, annotate: bool | None, *, max_cols: int = 3) -> "Figure":
    """Row-labelled layer heatmaps in a grid: ``scales`` holds one scale shared by every panel (one colour
    bar), or one scale per panel (a colour bar each)."""
    n_rows, n_cols = panels[0][1].shape
    shared = len(scales) == 1
    with paper_style():
        fig, axes, ncols = _grid(width, len(panels), max_cols if shared else 2, 0.3 + 0.16 * n_rows,
                                 narrow_cols=2 if shared else 1)
        if annotate is None:
            annotate = _annotate_ok(width, ncols, n_rows, n_cols)
        for ax, (title, data), scale in zip(axes, panels, scales * len(panels) if shared else scales):
            draw_heatmap(ax, data, scale, annotate=annotate)
            layer_ticks(ax, list(data.columns), "x")
            ax.set_title(wrap_to(title, (width_inches(width) - 0.3) / ncols - 0.5))
            if not shared:
                colorbar(fig, scale, [ax], location="right", label="")
        _label_panels(axes, ncols)
        if shared:
            colorbar(fig, scales[0], axes)
    return fig


def separability_heatmap(df: "pd.DataFrame", metrics: Sequence[str] | None = None, *, width: str | float = "two",
                         annotate: bool | None = None) -> "Figure":
    """How separable the languages are within each model: a panel per separability measure (silhouette,
    probe accuracy with its chance level, Davies-Bouldin -- lower = more separable -- and Fisher ratio), rows
    = models (base first, then by method), columns = layers, each panel with its own colour bar."""
    sep = df[(df["comparison"] == SEPARABILITY) & (df["layer"] >= 0)]
    present = list(dict.fromkeys(sep["metric"]))
    metrics = list(metrics) if metrics is not None else (
        [m for m in SEPARABILITY_METRICS if m in present] + [m for m in present if m not in SEPARABILITY_METRICS])
    missing = [m for m in metrics if m not in present]
    if not metrics or missing:
        raise ReprtoolsError(f"no separability rows for {', '.join(missing) or 'any measure'}; "
                             f"present: {', '.join(present) or 'none'}")
    sep = sep[sep["metric"].isin(metrics)]
    check_unique(sep, ["checkpoint", "lang", "metric", "layer"], "separability")
    several = sep["lang"].nunique() > 1
    order = labels.models(sep)
    row_keys = [(c, ls) for c, _ in order for ls in dict.fromkeys(sep.loc[sep["checkpoint"] == c, "lang"])]
    names = dict(order)
    row_names = [labels.model_label(c, names[c]) + (f" ({ls})" if several else "") for c, ls in row_keys]
    layers = sorted(sep["layer"].unique())
    panels, scales = [], []
    for metric in metrics:
        sub = sep[sep["metric"] == metric].pivot(index=["checkpoint", "lang"], columns="layer", values="value")
        panels.append((_titled(measure(metric).label, chance_text(sep[sep["metric"] == metric])),
                       sub.reindex(row_keys).reindex(columns=layers).set_axis(row_names)))
        scales.append(shared_scale(metric, sub.to_numpy().ravel()))
    return _layer_panels(panels, scales, width, annotate)


def _titled(title: str, chance: str) -> str:
    return f"{title} (chance {chance})" if chance else title


# -------------------------------------------------------------------------------- language x language
def _pair_matrix(sub: "pd.DataFrame", langs: Sequence[str], directed: bool) -> "pd.DataFrame":
    """langs x langs: rows = ``lang`` (the query, for a directed measure), columns = ``lang_b``; a
    symmetric measure is mirrored, a directed one never; an unmeasured cell (and the diagonal) stays NaN."""
    import pandas as pd

    mat = pd.DataFrame(np.nan, index=list(langs), columns=list(langs))
    for a, b, v in zip(sub["lang"], sub["lang_b"], sub["value"]):
        mat.loc[a, b] = v
        if not directed and np.isnan(mat.loc[b, a]):
            mat.loc[b, a] = v
    return mat


def language_pair_heatmap(df: "pd.DataFrame", metric: str, layers: Sequence[int] | None = None, *,
                          width: str | float = "two", annotate: bool | None = None) -> "Figure":
    """Cross-lingual ``metric`` as language x language matrices: a column of panels per model, a row per
    layer (default: first, middle and last).  For a directed measure (retrieval) rows are the query language
    and columns the target, both directions as measured; a symmetric one is mirrored.  ``cosine_gap`` is
    made from the raw cosines where the frame lacks it.  One shared scale; the chance level in the title."""
    sel = rows_of(with_cosine_gap(df) if metric == "cosine_gap" else df, CROSSLINGUAL, metric)
    check_unique(sel, ["checkpoint", "lang", "lang_b", "layer"], f"crosslingual {metric}")
    available = sorted(sel["layer"].unique())
    chosen = labels.spread_layers(available, 3) if layers is None else [int(x) for x in layers]
    bad = sorted(set(chosen) - set(available))
    if bad:
        raise ReprtoolsError(f"layer(s) {bad} have no {metric} rows; available: {available}")
    m = measure(metric)
    langs = labels.ordered_langs(list(sel["lang"]) + list(sel["lang_b"]))
    models = labels.models(sel)
    mats = {(c, layer): _pair_matrix(sel[(sel["checkpoint"] == c) & (sel["layer"] == layer)], langs, m.directed)
            for c, _ in models for layer in chosen}
    scale = shared_scale(metric, sel.loc[sel["layer"].isin(chosen), "value"])
    title = _titled(m.label, chance_text(sel)) + (": rows = query, columns = target language" if m.directed else "")
    return _pair_panels(mats, models, chosen, langs, scale, title, width, annotate)


def _pair_panels(mats, models, layers, langs, scale: Scale, title: str, width, annotate) -> "Figure":
    """Square panels with a column per model and a row per layer, or, where the models do not fit side by
    side at a legible size, a column per layer and a row per model."""
    n, avail = len(langs), width_inches(width) - 1.5
    by_model = avail / len(models) >= max(0.14 * n, 0.75)
    cols = [(labels.model_label(c, m), c) for c, m in models] if by_model else [(f"Layer {x}", x) for x in layers]
    rows = [(f"Layer {x}", x) for x in layers] if by_model else [(labels.model_label(c, m), c) for c, m in models]
    side = min(avail / len(cols), max(0.4 * n, 1.0), 1.6)  # a panel, inches
    names = [labels.language_name(x) for x in langs] if side / n >= 0.14 else list(langs)
    rotate = text_inches(max(names, key=len), FONT_SMALL) > 0.95 * side / n
    if annotate is None:
        annotate = n <= 6 and side / n >= 0.3
    with paper_style():
        fig = new_figure(width, len(rows) * (side + 0.08) + 0.55 + (0.35 if rotate else 0.0), square=True)
        axs = fig.subplots(len(rows), len(cols), squeeze=False)
        for (i, (row_label, r)), (j, (col_label, c)) in itertools.product(enumerate(rows), enumerate(cols)):
            ax = axs[i, j]
            key = (c, r) if by_model else (r, c)
            draw_heatmap(ax, mats[key].set_axis(names).set_axis(names, axis=1), scale, annotate=annotate, square=True)
            if i == 0:
                ax.set_title(wrap_to(col_label, side + 0.1))
            if j == 0:
                ax.set_ylabel(row_label, fontsize=FONT)
            else:
                ax.tick_params(axis="y", labelleft=False)
            if i < len(rows) - 1:
                ax.tick_params(axis="x", labelbottom=False)
            elif rotate:
                ax.tick_params(axis="x", labelrotation=90)
        fig.suptitle(wrap_to(title, width_inches(width) - 0.2), fontsize=FONT)
        colorbar(fig, scale, list(axs.flat))
    return fig
