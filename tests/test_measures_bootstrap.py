"""Percentile bootstrap: coverage of a smooth statistic, reproducibility, paired and stratified resampling."""

import math

import numpy as np
import pytest
import torch

from reprtools.errors import ReprtoolsError
from reprtools.measures import bootstrap_ci, cka_linear, cosine_base, fisher_ratio, silhouette


@pytest.fixture
def rng():
    return np.random.default_rng(5)


def column_mean(X):
    return float(np.asarray(X)[:, 0].mean())


def test_returns_value_on_full_data_and_brackets_it(rng):
    X = rng.normal(size=(200, 6))
    Y = X + 0.5 * rng.normal(size=X.shape)
    value, low, high = bootstrap_ci(cosine_base, X, Y, n_boot=200)
    assert value == cosine_base(X, Y)
    assert low < value < high
    assert high - low < 0.1


def test_width_matches_normal_theory_for_a_mean(rng):
    X = rng.normal(loc=2.0, scale=3.0, size=(400, 1))
    value, low, high = bootstrap_ci(column_mean, X, n_boot=2000, alpha=0.05)
    se = X[:, 0].std(ddof=1) / math.sqrt(len(X))
    assert value == pytest.approx(X[:, 0].mean())
    assert low == pytest.approx(value - 1.96 * se, abs=0.25 * se)
    assert high == pytest.approx(value + 1.96 * se, abs=0.25 * se)
    _, low90, high90 = bootstrap_ci(column_mean, X, n_boot=2000, alpha=0.10)
    assert low < low90 < high90 < high


def test_same_seed_same_result_other_seed_differs(rng):
    X = rng.normal(size=(50, 3))
    Y = X + rng.normal(size=X.shape)
    first = bootstrap_ci(cka_linear, X, Y, n_boot=100, seed=3)
    assert bootstrap_ci(cka_linear, X, Y, n_boot=100, seed=3) == first
    assert bootstrap_ci(cka_linear, X, Y, n_boot=100, seed=4) != first


def test_narrower_with_more_data(rng):
    def width(n):
        X = rng.normal(size=(n, 4))
        Y = X + rng.normal(size=X.shape)
        _, low, high = bootstrap_ci(cosine_base, X, Y, n_boot=300)
        return high - low

    assert width(1600) < 0.5 * width(100)


def test_rows_are_resampled_in_parallel(rng):
    X = rng.normal(size=(30, 2))
    seen = []

    def paired(A, B):
        np.testing.assert_array_equal(B, 2.0 * A)  # the same row indices were applied to both arrays
        seen.append(len(np.unique(A[:, 0])))
        return float(A.sum())

    bootstrap_ci(paired, X, 2.0 * X, n_boot=50)
    assert len(seen) == 51 and min(seen[1:]) < 30  # full data + 50 resamples, which contain duplicates


def test_stratified_keeps_every_class_at_its_size(rng):
    labels = np.array(["en"] * 40 + ["sw"] * 3 + ["hi"] * 7)
    X = rng.normal(size=(50, 4)) + (labels == "sw")[:, None] * 5.0
    seen = []

    def spy(A, labels):
        names, counts = np.unique(labels, return_counts=True)
        seen.append(dict(zip(names.tolist(), counts.tolist())))
        sw = A[labels == "sw"]
        assert (sw[:, 0] > 2.5).all()  # rows stayed with their own label
        return fisher_ratio(A, labels)

    value, low, high = bootstrap_ci(spy, X, labels=labels, n_boot=100)
    assert all(s == {"en": 40, "hi": 7, "sw": 3} for s in seen)
    assert low <= high


def test_separability_with_dict_input(rng):
    reps = {"en": rng.normal(size=(20, 3)) + [4.0, 0, 0], "hi": rng.normal(size=(20, 3)) - [4.0, 0, 0]}
    value, low, high = bootstrap_ci(silhouette, reps, n_boot=50)
    X = np.concatenate(list(reps.values()))
    assert value == pytest.approx(silhouette(X, np.repeat(["en", "hi"], 20)))
    assert 0.0 < low <= high <= 1.0


def test_n_boot_zero_returns_nan_interval(rng):
    X = rng.normal(size=(10, 2))
    value, low, high = bootstrap_ci(cosine_base, X, X + 1.0, n_boot=0)
    assert value == cosine_base(X, X + 1.0)
    assert math.isnan(low) and math.isnan(high)


def test_torch_inputs(rng):
    X = rng.normal(size=(40, 3))
    Y = X + rng.normal(size=X.shape)
    from_numpy = bootstrap_ci(cka_linear, X, Y, n_boot=50)
    from_torch = bootstrap_ci(cka_linear, torch.from_numpy(X), torch.from_numpy(Y), n_boot=50)
    assert from_torch == pytest.approx(from_numpy, abs=1e-12)


def test_degenerate_resamples_are_skipped_or_raise(rng):
    X = rng.normal(size=(20, 2))
    calls = {"n": 0}

    def sometimes(A):
        calls["n"] += 1
        if calls["n"] % 25 == 0:
            raise ReprtoolsError("degenerate resample")
        return float(A.mean())

    with pytest.warns(RuntimeWarning, match="skipped 4 of 100"):
        _, low, high = bootstrap_ci(sometimes, X, n_boot=100)
    assert low < high

    def always(A):
        if A.shape[0] and len(np.unique(A[:, 0])) < 20:
            raise ReprtoolsError("duplicates")
        return 0.0

    with pytest.raises(ReprtoolsError, match="degenerate"):
        bootstrap_ci(always, X, n_boot=20)

    def buggy(A):
        raise ValueError("a bug, not degeneracy")

    with pytest.raises(ValueError):
        bootstrap_ci(buggy, X, n_boot=5)


def test_bad_arguments_raise(rng):
    X = rng.normal(size=(10, 2))
    with pytest.raises(ReprtoolsError, match="rows"):
        bootstrap_ci(cosine_base, X, X[:9])
    with pytest.raises(ReprtoolsError, match="alpha"):
        bootstrap_ci(cosine_base, X, X, alpha=1.5)
    with pytest.raises(ReprtoolsError, match="n_boot"):
        bootstrap_ci(cosine_base, X, X, n_boot=-1)
    with pytest.raises(ReprtoolsError, match="one per row"):
        bootstrap_ci(fisher_ratio, X, labels=np.array([0, 1] * 4))
    with pytest.raises(ReprtoolsError, match="one number"):
        bootstrap_ci(lambda A: np.ones(3), X, n_boot=1)
