"""CKA measures against independent float64 numpy references and their mathematical properties."""

import itertools

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist, squareform

from reprtools.errors import ReprtoolsError
from reprtools.measures import cka_linear, cka_linear_debiased, cka_linear_matrix, cka_rbf

# ---------------------------------------------------------------------------------------------------------------
# Independent references: explicit centering matrix, explicit loops, brute-force U-statistic.
# ---------------------------------------------------------------------------------------------------------------


def ref_hsic(K, L):
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(K @ H @ L @ H) / (n - 1) ** 2


def ref_cka_from_grams(K, L):
    return ref_hsic(K, L) / np.sqrt(ref_hsic(K, K) * ref_hsic(L, L))


def ref_cka_linear(X, Y):
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    return ref_cka_from_grams(X @ X.T, Y @ Y.T)  # uncentred Grams: H does the centring


def ref_hsic_unbiased_loops(K, L):
    """Song et al. (2012), Theorem 2, term by term with explicit loops."""
    n = K.shape[0]
    Kt, Lt = K.copy(), L.copy()
    for i in range(n):
        Kt[i, i] = 0.0
        Lt[i, i] = 0.0
    tr = sum(Kt[i, j] * Lt[j, i] for i in range(n) for j in range(n))
    sum_k = sum(Kt[i, j] for i in range(n) for j in range(n))
    sum_l = sum(Lt[i, j] for i in range(n) for j in range(n))
    k_rows = [sum(Kt[i, j] for j in range(n)) for i in range(n)]
    l_rows = [sum(Lt[i, j] for j in range(n)) for i in range(n)]
    one_kl_one = sum(k_rows[j] * l_rows[j] for j in range(n))  # 1^T K L 1 = (K1) . (L1) for symmetric K
    return (tr + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * one_kl_one) / (n * (n - 3))


def ref_hsic_ustatistic(K, L):
    """HSIC as the U-statistic over ordered 4-tuples of distinct indices (Song et al. 2012, Eq. 4)."""
    n = K.shape[0]
    total, count = 0.0, 0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += K[i, j] * L[i, j] + K[i, j] * L[q, r] - 2.0 * K[i, j] * L[i, q]
        count += 1
    return total / count


def ref_cka_debiased(X, Y, hsic=ref_hsic_unbiased_loops):
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    K, L = X @ X.T, Y @ Y.T
    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


def ref_cka_rbf(X, Y, frac=1.0):
    def gram(Z):
        d = pdist(np.asarray(Z, np.float64))  # the n(n-1)/2 distinct pairs
        sigma = frac * np.median(d)
        return np.exp(-squareform(d) ** 2 / (2 * sigma**2))

    return ref_cka_from_grams(gram(X), gram(Y))


def related(rng, n, dx, dy, noise=1.0):
    X = rng.normal(size=(n, dx))
    Y = np.tanh(X @ rng.normal(size=(dx, dy))) + noise * rng.normal(size=(n, dy))
    return X, Y


def orthogonal(rng, d):
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


LINEAR = [cka_linear, cka_linear_debiased]
ALL = [cka_linear, cka_linear_debiased, cka_rbf]

# ---------------------------------------------------------------------------------------------------------------
# Against the references
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,dx,dy", [(60, 5, 8), (12, 30, 25), (40, 40, 3)])
@pytest.mark.parametrize("method", ["auto", "feature", "gram"])
def test_cka_linear_matches_reference(rng, n, dx, dy, method):
    X, Y = related(rng, n, dx, dy)
    assert cka_linear(X, Y, method=method) == pytest.approx(ref_cka_linear(X, Y), abs=1e-12)


@pytest.mark.parametrize("n,dx,dy", [(14, 3, 5), (10, 20, 12)])
@pytest.mark.parametrize("method", ["auto", "feature", "gram"])
def test_cka_debiased_matches_song_formula_loops(rng, n, dx, dy, method):
    X, Y = related(rng, n, dx, dy)
    assert cka_linear_debiased(X, Y, method=method) == pytest.approx(ref_cka_debiased(X, Y), abs=1e-12)


def test_cka_debiased_matches_brute_force_ustatistic(rng):
    X, Y = related(rng, 7, 3, 4, noise=0.5)
    X = X + 3.0  # uncentred data: the U-statistic is translation-invariant, so no centring in the reference
    expected = ref_cka_debiased(X, Y, hsic=ref_hsic_ustatistic)
    assert cka_linear_debiased(X, Y) == pytest.approx(expected, abs=1e-12)
    assert ref_cka_debiased(X, Y) == pytest.approx(expected, abs=1e-12)  # the two references agree too


