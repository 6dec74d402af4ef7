"""Figures and LaTeX tables from a results frame (:mod:`reprtools.results`), and nothing else: no model is
loaded, no file format is parsed here but the probe's ``layer_cka.npz``.

* :mod:`~reprtools.report.style` -- paper rc parameters, widths, colour maps, shared colour scales, saving;
* :mod:`~reprtools.report.labels` -- display names and order (languages, models, layers);
* :mod:`~reprtools.report.select` -- which rows a figure or table shows;
* :mod:`~reprtools.report.heatmaps` -- layer, separability and language-pair heatmaps (seaborn);
* :mod:`~reprtools.report.layer_cka` -- ``layer_cka.npz`` and its layer x layer heatmap;
* :mod:`~reprtools.report.lines` -- method differences against the seed noise floor, by layer;
* :mod:`~reprtools.report.tables` -- booktabs tables (pandas Styler).

:func:`draw_all` draws every figure a frame supports, :func:`draw` does it all from a probe directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Sequence, Union

from reprtools.errors import ReprtoolsError
from reprtools.report.heatmaps import language_pair_heatmap, layer_heatmap, separability_heatmap
from reprtools.report.labels import models
from reprtools.report.layer_cka import ESTIMATORS, layer_cka_heatmap, load_layer_cka
from reprtools.report.lines import seed_floor_plot
from reprtools.report.select import check_frame, with_cosine_gap
from reprtools.report.style import FORMATS, WIDTHS, save_figure, width_inches
from reprtools.report.tables import latex_table, write_tables
from reprtools.results import CHECKPOINTS, CROSSLINGUAL, METHODS, SEED_FLOOR, SEEDS, SEPARABILITY, SHIFT

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["FORMATS", "WIDTHS", "draw", "draw_all", "language_pair_heatmap", "latex_table", "layer_cka_heatmap",
           "layer_heatmap", "load_layer_cka", "save_figure", "seed_floor_plot", "separability_heatmap",
           "write_tables"]

#: Cross-lingual measures drawn as language x language figures; the raw cosines are not (see cosine_gap).
LANGUAGE_PAIR_METRICS = ("cosine_gap", "retrieval_top1", "cka_linear_debiased")
LayerCKAInput = Union[str, os.PathLike, Mapping[str, Mapping[str, "np.ndarray"]], None]


def _metrics(df: "pd.DataFrame", comparison: str) -> list[str]:
    """The metrics of ``comparison`` that have rows with a layer, in order of appearance."""
    sel = df[(df["comparison"] == comparison) & (df["layer"] >= 0)]
    return list(dict.fromkeys(sel["metric"]))


def _pair_metrics(df: "pd.DataFrame") -> list[str]:
    present = _metrics(with_cosine_gap(df), CROSSLINGUAL)
    chosen = [m for m in LANGUAGE_PAIR_METRICS if m in present]
    if "cka_linear_debiased" not in present and "cka_linear" in present:
        chosen.append("cka_linear")  # tables written before the debiased estimator
    return chosen


def _plans(df: "pd.DataFrame", layer_cka, width) -> Iterator[tuple[str, Callable[[], "Figure"]]]:
    """(file stem, figure maker) for every figure ``df`` (and ``layer_cka``) supports."""
    if _metrics(df, SEPARABILITY):
        yield "separability", lambda: separability_heatmap(df, width=width)
    for metric in _metrics(df, SHIFT):
        if metric.startswith("cosine"):  # one panel per checkpoint: how each language moved
            yield f"{metric}_vs_base_by_checkpoint", lambda m=metric: layer_heatmap(df, m, SHIFT, "checkpoint",
                                                                                      width=width)
        else:
            yield f"{metric}_vs_base_by_lang", lambda m=metric: layer_heatmap(df, m, SHIFT, "lang", width=width)
    for comparison, suffix in ((CHECKPOINTS, "checkpoint_pairs"), (SEEDS, "seed_pairs")):
        for metric in _metrics(df, comparison):
            yield f"{metric}_{suffix}", lambda m=metric, c=comparison: layer_heatmap(df, m, c, "lang", width=width)
    for metric in _pair_metrics(df):
        yield f"{metric}_language_pairs", lambda m=metric: language_pair_heatmap(df, m, width=width)
    if layer_cka is not None:
        mats = load_layer_cka(layer_cka) if isinstance(layer_cka, (str, os.PathLike)) else layer_cka
        estimator = next((e for e in ESTIMATORS if mats.get(e)), None)
        if estimator is None:
            raise ReprtoolsError(f"the layer CKA matrices have no {' or '.join(ESTIMATORS)} entries; "
                                 f"present: {', '.join(mats) or 'none'}")
        order = [c for c, _ in models(df)]
        yield "layer_cka", lambda: layer_cka_heatmap(mats, estimator, checkpoints=order, width=width)
    if "dissimilarity" in _metrics(df, SEED_FLOOR) + _metrics(df, METHODS):
        yield "seed_floor", lambda: seed_floor_plot(df, width=width)


def draw_all(df: "pd.DataFrame", out_dir: str | os.PathLike, layer_cka: LayerCKAInput = None,
             width: str | float = "two", formats: Sequence[str] = FORMATS) -> list[Path]:
    """Draw every figure the frame supports into ``out_dir``, each in every format; returns the paths.

    File stems: ``separability``; ``{metric}_vs_base_by_lang`` (shift CKA measures: checkpoints x layers,
    a panel per language); ``cosine_same_sentence_vs_base_by_checkpoint`` (languages x layers, a panel per
    checkpoint); ``{metric}_checkpoint_pairs`` and ``{metric}_seed_pairs``; ``{metric}_language_pairs`` for
    ``cosine_gap``, ``retrieval_top1`` and ``cka_linear_debiased``; ``layer_cka`` (``layer_cka``: the path
    of ``layer_cka.npz`` or what :func:`load_layer_cka` returns; the debiased estimator where present);
    ``seed_floor``.  :class:`ReprtoolsError` when there is nothing to draw.
    """
    check_frame(df)
    width_inches(width)
    written: list[Path] = []
    for stem, make in _plans(df, layer_cka, width):
        fig = make()
        try:
            written += save_figure(fig, out_dir, stem, formats)
        finally:
            fig.clear()  # not a pyplot figure: clearing it frees its artists now
    if not written:
        raise ReprtoolsError("nothing to draw: the table has no layer-wise rows and no layer CKA matrix was "
                             "given; run `reprtools probe` first")
    return written


def draw(source: str | os.PathLike, out_dir: str | os.PathLike | None = None, width: str | float = "two",
         formats: Sequence[str] = FORMATS) -> list[Path]:
    """Figures into ``out_dir/figures`` and tables into ``out_dir/tables`` (``out_dir`` defaults to the
    directory of the table) from a probe directory or its ``metrics.csv``, read once, and the
    ``layer_cka.npz`` beside it where there is one."""
    from reprtools.results import read_results

    src = Path(source).expanduser()
    metrics = src / "metrics.csv" if src.is_dir() else src
    df = read_results(metrics)
    target = Path(out_dir).expanduser() if out_dir is not None else metrics.parent
    npz = metrics.parent / "layer_cka.npz"
    written = draw_all(df, target / "figures", layer_cka=npz if npz.is_file() else None, width=width,
                       formats=formats)
    return written + write_tables(df, target / "tables")
