"""The classical tests of the study, on cell-level scores (one number per training run).

* :func:`cell_tests` -- the study's own test: one-way ANOVA across the methods within one cell (model, task,
  format, metric, role, target language, ratio; the observations are the seeds), with Welch's ANOVA
  (unequal variances; statsmodels ``anova_oneway``) and Kruskal--Wallis beside it.  Nothing is paired.
* :func:`friedman_tests` -- Friedman's test over the complete blocks of a family (block = target language x
  ratio x seed; every method's run in the block is scored on the same held-out items).
* :func:`paired_tests` -- each variant against LoRA, paired on the same blocks: Wilcoxon's signed-rank test
  (exact over sign patterns up to n = 16, ties and all; scipy's normal approximation beyond), Holm's correction
  over the variants of a family (``multipletests(method="holm")``, explicitly: statsmodels' default is
  Holm--Sidak), the Hodges--Lehmann difference with its interval (exact for untied differences) and the
  matched-pairs rank-biserial correlation.

Per-item paired tests (on ``eval/items/``) are not done here: these tests treat each run's score as one
observation.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np

from reprtools.stats.scores import BLOCK, FAMILY, REFERENCE, block_table, families, method_order, paired_blocks

if TYPE_CHECKING:
    import pandas as pd


def signed_rank_null(n: int) -> np.ndarray:
    """``P(T+ = t)`` for t = 0..n(n+1)/2 under the null of the signed-rank test without ties: the number of
    subsets of {1..n} summing to t, over 2^n.  Written here because scipy keeps its own private."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    return counts / 2.0 ** n


def hodges_lehmann(d, level: float = 0.95) -> tuple[float, float, float, float]:
    """The Hodges--Lehmann estimate of a paired difference, the median of the n(n+1)/2 Walsh averages
    (d_i + d_j)/2, i <= j (Hodges & Lehmann, 1963), and Tukey's interval [W_(k), W_(M+1-k)] from the exact
    signed-rank distribution (Hollander, Wolfe & Chicken, *Nonparametric Statistical Methods*, 3rd ed.,
    sec. 3.3): k is the largest with 2 P(T+ <= k-1) <= 1 - level.  Returns (estimate, low, high, coverage);
    where the sample is too small to reach ``level`` the interval is [min, max] of the Walsh averages with the
    coverage it does have (0.75 at n = 3).  The coverage is exact for continuous (untied) differences.  No
    library computes this interval (R's ``wilcox.test(conf.int=TRUE)`` does), hence by hand."""
    d = np.asarray(d, dtype=float)
    d = d[~np.isnan(d)]
    n = len(d)
    if n == 0:
        return (math.nan,) * 4
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2.0)
    cdf = np.cumsum(signed_rank_null(n))
    ok = np.nonzero(2.0 * cdf <= 1.0 - level + 1e-12)[0]
    k = int(ok[-1]) + 1 if len(ok) else 1  # cdf[k-1] = P(T+ <= k-1)
    coverage = 1.0 - 2.0 * float(cdf[k - 1])
    return float(np.median(walsh)), float(walsh[k - 1]), float(walsh[len(walsh) - k]), coverage


def rank_biserial(d) -> float:
    """The matched-pairs rank-biserial correlation (Kerby, 2014): (R+ - R-) / (R+ + R-), the rank sums of the
    positive and negative differences, ranks of |d| with ties averaged and zero differences dropped (as the
    Wilcoxon test drops them).  +1: every pair favours the first sample; NaN when every difference is zero."""
    from scipy.stats import rankdata

    d = np.asarray(d, dtype=float)
    d = d[(d != 0) & ~np.isnan(d)]
    if len(d) == 0:
        return math.nan
    ranks = rankdata(np.abs(d))
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())


