"""Weight-update measures against float64 numpy references and matrices with known answers: the factored SVD
equals numpy's SVD of the formed product, a rank-1 update has stable rank 1, an update diagonal in W's singular
basis creates no intruder dimensions while one orthogonal to W's top subspace and larger than it does, the
amplification factor matches a hand computation, and φ is 1 for a subspace with itself and 0 for orthogonal ones."""

import math

import numpy as np
import pytest
import torch

from reprtools.errors import ReprtoolsError
from reprtools.measures import weights as mw


def _orthonormal(rng, n, k):
    q, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return q


def test_factored_svd_matches_numpy_on_the_formed_product():
    rng = np.random.default_rng(0)
    B, A = rng.standard_normal((40, 5)), rng.standard_normal((5, 30))
    U, S, V = mw.factored_svd(B, A)
    ref = np.linalg.svd(B @ A, compute_uv=False)[:5]
    np.testing.assert_allclose(S.numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose((U * S) @ V.T, B @ A, atol=1e-12)
    np.testing.assert_allclose(U.T @ U, np.eye(5), atol=1e-12)
    np.testing.assert_allclose(V.T @ V, np.eye(5), atol=1e-12)


def test_factored_svd_float32_tensors_and_shape_errors():
    B, A = torch.randn(16, 3), torch.randn(3, 12)
    _, S, _ = mw.factored_svd(B, A, dtype=torch.float32)
    assert S.dtype == torch.float32
    np.testing.assert_allclose(S.numpy(), np.linalg.svd((B @ A).double().numpy(), compute_uv=False)[:3], rtol=1e-4)
    with pytest.raises(ReprtoolsError, match="do not multiply"):
        mw.factored_svd(torch.randn(4, 2), torch.randn(3, 4))
    with pytest.raises(ReprtoolsError, match="NaN"):
        mw.factored_svd(np.full((4, 2), np.nan), np.ones((2, 3)))


def test_relative_update_norm_from_matrix_and_from_singular_values():
    rng = np.random.default_rng(1)
    W, D = rng.standard_normal((20, 10)), 0.1 * rng.standard_normal((20, 10))
    ref = math.sqrt((D ** 2).sum()) / math.sqrt((W ** 2).sum())
    assert mw.relative_update_norm(D, W) == pytest.approx(ref, rel=1e-12)
    assert mw.relative_update_norm(np.linalg.svd(D, compute_uv=False), W) == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ReprtoolsError, match="all zeros"):
        mw.relative_update_norm(D, np.zeros_like(W))


def test_stable_and_effective_rank_known_answers():
    rng = np.random.default_rng(2)
    u, v = rng.standard_normal((30, 1)), rng.standard_normal((1, 20))
    s = np.linalg.svd(u @ v, compute_uv=False)
    assert mw.stable_rank(s) == pytest.approx(1.0, rel=1e-9)
    assert mw.effective_rank(s) == pytest.approx(1.0, rel=1e-6)  # trailing ~1e-16 values add almost no entropy
    assert mw.stable_rank([3.0, 3.0, 3.0, 3.0]) == pytest.approx(4.0)
    assert mw.effective_rank([2.0, 2.0, 2.0, 0.0]) == pytest.approx(3.0)
    s = np.array([4.0, 2.0, 1.0])
    p = s / s.sum()
    assert mw.effective_rank(s) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-12)
    assert mw.stable_rank(s) == pytest.approx((16 + 4 + 1) / 16, rel=1e-12)
    assert 1.0 <= mw.effective_rank(s) <= 3.0
    with pytest.raises(ReprtoolsError, match="zero"):
        mw.stable_rank([0.0, 0.0])
    with pytest.raises(ReprtoolsError, match="non-negative"):
        mw.effective_rank([1.0, -1.0])


