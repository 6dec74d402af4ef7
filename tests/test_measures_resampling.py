"""Intervals from shared resampled sentences: index sets, interval formulas against textbook identities, the
Resampler API, and every interval bracketing its own estimate.  Coverage of the truth: test_measures_coverage.py.
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from reprtools.errors import ReprtoolsError
from reprtools.measures import (
    INTERVAL_SCHEME,
    Interval,
    Resampler,
    bootstrap_interval,
    cka_linear,
    cka_linear_debiased,
    cka_linear_matrix,
    cka_rbf,
    cosine_gap,
    cosine_nonparallel,
    cosine_parallel,
    cosine_same_sentence,
    davies_bouldin,
    fisher_ratio,
    interval,
    jackknife_interval,
    retrieval_top1,
    scheme_for,
    shared_bootstrap,
    shared_jackknife,
    silhouette,
)

LANGS = ("aa", "bb", "cc")


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


def per_language(measure):
    """A separability measure as ``f(X_aa, X_bb, X_cc)`` on parallel per-language arrays."""

    def f(*langs):
        return measure(dict(zip(LANGS, langs)))

    f.__name__ = measure.__name__
    return f


# ---------------------------------------------------------------------------------------------------------------
# Index sets
# ---------------------------------------------------------------------------------------------------------------


def test_shared_bootstrap_indices():
    idx = shared_bootstrap(30, 50, seed=3)
    assert idx.shape == (50, 30) and idx.dtype == np.int64
    assert idx.min() >= 0 and idx.max() < 30
    assert max(len(np.unique(row)) for row in idx) < 30  # with replacement: duplicates occur
    np.testing.assert_array_equal(idx, shared_bootstrap(30, 50, seed=3))
    assert not np.array_equal(idx, shared_bootstrap(30, 50, seed=4))
    assert shared_bootstrap(30, 0).shape == (0, 30)


@pytest.mark.parametrize("n,groups", [(100, 20), (47, 20), (7, 20), (2, 2)])
def test_shared_jackknife_deletes_a_partition_of_groups(n, groups):
    keep = shared_jackknife(n, groups, seed=1)
    g = min(groups, n)
    assert len(keep) == g
    deleted = [np.setdiff1d(np.arange(n), k) for k in keep]
    for k in keep:
        assert k.dtype == np.int64 and np.all(np.diff(k) > 0)  # sorted, never a duplicate
    np.testing.assert_array_equal(np.sort(np.concatenate(deleted)), np.arange(n))  # each row deleted once
    sizes = [len(d) for d in deleted]
    assert max(sizes) - min(sizes) <= 1
    assert all(np.array_equal(a, b) for a, b in zip(keep, shared_jackknife(n, groups, seed=1)))


def test_shared_jackknife_groups_are_random():
    deleted = [np.setdiff1d(np.arange(100), k) for k in shared_jackknife(100, 20, seed=0)]
    assert not all(np.all(np.diff(d) == 1) for d in deleted)  # not contiguous blocks
    other = [np.setdiff1d(np.arange(100), k) for k in shared_jackknife(100, 20, seed=1)]
    assert sorted(map(tuple, deleted)) != sorted(map(tuple, other))


# ---------------------------------------------------------------------------------------------------------------
# Interval formulas against textbook identities
# ---------------------------------------------------------------------------------------------------------------


def test_delete_one_jackknife_of_a_mean_is_the_student_t_interval(rng):
    x = rng.gamma(2.0, size=25)
    reps = np.array([np.delete(x, i).mean() for i in range(25)])
    expected = stats.t.interval(0.95, 24, loc=x.mean(), scale=stats.sem(x))
    assert jackknife_interval(x.mean(), reps) == pytest.approx(expected, abs=1e-12)


def test_grouped_jackknife_of_a_mean_uses_the_spread_of_group_means(rng):
    x = rng.normal(size=60)
    keep = shared_jackknife(60, 12, seed=0)
    group_means = np.array([np.setdiff1d(np.arange(60), k) for k in keep]).astype(int)
    group_means = x[group_means].mean(axis=1)  # 12 groups of 5
    reps = np.array([x[k].mean() for k in keep])
    half = stats.t.ppf(0.975, 11) * group_means.std(ddof=1) / math.sqrt(12)
    low, high = jackknife_interval(x.mean(), reps)
    assert (low, high) == pytest.approx((x.mean() - half, x.mean() + half), abs=1e-12)
    low90, high90 = jackknife_interval(x.mean(), reps, alpha=0.10)
    assert low < low90 < x.mean() < high90 < high


def test_bootstrap_interval_percentiles_expansion_and_widening():
    reps = np.arange(1.0, 102.0)  # 1..101: the q-quantile is 1 + 100 q
    assert bootstrap_interval(50.0, reps, 0.10) == pytest.approx((6.0, 96.0))
    alpha_30 = 2 * stats.norm.cdf(-math.sqrt(30 / 29) * stats.t.ppf(0.975, 29))
    assert alpha_30 == pytest.approx(0.0375, abs=5e-4)  # Hesterberg (2015): wider than 0.05 at n = 30
    assert bootstrap_interval(50.0, reps, n=30) == pytest.approx((1 + 50 * alpha_30, 101 - 50 * alpha_30))
    assert bootstrap_interval(5.0, [1.0, 2.0, 3.0]) == pytest.approx((1.05, 5.0))  # widened to the estimate
    low, high = bootstrap_interval(np.array([0.0, 200.0]), np.stack([reps, reps], axis=1))
    np.testing.assert_allclose(low, [0.0, 3.5])
    np.testing.assert_allclose(high, [98.5, 200.0])


def test_interval_formula_errors():
    with pytest.raises(ReprtoolsError, match="alpha"):
        jackknife_interval(0.0, [1.0, 2.0], alpha=0.0)
    with pytest.raises(ReprtoolsError, match="at least 2"):
        jackknife_interval(0.0, [1.0])
    with pytest.raises(ReprtoolsError, match="at least one"):
        bootstrap_interval(0.0, [])
    with pytest.raises(ReprtoolsError, match="n="):
        bootstrap_interval(0.0, [1.0], n=1)


# ---------------------------------------------------------------------------------------------------------------
# Resampler and interval()
# ---------------------------------------------------------------------------------------------------------------


def test_registry_bootstraps_only_plain_means():
    assert {k for k, v in INTERVAL_SCHEME.items() if v == "bootstrap"} == {
        "cosine_same_sentence", "cosine_same_sentence", "cosine_parallel"}
    assert set(INTERVAL_SCHEME.values()) == {"bootstrap", "jackknife"}
    assert scheme_for("cosine_gap") == "jackknife" and scheme_for("cosine_parallel") == "bootstrap"
    assert scheme_for("bootstrap") == "bootstrap" and scheme_for("some_new_measure") == "jackknife"
    with pytest.raises(ReprtoolsError, match="measure name"):
        scheme_for(cosine_gap)


def test_every_array_gets_the_same_rows(rng):
    n = 30
    X = rng.normal(size=(n, 3))
    seen = {"bootstrap": [], "jackknife": []}

    def spy(ids, A, pair, reps, t):
        np.testing.assert_array_equal(A, X[ids])
        np.testing.assert_array_equal(pair[1], 2 * A)  # list items, dict values and tensors: the same rows
        np.testing.assert_array_equal(reps["b"], A + 1)
        np.testing.assert_array_equal(t.numpy(), A)
        return float(A.sum())

    resampler = Resampler(n, n_boot=25, groups=10, seed=0)
    for scheme in seen:
        resampler.interval(scheme, lambda *a, s=scheme: seen[s].append(a[0].copy()) or spy(*a), np.arange(n), X,
                           [X, 2 * X], {"a": X, "b": X + 1}, torch.from_numpy(X))
    assert len(seen["bootstrap"]) == 26 and len(seen["jackknife"]) == 11  # full data + replicates
    for got, idx in zip(seen["bootstrap"][1:], resampler.bootstrap):
        np.testing.assert_array_equal(got, idx)
    for got, idx in zip(seen["jackknife"][1:], resampler.jackknife):
        np.testing.assert_array_equal(got, idx)


def test_value_is_reused_and_n_boot_zero_turns_the_bootstrap_off(rng):
    X, Y = rng.normal(size=(40, 4)), rng.normal(size=(40, 4))
    calls = []

    def counted(A, B):
        calls.append(1)
        return cosine_gap(A, B)

    resampler = Resampler(40, n_boot=30, groups=8, seed=0)
    got = resampler.interval("cosine_gap", counted, X, Y, value=cosine_gap(X, Y))
    assert len(calls) == 8 and got.value == cosine_gap(X, Y)
    no_boot = Resampler(40, n_boot=0, groups=8, seed=0)
    calls.clear()
    value, low, high = no_boot.interval("cosine_parallel", counted, X, Y)
    assert value == cosine_gap(X, Y) and math.isnan(low) and math.isnan(high) and len(calls) == 1
    assert no_boot.interval("cosine_gap", cosine_gap, X, Y) == resampler.interval("cosine_gap", cosine_gap, X, Y)
    assert resampler.scheme("cosine_parallel") == "bootstrap" and resampler.scheme("dissimilarity") == "jackknife"
    assert math.isnan(interval(cosine_same_sentence, X, Y, n_boot=0).low)
    assert not math.isnan(interval(cosine_gap, X, Y, n_boot=0).low)


def test_array_valued_measure_gives_elementwise_intervals(rng):
    layers = [rng.normal(size=(30, 5)) for _ in range(3)]
    layers[1] += layers[0]
    resampler = Resampler(30, n_boot=10, groups=10, seed=0)
    got = resampler.interval("jackknife", lambda *ls: cka_linear_matrix(list(ls), debiased=True), *layers)
    assert isinstance(got, Interval) and got.value.shape == got.low.shape == got.high.shape == (3, 3)
    single = resampler.interval("cka_linear_debiased", cka_linear_debiased, layers[0], layers[1])
    assert (got.value[0, 1], got.low[0, 1], got.high[0, 1]) == pytest.approx(tuple(single), abs=1e-12)


def test_interval_convenience_matches_resampler(rng):
    X = rng.normal(size=(50, 6))
    Y = X + rng.normal(size=X.shape)
    for measure in (cka_rbf, cosine_same_sentence):
        expected = Resampler(50, n_boot=40, groups=10, seed=3).interval(measure.__name__, measure, X, Y)
        assert interval(measure, X, Y, n_boot=40, groups=10, seed=3) == expected  # scheme from the name
        assert interval(measure, torch.from_numpy(X), torch.from_numpy(Y), n_boot=40, groups=10, seed=3) == (
            pytest.approx(tuple(expected), abs=1e-12))
    langs = {lang: rng.normal(size=(20, 4)) + k for k, lang in enumerate(LANGS)}
    got = interval(silhouette, langs, groups=10)
    assert got.value == pytest.approx(silhouette(langs)) and got.low <= got.value <= got.high


def test_degenerate_replicates_are_skipped_or_raise(rng):
    X = rng.normal(size=(40, 2))
    resampler = Resampler(40, n_boot=100, groups=20, seed=0)
    calls = {"n": 0}

    def sometimes(A):
        calls["n"] += 1
        if calls["n"] % 25 == 0:
            raise ReprtoolsError("degenerate replicate")
        return float(A.mean())

    with pytest.warns(RuntimeWarning, match="skipped 4 of 100 degenerate bootstrap"):
        _, low, high = resampler.interval("bootstrap", sometimes, X)
    assert low < high
    calls["n"] = 0

    def nan_twice(A):
        calls["n"] += 1
        return math.nan if calls["n"] in (3, 9) else float(A.mean())

    with pytest.warns(RuntimeWarning, match="skipped 2 of 20"):
        value, low, high = resampler.interval("jackknife", nan_twice, X)
    assert low < value < high

    def always(A):
        if len(A) < 40:
            raise ReprtoolsError("too few rows")
        return 0.0

    with pytest.raises(ReprtoolsError, match="20 jackknife replicates were degenerate|3 of 20 jackknife"):
        resampler.interval("jackknife", always, X)

    def buggy(A):
        if len(A) < 40:
            raise ValueError("a bug, not degeneracy")
        return 0.0

    with pytest.raises(ValueError):
        resampler.interval("jackknife", buggy, X)


def test_bad_arguments_raise(rng):
    X = rng.normal(size=(10, 2))
    resampler = Resampler(10, n_boot=5, groups=5)
    with pytest.raises(ReprtoolsError, match="9 rows but the resampler was made for 10"):
        resampler.interval("cosine_gap", cosine_gap, X, X[:9])
    with pytest.raises(ReprtoolsError, match="str"):
        resampler.interval("jackknife", lambda a: 0.0, "text")
    with pytest.raises(ReprtoolsError, match="alpha"):
        resampler.interval("cosine_gap", cosine_gap, X, X, alpha=1.5)
    with pytest.raises(ReprtoolsError, match="needs numbers"):
        resampler.interval("jackknife", lambda a: "x", X)
    for kwargs, match in (({"n_boot": -1}, "n_boot"), ({"groups": 1}, "groups"), ({"max_fail_frac": 2}, "max_fail")):
        with pytest.raises(ReprtoolsError, match=match):
            Resampler(10, **kwargs)
    with pytest.raises(ReprtoolsError, match="n="):
        Resampler(1)
    with pytest.raises(ReprtoolsError, match="at least one array"):
        interval(cosine_gap)
    with pytest.raises(ReprtoolsError, match="array 0 is a float"):
        interval(cosine_gap, [1.0, 2.0])


# ---------------------------------------------------------------------------------------------------------------
# Every interval brackets its own estimate
# ---------------------------------------------------------------------------------------------------------------

PAIRED = [cka_linear, cka_linear_debiased, cka_rbf, cosine_same_sentence, cosine_parallel, cosine_nonparallel, cosine_gap,
          retrieval_top1]
SEPARABILITY = [per_language(m) for m in (fisher_ratio, silhouette, davies_bouldin)]


def test_every_interval_brackets_its_estimate():
    rng = np.random.default_rng(99)
    for trial in range(12):
        n, d = int(rng.integers(8, 40)), int(rng.integers(2, 30))
        X = rng.normal(size=(n, d)) * rng.uniform(0.1, 10) + rng.normal(size=d) * rng.uniform(0, 3)
        Y = X * rng.uniform(-1, 1) + rng.normal(size=(n, d))
        langs = [X, Y, rng.normal(size=(n, d)) + rng.uniform(0, 2)]
        # tiny n_boot makes a percentile interval that misses the estimate possible: it must be widened
        resampler = Resampler(n, n_boot=int(rng.integers(1, 4)), groups=int(rng.integers(2, 25)), seed=trial)
        for measure in PAIRED:
            for scheme in ("bootstrap", "jackknife"):
                value, low, high = resampler.interval(scheme, measure, X, Y)
                assert low <= value <= high, (measure.__name__, scheme, trial)
        for measure in SEPARABILITY:
            value, low, high = resampler.interval("jackknife", measure, *langs)
            assert low <= value <= high, (measure.__name__, trial)
