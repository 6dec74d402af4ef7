"""Figures of ``reprtools weights`` (rows with ``comparison`` = ``weights``), in the report style:

* :func:`module_heatmap` -- a per-module measure (update norm, intruder count, ...): a panel per checkpoint,
  modules (q, k, v, o, gate, up, down) x layers, one shared colour scale;
* :func:`similarity_matrix` -- checkpoint x checkpoint subspace similarity of their updates, averaged over the
  modules of a layer, a panel per layer (a few spread over the depth);
* :func:`spectra_plot` -- the singular values of a few modules' updates, a line per checkpoint.

:func:`draw_weights` writes them all to a folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from reprtools.errors import ReprtoolsError
from reprtools.report import labels
from reprtools.report.heatmaps import _grid, _label_panels, _layer_panels, draw_heatmap
from reprtools.report.style import FORMATS, colorbar, paper_style, save_figure, shared_scale
from reprtools.results import WEIGHTS, measure

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

#: Row order of modules (the roles :func:`reprtools.weights.module_role` gives); other names follow, sorted.
ROLE_ORDER = ("q", "k", "v", "o", "gate", "up", "down")
#: The per-module measures drawn as layer x module heatmaps, and the pair measure drawn as matrices.
MODULE_METRICS = ("update_norm_relative", "intruder_dimensions")
PAIR_METRIC = "subspace_similarity_out"


def _own_rows(df: "pd.DataFrame", metric: str) -> "pd.DataFrame":
    sel = df[(df["comparison"] == WEIGHTS) & (df["metric"] == metric) & (df["reference"] == "base")]
    if sel.empty:
        raise ReprtoolsError(f"no weights rows of {metric}; run `reprtools weights` first")
    return sel


def _module_order(modules) -> list[str]:
    present = list(dict.fromkeys(modules))
    return [m for m in ROLE_ORDER if m in present] + sorted(m for m in present if m not in ROLE_ORDER)


def module_heatmap(df: "pd.DataFrame", metric: str = "update_norm_relative", *, width: str | float = "two",
                   annotate: bool | None = None) -> "Figure":
    """A panel per checkpoint: modules (rows) x layers (columns) of ``metric``, one colour scale for all."""
    sel = _own_rows(df, metric)
    if sel.duplicated(["checkpoint", "module", "layer"]).any():
        raise ReprtoolsError(f"weights {metric}: more than one row per checkpoint, module and layer")
    modules = _module_order(sel["module"])
    layers = sorted(sel["layer"].unique())
    panels = []
    for checkpoint, method in labels.models(sel):
        rows = sel[sel["checkpoint"] == checkpoint]
        data = rows.pivot(index="module", columns="layer", values="value").reindex(index=modules, columns=layers)
        panels.append((labels.model_label(checkpoint, method), data))
    fig = _layer_panels(panels, [shared_scale(metric, sel["value"])], width, annotate)
    values = sel["value"].to_numpy(dtype=float)
    if np.allclose(values, np.round(values)):  # counts: "3", not "3.00"
        for text in (t for ax in fig.axes for t in ax.texts):
            text.set_text(str(int(round(float(text.get_text().replace("\u2212", "-"))))))
    return fig


def _pair_matrix(sel: "pd.DataFrame", names: list[str]) -> "pd.DataFrame":
    """Mean over modules of the symmetric pair rows, ``names`` x ``names``, 1 on the diagonal."""
    import pandas as pd

    mean = sel.groupby(["checkpoint", "reference"])["value"].mean()
    mat = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    for (a, b), value in mean.items():
        if a in names and b in names:
            mat.loc[a, b] = mat.loc[b, a] = value
    return mat


def similarity_matrix(df: "pd.DataFrame", metric: str = PAIR_METRIC, layers: Sequence[int] | None = None, *,
                      width: str | float = "two") -> "Figure":
    """Checkpoint x checkpoint ``metric`` (a subspace similarity), averaged over each layer's modules: a panel
    per layer (``layers``, default up to 4 spread over the depth), one colour scale."""
    sel = df[(df["comparison"] == WEIGHTS) & (df["metric"] == metric) & ~df["reference"].isin(["base", "seeds"])]
    if sel.empty:
        raise ReprtoolsError(f"no weights rows of {metric} between checkpoints; give `reprtools weights` two or "
                             "more checkpoints")
    all_layers = sorted(sel["layer"].unique())
    layers = list(layers) if layers is not None else labels.spread_layers(all_layers, at_most=4)
    names = list(dict.fromkeys(list(sel["checkpoint"]) + list(sel["reference"])))
    methods = dict(zip(df["checkpoint"], df["method"]))  # a checkpoint that is only ever a reference has own rows
    names.sort(key=lambda n: labels.model_key(n, methods.get(n, "")))
    shown = [labels.model_label(n, methods.get(n, "")) for n in names]
    mats = [_pair_matrix(sel[sel["layer"] == layer], names).set_axis(shown).set_axis(shown, axis=1)
            for layer in layers]
    scale = shared_scale(metric, np.concatenate([m.to_numpy().ravel() for m in mats]), vmin=0.0, vmax=1.0)
    side = 0.35 + 0.22 * len(names)
    with paper_style():
        fig, axes, ncols = _grid(width, len(layers), 4, side, narrow_cols=2)
        for ax, layer, mat in zip(axes, layers, mats):
            draw_heatmap(ax, mat, scale, annotate=len(names) <= 6, square=True)
            ax.set_title(f"Layer {layer}")
            ax.tick_params(axis="x", labelrotation=90)
        _label_panels(axes, ncols, xlabel="")
        colorbar(fig, scale, axes, label=measure(metric).label + ", mean over modules")
    return fig


def _spectrum_panels(spectra: "pd.DataFrame", at_most: int) -> list[tuple[int, str]]:
    """``(layer, module)`` panels: q and down (or the first and last module present) at the first and last layer."""
    layers = sorted(spectra["layer"].unique())
    modules = _module_order(spectra["module"])
    picked = [m for m in ("q", "down") if m in modules] or [modules[0], modules[-1]]
    ends = list(dict.fromkeys([layers[0], layers[-1]]))
    return [(layer, module) for layer in ends for module in dict.fromkeys(picked)][:at_most]


def spectra_plot(spectra: "pd.DataFrame", panels: Sequence[tuple[int, str]] | None = None, *,
                 width: str | float = "two") -> "Figure":
    """The singular values of ``ΔW`` (``spectra.csv``: checkpoint, method, layer, module, index,
    singular_value), index 1 = largest, log scale: a line per checkpoint (colour = method, a dashed line for a
    further run of a method), a panel per ``(layer, module)`` (default q and down at the first and last layer)."""
    import seaborn as sns
    from matplotlib.lines import Line2D

    if spectra.empty:
        raise ReprtoolsError("no spectra to draw; run `reprtools weights` first")
    panels = list(panels) if panels is not None else _spectrum_panels(spectra, 4)
    models = labels.models(spectra)
    order = sorted({m for _, m in models}, key=lambda m: labels.model_key("", m))
    palette = dict(zip(order, sns.color_palette("colorblind", max(len(order), 3))))
    seen: dict[str, int] = {}
    styles = {}
    for checkpoint, method in models:
        styles[checkpoint] = (palette[method], ("-", "--", ":", "-.")[seen.get(method, 0) % 4])
        seen[method] = seen.get(method, 0) + 1
    with paper_style():
        fig, axes, ncols = _grid(width, len(panels), 4, 1.5, narrow_cols=2, extra_h=0.7)
        for ax, (layer, module) in zip(axes, panels):
            sub = spectra[(spectra["layer"] == layer) & (spectra["module"] == module)]
            for checkpoint, _method in models:
                line = sub[sub["checkpoint"] == checkpoint].sort_values("index")
                line = line[line["singular_value"] > 0]
                colour, style = styles[checkpoint]
                ax.plot(line["index"], line["singular_value"], color=colour, linestyle=style, linewidth=1.0)
            ax.set_yscale("log")
            ax.set_title(f"Layer {layer}, {module}")
            ax.set_xlabel("Index")
        axes[0].set_ylabel("Singular value of \u0394W")
        handles = [Line2D([], [], color=styles[c][0], linestyle=styles[c][1], label=labels.model_label(c, m))
                   for c, m in models]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), frameon=False)
    return fig


def draw_weights(df: "pd.DataFrame", out_dir: str | os.PathLike, spectra: "pd.DataFrame | None" = None, *,
                 width: str | float = "two", formats: Sequence[str] = FORMATS) -> list[Path]:
    """Every weights figure ``df`` (and ``spectra``, the ``spectra.csv`` frame) has rows for, saved under
    ``out_dir``; returns the written paths."""
    written = []
    if spectra is not None and not spectra.empty:
        written += save_figure(spectra_plot(spectra, width=width), out_dir, "weights_spectra", formats)
    for metric in MODULE_METRICS:
        if ((df["metric"] == metric) & (df["reference"] == "base")).any():
            written += save_figure(module_heatmap(df, metric, width=width), out_dir, f"weights_{metric}", formats)
    if ((df["metric"] == PAIR_METRIC) & ~df["reference"].isin(["base", "seeds"])).any():
        written += save_figure(similarity_matrix(df, width=width), out_dir, "weights_subspace_similarity", formats)
    return written
