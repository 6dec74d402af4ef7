"""What the study's sample sizes allow: the smallest p-value an exact rank test can reach at its n (flagged
where it cannot reach alpha), the minimum detectable effect of the parametric analyses, and the multiplicity
notes.  The power calculations are statsmodels' (``TTestPower``, ``FTestAnovaPower``) except where noted.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

from reprtools.stats.scores import FAMILY

if TYPE_CHECKING:
    import pandas as pd

POWER = 0.8


def min_p_wilcoxon(n: int) -> float:
    """The smallest two-sided exact p of the signed-rank test with n non-zero differences: every difference
    of one sign is one of the 2^n equally likely sign patterns at each extreme, so 2 / 2^n (0.25 at n = 3,
    0.0625 at n = 5, 0.03125 at n = 6)."""
    return min(1.0, 2.0 ** (1 - n)) if n > 0 else 1.0


def min_p_friedman(k: int, n: int) -> float:
    """The smallest exact (permutation) p of Friedman's test with k treatments and n blocks, no ties: the
    statistic is largest when every block ranks the treatments the same way, which k! of the (k!)^n equally
    likely rankings do, so (k!)^(1 - n).  (scipy reports the chi-square approximation, which can go lower.)"""
    return float(math.factorial(k)) ** (1 - n) if n > 0 and k > 1 else 1.0


def _kruskal_h(sizes, ranks_by_group) -> float:
    total = sum(sizes)
    s = sum(sum(r) ** 2 / len(r) for r in ranks_by_group)
    return 12.0 / (total * (total + 1)) * s - 3 * (total + 1)


def min_p_kruskal(sizes) -> float:
    """The smallest exact (permutation) p of the Kruskal--Wallis test with these group sizes, no ties: H is
    largest when the groups take contiguous blocks of ranks; the p is the number of such orderings of the
    groups reaching the largest H over the N! / prod(n_i!) equally likely assignments of ranks."""
    sizes = [int(s) for s in sizes]
    hs = []
    for order in itertools.permutations(range(len(sizes))):
        start, groups = 1, []
        for g in order:
            groups.append(range(start, start + sizes[g]))
            start += sizes[g]
        hs.append(_kruskal_h(sizes, groups))
    best = max(hs)
    hits = sum(1 for h in hs if h >= best - 1e-9)
    assignments = math.factorial(sum(sizes)) / math.prod(math.factorial(s) for s in sizes)
    return min(1.0, hits / assignments)


def mde_paired(n: int, sd: float, alpha: float = 0.05, power: float = POWER) -> float:
    """The mean paired difference a two-sided paired t-test detects with ``power`` at n pairs, in the score's
    unit: Cohen's d_z from statsmodels' ``TTestPower`` times the SD of the differences."""
    from statsmodels.stats.power import TTestPower

    if n < 2 or not sd > 0:
        return math.nan
    return float(TTestPower().solve_power(nobs=n, alpha=alpha, power=power, alternative="two-sided")) * sd


def mde_tost(n: int, sd: float, alpha: float = 0.05, power: float = POWER) -> float:
    """The smallest margin a paired TOST establishes with ``power`` when the true difference is zero:
    (t_{1-alpha, n-1} + t_{1-(1-power)/2, n-1}) sd / sqrt(n) (Chow, Shao & Wang, *Sample Size Calculations in
    Clinical Research*, 2nd ed., sec. 3.2.3, solved for the margin; statsmodels has no TOST power)."""
    from scipy.stats import t

    if n < 2 or not sd > 0:
        return math.nan
    return float((t.ppf(1 - alpha, n - 1) + t.ppf(1 - (1 - power) / 2, n - 1)) * sd / math.sqrt(n))


def mde_anova(k: int, n: int, sd_within: float, alpha: float = 0.05, power: float = POWER) -> tuple[float, float]:
    """The effect a one-way ANOVA of k groups and n observations detects with ``power``: Cohen's f solving
    P(F'(k-1, n-k, lambda = f^2 n) > F_crit) = power (noncentral F; solved here because statsmodels'
    ``FTestAnovaPower.solve_power`` only searches f < 1, too small for a study's few seeds), and f x the
    within-group SD (the SD of the group means, in the score's unit)."""
    from scipy.optimize import brentq
    from scipy.stats import f as f_dist, ncf

    if k < 2 or n <= k:
        return math.nan, math.nan
    crit = f_dist.ppf(1 - alpha, k - 1, n - k)
    f = float(brentq(lambda es: ncf.sf(crit, k - 1, n - k, es * es * n) - power, 1e-6, 1e3))
    return f, f * sd_within if sd_within > 0 else math.nan


def mde_coefficient(se: float, alpha: float = 0.05, power: float = POWER) -> float:
    """The coefficient a two-sided Wald test detects with ``power``: (z_{1-alpha/2} + z_power) x SE."""
    from scipy.stats import norm

    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * se)


def power_table(cells: "pd.DataFrame", friedman: "pd.DataFrame", equivalence: "pd.DataFrame",
                alpha: float = 0.05) -> "pd.DataFrame":
    """One row per test and family (per cell for the ANOVAs): ``min_p`` (exact rank tests) with
    ``reaches_alpha``, or ``mde`` (score unit) and ``mde_standardised`` (Cohen's d_z / f) for the others."""
    import pandas as pd

    rows = []
    for r in equivalence.to_dict("records"):
        fam = {c: r[c] for c in FAMILY} | {"method": r["method"], "n": r["n"]}
        rows.append({**fam, "test": "wilcoxon (exact)", "min_p": min_p_wilcoxon(r["n"])})
        rows.append({**fam, "test": "paired t", "mde": mde_paired(r["n"], r["sd_diff"], alpha)})
        rows.append({**fam, "test": "TOST (margin)", "mde": mde_tost(r["n"], r["sd_diff"], alpha)})
    for r in friedman.to_dict("records"):
        rows.append({**{c: r[c] for c in FAMILY}, "n": r["blocks"], "test": "friedman (exact)",
                     "min_p": min_p_friedman(int(r["k"]), int(r["blocks"]))})
    for r in cells.to_dict("records"):
        cell = {c: r[c] for c in FAMILY} | {"lang": r["lang"], "ratio": r["ratio"], "n": r["n"]}
        f, mde = mde_anova(int(r["k"]), int(r["n"]), r["sd_within"], alpha)
        rows.append({**cell, "test": "anova", "mde": mde, "mde_standardised": f})
        rows.append({**cell, "test": "kruskal (exact)", "min_p": min_p_kruskal(str(r["sizes"]).split("+"))})
    out = pd.DataFrame(rows)
    if "min_p" in out:
        out["reaches_alpha"] = out["min_p"].le(alpha).where(out["min_p"].notna())
    return out


def multiplicity_note(n_tests: int, alpha: float, what: str) -> str:
    """One line: how many tests at alpha, how many false rejections to expect if every null were true, and
    the chance of at least one (independent tests)."""
    fwer = 1 - (1 - alpha) ** n_tests
    return (f"{n_tests} {what} at alpha = {alpha:g}, uncorrected: about {n_tests * alpha:.2g} false rejection(s) "
            f"expected if every null is true, P(at least one) = {fwer:.2f} for independent tests.")
