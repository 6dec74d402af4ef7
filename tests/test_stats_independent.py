"""The verdicts and p-values of `reprtools stats` against an independent computation from results.csv alone.

The study is synthetic (tests/stats_frames.py) and built so that all four verdicts occur: DoRA shifted by 0.8
points with little noise (different but within the 2-point margin), VeRA by 6 points (different), AdaLoRA
noisy (inconclusive), PiSSA unshifted (equivalent).  Everything below is recomputed from the CSV with pandas,
numpy and scipy's distributions, written out here: the one-way and Welch ANOVA F and p per cell, the blocks and
the exact paired Wilcoxon p against LoRA (scipy's permutation test over sign flips), Holm's step-down
adjustment, the paired TOST (two one-sided t-tests at +-margin) with its 90% interval, and the verdict from its
definition.  No reprtools code computes the expected values.
"""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from stats_frames import study_frame

from reprtools import results
from reprtools.stats.run import run_stats

MARGIN, ALPHA = 0.02, 0.05
NOISE = {"lora": 0.002, "dora": 0.002, "vera": 0.002, "adalora": 0.03, "pissa": 0.002}
SHIFTS = {"dora": 0.008, "vera": 0.06}
VARIANTS = ("dora", "vera", "adalora", "pissa")
TOL = 1e-10


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    path = tmp_path_factory.mktemp("indep")
    results.write_results(study_frame(seed=0, shifts=SHIFTS, noise=NOISE), path / "results.csv")
    run_stats(path, margin=MARGIN, alpha=ALPHA, n_boot=50, figures=False)
    raw = pd.read_csv(path / "results.csv")
    scores = raw[(raw["comparison"] == "evaluation") & raw["role"].isin(["transfer", "retention"])]
    read = {name: pd.read_csv(path / "stats" / f"{name}.csv") for name in ("cells", "paired", "equivalence")}
    return scores, read


def anova(groups):
    """Fisher's one-way ANOVA F and p, from the sums of squares."""
    allx = np.concatenate(groups)
    k, n = len(groups), len(allx)
    ssb = sum(len(g) * (g.mean() - allx.mean()) ** 2 for g in groups)
    ssw = sum(((g - g.mean()) ** 2).sum() for g in groups)
    f = (ssb / (k - 1)) / (ssw / (n - k))
    return f, st.f.sf(f, k - 1, n - k)


def welch(groups):
    """Welch's (1951) heteroscedastic one-way ANOVA F and p."""
    k = len(groups)
    n = np.array([len(g) for g in groups], float)
    w = n / np.array([g.var(ddof=1) for g in groups])
    m = np.array([g.mean() for g in groups])
    mw = (w * m).sum() / w.sum()
    tmp = (((1 - w / w.sum()) ** 2) / (n - 1)).sum()
    f = ((w * (m - mw) ** 2).sum() / (k - 1)) / (1 + 2 * (k - 2) / (k ** 2 - 1) * tmp)
    return f, st.f.sf(f, k - 1, (k ** 2 - 1) / (3 * tmp))


def signed_rank_p(d):
    """Two-sided p of Wilcoxon's signed-rank statistic (T+, mid-ranks of |d|), exact over all 2^n sign flips by
    scipy's permutation test: ratio-0 runs serve both target languages, so their transfer differences tie and
    scipy's exact signed-rank null (which assumes no ties) does not apply."""
    def t_plus(x, axis):
        return (st.rankdata(np.abs(x), axis=axis) * (x > 0)).sum(axis=axis)

    res = st.permutation_test((d,), t_plus, permutation_type="samples", n_resamples=np.inf, vectorized=True)
    return res.pvalue


def holm(p):
    """Holm's step-down adjustment: sorted p_(i) times (m - i), running maximum, capped at 1."""
    p = np.asarray(p, float)
    order = np.argsort(p)
    adj = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]).clip(max=1.0)
    out = np.empty_like(adj)
    out[order] = adj
    return out