@pytest.mark.parametrize("frac", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("n", [31, 32])  # 465 pairs (odd) and 496 pairs (even: median of two values)
def test_cka_rbf_matches_reference(rng, n, frac):
    X, Y = related(rng, n, 4, 6)
    assert cka_rbf(X, Y, sigma_frac=frac) == pytest.approx(ref_cka_rbf(X, Y, frac), abs=1e-12)


def test_cka_rbf_depends_on_bandwidth(rng):
    X, Y = related(rng, 50, 4, 6)
    assert abs(cka_rbf(X, Y, 0.2) - cka_rbf(X, Y, 2.0)) > 1e-3


def test_cka_rbf_wide_bandwidth_tends_to_linear(rng):
    X, Y = related(rng, 50, 4, 6)
    assert cka_rbf(X, Y, sigma_frac=300.0) == pytest.approx(cka_linear(X, Y), abs=1e-4)
    assert abs(cka_rbf(X, Y, sigma_frac=0.5) - cka_linear(X, Y)) > 1e-3


# ---------------------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("measure", ALL)
@pytest.mark.parametrize("shape", [(40, 6), (8, 30)])
def test_self_similarity_is_one(rng, measure, shape):
    X = rng.normal(size=shape)
    assert measure(X, X) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("measure", ALL)
def test_symmetric(rng, measure):
    X, Y = related(rng, 30, 5, 9)
    assert measure(X, Y) == pytest.approx(measure(Y, X), abs=1e-12)


@pytest.mark.parametrize("measure", ALL)
@pytest.mark.parametrize("shape", [(50, 6), (10, 25)])
def test_invariant_to_orthogonal_scaling_and_translation(rng, measure, shape):
    n, d = shape
    X, Y = related(rng, n, d, 7)
    base = measure(X, Y)
    Q = orthogonal(rng, d)
    assert measure(X @ Q, Y) == pytest.approx(base, abs=1e-10)
    assert measure(X, 3.7 * Y) == pytest.approx(base, abs=1e-10)
    assert measure(X + rng.normal(size=(1, d)) * 5, Y) == pytest.approx(base, abs=1e-10)


@pytest.mark.parametrize("measure", ALL)
def test_not_invariant_to_anisotropic_scaling(rng, measure):
    # guards the invariance tests against a measure that ignores its input
    X, Y = related(rng, 50, 6, 7)
    scale = np.array([20.0, 1, 1, 1, 1, 0.05])
    assert abs(measure(X * scale, Y) - measure(X, Y)) > 1e-3


def test_values_in_unit_interval_and_ordered(rng):
    X = rng.normal(size=(200, 5))
    close = X @ orthogonal(rng, 5) + 0.1 * rng.normal(size=(200, 5))
    far = rng.normal(size=(200, 5))
    assert 0.95 < cka_linear(X, close) <= 1.0 + 1e-12
    assert 0.0 <= cka_linear(X, far) < 0.2


def test_debiased_removes_bias_for_independent_wide_data(rng):
    X, Y = rng.normal(size=(30, 60)), rng.normal(size=(30, 60))
    biased, debiased = cka_linear(X, Y), cka_linear_debiased(X, Y)
    assert biased > 0.5  # biased CKA of independent wide representations is far from 0
    assert abs(debiased) < 0.15


def test_debiased_close_to_biased_for_large_n(rng):
    X, Y = related(rng, 4000, 4, 5, noise=0.5)
    biased, debiased = cka_linear(X, Y), cka_linear_debiased(X, Y)
    assert biased != debiased
    assert debiased == pytest.approx(biased, abs=5e-3)


def test_torch_and_numpy_inputs_agree(rng):
    X, Y = related(rng, 40, 5, 7)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    for measure in ALL:
        assert measure(Xt, Yt) == pytest.approx(measure(X, Y), abs=1e-12)
        assert measure(Xt, Y) == pytest.approx(measure(X, Y), abs=1e-12)
    Xt.requires_grad_(True)
    assert cka_linear(Xt, Yt) == pytest.approx(cka_linear(X, Y), abs=1e-12)


def test_float32_inputs_and_dtype_option(rng):
    X, Y = related(rng, 40, 5, 7)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    expected = ref_cka_linear(X32, Y32)  # the reference on the same (rounded) numbers
    assert cka_linear(X32, Y32) == pytest.approx(expected, abs=1e-12)  # default: float64 on the CPU
    assert cka_linear(X32, Y32, dtype=torch.float32) == pytest.approx(expected, abs=1e-6)
    assert cka_linear(X, Y, dtype="float32") == pytest.approx(ref_cka_linear(X, Y), abs=1e-6)
    assert isinstance(cka_linear(X32, Y32, dtype=torch.float32), float)


@pytest.mark.parametrize("measure", ALL)
def test_float32_compute_keeps_1e6_accuracy_on_large_gram(rng, measure):
    # correlated layers, n = 1500: float32 sums over the n^2 Gram entries alone would be off by ~5e-5
    X = rng.normal(size=(1500, 40))
    Y = X + rng.normal(size=X.shape)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    kw = {} if measure is cka_rbf else {"method": "gram"}
    expected = measure(X32, Y32, **kw)  # float64 on the CPU
    assert measure(X32, Y32, dtype=torch.float32, **kw) == pytest.approx(expected, abs=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_inputs_compute_on_device(rng):
    X, Y = related(rng, 40, 5, 7)
    Xc, Yc = torch.from_numpy(X).cuda(), torch.from_numpy(Y).cuda()
    for measure in ALL:
        assert measure(Xc, Yc) == pytest.approx(measure(X, Y), abs=1e-10)  # float64 kept on the GPU
        assert measure(Xc.float(), Yc.float()) == pytest.approx(measure(X, Y), abs=1e-4)
    M = cka_linear_matrix(torch.stack([Xc, Xc * 2, Xc + Yc[:, :5]]))
    assert isinstance(M, np.ndarray) and M.shape == (3, 3)


# ---------------------------------------------------------------------------------------------------------------
# Layer x layer matrix
# ---------------------------------------------------------------------------------------------------------------


def residual_layers(rng, n_layers, n, d, dtype=np.float64):
    x = rng.normal(size=(n, d))
    out = []
    for _ in range(n_layers):
        x = x + 0.6 * np.tanh(x @ rng.normal(size=(d, d)) / np.sqrt(d)) + 0.3 * rng.normal(size=(n, d))
        out.append(x.astype(dtype))
    return out


def pairwise(layers_a, layers_b, **kw):
    return np.array([[cka_linear(a, b, **kw) for b in layers_b] for a in layers_a])


@pytest.mark.parametrize("n,d", [(80, 6), (10, 40)])  # n > d and n < d
@pytest.mark.parametrize("method", ["auto", "feature", "gram"])
def test_matrix_equals_pairwise(rng, n, d, method):
    layers = residual_layers(rng, 5, n, d)
    expected = pairwise(layers, layers)
    M = cka_linear_matrix(layers, method=method)
    assert M.shape == (5, 5) and M.dtype == np.float64
    np.testing.assert_allclose(M, expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(M, M.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(M), 1.0, atol=1e-12)
    assert M[0, 1] == pytest.approx(ref_cka_linear(layers[0], layers[1]), abs=1e-10)
    assert (M < 0.999).sum() > 0  # not trivially all ones


@pytest.mark.parametrize("method", ["feature", "gram"])
def test_matrix_float32_equals_pairwise(rng, method):
    layers = residual_layers(rng, 4, 60, 8, dtype=np.float32)
    stacked = torch.from_numpy(np.stack(layers))
    expected = pairwise(layers, layers)
    np.testing.assert_allclose(cka_linear_matrix(stacked, method=method), expected, atol=1e-6, rtol=0)
    got32 = cka_linear_matrix(stacked, method=method, dtype=torch.float32)
    np.testing.assert_allclose(got32, pairwise(layers, layers, dtype=torch.float32), atol=1e-6, rtol=0)
    np.testing.assert_allclose(got32, expected, atol=1e-6, rtol=0)


def test_matrix_float32_keeps_1e6_accuracy_on_large_gram(rng):
    # float32 matmul over the 6.25M-long flattened Gram rows alone would be off by a few 1e-6
    layers = residual_layers(rng, 3, 2500, 8, dtype=np.float32)
    got = cka_linear_matrix(layers, dtype=torch.float32, method="gram")
    np.testing.assert_allclose(got, cka_linear_matrix(layers, method="gram"), atol=5e-7, rtol=0)


@pytest.mark.parametrize("n,d", [(70, 5), (9, 30)])
@pytest.mark.parametrize("method", ["feature", "gram"])
def test_matrix_cross_models_with_different_widths(rng, n, d, method):
    layers_a = residual_layers(rng, 3, n, d)
    layers_b = [np.tanh(a[:, : d - 2]) @ rng.normal(size=(d - 2, d + 3)) for a in layers_a]
    layers_b.append(rng.normal(size=(n, 2)))  # a narrower layer on one side (zero-padded on the feature path)
    M = cka_linear_matrix(layers_a, layers_b, method=method)
    assert M.shape == (3, 4)
    np.testing.assert_allclose(M, pairwise(layers_a, layers_b), atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["feature", "gram"])
def test_matrix_blocked_equals_unblocked(rng, method):
    layers = residual_layers(rng, 7, 30, 12)
    full = cka_linear_matrix(layers, method=method)
    tiny = cka_linear_matrix(layers, method=method, block_bytes=1)  # forces one layer per block
    np.testing.assert_allclose(tiny, full, atol=1e-12)
    cross_full = cka_linear_matrix(layers[:3], layers, method=method)
    cross_tiny = cka_linear_matrix(layers[:3], layers, method=method, block_bytes=1)
    np.testing.assert_allclose(cross_tiny, cross_full, atol=1e-12)
    np.testing.assert_allclose(cross_full, full[:3], atol=1e-12)


def test_matrix_stacked_numpy_list_and_torch_agree(rng):
    layers = residual_layers(rng, 4, 25, 7)
    M = cka_linear_matrix(layers)
    np.testing.assert_allclose(cka_linear_matrix(np.stack(layers)), M, atol=1e-12)
    np.testing.assert_allclose(cka_linear_matrix([torch.from_numpy(x) for x in layers]), M, atol=1e-12)


def pairwise_debiased(layers_a, layers_b, **kw):
    return np.array([[cka_linear_debiased(a, b, **kw) for b in layers_b] for a in layers_a])


@pytest.mark.parametrize("n,d", [(40, 6), (9, 30)])  # n > d and n < d
@pytest.mark.parametrize("method", ["auto", "feature", "gram"])
def test_debiased_matrix_equals_pairwise_and_loop_reference(rng, n, d, method):
    layers = residual_layers(rng, 4, n, d)
    others = [np.tanh(a[:, : d - 2]) @ rng.normal(size=(d - 2, d + 3)) for a in layers[:2]]
    others.append(rng.normal(size=(n, 2)) + 1.0)  # narrower, uncentred (zero-padded on the feature path)
    M = cka_linear_matrix(layers, debiased=True, method=method)
    assert M.shape == (4, 4) and M.dtype == np.float64
    np.testing.assert_allclose(M, pairwise_debiased(layers, layers), atol=1e-10, rtol=0)
    np.testing.assert_allclose(M, M.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(M), 1.0, atol=1e-12)
    C = cka_linear_matrix(layers, others, debiased=True, method=method)
    assert C.shape == (4, 3)
    np.testing.assert_allclose(C, pairwise_debiased(layers, others), atol=1e-10, rtol=0)
    # the independent float64 reference: Song et al.'s three terms with explicit loops, on uncentred Grams
    assert M[0, 3] == pytest.approx(ref_cka_debiased(layers[0], layers[3]), abs=1e-10)
    assert C[2, 2] == pytest.approx(ref_cka_debiased(layers[2], others[2]), abs=1e-10)
    assert np.abs(M - cka_linear_matrix(layers, method=method)).max() > 1e-3  # not the biased matrix


def test_debiased_matrix_matches_the_ustatistic_definition(rng):
    layers = [rng.normal(size=(7, 3)), rng.normal(size=(7, 2))]
    layers[1][:, 0] += layers[0][:, 0]
    expected = ref_cka_debiased(layers[0], layers[1], hsic=ref_hsic_ustatistic)  # average over 4-tuples
    for method in ("feature", "gram"):
        assert cka_linear_matrix(layers, debiased=True, method=method)[0, 1] == pytest.approx(expected, abs=1e-12)


def test_debiased_matrix_removes_the_inflation_for_independent_layers(rng):
    independent = [rng.normal(size=(30, 60)) for _ in range(3)]
    biased = cka_linear_matrix(independent)
    debiased = cka_linear_matrix(independent, debiased=True)
    off = ~np.eye(3, dtype=bool)
    assert biased[off].min() > 0.5  # d = 2n: the biased estimator sees structure that is not there
    assert np.abs(debiased[off]).max() < 0.1


@pytest.mark.parametrize("method", ["feature", "gram"])
def test_debiased_matrix_float32_blocked_and_torch(rng, method):
    layers = residual_layers(rng, 5, 50, 8)
    expected = pairwise_debiased(layers, layers)
    got32 = cka_linear_matrix(np.stack(layers).astype(np.float32), method=method, dtype=torch.float32, debiased=True)
    np.testing.assert_allclose(got32, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(cka_linear_matrix(layers, method=method, debiased=True, block_bytes=1), expected,
                               atol=1e-10, rtol=0)
    cross = cka_linear_matrix(layers[:2], [torch.from_numpy(x) for x in layers], method=method, debiased=True,
                              block_bytes=1)
    np.testing.assert_allclose(cross, expected[:2], atol=1e-10, rtol=0)


def test_debiased_matrix_degenerate_inputs_raise(rng):
    Y = rng.normal(size=(4, 3))
    X = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])  # unbiased HSIC of X with itself is 0
    with pytest.raises(ReprtoolsError, match="at least 4"):
        cka_linear_matrix([Y[:3], Y[:3]], debiased=True)
    for method in ("feature", "gram"):
        with pytest.raises(ReprtoolsError, match=r"layers_a\[0\].*not positive"):
            cka_linear_matrix([X, Y], debiased=True, method=method)
        with pytest.raises(ReprtoolsError, match=r"layers_b\[1\].*not positive"):
            cka_linear_matrix([Y], [Y, X], debiased=True, method=method)
        with pytest.raises(ReprtoolsError, match="zero variance"):
            cka_linear_matrix([Y, np.ones((4, 2))], debiased=True, method=method)


# ---------------------------------------------------------------------------------------------------------------
# Degenerate input
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("measure", ALL)
def test_constant_representation_raises(rng, measure):
    X = rng.normal(size=(20, 4))
    with pytest.raises(ReprtoolsError, match="zero variance"):
        measure(np.full((20, 3), 0.1), X)
    with pytest.raises(ReprtoolsError, match="zero variance"):
        measure(X, np.ones((20, 5)))


@pytest.mark.parametrize("measure", ALL)
def test_nan_inf_mismatch_and_shape_raise(rng, measure):
    X, Y = rng.normal(size=(20, 4)), rng.normal(size=(20, 5))
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ReprtoolsError, match="NaN"):
        measure(bad, Y)
    bad[3, 1] = np.inf
    with pytest.raises(ReprtoolsError, match="NaN/inf"):
        measure(X, torch.from_numpy(np.concatenate([Y[:, :4], bad[:, 1:2]], axis=1)))
    with pytest.raises(ReprtoolsError, match="rows"):
        measure(X, Y[:19])
    with pytest.raises(ReprtoolsError, match="2-D"):
        measure(X[:, 0], Y)
    with pytest.raises(ReprtoolsError, match="at least"):
        measure(X[:1], Y[:1])


def test_debiased_needs_four_rows(rng):
    X, Y = rng.normal(size=(3, 4)), rng.normal(size=(3, 2))
    with pytest.raises(ReprtoolsError, match="at least 4"):
        cka_linear_debiased(X, Y)
    assert np.isfinite(cka_linear_debiased(rng.normal(size=(4, 2)), rng.normal(size=(4, 3))))
    assert np.isfinite(cka_linear(X, Y))


def test_rbf_zero_median_distance_raises(rng):
    X = np.zeros((10, 3))
    X[0] = 1.0  # not constant, but 36 of 45 pairs coincide
    with pytest.raises(ReprtoolsError, match="median"):
        cka_rbf(X, rng.normal(size=(10, 2)))
    with pytest.raises(ReprtoolsError, match="sigma_frac"):
        cka_rbf(rng.normal(size=(10, 3)), rng.normal(size=(10, 2)), sigma_frac=0.0)


def test_bad_options_raise(rng):
    X = rng.normal(size=(10, 3))
    with pytest.raises(ReprtoolsError, match="method"):
        cka_linear(X, X, method="svd")
    with pytest.raises(ReprtoolsError, match="dtype"):
        cka_linear(X, X, dtype=torch.int64)
    with pytest.raises(ReprtoolsError, match="dtype"):
        cka_linear(X, X, dtype="double")
    with pytest.raises(ReprtoolsError, match="dtype"):
        cka_linear(np.array([["a", "b"], ["c", "d"]]), X[:2])


def test_matrix_degenerate_inputs_raise(rng):
    layers = residual_layers(rng, 3, 20, 4)
    for method in ("feature", "gram"):
        with pytest.raises(ReprtoolsError, match=r"layers_a\[1\].*zero variance"):
            cka_linear_matrix([layers[0], np.ones((20, 4)), layers[2]], method=method)
        with pytest.raises(ReprtoolsError, match=r"layers_b\[0\].*NaN"):
            cka_linear_matrix(layers, [np.full((20, 4), np.nan)], method=method)
    with pytest.raises(ReprtoolsError, match="rows"):
        cka_linear_matrix([layers[0], layers[1][:10]])
    with pytest.raises(ReprtoolsError, match="stacked"):
        cka_linear_matrix(layers[0])
    with pytest.raises(ReprtoolsError, match="empty"):
        cka_linear_matrix([])
    with pytest.raises(ReprtoolsError, match="at least 2"):
        cka_linear_matrix([layers[0][:1]])
