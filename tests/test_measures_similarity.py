"""Cosine and retrieval measures against hand-computed values and naive numpy loops."""

import math

import numpy as np
import pytest
import torch

from reprtools.errors import ReprtoolsError
from reprtools.measures import (
    cosine_gap,
    cosine_nonparallel,
    cosine_parallel,
    cosine_same_sentence,
    retrieval_chance,
    retrieval_top1,
)


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


COSINES = [cosine_same_sentence, cosine_parallel]


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


@pytest.mark.parametrize("measure", COSINES + [cosine_nonparallel, cosine_gap, retrieval_top1])
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
    # a sentence pair that occurs twice ties with its copy: both miss (intervals never duplicate rows)
    X = np.random.default_rng(0).normal(size=(20, 4))
    Y = X + 0.01
    idx = np.array([0, 0, 3, 5, 7, 8, 9])
    assert retrieval_top1(X[idx], Y[idx]) == pytest.approx(5 / 7, abs=1e-15)
    # a collapsed representation (all rows of B equal) retrieves nothing
    assert retrieval_top1(X, np.ones((20, 4))) == 0.0


def test_retrieval_chance():
    assert retrieval_chance(1) == 1.0 and retrieval_chance(40) == 0.025
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ReprtoolsError, match="positive"):
            retrieval_chance(bad)


def ref_nonparallel(A, B):
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    n = len(A)
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                total += A[i] @ B[j] / (np.linalg.norm(A[i]) * np.linalg.norm(B[j]))
    return total / (n * (n - 1))


def test_nonparallel_and_gap_match_loop_reference(rng):
    A = rng.normal(size=(25, 6)) + 1.0
    B = A + rng.normal(size=A.shape)
    expected = ref_nonparallel(A, B)
    assert cosine_nonparallel(A, B) == pytest.approx(expected, abs=1e-13)
    assert cosine_gap(A, B) == pytest.approx(ref_mean_cosine(A, B) - expected, abs=1e-13)
    At, Bt = torch.from_numpy(A), torch.from_numpy(B)
    assert cosine_gap(At, Bt) == pytest.approx(cosine_gap(A, B), abs=1e-13)
    assert cosine_gap(At.float(), Bt.float(), dtype=torch.float32) == pytest.approx(cosine_gap(A, B), abs=1e-5)
    assert cosine_nonparallel(A[:2], B[:2]) == pytest.approx(ref_nonparallel(A[:2], B[:2]), abs=1e-14)


def test_gap_removes_the_common_direction(rng):
    # anisotropy: every vector shares a large common component, so raw cosines are high for any pair
    common = 6.0 * rng.normal(size=(1, 16))
    A = common + rng.normal(size=(400, 16))
    unrelated = common + rng.normal(size=(400, 16))
    assert cosine_parallel(A, unrelated) > 0.9
    assert cosine_nonparallel(A, unrelated) > 0.9
    assert abs(cosine_gap(A, unrelated)) < 0.01
    aligned = A + 0.5 * rng.normal(size=A.shape)
    assert cosine_gap(aligned, A) > 0.02
    assert cosine_gap(aligned, A) == pytest.approx(cosine_parallel(aligned, A) - cosine_nonparallel(aligned, A))


def test_nonparallel_and_gap_properties(rng):
    A, B = rng.normal(size=(30, 5)), rng.normal(size=(30, 5))
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    perm = rng.permutation(30)
    scales = rng.uniform(0.1, 10, size=(30, 1))
    for measure in (cosine_nonparallel, cosine_gap):
        base = measure(A, B)
        assert measure(A @ q, B @ q) == pytest.approx(base, abs=1e-12)
        assert measure(A[perm], B[perm]) == pytest.approx(base, abs=1e-12)
        assert measure(A * scales, B) == pytest.approx(base, abs=1e-12)
        assert measure(B, A) == pytest.approx(base, abs=1e-12)
    # identical sets: parallel cosine 1, so the gap is 1 minus the mean cosine of distinct sentences
    assert cosine_gap(A, A) == pytest.approx(1.0 - cosine_nonparallel(A, A), abs=1e-12)
    assert -1.0 <= cosine_nonparallel(A, -A) <= 1.0


def test_results_are_python_floats(rng):
    X = torch.from_numpy(rng.normal(size=(10, 3)))
    for f in (cosine_same_sentence, cosine_parallel, cosine_nonparallel, cosine_gap, retrieval_top1):
        assert type(f(X, X)) is float
