"""Paired TOST and the verdicts: hand-computed one-sided t-tests, the interval-inclusion property, and the
known answers (identical methods with small noise are equivalent; a large shift is different)."""

import numpy as np
import pytest
from scipy import stats as ss
from stats_frames import study_frame

from reprtools.stats import equivalence, scores, tests
from reprtools.stats.equivalence import DIFFERENT, EQUIVALENT, INCONCLUSIVE, WITHIN_MARGIN


def test_verdicts_as_defined():
    assert equivalence.verdict(True, False) == EQUIVALENT
    assert equivalence.verdict(False, True) == DIFFERENT
    assert equivalence.verdict(True, True) == WITHIN_MARGIN
    assert equivalence.verdict(False, False) == INCONCLUSIVE


def test_tost_matches_two_hand_one_sided_t_tests_and_its_interval():
    d = np.random.default_rng(0).normal(0.004, 0.01, size=10)
    out = equivalence.tost_paired(d, margin=0.02, alpha=0.05)
    se = d.std(ddof=1) / np.sqrt(len(d))
    p_low = ss.t.sf((d.mean() + 0.02) / se, len(d) - 1)   # H0: mean <= -margin
    p_high = ss.t.cdf((d.mean() - 0.02) / se, len(d) - 1)  # H0: mean >= +margin
    assert out["p_tost"] == pytest.approx(max(p_low, p_high))
    half = ss.t.ppf(0.95, len(d) - 1) * se
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))


def test_smallest_margin_is_where_tost_starts_to_reject():
    d = np.random.default_rng(1).normal(0.01, 0.02, size=8)
    m = equivalence.tost_paired(d, 0.02)["smallest_margin"]
    assert equivalence.tost_paired(d, m * 1.001)["p_tost"] < 0.05
    assert equivalence.tost_paired(d, m * 0.999)["p_tost"] > 0.05


def test_tost_needs_two_differences_and_some_spread():
    assert not equivalence.tost_paired([0.01])["equivalent"]
    assert np.isnan(equivalence.tost_paired([0.01])["p_tost"])
    same = equivalence.tost_paired([0.0, 0.0, 0.0])  # e.g. every run answers the same constant label
    assert not same["equivalent"] and np.isnan(same["p_tost"]) and "no spread" in same["note"]
    assert equivalence.verdict(same["equivalent"], False) == equivalence.INCONCLUSIVE
    assert equivalence.tost_paired([0.0, 0.001, -0.001])["equivalent"]


def _table(**kw):
    sc = scores.cell_scores(study_frame(**kw))
    return equivalence.equivalence_table(sc, tests.paired_tests(sc), margin=0.02, alpha=0.05).set_index(
        ["role", "method"])


def test_identical_methods_with_small_noise_are_equivalent():
    table = _table(seed=4, noise=0.002)
    assert (table["verdict"] == EQUIVALENT).all()
    assert (table["smallest_margin"] < 0.02).all()


def test_a_large_shift_is_different_and_a_small_certain_one_within_the_margin():
    table = _table(seed=5, noise=0.002, shifts={"vera": 0.10, "dora": 0.008})
    assert table.loc[("transfer", "vera"), "verdict"] == DIFFERENT
    assert table.loc[("transfer", "dora"), "verdict"] == WITHIN_MARGIN
    assert table.loc[("retention", "vera"), "verdict"] == EQUIVALENT  # the shift is on transfer only


def test_three_seeds_of_one_block_cannot_be_different():
    """One language, one ratio, three seeds: three blocks, the Wilcoxon test cannot reject (min p 0.25)."""
    df = study_frame(seed=6, noise=0.002, shifts={"vera": 0.10})
    df = df[df["target_lang"].isin(["", "hi"]) & ((df["ratio"] == 0.5) | df["ratio"].isna())]
    sc = scores.cell_scores(df)
    table = equivalence.equivalence_table(sc, tests.paired_tests(sc)).set_index(["role", "method"])
    assert table.loc[("transfer", "vera"), "n"] == 3
    assert table.loc[("transfer", "vera"), "wilcoxon_p_holm"] >= 0.25
    assert table.loc[("transfer", "vera"), "verdict"] == INCONCLUSIVE