def test_amplification_matches_a_hand_computation():
    # W = diag(10, 1, 0.5); ΔW = 2 e2 e2ᵀ: the update points along W's weak second direction, where |W| = 1,
    # so ‖ΔW‖_F / ‖u₁ᵀ W v₁‖ = 2 / 1 = 2
    W = np.diag([10.0, 1.0, 0.5])
    D = np.zeros((3, 3))
    D[1, 1] = 2.0
    U, S, V = np.linalg.svd(D)
    assert mw.amplification_factor(W, U[:, :1], S[:1], V.T[:, :1]) == pytest.approx(2.0, rel=1e-12)
    # rank 2, mixing two directions: ΔW = [[0, 3], [4, 0]] in the (e1, e2) block, W = diag(10, 1, 0.5)
    D = np.zeros((3, 3))
    D[0, 1], D[1, 0] = 3.0, 4.0
    U, S, Vt = np.linalg.svd(D)
    U2, V2 = U[:, :2], Vt.T[:, :2]
    hand = 5.0 / np.sqrt((np.asarray(U2.T @ W @ V2) ** 2).sum())
    assert mw.amplification_factor(W, U2, S[:2], V2) == pytest.approx(hand, rel=1e-12)
    # U₂ spans e1,e2 and V₂ spans e1,e2: ‖U₂ᵀ W V₂‖_F = ‖diag(10, 1)‖_F exactly (an orthogonal change of basis)
    assert hand == pytest.approx(5.0 / math.sqrt(101.0), rel=1e-12)


def test_amplification_errors():
    with pytest.raises(ReprtoolsError, match="do not fit"):
        mw.amplification_factor(np.eye(3), np.ones((4, 1)), [1.0], np.ones((3, 1)))
    e3 = np.array([[0.0], [0.0], [1.0]])
    with pytest.raises(ReprtoolsError, match="infinite"):
        mw.amplification_factor(np.diag([1.0, 1.0, 0.0]), e3, [1.0], e3)


def _base(rng, n=24, m=18):
    U, V = _orthonormal(rng, n, m), _orthonormal(rng, m, m)
    s = np.linspace(5.0, 0.5, m)
    return U, s, V, (U * s) @ V.T


def test_no_intruders_from_an_update_diagonal_in_the_base_singular_basis():
    rng = np.random.default_rng(3)
    U, s, V, W = _base(rng)
    D = (U * rng.uniform(-0.4, 3.0, len(s))) @ V.T  # reorders and rescales W's singular values, same vectors
    top, _, _ = mw.top_singular_vectors(W + D, 10)
    assert mw.intruder_dimensions(top, U) == 0


def test_an_orthogonal_update_larger_than_the_base_spectrum_is_an_intruder():
    rng = np.random.default_rng(4)
    U, s, V, W = _base(rng)
    # a direction spread evenly over W's 9 weakest singular vectors: its largest |cos| with any of W's singular
    # vectors is 1/3 < 0.5, and it is orthogonal to W's top-9 subspace
    u = U[:, 9:].sum(axis=1) / 3.0
    v = V[:, 9:].sum(axis=1) / 3.0
    D = 20.0 * np.outer(u, v)  # larger than every singular value of W
    top, S, _ = mw.top_singular_vectors(W + D, 10)
    assert np.abs(top[:, 0].numpy() @ u) > 0.99  # W's own weak part in that subspace tilts it slightly
    assert mw.intruder_dimensions(top, U) == 1
    # with a threshold below 1/3 the same direction no longer counts
    assert mw.intruder_dimensions(top, U, threshold=0.3) == 0
    # against W's top-9 singular vectors only, every new direction in the complement would count
    assert mw.intruder_dimensions(top[:, :1], U[:, :9]) == 1


def test_intruder_reference_loop_and_errors():
    rng = np.random.default_rng(5)
    Y, X = _orthonormal(rng, 12, 4), _orthonormal(rng, 12, 12)
    ref = sum(max(abs(float(X[:, i] @ Y[:, j])) for i in range(12)) < 0.5 for j in range(4))
    assert mw.intruder_dimensions(Y, X) == ref
    with pytest.raises(ReprtoolsError, match="threshold"):
        mw.intruder_dimensions(Y, X, threshold=0.0)
    with pytest.raises(ReprtoolsError, match="differ"):
        mw.intruder_dimensions(Y, X[:10])


