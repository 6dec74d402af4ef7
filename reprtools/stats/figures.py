"""The stats figures, in the report style (:mod:`reprtools.report.style`; PDF, PNG, SVG), one file per model,
task, format and metric.  Scores and differences are in the score's own unit (fractions, like the margin):

* ``ratio_*`` -- score against the target-language ratio per method, transfer and retention side by side: the
  mean over seeds of each seed's score averaged over the target languages, with a 95% t interval over the seeds
  (the independent replicates), and the base model's score dashed;
* ``balance_*`` -- transfer against retention per cell, one panel per target language: each point is a cell
  (method x ratio), x its change from the base in the target language, y its change in English, averaged over
  seeds with +-1 SD over seeds in both axes; colour is the method, the marker the ratio;
* ``forest_*`` -- each variant's mean paired difference to LoRA with its 90% (1 - 2 alpha) interval, the
  equivalence band (-margin, margin) shaded, transfer and retention side by side; the marker says the verdict;
* ``layers_*`` -- the layer profile of the representation <-> behaviour correlation (Spearman's rho per layer
  with its run-bootstrap interval, one line per target language); none where no correlation could be computed.

A method keeps its colour in every figure (LoRA first, then the variants in the study's order).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from reprtools.results import method_label, measure
from reprtools.stats.scores import METHOD_ORDER, ROLES, cell_changes, method_order

if TYPE_CHECKING:
    import pandas as pd

PANEL = ("model", "task", "format", "metric")
_MARKERS = {"equivalent": "o", "different": "X", "different but within the margin": "D", "inconclusive": "s"}
_RATIO_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _stem(kind: str, key) -> str:
    return kind + "_" + "_".join(re.sub(r"[^A-Za-z0-9.]+", "-", str(k)).strip("-") for k in key)


def _colours(methods) -> dict:
    """One colour per method, fixed by the study's method order so that a method looks the same in every
    figure, whichever methods a figure shows."""
    import seaborn as sns

    every = method_order(set(METHOD_ORDER) | set(methods))
    palette = dict(zip(every, sns.color_palette("colorblind", max(len(every), 10))))
    return {m: palette[m] for m in method_order(methods)}


def _legend_below(fig, handles, labels, title: str | None = None, ncols: int | None = None) -> None:
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols or min(len(labels), 6), frameon=False,
               title=title)


def _role_title(sub: "pd.DataFrame", role: str) -> str:
    if role == "transfer":
        return "transfer (target language)"
    langs = sorted(set(sub.loc[sub["role"] == role, "eval_lang"])) if "eval_lang" in sub else []
    return f"retention ({', '.join(langs)})" if langs else "retention"


def _forest(fig, sub: "pd.DataFrame", margin: float) -> None:
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    axes = fig.subplots(1, len(ROLES), sharex=True, sharey=True, squeeze=False)[0]
    colours = _colours(sub["method"])
    order = list(colours)
    for ax, role in zip(axes, ROLES):
        rows = sub[sub["role"] == role].set_index("method").reindex(order)
        ax.axvspan(-margin, margin, color="0.9", zorder=0)
        ax.axvline(0, color="0.4", lw=0.6)
        for y, (method, r) in enumerate(rows.iterrows()):
            if np.isnan(r.get("mean_diff", np.nan)):
                continue
            err = [[r["mean_diff"] - r["ci_low"]], [r["ci_high"] - r["mean_diff"]]]
            ax.errorbar(r["mean_diff"], y, xerr=None if np.isnan(r["ci_low"]) else err,
                        fmt=_MARKERS.get(r["verdict"], "o"), color=colours[method], ms=4, capsize=2, lw=1)
            if np.isnan(r["ci_low"]):  # say why there is no interval, on a white box over the band
                why = (r.get("note") or "too few blocks").split(";")[0]
                ax.annotate(f"no interval ({why})", (r["mean_diff"], y),
                            xytext=(0, -7), textcoords="offset points", ha="center", va="top", fontsize=6,
                            color="0.3", bbox={"boxstyle": "square,pad=0.15", "fc": "white", "ec": "none"})
        ax.set_yticks(range(len(order)), [method_label(m) for m in order])
        ax.set_ylim(len(order) - 0.5, -0.5)  # LoRA's first variant on top
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.set_title(role)
        ax.set_xlabel(f"{measure(sub['metric'].iloc[0]).label}: variant \u2212 LoRA")
    handles = [axes[0].plot([], [], _MARKERS[v], color="0.3", ms=4)[0] for v in _MARKERS]
    handles.append(Patch(color="0.9", label=""))
    labels = list(_MARKERS) + [f"equivalence margin \u00b1{margin:g}"]
    _legend_below(fig, handles, labels, "mean paired difference with 90% interval; marker = verdict", ncols=3)


def _ratio(fig, sub: "pd.DataFrame", metric: str, base: "pd.DataFrame") -> None:
    from scipy.stats import t

    axes = fig.subplots(1, len(ROLES), sharey=False, squeeze=False)[0]
    colours = _colours(sub["method"])
    ratios = np.sort(sub["ratio"].dropna().unique())
    step = np.min(np.diff(ratios)) if len(ratios) > 1 else 1.0
    dodge = 0.12 * step / max(len(colours) - 1, 1)
    for ax, role in zip(axes, ROLES):
        part = sub[sub["role"] == role].drop_duplicates(["run", "eval_lang", "lang"])
        per_seed = part.groupby(["method", "ratio", "seed"])["value"].mean().reset_index()  # over target langs
        for i, (method, colour) in enumerate(colours.items()):
            g = per_seed[per_seed["method"] == method].groupby("ratio")["value"]
            mean, sem, n = g.mean(), g.sem(), g.count()
            half = (sem * t.ppf(0.975, np.maximum(n - 1, 1))).where(n > 1)
            x = mean.index.to_numpy(float) + (i - (len(colours) - 1) / 2) * dodge
            ax.errorbar(x, mean.to_numpy(float), yerr=half.fillna(0).to_numpy(float), marker="o", ms=3, capsize=2,
                        lw=1, color=colour,
                        label=method_label(method))
        langs = part["eval_lang"].unique()
        b = base[base["eval_lang"].isin(langs)]["base_value"] if len(base) else []
        if len(b):
            ax.axhline(float(np.mean(b)), color="0.4", ls="--", lw=0.8, label="base model")
        ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
        ax.set_title(_role_title(sub, role))
        ax.set_xlabel("target-language ratio")
        ax.set_ylabel(measure(metric).label)
    handles, labels = axes[0].get_legend_handles_labels()
    _legend_below(fig, handles, labels, "mean over seeds (target languages averaged) with 95% t interval")


def _balance(fig, cells: "pd.DataFrame", metric: str) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.transforms import offset_copy

    langs = sorted(cells["lang"].unique())
    axes = fig.subplots(1, len(langs), sharex=True, sharey=True, squeeze=False)[0]
    colours = _colours(cells["method"])
    ratios = sorted(cells["ratio"].unique())
    markers = dict(zip(ratios, _RATIO_MARKERS * (len(ratios) // len(_RATIO_MARKERS) + 1)))
    for ax, lang in zip(axes, langs):
        ax.axhline(0, color="0.4", lw=0.6)
        ax.axvline(0, color="0.4", lw=0.6)
        part = cells[cells["lang"] == lang]
        # cells at the very same point (runs answering one label) are spread sideways by a few points, on the
        # page only, so that none hides another
        spot = part[["transfer", "retention"]].round(9).astype(str).agg(",".join, axis=1)
        rank, size = spot.groupby(spot).cumcount(), spot.map(spot.value_counts())
        for r, j, m in zip(part.to_dict("records"), rank, size):
            shift = offset_copy(ax.transData, fig=fig, x=(j - (m - 1) / 2) * 5.0, y=0, units="points")
            ax.errorbar(r["transfer"], r["retention"], xerr=r["transfer_sd"], yerr=r["retention_sd"],
                        fmt=markers[r["ratio"]], color=colours[r["method"]], ms=4, capsize=1.5, lw=0.7,
                        mfc=colours[r["method"]], mec="white", mew=0.4, transform=shift)
            dx, dy = np.nan_to_num([r["transfer_sd"], r["retention_sd"]])
            ax.update_datalim([(r["transfer"] - dx, r["retention"] - dy), (r["transfer"] + dx, r["retention"] + dy)])
        ax.autoscale_view()
        ax.set_title(f"target {lang}")
        ax.set_xlabel(f"transfer: \u0394 {lang} {measure(metric).label.lower()} vs base")
    axes[0].set_ylabel(f"retention: \u0394 English {measure(metric).label.lower()}")
    handles = [Line2D([], [], ls="", marker="o", color=c, ms=4) for c in colours.values()]
    handles += [Line2D([], [], ls="", marker=markers[r], color="0.3", ms=4) for r in ratios]
    labels = [method_label(m) for m in colours] + [f"ratio {r:g}" for r in ratios]
    _legend_below(fig, handles, labels, "one point per cell: mean over seeds \u00b1 1 SD", ncols=min(len(labels), 7))


def _layers(fig, sub: "pd.DataFrame") -> None:
    from matplotlib.ticker import MaxNLocator

    axes = fig.subplots(1, len(ROLES), sharey=True, squeeze=False)[0]
    for ax, role in zip(axes, ROLES):
        if not (sub["role"] == role).any():
            ax.text(0.5, 0.5, "no probe rows in the\nscored language", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
            ax.tick_params(bottom=False, labelbottom=False)
            ax.set_title(role)
            continue
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
    handles, labels = next(((h, l) for h, l in (a.get_legend_handles_labels() for a in axes) if h), ([], []))
    _legend_below(fig, handles, labels, "target language; band: run-bootstrap interval")


def write_figures(scores: "pd.DataFrame", equivalence: "pd.DataFrame", behaviour: "pd.DataFrame",
                  out_dir: str | os.PathLike, margin: float, formats=("pdf", "png", "svg"),
                  base: "pd.DataFrame | None" = None) -> list[Path]:
    """Draw every figure of the stats and save it under ``out_dir``; returns the paths written.  ``base`` is
    :func:`reprtools.stats.scores.base_scores`: without it there is no base line and no ``balance`` figure."""
    import pandas as pd

    from reprtools.report.style import new_figure, paper_style, save_figure

    base = base if base is not None else pd.DataFrame(columns=list(PANEL) + ["eval_lang", "base_value"])
    jobs = []
    for key, sub in scores.groupby(list(PANEL), sort=True):
        b = base.merge(pd.DataFrame([dict(zip(PANEL, key))]), on=list(PANEL))
        jobs.append((_stem("ratio", key), lambda fig, s=sub, m=key[3], b=b: _ratio(fig, s, m, b)))
    cells = cell_changes(scores, base)
    for key, sub in (cells.groupby(list(PANEL), sort=True) if len(cells) else []):
        jobs.append((_stem("balance", key), lambda fig, s=sub, m=key[3]: _balance(fig, s, m)))
    for key, sub in (equivalence.groupby(list(PANEL), sort=True) if len(equivalence) else []):
        jobs.append((_stem("forest", key), lambda fig, s=sub: _forest(fig, s, margin)))
    drawn = behaviour[behaviour["rho"].notna()] if len(behaviour) else behaviour  # no rho, no profile
    for key, sub in (drawn.groupby(list(PANEL), sort=True) if len(drawn) else []):
        jobs.append((_stem("layers", key), lambda fig, s=sub: _layers(fig, s)))
    paths = []
    for stem, draw in jobs:
        with paper_style():
            fig = new_figure("two", 2.9)
            draw(fig)
        paths += save_figure(fig, out_dir, stem, formats)
    return paths
