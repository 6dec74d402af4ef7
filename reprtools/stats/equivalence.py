"""Equivalence of each variant to LoRA: the paired TOST and the four verdicts.

Two one-sided tests (Schuirmann, 1987) on the paired differences ``d = variant - LoRA`` over the blocks of a
family (target language x ratio x seed; never seeds alone): H0 is |mean d| >= margin, rejected at alpha when
both one-sided t-tests reject, which is exactly when the (1 - 2 alpha) interval of the mean difference lies
inside (-margin, margin).  The margin is in the score's own unit (scores are fractions: 0.02 = 2 points).
statsmodels' ``ttost_paired`` does the test; the interval is its t-interval.

Verdicts, as issue 11 defines them: *equivalent* when TOST rejects at alpha; *different* when the
Holm-corrected paired test rejects; *different but within the margin* when both; *inconclusive* when neither.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np

from reprtools.stats.scores import FAMILY

if TYPE_CHECKING:
    import pandas as pd

EQUIVALENT = "equivalent"
DIFFERENT = "different"
WITHIN_MARGIN = "different but within the margin"
INCONCLUSIVE = "inconclusive"
VERDICTS = (EQUIVALENT, DIFFERENT, WITHIN_MARGIN, INCONCLUSIVE)


def verdict(equivalent: bool, different: bool) -> str:
    """The verdict of one comparison from its TOST (``equivalent``) and its Holm-corrected paired test
    (``different``)."""
    if equivalent and different:
        return WITHIN_MARGIN
    if equivalent:
        return EQUIVALENT
    return DIFFERENT if different else INCONCLUSIVE


def tost_paired(d, margin: float = 0.02, alpha: float = 0.05) -> dict:
    """Paired TOST of mean(d) within (-margin, margin): ``p`` (the larger one-sided p), the (1 - 2 alpha)
    interval ``ci_low``, ``ci_high`` of the mean difference, ``smallest_margin`` (the smallest margin this
    sample establishes: max(|ci_low|, |ci_high|), since TOST rejects iff the interval is inside the margin)
    and ``equivalent``.  Fewer than two differences cannot be tested (NaN, not equivalent).  Neither can
    differences that are all equal: with no spread the t statistic's standard error is 0, and "equivalent" would
    rest on nothing but the sample's accident -- typically every run gives the same constant answers on a small
    item set (the CPU demo study: every adapter answers one label).  They are reported as not established, with
    ``note`` saying why, so the verdict is *inconclusive* unless the paired test finds a difference."""
    from statsmodels.stats.weightstats import DescrStatsW, ttost_paired

    d = np.asarray(d, dtype=float)
    d = d[~np.isnan(d)]
    nan = math.nan
    out = {"n": len(d), "mean_diff": float(d.mean()) if len(d) else nan, "sd_diff": nan, "p_tost": nan,
           "ci_low": nan, "ci_high": nan, "smallest_margin": nan, "equivalent": False, "note": ""}
    if len(d) < 2:
        out["note"] = "fewer than two paired differences"
        return out
    if np.ptp(d) == 0:
        out.update(sd_diff=0.0, note=f"no spread: every paired difference is {d[0]:g}; TOST needs variation")
        return out
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        p = float(ttost_paired(d, np.zeros_like(d), -margin, margin)[0])
        low, high = DescrStatsW(d).tconfint_mean(alpha=2 * alpha)
    out.update(sd_diff=float(d.std(ddof=1)), p_tost=p, ci_low=float(low), ci_high=float(high),
               smallest_margin=float(max(abs(low), abs(high))), equivalent=bool(p < alpha))  # NaN p: False
    return out


def equivalence_table(scores: "pd.DataFrame", paired: "pd.DataFrame", margin: float = 0.02,
                      alpha: float = 0.05) -> "pd.DataFrame":
    """Per family and variant: TOST against LoRA on the paired blocks, joined with the Holm-corrected Wilcoxon
    result of ``paired`` (:func:`reprtools.stats.tests.paired_tests`), and the verdict."""
    import pandas as pd

    from reprtools.stats.scores import REFERENCE, families, method_order, paired_blocks

    rows = []
    holm = {} if paired.empty else {tuple(r[c] for c in FAMILY) + (r["method"],): r
                                    for r in paired.to_dict("records")}
    for fam, sub in families(scores):
        for variant in [m for m in method_order(sub["method"].unique()) if m != REFERENCE]:
            pairs = paired_blocks(sub, variant)
            if not len(pairs):
                continue
            t = tost_paired(pairs["d"].to_numpy(float), margin, alpha)
            w = holm.get(tuple(fam[c] for c in FAMILY) + (variant,), {})
            different = bool(w.get("different", False))
            rows.append({**fam, "method": variant, "reference": REFERENCE, "margin": margin, "alpha": alpha, **t,
                         "wilcoxon_p_holm": w.get("wilcoxon_p_holm", math.nan), "different": different,
                         "verdict": verdict(t["equivalent"], different)})
    return pd.DataFrame(rows)