def test_top_singular_vectors_randomized_route_agrees_with_exact_svd():
    rng = np.random.default_rng(6)
    # a spectrum that decays, as trained weights' do: the randomized SVD recovers the top vectors
    M = (_orthonormal(rng, 200, 120) * (0.9 ** np.arange(120))) @ _orthonormal(rng, 150, 120).T
    state = torch.random.get_rng_state()
    U, S, V = mw.top_singular_vectors(M, 5, exact_below=0)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random state is left alone
    assert torch.equal(U, mw.top_singular_vectors(M, 5, exact_below=0)[0])  # seeded sketch: reproducible
    u_ref, s_ref, vt_ref = np.linalg.svd(M)
    np.testing.assert_allclose(S.numpy(), s_ref[:5], rtol=1e-6)
    np.testing.assert_allclose(np.abs(np.sum(U.numpy() * u_ref[:, :5], axis=0)), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.abs(np.sum(V.numpy() * vt_ref[:5].T, axis=0)), 1.0, atol=1e-6)


def test_subspace_similarity_known_answers():
    rng = np.random.default_rng(7)
    Q = _orthonormal(rng, 30, 8)
    assert mw.subspace_similarity(Q, Q) == pytest.approx(1.0, rel=1e-12)
    assert mw.subspace_similarity(Q[:, :4], Q[:, 4:]) == pytest.approx(0.0, abs=1e-12)
    # a subspace inside a larger one: φ = 1 (normalised by the smaller dimension)
    assert mw.subspace_similarity(Q[:, :2], Q) == pytest.approx(1.0, rel=1e-12)
    # one of two directions shared: φ = 1/2; reference: mean cos² of the principal angles (scipy)
    from scipy.linalg import subspace_angles

    a, b = Q[:, [0, 1]], Q[:, [0, 2]]
    assert mw.subspace_similarity(a, b) == pytest.approx(0.5, rel=1e-12)
    R = _orthonormal(rng, 30, 3)
    ref = np.mean(np.cos(subspace_angles(Q[:, :3], R)) ** 2)
    assert mw.subspace_similarity(Q[:, :3], R) == pytest.approx(ref, rel=1e-10)
    assert mw.subspace_similarity(Q, R, i=2, j=3) == pytest.approx(
        np.sum((Q[:, :2].T @ R) ** 2) / 2, rel=1e-12)
    with pytest.raises(ReprtoolsError, match="must lie"):
        mw.subspace_similarity(Q, R, i=9)
    with pytest.raises(ReprtoolsError, match="one module"):
        mw.subspace_similarity(Q, R[:20])


def test_numerical_rank_of_a_float32_product():
    B, A = torch.randn(64, 4), torch.randn(4, 48)
    _, S, _ = mw.matrix_svd(B @ A)  # formed in float32: 44 singular values of rounding noise
    assert mw.numerical_rank(S) == 4
    assert mw.numerical_rank([0.0, 0.0]) == 0


