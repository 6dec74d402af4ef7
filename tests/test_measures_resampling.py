"""Intervals from shared resampled sentences: index sets, interval formulas against textbook identities, coverage
of the true value at the same n, null behaviour, and the failures of issue 6.

The coverage tests run 1,000 replications of tiny problems.  To take seconds, each estimator is re-implemented
here as a float64 numpy function vectorised over replications (an independent reference, checked against the
library's measure on a few draws), the replicates use the library's index sets, and the intervals come from the
library's :func:`bootstrap_interval` / :func:`jackknife_interval`; a few replications also go end to end through
:meth:`Resampler.interval` with the library measure, which must give the same interval.  "Truth" is the mean of
the estimator over 20,000 independent draws of the same size from the same distribution (Monte-Carlo error about
0.7% of the estimator's standard deviation, negligible next to an interval's half-width of about 2 standard
deviations).
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
    cosine_shift,
    davies_bouldin,
    fisher_ratio,
    interval,
    jackknife_interval,
    probe_accuracy,
    retrieval_chance,
    retrieval_top1,
    scheme_for,
    shared_bootstrap,
    shared_jackknife,
    silhouette,
)

ALPHA = 0.05
REPS = 1000
TRUTH_DRAWS = 20000
LANGS = ("aa", "bb", "cc")


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


# ---------------------------------------------------------------------------------------------------------------
# Vectorised float64 references: arrays (m, n, ...) -> (m,) values, sentences on axis 1
# ---------------------------------------------------------------------------------------------------------------


def _centre(X):
    return X - X.mean(axis=1, keepdims=True)


def _sq_frob(A, B):
    return np.square(np.einsum("mnd,mne->mde", A, B)).sum(axis=(1, 2))


def v_cka_linear(X, Y):
    Xc, Yc = _centre(X), _centre(Y)
    return _sq_frob(Xc, Yc) / np.sqrt(_sq_frob(Xc, Xc) * _sq_frob(Yc, Yc))


def _zero_diag_gram(X):
    K = X @ X.transpose(0, 2, 1)  # uncentred: the unbiased HSIC is translation-invariant
    i = np.arange(X.shape[1])
    K[:, i, i] = 0.0
    return K


def _hsic1(K, L):
    """Song et al. (2012), Theorem 2, on zero-diagonal Gram matrices."""
    n = K.shape[1]
    k1, l1 = K.sum(axis=2), L.sum(axis=2)
    tr = (K * L).sum(axis=(1, 2))
    return (tr + k1.sum(1) * l1.sum(1) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k1 * l1).sum(1)) / (n * (n - 3))


def v_cka_debiased(X, Y):
    K, L = _zero_diag_gram(X), _zero_diag_gram(Y)
    return _hsic1(K, L) / np.sqrt(_hsic1(K, K) * _hsic1(L, L))


def _rbf_centred(Z):
    n = Z.shape[1]
    sq = np.square(Z).sum(axis=2)
    d2 = np.maximum(sq[:, :, None] + sq[:, None, :] - 2.0 * Z @ Z.transpose(0, 2, 1), 0.0)
    i = np.arange(n)
    d2[:, i, i] = 0.0
    iu = np.triu_indices(n, 1)
    sigma = np.median(np.sqrt(d2[:, iu[0], iu[1]]), axis=1)  # median over distinct pairs
    K = np.exp(-d2 / (2.0 * sigma[:, None, None] ** 2))
    return K - K.mean(axis=1, keepdims=True) - K.mean(axis=2, keepdims=True) + K.mean(axis=(1, 2), keepdims=True)


def v_cka_rbf(X, Y):
    K, L = _rbf_centred(X), _rbf_centred(Y)
    return (K * L).sum(axis=(1, 2)) / np.sqrt(np.square(K).sum(axis=(1, 2)) * np.square(L).sum(axis=(1, 2)))


def _unit(X):
    return X / np.linalg.norm(X, axis=-1, keepdims=True)


def v_mean_cosine(A, B):
    return (_unit(A) * _unit(B)).sum(axis=2).mean(axis=1)


def _cosines(A, B):
    return np.einsum("mid,mjd->mij", _unit(A), _unit(B))


def v_cosine_gap(A, B):
    S = _cosines(A, B)
    n = S.shape[1]
    matched = np.trace(S, axis1=1, axis2=2)
    return matched / n - (S.sum(axis=(1, 2)) - matched) / (n * (n - 1))


def v_retrieval(A, B):
    S = _cosines(A, B)
    i = np.arange(S.shape[1])
    own = S[:, i, i].copy()
    S[:, i, i] = -np.inf
    return (own > S.max(axis=2)).mean(axis=1)


def v_fisher(*langs):
    means = np.stack([x.mean(axis=1) for x in langs], axis=1)  # (m, L, d); equal sizes
    n = langs[0].shape[1]
    between = n * np.square(means - means.mean(axis=1, keepdims=True)).sum(axis=(1, 2))
    within = sum(np.square(_centre(x)).sum(axis=(1, 2)) for x in langs)
    return between / within


def v_silhouette(*langs):
    L, n = len(langs), langs[0].shape[1]
    U = _unit(np.concatenate(langs, axis=1))  # (m, L n, d), language-major
    D = np.clip(1.0 - U @ U.transpose(0, 2, 1), 0.0, 2.0)
    i = np.arange(L * n)
    D[:, i, i] = 0.0
    per_lang = D.reshape(D.shape[0], L * n, L, n).sum(axis=3)  # (m, rows, L): summed distance to each language
    own = np.repeat(np.arange(L), n)
    a = per_lang[:, i, own] / (n - 1)
    others = per_lang / n
    others[:, i, own] = np.inf
    b = others.min(axis=2)
    return ((b - a) / np.maximum(a, b)).mean(axis=1)


def v_davies_bouldin(*langs):
    cent = np.stack([x.mean(axis=1) for x in langs], axis=1)  # (m, L, d)
    scatter = np.stack([np.linalg.norm(x - x.mean(axis=1, keepdims=True), axis=2).mean(axis=1) for x in langs], 1)
    dist = np.linalg.norm(cent[:, :, None, :] - cent[:, None, :, :], axis=3)
    ratio = (scatter[:, :, None] + scatter[:, None, :]) / np.where(dist > 0, dist, np.nan)
    L = len(langs)
    ratio[:, np.arange(L), np.arange(L)] = -np.inf
    return ratio.max(axis=2).mean(axis=1)


def per_language(measure):
    """A library separability measure as ``f(X_aa, X_bb, X_cc)`` on parallel per-language arrays."""

    def f(*langs):
        return measure(dict(zip(LANGS, langs)))

    f.__name__ = measure.__name__
    return f


# ---------------------------------------------------------------------------------------------------------------
# Data: draw(rng, m, n) -> tuple of arrays (m, n, d); row i of every array is "sentence" i
# ---------------------------------------------------------------------------------------------------------------


def draw_related(rng, m, n, dx=10, dy=8):
    X = rng.normal(size=(m, n, dx))
    W = np.linspace(-1.0, 1.0, dx * dy).reshape(dx, dy)  # fixed map: the same distribution in every draw
    Y = np.tanh(X @ W) + 0.9 * rng.normal(size=(m, n, dy))
    return X, Y


def draw_shift(rng, m, n, d=12):
    base = 1.5 + rng.normal(size=(m, n, d))  # off-centre, so cosines are not about 0
    scale = rng.gamma(2.0, 0.5, size=(m, n, 1))  # sentences drift by different amounts: skewed terms
    return base, base + scale * rng.normal(size=(m, n, d))


def draw_translations(rng, m, n, d=10, noise=1.0):
    content = rng.normal(size=(m, n, d))
    common = np.full(d, 0.8)  # a direction every sentence shares (anisotropy)
    A = common + content + noise * rng.normal(size=(m, n, d))
    B = common + 0.5 + content + noise * rng.normal(size=(m, n, d))
    return A, B


def draw_languages(rng, m, n, d=5):
    content = rng.normal(size=(m, n, d))  # row i is the same sentence in every language
    offsets = np.array([[0.0] * d, [0.7] + [0.0] * (d - 1), [0.0, 0.9] + [0.0] * (d - 2)])
    return tuple(3.0 + offsets[k] + content + rng.normal(size=(m, n, d)) for k in range(len(LANGS)))


# (name, library measure, vectorised reference, data, n)
CASES = {
    "cka_linear_debiased": (cka_linear_debiased, v_cka_debiased, draw_related, 40),
    "cka_linear": (cka_linear, v_cka_linear, draw_related, 40),
    "cka_rbf": (cka_rbf, v_cka_rbf, draw_related, 32),
    "cosine_shift": (cosine_shift, v_mean_cosine, draw_shift, 30),
    "cosine_parallel": (cosine_parallel, v_mean_cosine, draw_translations, 30),
    "cosine_gap": (cosine_gap, v_cosine_gap, draw_translations, 30),
    "retrieval_top1": (retrieval_top1, v_retrieval, lambda r, m, n: draw_translations(r, m, n, noise=0.9), 40),
    "fisher_ratio": (per_language(fisher_ratio), v_fisher, draw_languages, 30),
    "silhouette": (per_language(silhouette), v_silhouette, draw_languages, 30),
    "davies_bouldin": (per_language(davies_bouldin), v_davies_bouldin, draw_languages, 30),
}


def _truth(estimator, draw, n, rng, chunk=2000):
    return float(np.mean(np.concatenate([estimator(*draw(rng, chunk, n)) for _ in range(TRUTH_DRAWS // chunk)])))


def _intervals(estimator, data, resampler, scheme):
    est = estimator(*data)
    reps = np.stack([estimator(*(a[:, idx] for a in data)) for idx in resampler.indices(scheme)], axis=1)
    if scheme == "bootstrap":
        return est, np.array([bootstrap_interval(e, r, ALPHA, n=resampler.n) for e, r in zip(est, reps)])
    return est, np.array([jackknife_interval(e, r, ALPHA) for e, r in zip(est, reps)])


def coverage(name, seed, reps=REPS, chunks=10):
    """Share of ``reps`` nominal 95% intervals that contain the estimator's mean at this n."""
    measure, estimator, draw, n = CASES[name]
    scheme = INTERVAL_SCHEME[name]
    rng = np.random.default_rng(seed)
    truth = _truth(estimator, draw, n, rng)
    hits = []
    for c in range(chunks):  # a fresh set of shared indices per chunk of replications
        resampler = Resampler(n, n_boot=200, groups=20, seed=seed + c)
        data = draw(rng, reps // chunks, n)
        est, bounds = _intervals(estimator, data, resampler, scheme)
        hits.append((bounds[:, 0] <= truth) & (truth <= bounds[:, 1]))
        if c == 0:  # end to end through the library: the same number and the same interval
            for r in range(2):
                got = resampler.interval(name, measure, *(a[r] for a in data))
                assert got == pytest.approx((est[r], *bounds[r]), abs=1e-9)
    return float(np.mean(np.concatenate(hits))), truth


@pytest.mark.parametrize("name", list(CASES))
def test_references_match_the_library(rng, name):
    measure, estimator, draw, n = CASES[name]
    data = draw(rng, 3, n)
    expected = [measure(*(a[r] for a in data)) for r in range(3)]
    np.testing.assert_allclose(estimator(*data), expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", list(CASES))
def test_coverage_of_nominal_95_intervals(name):
    cover, truth = coverage(name, seed=sum(map(ord, name)))
    assert cover >= 0.90, f"{name}: {cover:.3f} of intervals contain {truth:.4f}"


@pytest.mark.slow  # ~1-2 min: 200 replications x 21 cross-validated probe fits (see below)
def test_coverage_of_probe_accuracy():
    """probe_accuracy cannot be vectorised (5 logistic-regression fits per evaluation, ~12 ms), so it runs
    through the library: 200 replications, each the full data plus 20 jackknife replicates.  With 200
    replications the binomial standard error of the coverage is about 1.5%, so a true coverage of 95% sits
    three standard errors above the 90% threshold.  Folds follow the sentence ids (``groups``), as the probe
    calls it, so a replicate differs from the full data only by its deleted sentences."""
    from threadpoolctl import threadpool_limits

    n = 30

    def accuracy(ids, *langs):
        return probe_accuracy(dict(zip(LANGS, langs)), groups=ids)

    rng = np.random.default_rng(77)
    with threadpool_limits(limits=1):
        truth = np.mean([accuracy(np.arange(n), *(a[0] for a in draw_languages(rng, 1, n))) for _ in range(1000)])
        hits = []
        for r in range(200):
            data = [a[0] for a in draw_languages(rng, 1, n)]
            got = Resampler(n, n_boot=200, groups=20, seed=r).interval("probe_accuracy", accuracy, np.arange(n), *data)
            assert got.low <= got.value <= got.high
            hits.append(got.low <= truth <= got.high)
    assert np.mean(hits) >= 0.90, f"{np.mean(hits):.3f} of intervals contain {truth:.4f}"


# ---------------------------------------------------------------------------------------------------------------
# Null: shuffled translations
# ---------------------------------------------------------------------------------------------------------------


def shuffled_translation_layers(rng, n=60, d=24, layers=100):
    """``layers`` independent "layers", each its own toy encoder (a random residual map and an anisotropic common
    direction of random strength) run on 2n random sentences and their noisy translations; A holds the first n
    sentences, B the translations of the other n in random order, so that no row of B translates any row of A.

    Shuffling within the same n sentences (a derangement) would make B's row i the translation of A's row
    c(i): rows would no longer be independent sentences -- the assumption of every interval here, and true of
    real data -- and the gap's value would be -(cos_true - cos_other)/(n - 1) rather than 0, because the
    true translations would sit among the "non-parallel" pairs.  The layers are independent so that the share
    of layers whose interval contains 0 is a count of independent trials (100 rather than the 19 of a small
    model: with a per-layer coverage of 95%, 19 trials would show 2 or more misses in a quarter of all seeds)."""
    out = []
    for _ in range(layers):
        content = rng.normal(size=(2 * n, d))
        A, B = content + 0.5 * rng.normal(size=(2 * n, d)), content + 0.5 * rng.normal(size=(2 * n, d))
        W = rng.normal(size=(d, d)) / np.sqrt(d)
        common = rng.uniform(0.0, 8.0) * np.ones(d)
        A, B = A + np.tanh(A @ W) + common, B + np.tanh(B @ W) + common
        out.append((A[:n], B[n + rng.permutation(n)]))
    return out


def test_null_shuffled_translations_contain_zero_and_chance(rng):
    layers = shuffled_translation_layers(rng)
    n = layers[0][0].shape[0]
    resampler = Resampler(n, n_boot=200, groups=20, seed=5)
    contains = {"cka_linear_debiased": [], "cosine_gap": []}
    hits, raw = [], []
    for A, B in layers:
        for name, measure in (("cka_linear_debiased", cka_linear_debiased), ("cosine_gap", cosine_gap)):
            got = resampler.interval(name, measure, A, B)
            contains[name].append(got.low <= 0.0 <= got.high)
        hits.append(n * retrieval_top1(A, B))
        raw.append(cosine_parallel(A, B))
    assert np.median(raw) > 0.5  # raw cosines are high although nothing matches
    for name, inside in contains.items():
        assert np.mean(inside) >= 0.90, f"{name}: 0 inside {sum(inside)} of {len(inside)} layer intervals"
    assert abs(np.mean(hits) - n * retrieval_chance(n)) <= 1.0  # within one hit of chance


# ---------------------------------------------------------------------------------------------------------------
# The failures of issue 6
# ---------------------------------------------------------------------------------------------------------------


def test_issue6_independent_debiased_cka_interval_contains_zero(rng):
    X, Y = rng.normal(size=(100, 300)), rng.normal(size=(100, 300))
    resampler = Resampler(100, n_boot=200, groups=20, seed=0)
    got = resampler.interval("cka_linear_debiased", cka_linear_debiased, X, Y)
    assert abs(got.value) < 0.05
    assert got.low <= got.value <= got.high and got.low <= 0.0 <= got.high
    assert got.high - got.low < 0.2
    # what the old scheme did: a bootstrap of the same sentences, where duplicated rows look like agreement
    boot = resampler.replicates("bootstrap", cka_linear_debiased, X, Y)
    assert np.quantile(boot, 0.025) > 0.3  # the percentile interval would lie far above the value


def test_issue6_no_signal_probe_interval_contains_chance(rng):
    n, d = 40, 64
    langs = {lang: rng.normal(size=(n, d)) for lang in LANGS}  # no language signal at all

    def accuracy(ids, reps):
        return probe_accuracy(reps, groups=ids)

    resampler = Resampler(n, n_boot=20, groups=20, seed=1)
    got = resampler.interval("probe_accuracy", accuracy, np.arange(n), langs)
    assert got.low <= got.value <= got.high and got.low <= 1 / 3 <= got.high
    # the old scheme: bootstrap duplicates land in both folds, and the probe memorises them
    boot = resampler.replicates("bootstrap", lambda reps: probe_accuracy(reps), langs)
    assert boot.mean() > 0.5


def test_issue6_retrieval_interval_contains_the_value_at_n(rng):
    n = 40
    draw = CASES["retrieval_top1"][2]
    truth = _truth(v_retrieval, draw, n, rng)
    A, B = (a[0] for a in draw(rng, 1, n))
    resampler = Resampler(n, n_boot=200, groups=20, seed=2)
    got = resampler.interval("retrieval_top1", retrieval_top1, A, B)
    assert got.low <= got.value <= got.high and got.low <= truth <= got.high
    # a bootstrap resample holds ~63% distinct candidates and copies of sentences: with copies ignored as rivals
    # (the old rule) retrieval got easier; with copies as ties (today's rule) both copies miss; biased either way
    boot = resampler.replicates("bootstrap", retrieval_top1, A, B)
    assert abs(boot.mean() - truth) > 0.1


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
        "cosine_shift", "cosine_same_sentence", "cosine_parallel"}
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


def test_value_is_reused_and_n_boot_zero_turns_intervals_off(rng):
    X, Y = rng.normal(size=(40, 4)), rng.normal(size=(40, 4))
    calls = []

    def counted(A, B):
        calls.append(1)
        return cosine_gap(A, B)

    resampler = Resampler(40, n_boot=30, groups=8, seed=0)
    got = resampler.interval("cosine_gap", counted, X, Y, value=cosine_gap(X, Y))
    assert len(calls) == 8 and got.value == cosine_gap(X, Y)
    off = Resampler(40, n_boot=0)
    for name in ("cosine_gap", "cosine_parallel"):
        calls.clear()
        value, low, high = off.interval(name, counted, X, Y)
        assert value == cosine_gap(X, Y) and math.isnan(low) and math.isnan(high) and len(calls) == 1
    assert not off.enabled and resampler.enabled
    assert interval(cosine_gap, X, Y, n_boot=0)[0] == cosine_gap(X, Y)


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
    for measure in (cka_rbf, cosine_shift):
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

PAIRED = [cka_linear, cka_linear_debiased, cka_rbf, cosine_shift, cosine_parallel, cosine_nonparallel, cosine_gap,
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
