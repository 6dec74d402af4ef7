"""Power notes against brute force, scipy's exact tests and simulation."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats as ss
from statsmodels.stats.power import FTestAnovaPower

from reprtools.stats import power


@pytest.mark.parametrize("n, expected", [(3, 0.25), (5, 0.0625), (6, 0.03125)])
def test_wilcoxon_smallest_p_is_scipys_exact_p_of_all_positive_differences(n, expected):
    assert power.min_p_wilcoxon(n) == expected
    assert ss.wilcoxon(np.arange(1.0, n + 1), method="exact").pvalue == pytest.approx(expected)


def test_power_note_flags_three_and_five_pairs_but_not_six():
    import pandas as pd

    eq = pd.DataFrame([{"model": "m", "task": "t", "format": "f", "metric": "a", "role": "transfer",
                        "method": "dora", "n": n, "sd_diff": 0.01} for n in (3, 5, 6)])
    out = power.power_table(pd.DataFrame(), pd.DataFrame(), eq, alpha=0.05)
    wil = out[out["test"] == "wilcoxon (exact)"].set_index("n")
    assert list(wil["reaches_alpha"]) == [False, False, True]


def _brute_min_p(stat, assignments):
    values = np.array([stat(a) for a in assignments])
    return np.mean(values >= values.max() - 1e-9)


def test_friedman_smallest_p_by_enumeration():
    k, n = 3, 3
    perms = list(itertools.permutations(range(1, k + 1)))

    def chi2(blocks):
        r = np.sum(blocks, axis=0)
        return 12 / (n * k * (k + 1)) * (r ** 2).sum() - 3 * n * (k + 1)

    assert power.min_p_friedman(k, n) == pytest.approx(_brute_min_p(chi2, itertools.product(perms, repeat=n)))


@pytest.mark.parametrize("sizes", [(2, 2, 2), (1, 2, 3), (3, 3)])
def test_kruskal_smallest_p_by_enumeration(sizes):
    total = sum(sizes)
    labels = [g for g, s in enumerate(sizes) for _ in range(s)]
    assignments = set(itertools.permutations(labels))

    def h(a):
        return ss.kruskal(*[[r + 1 for r, g in enumerate(a) if g == j] for j in range(len(sizes))]).statistic

    assert len(assignments) == math.factorial(total) / math.prod(math.factorial(s) for s in sizes)
    assert power.min_p_kruskal(sizes) == pytest.approx(_brute_min_p(h, assignments))


def test_mde_paired_has_the_asked_power_by_noncentral_t():
    n, sd = 9, 0.02
    mde = power.mde_paired(n, sd)
    nc, crit = mde / sd * math.sqrt(n), ss.t.ppf(0.975, n - 1)
    assert ss.nct.sf(crit, n - 1, nc) + ss.nct.cdf(-crit, n - 1, nc) == pytest.approx(0.8, abs=1e-4)


def test_mde_tost_gives_about_the_asked_power_in_simulation():
    n, sd = 12, 0.015
    margin = power.mde_tost(n, sd)
    d = np.random.default_rng(0).normal(0, sd, size=(20000, n))
    half = ss.t.ppf(0.95, n - 1) * d.std(axis=1, ddof=1) / math.sqrt(n)
    rejected = (np.abs(d.mean(axis=1)) + half < margin).mean()
    assert 0.75 < rejected < 0.88  # the formula is the usual approximation, slightly conservative


def test_mde_anova_matches_statsmodels_power():
    f, mde = power.mde_anova(5, 15, 0.01)
    assert FTestAnovaPower().power(effect_size=f, nobs=15, alpha=0.05, k_groups=5) == pytest.approx(0.8, abs=1e-6)
    assert mde == pytest.approx(f * 0.01)


def test_mde_coefficient_by_normal_power():
    se = 0.01
    mde = power.mde_coefficient(se)
    assert ss.norm.sf(1.959963984540054 - mde / se) + ss.norm.cdf(-1.959963984540054 - mde / se) == \
        pytest.approx(0.8, abs=1e-6)


def test_multiplicity_note_counts():
    note = power.multiplicity_note(20, 0.05, "per-cell ANOVAs")
    assert "20 per-cell ANOVAs" in note and "about 1 false" in note and "0.64" in note


def test_power_table_gives_kruskal_and_anova_rows_per_cell():
    import pandas as pd

    cells = pd.DataFrame([{"model": "m", "task": "t", "format": "f", "metric": "a", "role": "transfer",
                           "lang": "hi", "ratio": 0.5, "k": 2, "n": 4, "sizes": "2+2", "sd_within": 0.01}])
    out = power.power_table(cells, pd.DataFrame(), pd.DataFrame(), alpha=0.05).set_index("test")
    assert out.loc["kruskal (exact)", "min_p"] == pytest.approx(2 / 6)  # 2 of the C(4, 2) splits are extreme
    assert not out.loc["kruskal (exact)", "reaches_alpha"]
    assert out.loc["anova", "mde"] == pytest.approx(power.mde_anova(2, 4, 0.01)[1])
