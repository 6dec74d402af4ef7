"""Do the intervals contain the truth?  Coverage of the value at the same n, shuffled translations, and the
failures of issue 6.

The coverage tests run 1,000 replications of tiny problems.  To take seconds, each estimator is re-implemented
here as a float64 numpy function vectorised over replications (an independent reference, checked against the
library's measure on a few draws), the replicates use the library's index sets, and the intervals come from the
library's :func:`bootstrap_interval` / :func:`jackknife_interval`; a few replications also go end to end through
:meth:`Resampler.interval` with the library measure, which must give the same interval.  "Truth" is the mean of
the estimator over 20,000 independent draws of the same size from the same distribution (Monte-Carlo error about
0.7% of the estimator's standard deviation, negligible next to an interval's half-width of about 2 standard
deviations).
"""

import numpy as np
import pytest

from reprtools.measures import (
    INTERVAL_SCHEME,
    Resampler,
    bootstrap_interval,
    cka_linear,
    cka_linear_debiased,
    cka_rbf,
    cosine_gap,
    cosine_parallel,
    cosine_same_sentence,
    davies_bouldin,
    fisher_ratio,
    jackknife_interval,
    probe_accuracy,
    retrieval_chance,
    retrieval_top1,
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
    "cosine_same_sentence": (cosine_same_sentence, v_mean_cosine, draw_shift, 30),
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