def blocks(scores, role):
    """Blocks x methods for one role.  A block is (target language, ratio, seed); a ratio-0 run trains on
    English only and serves every target language, so its retention score (scored in English) is the same
    measurement in every language's block: those blocks are one block."""
    sub = scores[scores["role"] == role].copy()
    if role == "retention":
        sub["target_lang"] = np.where(sub["ratio"] == 0, "any", sub["target_lang"])
        sub = sub.drop_duplicates(["checkpoint", "target_lang", "lang"])
    return sub.pivot(index=["target_lang", "ratio", "seed"], columns="method", values="value")


def test_per_cell_anova_and_welch(study):
    scores, read = study
    cells = read["cells"].set_index(["role", "lang", "ratio"])
    checked = 0
    for (role, lang, ratio), sub in scores.groupby(["role", "target_lang", "ratio"]):
        groups = [g["value"].to_numpy(float) for _, g in sub.groupby("method")]
        assert len(groups) == 5 and all(len(g) == 3 for g in groups)
        row = cells.loc[(role, lang, ratio)]
        for (f, p), name in ((anova(groups), "anova"), (welch(groups), "welch")):
            assert row[f"{name}_F"] == pytest.approx(f, rel=TOL, abs=TOL)
            assert row[f"{name}_p"] == pytest.approx(p, rel=TOL, abs=TOL)
        checked += 1
    assert checked == len(cells) == 2 * 2 * 2  # roles x languages x ratios


@pytest.mark.parametrize("role, n_blocks", [("transfer", 12), ("retention", 9)])
def test_wilcoxon_holm_tost_and_verdicts(study, role, n_blocks):
    scores, read = study
    wide = blocks(scores, role)
    assert len(wide) == n_blocks
    paired = read["paired"].query("role == @role").set_index("method")
    eq = read["equivalence"].query("role == @role").set_index("method")
    assert set(paired.index) == set(eq.index) == set(VARIANTS)
    diffs = {m: (wide[m] - wide["lora"]).to_numpy(float) for m in VARIANTS}
    assert all(np.all(d != 0) for d in diffs.values())
    wilcoxon_p = np.array([signed_rank_p(diffs[m]) for m in VARIANTS])
    for m, p, p_holm in zip(VARIANTS, wilcoxon_p, holm(wilcoxon_p)):
        d = diffs[m]
        n, mean, se = len(d), d.mean(), d.std(ddof=1) / np.sqrt(len(d))
        p_tost = max(st.t.sf((mean + MARGIN) / se, n - 1), st.t.cdf((mean - MARGIN) / se, n - 1))
        half = st.t.ppf(1 - ALPHA, n - 1) * se
        equivalent, different = p_tost < ALPHA, p_holm <= ALPHA
        expected = {(True, True): "different but within the margin", (True, False): "equivalent",
                    (False, True): "different", (False, False): "inconclusive"}[(equivalent, different)]
        assert paired.loc[m, "n"] == eq.loc[m, "n"] == n
        assert paired.loc[m, "wilcoxon_p"] == pytest.approx(p, rel=TOL, abs=TOL)
        assert paired.loc[m, "wilcoxon_p_holm"] == pytest.approx(p_holm, rel=TOL, abs=TOL)
        assert eq.loc[m, "wilcoxon_p_holm"] == pytest.approx(p_holm, rel=TOL, abs=TOL)
        assert eq.loc[m, "mean_diff"] == pytest.approx(mean, rel=TOL, abs=TOL)
        assert eq.loc[m, "p_tost"] == pytest.approx(p_tost, rel=TOL, abs=TOL)
        assert eq.loc[m, "ci_low"] == pytest.approx(mean - half, rel=TOL, abs=TOL)
        assert eq.loc[m, "ci_high"] == pytest.approx(mean + half, rel=TOL, abs=TOL)
        assert eq.loc[m, "smallest_margin"] == pytest.approx(max(abs(mean - half), abs(mean + half)), rel=TOL)
        assert eq.loc[m, "verdict"] == expected, m


def test_the_study_shows_all_four_verdicts(study):
    """The check above is only worth something if every branch of the verdict is exercised."""
    _, read = study
    v = read["equivalence"].set_index(["role", "method"])["verdict"]
    assert v[("transfer", "pissa")] == "equivalent"
    assert v[("transfer", "vera")] == "different"
    assert v[("transfer", "dora")] == "different but within the margin"
    assert v[("transfer", "adalora")] == "inconclusive"