def _quiet(fn, *args, **kwargs):
    """Call a scipy/statsmodels test; a degenerate sample (all values equal) gives NaN, not a warning."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            return fn(*args, **kwargs)
        except ValueError:
            return None


def _one_cell(groups: list[np.ndarray]) -> dict:
    from scipy.stats import f_oneway, kruskal
    from statsmodels.stats.oneway import anova_oneway

    anova, kw = _quiet(f_oneway, *groups), _quiet(kruskal, *groups)
    welch = _quiet(anova_oneway, groups, use_var="unequal")
    nan = math.nan
    dof = sum(len(g) for g in groups) - len(groups)
    pooled = math.sqrt(sum((len(g) - 1) * np.var(g, ddof=1) for g in groups) / dof) if dof > 0 else nan
    return {"sd_within": pooled,
            "anova_F": float(anova.statistic) if anova else nan, "anova_p": float(anova.pvalue) if anova else nan,
            "welch_F": float(welch.statistic) if welch else nan, "welch_p": float(welch.pvalue) if welch else nan,
            "kruskal_H": float(kw.statistic) if kw else nan, "kruskal_p": float(kw.pvalue) if kw else nan}


def cell_tests(scores: "pd.DataFrame") -> "pd.DataFrame":
    """Per cell (family x target language x ratio): ANOVA, Welch's ANOVA and Kruskal--Wallis across the
    methods, each method's seeds as its group (unpaired).  A cell with fewer than two methods of two runs
    each is left out."""
    import pandas as pd

    rows = []
    for key, sub in scores.groupby(list(FAMILY) + ["lang", "ratio"], sort=True, dropna=False):
        by = {m: g["value"].to_numpy(float) for m, g in sub.groupby("method")}
        by = {m: by[m] for m in method_order(by) if len(by[m]) >= 2}
        if len(by) < 2:
            continue
        row = dict(zip(list(FAMILY) + ["lang", "ratio"], key))
        row.update(k=len(by), n=int(sum(len(v) for v in by.values())), methods="+".join(by),
                   sizes="+".join(str(len(v)) for v in by.values()), **_one_cell(list(by.values())))
        rows.append(row)
    return pd.DataFrame(rows)


def friedman_tests(scores: "pd.DataFrame") -> "pd.DataFrame":
    """Per family: Friedman's chi-square over the blocks where every method has a run (scipy; asymptotic p),
    with the number of blocks used and left out as incomplete."""
    import pandas as pd
    from scipy.stats import friedmanchisquare

    rows = []
    for fam, sub in families(scores):
        wide = block_table(sub)
        complete = wide.dropna()
        row = {**fam, "k": wide.shape[1], "blocks": len(complete), "incomplete_blocks": len(wide) - len(complete),
               "paired_on": " x ".join(BLOCK), "chi2": math.nan, "p": math.nan}
        if wide.shape[1] >= 3 and len(complete) >= 2:
            res = _quiet(friedmanchisquare, *[complete[c].to_numpy(float) for c in complete])
            if res is not None:
                row.update(chi2=float(res.statistic), p=float(res.pvalue))
        rows.append(row)
    return pd.DataFrame(rows)


EXACT_MAX_N = 16


def signed_rank_test(d) -> tuple[float, float]:
    """Wilcoxon's signed-rank test of paired differences d (zeros dropped, tied |d| given mid-ranks): returns
    (T+, two-sided p).  Up to :data:`EXACT_MAX_N` non-zero differences the p is exact over all 2^n sign
    patterns, P(|T+ - E T+| >= |t - E T+|); this enumeration is done here because scipy's exact route refuses
    ties and its permutation route costs about a second per test, and study scores on a fixed item set tie
    often.  Beyond that, scipy's normal approximation.  (nan, 1.0) when every difference is zero."""
    from scipy.stats import rankdata, wilcoxon

    d = np.asarray(d, dtype=float)
    d = d[(d != 0) & ~np.isnan(d)]
    n = len(d)
    if n == 0:
        return math.nan, 1.0
    ranks = rankdata(np.abs(d))
    t_obs = float(ranks[d > 0].sum())
    if n > EXACT_MAX_N:
        return t_obs, float(wilcoxon(d, method="asymptotic").pvalue)
    signs = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1
    t_all = signs @ ranks
    centre = ranks.sum() / 2.0
    p = np.mean(np.abs(t_all - centre) >= abs(t_obs - centre) - 1e-9)
    return t_obs, float(min(1.0, p))


def _paired_row(d: np.ndarray, alpha: float) -> dict:
    hl, lo, hi, cover = hodges_lehmann(d, 1.0 - alpha)
    t_plus, p = signed_rank_test(d) if len(d) else (math.nan, math.nan)
    return {"n": len(d), "mean_diff": float(np.mean(d)) if len(d) else math.nan,
            "wilcoxon_T_plus": t_plus, "wilcoxon_p": p,
            "hl_diff": hl, "hl_low": lo, "hl_high": hi, "hl_coverage": cover, "rank_biserial": rank_biserial(d)}


def paired_tests(scores: "pd.DataFrame", alpha: float = 0.05, reference: str = REFERENCE) -> "pd.DataFrame":
    """Per family and variant: the variant against ``reference`` paired on blocks (target language x ratio x
    seed), ``d = variant - reference``; Wilcoxon p, Holm-adjusted over the family's variants, Hodges--Lehmann
    difference with its (1 - alpha) interval, rank-biserial correlation."""
    import pandas as pd
    from statsmodels.stats.multitest import multipletests

    rows = []
    for fam, sub in families(scores):
        fam_rows = []
        for variant in method_order(sub["method"].unique()):
            if variant == reference:
                continue
            pairs = paired_blocks(sub, variant, reference)
            if len(pairs):
                fam_rows.append({**fam, "method": variant, "reference": reference,
                                 "paired_on": " x ".join(BLOCK), **_paired_row(pairs["d"].to_numpy(float), alpha)})
        ps = np.array([r["wilcoxon_p"] for r in fam_rows], dtype=float)
        ok = ~np.isnan(ps)
        adjusted = np.full(len(ps), math.nan)
        if ok.any():
            adjusted[ok] = multipletests(ps[ok], alpha=alpha, method="holm")[1]
        for r, p in zip(fam_rows, adjusted):
            r.update(wilcoxon_p_holm=float(p), different=bool(p <= alpha) if not math.isnan(p) else False)
        rows += fam_rows
    return pd.DataFrame(rows)
