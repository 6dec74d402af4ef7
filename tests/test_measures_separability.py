"""Separability measures: naive references, separated vs identical distributions, invariances, degenerate input."""

import math

import numpy as np
import pytest
import torch

from reprtools.errors import ReprtoolsError
from reprtools.measures import (
    davies_bouldin,
    fisher_ratio,
    from_language_dict,
    probe_accuracy,
    silhouette,
)

ALL = [silhouette, probe_accuracy, davies_bouldin, fisher_ratio]


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def blobs(rng, langs=("en", "hi", "sw"), n=40, d=16, spread=10.0):
    """Languages as Gaussian blobs around distinct directions spread * e_k."""
    return {lang: spread * np.eye(d)[k] + rng.normal(size=(n, d)) for k, lang in enumerate(langs)}


def same_distribution(rng, n=300, d=8, n_langs=3):
    X = rng.normal(size=(n, d))
    labels = np.array(["en", "hi", "sw"][:n_langs] * (n // n_langs))
    return X, labels


# --- independent references ----------------------------------------------------------------------------------


def ref_fisher(X, labels):
    X = np.asarray(X, np.float64)
    mu = X.mean(axis=0)
    d = X.shape[1]
    S_B, S_W = np.zeros((d, d)), np.zeros((d, d))
    for c in sorted(set(labels.tolist())):
        rows = X[labels == c]
        mu_c = rows.mean(axis=0)
        S_B += len(rows) * np.outer(mu_c - mu, mu_c - mu)
        for x in rows:
            S_W += np.outer(x - mu_c, x - mu_c)
    return np.trace(S_B) / np.trace(S_W)


def ref_silhouette_cosine(X, labels):
    X = np.asarray(X, np.float64)
    n = len(X)
    dist = np.array([[1.0 - X[i] @ X[j] / (np.linalg.norm(X[i]) * np.linalg.norm(X[j])) for j in range(n)] for i in range(n)])
    s = []
    for i in range(n):
        own = [j for j in range(n) if labels[j] == labels[i] and j != i]
        a = np.mean(dist[i, own])
        b = min(np.mean(dist[i, labels == c]) for c in set(labels.tolist()) if c != labels[i])
        s.append((b - a) / max(a, b))
    return float(np.mean(s))


def ref_davies_bouldin(X, labels):
    X = np.asarray(X, np.float64)
    classes = sorted(set(labels.tolist()))
    cent = {c: X[labels == c].mean(axis=0) for c in classes}
    scat = {c: np.mean(np.linalg.norm(X[labels == c] - cent[c], axis=1)) for c in classes}
    worst = [max((scat[c] + scat[k]) / np.linalg.norm(cent[c] - cent[k]) for k in classes if k != c) for c in classes]
    return float(np.mean(worst))


# --- tests ----------------------------------------------------------------------------------------------------


def test_fisher_matches_naive_loop(rng):
    X = rng.normal(size=(45, 6)) + np.repeat(rng.normal(size=(3, 6)), 15, axis=0)
    labels = np.repeat(np.array(["a", "b", "c"]), 15)
    assert fisher_ratio(X, labels) == pytest.approx(ref_fisher(X, labels), rel=1e-12)
    unequal = np.array(["a"] * 5 + ["b"] * 30 + ["c"] * 10)
    assert fisher_ratio(X, unequal) == pytest.approx(ref_fisher(X, unequal), rel=1e-12)


def test_silhouette_and_db_match_naive_references(rng):
    X = rng.normal(size=(18, 4)) + np.repeat(rng.normal(size=(3, 4)), 6, axis=0)
    labels = np.repeat(np.array([0, 1, 2]), 6)
    assert silhouette(X, labels) == pytest.approx(ref_silhouette_cosine(X, labels), abs=1e-10)
    assert davies_bouldin(X, labels) == pytest.approx(ref_davies_bouldin(X, labels), abs=1e-10)


def test_well_separated_blobs(rng):
    reps = blobs(rng, spread=20.0)
    assert silhouette(reps) > 0.7
    assert probe_accuracy(reps) == pytest.approx(1.0)
    assert davies_bouldin(reps) < 0.5  # lower = more separable
    assert fisher_ratio(reps) > 10.0


def test_identical_distributions(rng):
    X, labels = same_distribution(rng)
    assert abs(silhouette(X, labels)) < 0.1
    assert probe_accuracy(X, labels) < 0.45  # chance = 1/3
    assert davies_bouldin(X, labels) > 5.0
    # expected about (C - 1) / (N - C) = 2 / 297
    assert fisher_ratio(X, labels) < 0.03


def test_blobs_more_separable_than_noise(rng):
    reps = blobs(rng, spread=2.0)
    X, labels = same_distribution(rng, n=120, d=16)
    assert silhouette(reps) > silhouette(X, labels)
    assert probe_accuracy(reps) > probe_accuracy(X, labels)
    assert davies_bouldin(reps) < davies_bouldin(X, labels)
    assert fisher_ratio(reps) > fisher_ratio(X, labels)


def test_dict_form_equals_array_form(rng):
    reps = blobs(rng, spread=1.5)
    X = np.concatenate(list(reps.values()))
    labels = np.repeat(list(reps), 40)
    for measure in ALL:
        assert measure(reps) == pytest.approx(measure(X, labels), abs=1e-12)
    Xs, ls = from_language_dict(reps)
    np.testing.assert_array_equal(Xs, X)
    assert ls.tolist() == labels.tolist()
    Xt, lt = from_language_dict({k: torch.from_numpy(v) for k, v in reps.items()})
    assert isinstance(Xt, torch.Tensor) and lt.tolist() == labels.tolist()
    np.testing.assert_array_equal(Xt.numpy(), X)


def test_invariances(rng):
    reps = blobs(rng, spread=1.5, d=6)
    X = np.concatenate(list(reps.values()))
    labels = np.repeat(np.array(["en", "hi", "sw"]), 40)
    renamed = np.array([{"en": "zz", "hi": "aa", "sw": "mm"}[x] for x in labels])
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    shift = rng.normal(size=(1, 6)) * 4
    for measure in (fisher_ratio, davies_bouldin):
        base = measure(X, labels)
        assert measure(X @ q, labels) == pytest.approx(base, rel=1e-9)
        assert measure(2.5 * X + shift, labels) == pytest.approx(base, rel=1e-9)
        assert measure(X, renamed) == pytest.approx(base, rel=1e-12)
        assert abs(measure(X * np.array([30, 1, 1, 1, 1, 1.0]), labels) - base) > 1e-3 * abs(base)
    base = silhouette(X, labels)
    assert silhouette(X @ q, labels) == pytest.approx(base, abs=1e-10)
    assert silhouette(X * rng.uniform(0.5, 3, size=(120, 1)), labels) == pytest.approx(base, abs=1e-10)
    assert silhouette(X, renamed) == pytest.approx(base, abs=1e-12)
    acc = probe_accuracy(X, labels)
    assert probe_accuracy(X * np.array([30, 0.1, 1, 2, 5, 1.0]) + shift, labels) == pytest.approx(acc)


def test_probe_is_seeded_and_chance_on_shuffled_labels(rng):
    reps = blobs(rng, spread=1.0)
    X, labels = from_language_dict(reps)
    assert probe_accuracy(X, labels, seed=3) == probe_accuracy(X, labels, seed=3)
    shuffled = rng.permutation(labels)
    assert probe_accuracy(X, shuffled) < 0.55


def test_torch_input(rng):
    reps = blobs(rng, spread=1.5)
    X, labels = from_language_dict(reps)
    Xt = torch.from_numpy(X)
    for measure in ALL:
        assert measure(Xt, labels) == pytest.approx(measure(X, labels), abs=1e-12)
    assert fisher_ratio(Xt.float(), torch.as_tensor(np.unique(labels, return_inverse=True)[1])) == pytest.approx(
        fisher_ratio(X, labels), rel=1e-5
    )


@pytest.mark.parametrize("measure", ALL)
def test_degenerate_inputs_raise(rng, measure):
    X = rng.normal(size=(20, 3))
    with pytest.raises(ReprtoolsError, match="one language"):
        measure(X, np.array(["en"] * 20))
    with pytest.raises(ReprtoolsError, match="at least 2 sentences"):
        measure(X, np.array(["en"] * 19 + ["hi"]))
    with pytest.raises(ReprtoolsError, match="one label per row"):
        measure(X, np.array(["en", "hi"] * 9))
    with pytest.raises(ReprtoolsError, match="labels are required"):
        measure(X)
    bad = X.copy()
    bad[2, 2] = np.nan
    with pytest.raises(ReprtoolsError, match="NaN"):
        measure(bad, np.array(["en", "hi"] * 10))
    with pytest.raises(ReprtoolsError, match="one language"):
        measure({"en": X})


def test_probe_needs_n_splits_per_language(rng):
    X = rng.normal(size=(13, 3))
    labels = np.array(["en"] * 10 + ["hi"] * 3)
    with pytest.raises(ReprtoolsError, match="n_splits<=3"):
        probe_accuracy(X, labels)
    assert 0.0 <= probe_accuracy(X, labels, n_splits=3) <= 1.0
    with pytest.raises(ReprtoolsError, match="n_splits"):
        probe_accuracy(X, labels, n_splits=1)


def test_sentence_folds_balanced_stable_and_seeded():
    from reprtools.measures.separability import _sentence_folds

    ids = np.arange(103, dtype=np.uint64)
    folds = _sentence_folds(ids, 5, seed=0)
    for b in range(20):  # every full block of 5 consecutive ids meets every fold once
        assert sorted(folds[5 * b : 5 * b + 5].tolist()) == [0, 1, 2, 3, 4]
    assert abs(np.bincount(folds).max() - np.bincount(folds).min()) <= 1
    keep = np.delete(ids, [0, 7, 8, 50, 102])  # deleting sentences leaves every other sentence in its fold
    sub = _sentence_folds(keep, 5, seed=0)
    same = {(a, b) for a, b in zip(sub.tolist(), folds[keep.astype(int)].tolist())}
    assert len(same) == 5 and len({a for a, _ in same}) == 5  # a relabelling at most, never a new split
    assert not np.array_equal(_sentence_folds(ids, 5, seed=1), folds)


def ref_grouped_probe(X, codes, folds):
    """Pooled accuracy of the same pipeline, fold by fold with an explicit loop."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    correct = 0
    for f in np.unique(folds):
        test = folds == f
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X[~test], codes[~test])
        correct += int((model.predict(X[test]) == codes[test]).sum())
    return correct / len(codes)


def test_probe_with_sentence_groups(rng):
    from reprtools.measures.separability import _sentence_folds

    n = 30
    content = rng.normal(size=(n, 6))
    reps = {lang: content + rng.normal(size=(n, 6)) + 0.8 * np.eye(6)[k] for k, lang in enumerate("abc")}
    X, labels = from_language_dict(reps)
    codes = np.unique(labels, return_inverse=True)[1]
    ids = np.tile(np.arange(n), 3)
    folds = _sentence_folds(ids.astype(np.uint64), 5, seed=2)
    for i in range(n):  # the translations of a sentence share its fold
        assert len(set(folds[ids == i].tolist())) == 1
    expected = ref_grouped_probe(X, codes, folds)
    assert probe_accuracy(X, labels, groups=ids, seed=2) == pytest.approx(expected, abs=1e-12)
    assert probe_accuracy(reps, groups=np.arange(n), seed=2) == pytest.approx(expected, abs=1e-12)  # (n,) tiled
    assert probe_accuracy(reps, groups=torch.arange(n), seed=2) == pytest.approx(expected, abs=1e-12)


def test_probe_groups_errors(rng):
    reps = blobs(rng, n=10, d=4)
    for bad, match in ((np.arange(10.0), "integer"), (np.arange(7), "one sentence id"), (-np.arange(10), "negative"),
                       (np.zeros((10, 3), dtype=int), "1-D")):
        with pytest.raises(ReprtoolsError, match=match):
            probe_accuracy(reps, groups=bad)
    X = np.concatenate([reps["en"], reps["hi"]])
    labels = np.repeat(["en", "hi"], 10)
    with pytest.raises(ReprtoolsError, match="lacks a language"):  # non-parallel ids: each fold one language
        probe_accuracy(X, labels, groups=np.repeat([0, 1], 10), n_splits=2)


def test_collapsed_languages(rng):
    X = np.repeat(np.array([[1.0, 0.0], [0.0, 1.0]]), 5, axis=0)
    labels = np.repeat(["en", "hi"], 5)
    with pytest.raises(ReprtoolsError, match="within-language scatter is 0"):
        fisher_ratio(X, labels)
    # coinciding centroids: scikit-learn would report DB = 0 ("perfectly separable")
    Y = np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1]] * 2)
    with pytest.raises(ReprtoolsError, match="centroids coincide"):
        davies_bouldin(Y, np.repeat(["en", "hi"], 4))
    assert math.isfinite(fisher_ratio(Y, np.repeat(["en", "hi"], 4)))
    Z = rng.normal(size=(10, 2))
    Z[3] = 0
    with pytest.raises(ReprtoolsError, match="zero vector"):
        silhouette(Z, labels)
