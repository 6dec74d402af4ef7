"""Representation <-> behaviour: do the layers whose representations move most track where scores change?

Within each family (model, task, format, metric, role) and target language, across cells (method x ratio x
seed; one training run each), for every layer: Spearman's rank correlation between the run's representation
shift from the base at that layer, ``1 - debiased linear CKA`` (probe ``shift`` rows, Kornblith et al., 2019;
debiased as in Nguyen et al., 2021), measured in the scored language (the target language for ``transfer``,
English for ``retention``), and the run's score change from the base model in that language.

The interval resamples whole training runs with replacement (percentile bootstrap): a run is the unit that
was trained, and cells share runs (ratio-0 runs serve every target language).  The p-values are Holm-adjusted
over the layers of each family and language (the layers are many tests of one question).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from reprtools import results
from reprtools.stats.scores import FAMILY, base_scores, cell_scores

if TYPE_CHECKING:
    import pandas as pd

SHIFT_METRIC = "cka_linear_debiased"


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair of x and y (ranks with ties averaged, then Pearson)."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x, axis=1), rankdata(y, axis=1)
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    with np.errstate(all="ignore"):
        return (rx * ry).sum(1) / np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))


def run_bootstrap(x, y, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of Spearman's rho over ``n_boot`` resamples of the runs (the rows of x, y)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    idx = np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))
    rho = _spearman_rows(x[idx], y[idx])
    rho = rho[~np.isnan(rho)]
    if len(rho) == 0:
        return math.nan, math.nan
    tail = (1 - level) / 2
    return float(np.quantile(rho, tail)), float(np.quantile(rho, 1 - tail))


def shift_and_change(df: "pd.DataFrame") -> "pd.DataFrame":
    """One row per run, score and layer: the family, ``lang`` (target), ``layer``, ``run``, ``shift``
    (1 - debiased CKA) and ``change`` (score - base score).  Empty where the study has no probe rows or no
    base scores."""
    import pandas as pd

    scores = cell_scores(df)
    base = base_scores(df, scores["model"].unique())
    scores = scores.merge(base, on=["model", "task", "format", "metric", "eval_lang"], how="inner")
    scores["change"] = scores["value"] - scores["base_value"]
    probe = df[(df["comparison"] == results.SHIFT) & (df["metric"] == SHIFT_METRIC) & df["value"].notna()]
    if probe.empty or scores.empty:
        return pd.DataFrame(columns=list(FAMILY) + ["lang", "layer", "run", "shift", "change"])
    probe = probe[["checkpoint", "lang", "layer", "value"]].drop_duplicates(["checkpoint", "lang", "layer"])
    probe = probe.rename(columns={"checkpoint": "run", "lang": "eval_lang"})
    probe["shift"] = 1.0 - probe["value"]
    out = scores.merge(probe.drop(columns="value"), on=["run", "eval_lang"], how="inner")
    return out[list(FAMILY) + ["lang", "layer", "run", "shift", "change"]]


def behaviour_table(df: "pd.DataFrame", n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> "pd.DataFrame":
    """Per family, target language and layer: ``rho`` (Spearman, scipy), its p, the Holm-adjusted p over
    layers, the run-bootstrap (1 - alpha) interval and the number of runs."""
    import pandas as pd
    from scipy.stats import spearmanr
    from statsmodels.stats.multitest import multipletests

    data = shift_and_change(df)
    rows = []
    for key, sub in data.groupby(list(FAMILY) + ["lang"], sort=True):
        group = []
        for layer, lay in sub.groupby("layer", sort=True):
            lay = lay.drop_duplicates("run")
            row = {**dict(zip(list(FAMILY) + ["lang"], key)), "layer": int(layer), "n_runs": len(lay),
                   "rho": math.nan, "p": math.nan, "ci_low": math.nan, "ci_high": math.nan, "note": ""}
            if len(lay) < 3:
                row["note"] = "fewer than 3 runs"
            elif lay["change"].nunique() < 2 or lay["shift"].nunique() < 2:
                row["note"] = "no spread in the " + ("score change" if lay["change"].nunique() < 2 else "shift")
            else:
                res = spearmanr(lay["shift"], lay["change"])
                lo, hi = run_bootstrap(lay["shift"], lay["change"], n_boot, 1 - alpha, seed)
                row.update(rho=float(res.statistic), p=float(res.pvalue), ci_low=lo, ci_high=hi)
            group.append(row)
        ps = np.array([r["p"] for r in group])
        ok = ~np.isnan(ps)
        adj = np.full(len(ps), math.nan)
        if ok.any():
            adj[ok] = multipletests(ps[ok], alpha=alpha, method="holm")[1]
        for r, p in zip(group, adj):
            r["p_holm"] = float(p)
        rows += group
    return pd.DataFrame(rows)
