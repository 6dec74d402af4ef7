"""The stats figures, in the report style (:mod:`reprtools.report.style`; PDF, PNG, SVG), one file per model,
task, format and metric:

* ``forest_*`` -- each variant's mean paired difference to LoRA with its 90% (1 - 2 alpha) interval, the
  equivalence band (-margin, margin) shaded, transfer and retention side by side; the marker says the verdict;
* ``ratio_*`` -- score against ratio per method (mean over the runs, with a 95% t interval), transfer and
  retention side by side;
* ``layers_*`` -- the layer profile of the representation <-> behaviour correlation (Spearman's rho per layer
  with its run-bootstrap interval, one line per target language); none where no correlation could be computed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from reprtools.results import method_label, measure
from reprtools.stats.scores import ROLES, method_order

if TYPE_CHECKING:
    import pandas as pd

PANEL = ("model", "task", "format", "metric")
_MARKERS = {"equivalent": "o", "different": "X", "different but within the margin": "D", "inconclusive": "s"}


def _stem(kind: str, key) -> str:
    return kind + "_" + "_".join(re.sub(r"[^A-Za-z0-9.]+", "-", str(k)).strip("-") for k in key)


def _colours(methods) -> dict:
    import seaborn as sns

    methods = method_order(methods)
    return dict(zip(methods, sns.color_palette("colorblind", len(methods))))


def _forest(fig, sub: "pd.DataFrame", margin: float) -> None:
    from matplotlib.ticker import MaxNLocator

    axes = fig.subplots(1, len(ROLES), sharex=True, sharey=True, squeeze=False)[0]
    colours = _colours(sub["method"])
    for ax, role in zip(axes, ROLES):
        rows = sub[sub["role"] == role].set_index("method").reindex([m for m in colours if m in set(sub["method"])])
        ax.axvspan(-margin, margin, color="0.9", zorder=0, label=f"\u00b1{margin:g} margin")
        ax.axvline(0, color="0.4", lw=0.6)
        for y, (method, r) in enumerate(rows.iterrows()):
            if np.isnan(r.get("mean_diff", np.nan)):
                continue
            ax.errorbar(r["mean_diff"], y, xerr=[[r["mean_diff"] - r["ci_low"]], [r["ci_high"] - r["mean_diff"]]],
                        fmt=_MARKERS.get(r["verdict"], "o"), color=colours[method], ms=4, capsize=2, lw=1)
        ax.set_yticks(range(len(rows)), [method_label(m) for m in rows.index])
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.set_title(role)
        ax.set_xlabel("difference to LoRA")
    handles = [axes[0].plot([], [], _MARKERS[v], color="0.3", ms=4)[0] for v in _MARKERS]
    fig.legend(handles, list(_MARKERS), loc="outside lower center", ncols=2, frameon=False)


def _ratio(fig, sub: "pd.DataFrame", metric: str) -> None:
    from scipy.stats import t

    axes = fig.subplots(1, len(ROLES), sharey=False, squeeze=False)[0]
    colours = _colours(sub["method"])
    for ax, role in zip(axes, ROLES):
        part = sub[sub["role"] == role].drop_duplicates(["run", "eval_lang"])
        for method, colour in colours.items():
            g = part[part["method"] == method].groupby("ratio")["value"]
            mean, sem, n = g.mean(), g.sem(), g.count()
            half = sem * t.ppf(0.975, np.maximum(n - 1, 1))
            ax.errorbar(mean.index, mean, yerr=half.fillna(0), marker="o", ms=3, capsize=2, lw=1, color=colour,
                        label=method_label(method))
        ax.set_title(role)
        ax.set_xlabel("target-language ratio")
        ax.set_ylabel(measure(metric).label)
    axes[0].legend(frameon=False)


def _layers(fig, sub: "pd.DataFrame") -> None:
    from matplotlib.ticker import MaxNLocator

    axes = fig.subplots(1, len(ROLES), sharey=True, squeeze=False)[0]
    for ax, role in zip(axes, ROLES):
        if not (sub["role"] == role).any():
            ax.text(0.5, 0.5, "no probe rows in the scored language", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for lang, g in sub[sub["role"] == role].groupby("lang"):
            g = g.sort_values("layer")
            ax.plot(g["layer"], g["rho"], marker="o", ms=3, lw=1, label=lang)
            ax.fill_between(g["layer"], g["ci_low"], g["ci_high"], alpha=0.2)
        ax.axhline(0, color="0.4", lw=0.6)
        ax.set_ylim(-1.05, 1.05)
        ax.set_title(role)
        ax.set_xlabel("layer")
    axes[0].set_ylabel("Spearman \u03c1 (shift, score change)")
    axes[0].legend(frameon=False, title="target")


def write_figures(scores: "pd.DataFrame", equivalence: "pd.DataFrame", behaviour: "pd.DataFrame",
                  out_dir: str | os.PathLike, margin: float, formats=("pdf", "png", "svg")) -> list[Path]:
    """Draw every figure of the stats and save it under ``out_dir``; returns the paths written."""
    from reprtools.report.style import new_figure, paper_style, save_figure

    jobs = []
    for key, sub in scores.groupby(list(PANEL), sort=True):
        jobs.append((_stem("ratio", key), lambda fig, s=sub, m=key[3]: _ratio(fig, s, m)))
    for key, sub in (equivalence.groupby(list(PANEL), sort=True) if len(equivalence) else []):
        jobs.append((_stem("forest", key), lambda fig, s=sub: _forest(fig, s, margin)))
    drawn = behaviour[behaviour["rho"].notna()] if len(behaviour) else behaviour  # no rho, no profile
    for key, sub in (drawn.groupby(list(PANEL), sort=True) if len(drawn) else []):
        jobs.append((_stem("layers", key), lambda fig, s=sub: _layers(fig, s)))
    paths = []
    for stem, draw in jobs:
        with paper_style():
            fig = new_figure("two", 2.6)
            draw(fig)
        paths += save_figure(fig, out_dir, stem, formats)
    return paths