@pytest.mark.parametrize("shape", [(30, 50), (50, 30), (40, 40)])
def test_gram_svd_matches_numpy_float64(shape):
    rng = np.random.default_rng(5)
    M = rng.standard_normal(shape) * np.logspace(0, -2, shape[1])  # a spread of singular values, as weights have
    U, S, V = mw.gram_svd(M)
    ref_u, ref_s, ref_vh = np.linalg.svd(M, full_matrices=False)
    np.testing.assert_allclose(S.numpy(), ref_s, rtol=1e-7, atol=2e-8 * ref_s[0])
    k = min(shape)
    assert U.shape == (shape[0], k) and V.shape == (shape[1], k)
    np.testing.assert_allclose(U.T @ U, np.eye(k), atol=1e-8)
    np.testing.assert_allclose(V.T @ V, np.eye(k), atol=1e-8)
    np.testing.assert_allclose((U * S) @ V.T, M, atol=1e-10)
    # each singular vector equals numpy's up to sign (the singular values are distinct)
    np.testing.assert_allclose(np.abs(np.sum(U.numpy() * ref_u, axis=0)), 1.0, atol=1e-8)
    np.testing.assert_allclose(np.abs(np.sum(V.numpy() * ref_vh.T, axis=0)), 1.0, atol=1e-8)
    U3, S3, V3 = mw.gram_svd(M, k=3)  # the top 3 vectors only; every singular value still
    assert U3.shape == (shape[0], 3) and V3.shape == (shape[1], 3)
    assert torch.equal(S3, S)
    np.testing.assert_allclose(U3.numpy(), U[:, :3].numpy(), atol=1e-12)
    np.testing.assert_allclose(V3.numpy(), V[:, :3].numpy(), atol=1e-12)


def test_gram_svd_of_a_rank_deficient_matrix_keeps_only_determined_vectors():
    rng = np.random.default_rng(6)
    M = rng.standard_normal((40, 3)) @ rng.standard_normal((3, 25))
    U, S, V = mw.gram_svd(M)
    ref = np.linalg.svd(M, compute_uv=False)
    assert S.shape == (25,)
    np.testing.assert_allclose(S[:3].numpy(), ref[:3], rtol=1e-10)
    assert float(S[3:].max()) < 1e-6 * ref[0]  # zero to the Gram's resolution, √ε σ₁
    assert U.shape == (40, 3) and V.shape == (25, 3)
    np.testing.assert_allclose((U * S[:3]) @ V.T, M, atol=1e-9)
    assert torch.isfinite(U).all() and torch.isfinite(V).all()


def _decaying(rng, out, inp, rate=0.99):
    k = min(out, inp)
    return (_orthonormal(rng, out, k) * rate ** np.arange(k)) @ _orthonormal(rng, inp, k).T


def test_top_singular_vectors_from_a_start_agree_with_exact_svd():
    """From W's top vectors and the update's direction, four subspace iterations give W + ΔW's top-k closely even
    where the spectrum is flat (0.99^i) and a new direction larger than all of W's couples every one of W's: the
    largest cosines with W's singular vectors (what the intruder count thresholds) within 1e-3."""
    rng = np.random.default_rng(7)
    W = _decaying(rng, 320, 300)
    u, v = _orthonormal(rng, 320, 1), _orthonormal(rng, 300, 1)
    tuned = W + 0.02 * _decaying(rng, 320, 300) + 1.5 * u @ v.T  # a small full-rank change and a new direction
    ref_u, ref_s, _ = np.linalg.svd(tuned)
    base_u = np.linalg.svd(W)[0]
    start = np.concatenate([base_u[:, :20], u], axis=1)
    U, S, V = mw.top_singular_vectors(tuned, 10, start=start, niter=4)
    np.testing.assert_allclose(S.numpy(), ref_s[:10], rtol=1e-4)
    np.testing.assert_allclose(np.abs(np.sum(U.numpy() * ref_u[:, :10], axis=0)), 1.0, atol=1e-4)
    best, ref_best = (np.abs(base_u.T @ x).max(axis=0) for x in (U.numpy(), ref_u[:, :10]))
    np.testing.assert_allclose(best, ref_best, atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(tuned @ V.numpy() - U.numpy() * S.numpy(), axis=0), 0, atol=1e-2)
    assert abs(float(U[:, 0] @ torch.from_numpy(u[:, 0]))) > 0.9  # the new direction dominates the top one
    with pytest.raises(ReprtoolsError, match="start"):
        mw.top_singular_vectors(tuned, 10, start=start[:, :5])
    with pytest.raises(ReprtoolsError, match="start"):
        mw.top_singular_vectors(tuned, 10, start=start[:100])
