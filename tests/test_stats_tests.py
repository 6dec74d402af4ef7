"""reprtools.stats.tests against independent references: brute force, scipy's own exact routes and documented
examples, hand formulas."""

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as ss
from stats_frames import study_frame

from reprtools.stats import scores, tests


def test_signed_rank_null_is_the_subset_sum_distribution():
    for n in (1, 3, 6):
        brute = np.zeros(n * (n + 1) // 2 + 1)
        for signs in itertools.product((0, 1), repeat=n):
            brute[sum(r for r, s in zip(range(1, n + 1), signs) if s)] += 1
        np.testing.assert_allclose(tests.signed_rank_null(n), brute / 2 ** n)


def test_hodges_lehmann_estimate_is_median_of_walsh_averages():
    d = np.random.default_rng(0).normal(size=9)
    walsh = [(d[i] + d[j]) / 2 for i in range(9) for j in range(i, 9)]
    assert tests.hodges_lehmann(d)[0] == pytest.approx(np.median(walsh))


@pytest.mark.parametrize("n", [7, 10, 14])
def test_hodges_lehmann_interval_inverts_the_exact_wilcoxon_test(n):
    """Tukey's interval is the set of shifts the exact two-sided signed-rank test does not reject: just inside
    an end scipy's exact p exceeds 1 - level, just outside it does not."""
    d = np.random.default_rng(n).normal(0.3, 1.0, size=n)
    _, lo, hi, cover = tests.hodges_lehmann(d, 0.95)
    assert cover >= 0.95
    eps = 1e-7
    for inside, outside in ((lo + eps, lo - eps), (hi - eps, hi + eps)):
        assert ss.wilcoxon(d - inside, method="exact").pvalue > 0.05
        assert ss.wilcoxon(d - outside, method="exact").pvalue <= 0.05


def test_hodges_lehmann_at_n3_covers_what_it_can():
    _, lo, hi, cover = tests.hodges_lehmann([0.1, 0.2, 0.4], 0.95)
    assert (lo, hi) == (0.1, 0.4) and cover == pytest.approx(0.75)


def test_rank_biserial_hand_cases():
    assert tests.rank_biserial([1, -2, 3, 4]) == pytest.approx((8 - 2) / 10)
    assert tests.rank_biserial([1, 2, -3]) == pytest.approx(0.0)
    assert tests.rank_biserial([0, 0.5, 1.0]) == 1.0  # zeros dropped
    assert np.isnan(tests.rank_biserial([0, 0]))


def test_signed_rank_test_matches_scipy_exact_without_ties_and_permutation_with_ties():
    rng = np.random.default_rng(3)
    for n in (3, 6, 11):
        d = rng.normal(size=n)
        t, p = tests.signed_rank_test(d)
        ref = ss.wilcoxon(d, method="exact")
        assert p == pytest.approx(ref.pvalue)
        assert t == pytest.approx(n * (n + 1) / 2 - ref.statistic) or t == pytest.approx(ref.statistic)
    tied = np.array([0.1, 0.1, -0.2, 0.3, 0.3, 0.3, -0.1, 0.0])
    assert tests.signed_rank_test(tied)[1] == pytest.approx(ss.wilcoxon(tied, method=ss.PermutationMethod()).pvalue)
    assert tests.signed_rank_test(rng.normal(size=30))[1] > 0  # beyond the exact range: scipy's approximation


def _cell_frame(groups):
    rows = [{"model": "m", "task": "t", "format": "f", "metric": "accuracy", "role": "transfer", "lang": "hi",
             "eval_lang": "hi", "ratio": 0.5, "seed": i, "method": method, "run": f"{method}{i}", "value": v}
            for method, values in groups.items() for i, v in enumerate(values)]
    return pd.DataFrame(rows)


def test_cell_tests_reproduce_scipy_documented_anova_and_hand_welch():
    # scipy.stats.f_oneway's documented example (mussel shell measurements): F = 7.1210, p = 0.000281
    groups = {"lora": [0.0571, 0.0813, 0.0831, 0.0976, 0.0817, 0.0859, 0.0735, 0.0659, 0.0923, 0.0836],
              "dora": [0.0873, 0.0662, 0.0672, 0.0819, 0.0749, 0.0649, 0.0835, 0.0725],
              "vera": [0.0974, 0.1352, 0.0817, 0.1016, 0.0968, 0.1064, 0.105],
              "adalora": [0.1033, 0.0915, 0.0781, 0.0685, 0.0677, 0.0697, 0.0764, 0.0689],
              "pissa": [0.0703, 0.1026, 0.0956, 0.0973, 0.1039, 0.1045]}
    row = tests.cell_tests(_cell_frame(groups)).iloc[0]
    assert row["anova_F"] == pytest.approx(7.121019471642447) and row["anova_p"] == pytest.approx(0.0002812242314534544)
    g = [np.array(v) for v in groups.values()]
    n, m, v = (np.array([len(x) for x in g]), np.array([x.mean() for x in g]), np.array([x.var(ddof=1) for x in g]))
    w = n / v
    grand = (w * m).sum() / w.sum()
    k = len(g)
    lam = ((1 - w / w.sum()) ** 2 / (n - 1)).sum()
    welch = ((w * (m - grand) ** 2).sum() / (k - 1)) / (1 + 2 * (k - 2) / (k ** 2 - 1) * lam)  # Welch (1951)
    assert row["welch_F"] == pytest.approx(welch)
    assert row["welch_p"] == pytest.approx(ss.f.sf(welch, k - 1, (k ** 2 - 1) / (3 * lam)))


def test_kruskal_in_cells_matches_hand_h():
    groups = {"lora": [0.1, 0.3, 0.5], "dora": [0.2, 0.4, 0.6], "vera": [0.7, 0.8, 0.9]}
    row = tests.cell_tests(_cell_frame(groups)).iloc[0]
    ranks = {"lora": [1, 3, 5], "dora": [2, 4, 6], "vera": [7, 8, 9]}
    h = 12 / (9 * 10) * sum(sum(r) ** 2 / 3 for r in ranks.values()) - 3 * 10
    assert row["kruskal_H"] == pytest.approx(h) and row["kruskal_p"] == pytest.approx(ss.chi2.sf(h, 2))


def test_friedman_matches_hand_formula_and_drops_incomplete_blocks():
    df = study_frame(seed=1)
    df = df[~((df["method"] == "pissa") & (df["checkpoint"].str.endswith("hi-r0.5-s2")))]
    sc = scores.cell_scores(df)
    row = tests.friedman_tests(sc).set_index("role").loc["transfer"]
    assert row["incomplete_blocks"] == 1 and row["blocks"] == 11
    wide = scores.block_table(sc[sc["role"] == "transfer"]).dropna()
    n, k = wide.shape
    r = wide.rank(axis=1).sum()
    chi2 = 12 / (n * k * (k + 1)) * (r ** 2).sum() - 3 * n * (k + 1)
    assert row["chi2"] == pytest.approx(chi2) and row["p"] == pytest.approx(ss.chi2.sf(chi2, k - 1))


def test_ratio_zero_blocks_of_one_run_count_once():
    sc = scores.cell_scores(study_frame())
    ret = sc[sc["role"] == "retention"]
    # 2 languages x 3 seeds at ratio 0.5, but the ratio-0 runs' English scores are one measurement per seed
    assert len(scores.paired_blocks(ret, "dora")) == 6 + 3
    assert len(scores.paired_blocks(sc[sc["role"] == "transfer"], "dora")) == 12


def test_paired_tests_holm_is_holm_not_holm_sidak():
    sc = scores.cell_scores(study_frame(seed=2, shifts={"vera": 0.01, "dora": 0.006, "pissa": 0.004}))
    out = tests.paired_tests(sc)
    fam = out[out["role"] == "transfer"]
    p = fam["wilcoxon_p"].to_numpy()
    order = np.argsort(p)
    holm = np.empty_like(p)
    holm[order] = np.minimum(1, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
    np.testing.assert_allclose(fam["wilcoxon_p_holm"], holm)
    d = scores.paired_blocks(sc[sc["role"] == "transfer"], "vera")["d"]
    vera = fam.set_index("method").loc["vera"]
    assert vera["n"] == 12 and vera["mean_diff"] == pytest.approx(d.mean())
    assert vera["wilcoxon_p"] == pytest.approx(ss.wilcoxon(d, method=ss.PermutationMethod()).pvalue)
