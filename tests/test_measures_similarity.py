"""Cosine and retrieval measures against hand-computed values and naive numpy loops."""

import math

import numpy as np
import pytest
import torch

from reprtools.errors import ReprtoolsError
from reprtools.measures import cosine_base, cosine_parallel, retrieval_top1


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def ref_mean_cosine(A, B):
    total = 0.0
    for a, b in zip(np.asarray(A, np.float64), np.asarray(B, np.float64)):
        total += sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
    return total / len(A)


def ref_retrieval_argmax(A, B):
    """argmax-based top-1 with explicit loops (valid on data without ties)."""
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    hits = 0
    for i, a in enumerate(A):
        sims = [a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) for b in B]
        hits += int(np.argmax(sims) == i)
    return hits / len(A)


COSINES = [cosine_base, cosine_parallel]


@pytest.mark.parametrize("measure", COSINES)
def test_cosine_known_vectors(measure):
    X = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    Y = np.array([[2.0, 0.0], [1.0, 1.0], [-3.0, -4.0]])
    assert measure(X, Y) == pytest.approx((1.0 + 1.0 / math.sqrt(2.0) - 1.0) / 3.0, abs=1e-15)


@pytest.mark.parametrize("measure", COSINES)
def test_cosine_matches_loop_reference_and_torch(rng, measure):
    X, Y = rng.normal(size=(30, 6)), rng.normal(size=(30, 6)) + 0.5
    expected = ref_mean_cosine(X, Y)
    assert measure(X, Y) == pytest.approx(expected, abs=1e-12)
    assert measure(torch.from_numpy(X), torch.from_numpy(Y)) == pytest.approx(expected, abs=1e-12)
    assert measure(X.astype(np.float32), Y.astype(np.float32), dtype=torch.float32) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("measure", COSINES)
def test_cosine_properties(rng, measure):
    X, Y = rng.normal(size=(25, 5)), rng.normal(size=(25, 5))
    base = measure(X, Y)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    scales = rng.uniform(0.1, 10, size=(25, 1))
    assert measure(X, X) == pytest.approx(1.0, abs=1e-12)
    assert measure(X, -X) == pytest.approx(-1.0, abs=1e-12)
    assert measure(X @ q, Y @ q) == pytest.approx(base, abs=1e-12)
    assert measure(X * scales, Y) == pytest.approx(base, abs=1e-12)
    assert measure(Y, X) == pytest.approx(base, abs=1e-12)
    assert abs(measure(X + 3.0, Y + 3.0) - base) > 1e-2  # not translation-invariant


@pytest.mark.parametrize("measure", COSINES + [retrieval_top1])
def test_cosine_degenerate_inputs_raise(rng, measure):
    X, Y = rng.normal(size=(10, 4)), rng.normal(size=(10, 4))
    Z = Y.copy()
    Z[6] = 0.0
    with pytest.raises(ReprtoolsError, match="row 6 is a zero vector"):
        measure(X, Z)
    with pytest.raises(ReprtoolsError, match="same width"):
        measure(X, Y[:, :3])
    with pytest.raises(ReprtoolsError, match="rows"):
        measure(X, Y[:9])
    Z[6] = np.nan
    with pytest.raises(ReprtoolsError, match="NaN"):
        measure(X, Z)


def test_retrieval_identical_and_noisy_sets(rng):
    X = rng.normal(size=(200, 16))
    assert retrieval_top1(X, X) == 1.0
    assert retrieval_top1(X, 3 * X + 0.01 * rng.normal(size=X.shape)) == 1.0


def test_retrieval_matches_loop_reference(rng):
    A = rng.normal(size=(80, 8))
    B = A + 1.2 * rng.normal(size=A.shape)  # partly retrievable
    got = retrieval_top1(A, B)
    assert got == pytest.approx(ref_retrieval_argmax(A, B), abs=1e-15)
    assert 0.1 < got < 0.95
    assert retrieval_top1(torch.from_numpy(A), torch.from_numpy(B)) == got


def test_retrieval_shuffled_and_random_are_near_chance(rng):
    A = rng.normal(size=(500, 16))
    assert retrieval_top1(A, rng.normal(size=(500, 16))) <= 0.02  # chance is 1/500
    perm = rng.permutation(500)
    B = A[perm] + 0.01 * rng.normal(size=A.shape)
    expected = np.mean(perm == np.arange(500))  # only fixed points of the shuffle are still aligned
    assert retrieval_top1(A, B) == pytest.approx(expected, abs=1e-15)


def test_retrieval_is_permutation_equivariant(rng):
    A = rng.normal(size=(60, 5))
    B = A + rng.normal(size=A.shape)
    perm = rng.permutation(60)
    assert retrieval_top1(A[perm], B[perm]) == retrieval_top1(A, B)


def test_retrieval_tie_rules():
    # a_0 is equally close to b_0 and to the different vector b_1: a tie with a rival counts as a miss
    A = np.array([[1.0, 0.0], [1.0, -1.0]])
    B = np.array([[1.0, 1.0], [1.0, -1.0]])
    assert retrieval_top1(A, B) == 0.5
    # copies of the same sentence pair (as from bootstrap resampling) never count against each other
    X = np.random.default_rng(0).normal(size=(20, 4))
    Y = X + 0.01
    idx = np.array([0, 0, 0, 3, 5, 5, 7, 8, 9, 9])
    assert retrieval_top1(X[idx], Y[idx]) == 1.0
    # but a collapsed representation (all rows of B equal) retrieves nothing
    assert retrieval_top1(X, np.ones((20, 4))) == 0.0


def test_results_are_python_floats(rng):
    X = torch.from_numpy(rng.normal(size=(10, 3)))
    for f in (cosine_base, cosine_parallel, retrieval_top1):
        assert type(f(X, X)) is float
