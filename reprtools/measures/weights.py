"""How an adapter changes a weight matrix: plain functions on the update ``ΔW`` (or its factors), the base weight
``W`` and their singular vectors.  No models or files here; :mod:`reprtools.weights` reads ``ΔW`` from checkpoints.

Conventions: a weight is ``(out, in)`` as in ``torch.nn.Linear``; an SVD is returned as ``(U, S, V)`` with
``M = U diag(S) Vᵀ``, ``U`` (out, k) and ``V`` (in, k) with orthonormal columns and ``S`` descending.  Inputs are
numpy arrays or torch tensors (any device); the arithmetic runs in torch, in float64 on the CPU and float32 on an
accelerator unless ``dtype`` says otherwise.  Scalar measures return Python floats.

* :func:`factored_svd` -- the SVD of a rank-r product ``B @ A`` from two thin QR decompositions and an r x r SVD,
  without forming the (out, in) matrix (``B = Q_B R_B``, ``Aᵀ = Q_A R_A``, so ``B A = Q_B (R_B R_Aᵀ) Q_Aᵀ``); this is
  what lets a whole model's updates be measured in seconds.  :func:`gram_svd` for a materialised update (DoRA's)
  and for the base weight's singular vectors, :func:`matrix_svd` where LAPACK's own SVD is wanted;
  :func:`top_singular_vectors` for the top-k of ``W + ΔW``.
* :func:`relative_update_norm`, :func:`stable_rank`, :func:`effective_rank`, :func:`amplification_factor`,
  :func:`intruder_dimensions`, :func:`subspace_similarity`.

Degenerate input (a zero update where a ratio needs it, mismatched shapes, NaN) raises
:class:`~reprtools.errors.ReprtoolsError`.
"""

from __future__ import annotations

from typing import Any

import torch

from reprtools.errors import ReprtoolsError
from reprtools.measures.cka import _on_one_device, _to_tensor

__all__ = [
    "INTRUDER_THRESHOLD",
    "INTRUDER_TOP_K",
    "amplification_factor",
    "effective_rank",
    "factored_svd",
    "gram_svd",
    "intruder_dimensions",
    "matrix_svd",
    "numerical_rank",
    "relative_update_norm",
    "stable_rank",
    "subspace_similarity",
    "top_singular_vectors",
]

#: Shuttleworth et al. (2024) look for intruders among the top k singular vectors of the fine-tuned matrix and
#: call one an intruder when its largest |cosine| with all of the pretrained left singular vectors is below ε
#: (the paper sweeps ε to show how the count depends on it).  k = 10 and ε = 0.5 are the defaults of peft's
#: implementation of the paper's mitigation (``peft.tuners.lora.intruders.reduce_intruder_dimension``), which
#: detects intruders the same way; it is not used here because it handles LoRA only, adds an adapter to the model
#: and only prints the count.
INTRUDER_TOP_K = 10
INTRUDER_THRESHOLD = 0.5


def _tensors(named: dict[str, Any], dtype: Any = None, ndim: int = 2) -> list[torch.Tensor]:
    ts = {name: _to_tensor(x, name) for name, x in named.items()}
    for name, t in ts.items():
        if t.ndim != ndim:
            raise ReprtoolsError(f"{name} must be a {ndim}-D array, got shape {tuple(t.shape)}")
    return _on_one_device(ts, dtype)


def factored_svd(B: Any, A: Any, *, dtype: Any = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The thin SVD of ``ΔW = B @ A`` (``B`` (out, r), ``A`` (r, in)) without forming ``ΔW``.

    With ``B = Q_B R_B`` and ``Aᵀ = Q_A R_A`` (reduced QR), ``B A = Q_B (R_B R_Aᵀ) Q_Aᵀ``; the SVD ``u s vᵀ`` of the
    r x r core gives ``U = Q_B u``, ``S = s``, ``V = Q_A v`` -- O((out + in) r²) work instead of O(out · in · min).
    Returns ``(U, S, V)`` with ``r`` columns (trailing singular values may be zero)."""
    b, a = _tensors({"B": B, "A": A}, dtype)
    if b.shape[1] != a.shape[0]:
        raise ReprtoolsError(f"B {tuple(b.shape)} and A {tuple(a.shape)} do not multiply (inner sizes differ)")
    qb, rb = torch.linalg.qr(b)
    qa, ra = torch.linalg.qr(a.T)
    u, s, vh = torch.linalg.svd(rb @ ra.T)
    return qb @ u, s, qa @ vh.T


def matrix_svd(M: Any, *, dtype: Any = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The thin SVD ``(U, S, V)`` of a materialised matrix (``torch.linalg.svd``, reduced)."""
    (m,) = _tensors({"M": M}, dtype)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    return u, s, vh.T


def gram_svd(M: Any, *, k: int | None = None, dtype: Any = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The thin SVD ``(U, S, V)`` of ``M`` from the symmetric eigendecomposition of its Gram matrix on the smaller
    side (``M Mᵀ = U S² Uᵀ`` if out <= in, else ``Mᵀ M = V S² Vᵀ``; the other side's vectors are ``M V / S`` or
    ``Mᵀ U / S``).  Written by hand because it is 2-4x faster than LAPACK's SVD on a CPU (one GEMM and one
    ``eigh`` of a min(out, in)-square matrix; measured in ``benchmarks/bench_weights.py``); the price is accuracy
    near zero: ``σᵢ²`` is exact to ``ε σ₁²``, so ``σᵢ`` to ``√ε σ₁`` (1.5e-8 σ₁ in float64, the default on a CPU;
    3.5e-4 σ₁ in float32 -- use float64).  ``S`` has all min(out, in) values, descending; ``U`` and ``V`` only the
    columns of the ``n`` singular values above ``√ε σ₁ · min(out, in)``, where the Gram still determines them
    (all of them for a full-rank matrix), or of the top ``k`` of those (which saves a GEMM where only the top
    vectors are wanted)."""
    (m,) = _tensors({"M": M}, dtype)
    wide = m.shape[0] <= m.shape[1]
    lam, x = torch.linalg.eigh(m @ m.T if wide else m.T @ m)
    s = lam.flip(0).clamp_min(0).sqrt()
    x = x.flip(1)
    resolution = torch.finfo(s.dtype).eps ** 0.5 * min(m.shape)
    n = int((s > resolution * s[0]).sum()) if s.numel() else 0
    n = n if k is None else min(n, int(k))
    other = ((m.T if wide else m) @ x[:, :n]) / s[:n]
    return (x[:, :n], s, other) if wide else (other, s, x[:, :n])


def _subspace_iteration(m: torch.Tensor, start: torch.Tensor, k: int, niter: int):
    """Halko, Martinsson & Tropp (2011), Alg. 4.4 (randomized subspace iteration) from a given ``start`` instead of
    a Gaussian sketch, then Rayleigh-Ritz: the SVD of ``Qᵀ M``."""
    q, _ = torch.linalg.qr(start.to(m.dtype))
    for _ in range(niter):
        z, _ = torch.linalg.qr(m.T @ q)
        q, _ = torch.linalg.qr(m @ z)
    u, s, vh = torch.linalg.svd(q.T @ m, full_matrices=False)
    return (q @ u)[:, :k], s[:k], vh[:k].T


def top_singular_vectors(M: Any, k: int, *, niter: int = 6, oversample: int = 10, dtype: Any = None,
                         seed: int = 0, exact_below: int = 256,
                         start: Any = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The top-``k`` singular triplets ``(U, S, V)`` of ``M``: Halko, Martinsson & Tropp's randomized SVD
    (``torch.svd_lowrank`` with ``k + oversample`` columns and ``niter`` power iterations), or the exact SVD where
    the matrix is small (``min(shape) <= exact_below``) or the sketch would cover much of it anyway: there the exact
    SVD is faster.  ``seed`` fixes the random sketch.

    ``start`` (out, q >= k columns): a guess of the top left singular subspace to iterate from instead of a random
    sketch (``niter`` subspace iterations, then Rayleigh-Ritz).  For ``W' = W + ΔW`` the top singular vectors of
    ``W`` and ``ΔW`` are such a guess, and a good one: where a random start leaves individual vectors of a real
    weight's flat top spectrum wrong by cosines up to 0.5 after 6 iterations, this start is within 2e-5 after 4
    (measured on Gemma 3 270M's DoRA updates against float64 SVDs, ``benchmarks/bench_weights.py --real``)."""
    (m,) = _tensors({"M": M}, dtype)
    k = min(int(k), *m.shape)
    q = k + oversample
    if min(m.shape) <= max(exact_below, 4 * q):
        u, s, vh = torch.linalg.svd(m, full_matrices=False)
        return u[:, :k], s[:k], vh[:k].T
    if start is not None:
        (st,) = _tensors({"start": start}, m.dtype)
        if st.shape[0] != m.shape[0] or st.shape[1] < k:
            raise ReprtoolsError(f"start {tuple(st.shape)} must have {m.shape[0]} rows and at least k={k} columns")
        return _subspace_iteration(m, st.to(m.device), k, niter)
    cuda = [m.device.index if m.device.index is not None else torch.cuda.current_device()] \
        if m.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # the caller's random state untouched
        torch.manual_seed(seed)
        u, s, v = torch.svd_lowrank(m, q=q, niter=niter)
    return u[:, :k], s[:k], v[:, :k]


def _singular_values(S: Any) -> torch.Tensor:
    (s,) = _tensors({"S": S}, None, ndim=1)
    if bool((s < 0).any()):
        raise ReprtoolsError("singular values must be non-negative")
    return s


def relative_update_norm(delta: Any, weight: Any, *, dtype: Any = None) -> float:
    """``‖ΔW‖_F / ‖W‖_F``: the size of the update relative to the weight it changes.

    ``delta`` is ``ΔW`` itself or its singular values (a 1-D array; ``‖ΔW‖_F`` is their 2-norm)."""
    d = _to_tensor(delta, "delta")
    num = torch.linalg.vector_norm(_singular_values(d) if d.ndim == 1 else _tensors({"delta": d}, dtype)[0])
    (w,) = _tensors({"weight": weight}, dtype)
    den = torch.linalg.norm(w)
    if float(den) == 0.0:
        raise ReprtoolsError("the base weight is all zeros; its relative update norm is undefined")
    return float(num.double() / den.double())


def stable_rank(S: Any) -> float:
    """Stable rank ``‖ΔW‖_F² / σ₁² = Σσᵢ² / σ₁²`` (Rudelson & Vershynin, 2007): 1 for a rank-1 update, ``r`` for r
    equal singular values, and insensitive to tiny trailing ones."""
    s = _singular_values(S)
    top = float(s.max()) if s.numel() else 0.0
    if top == 0.0:
        raise ReprtoolsError("the update is zero; its stable rank is undefined")
    return float((s.double() ** 2).sum() / top ** 2)


def effective_rank(S: Any) -> float:
    """Effective rank ``exp(H(p))`` with ``pᵢ = σᵢ / Σσⱼ`` and ``H`` the Shannon entropy (Roy & Vetterli, 2007,
    "The effective rank: a measure of effective dimensionality", EUSIPCO): between 1 (rank 1) and the rank
    (all non-zero singular values equal)."""
    s = _singular_values(S).double()
    total = float(s.sum())
    if total == 0.0:
        raise ReprtoolsError("the update is zero; its effective rank is undefined")
    p = s[s > 0] / total
    return float(torch.exp(-(p * torch.log(p)).sum()))


def amplification_factor(weight: Any, U: Any, S: Any, V: Any, *, dtype: Any = None) -> float:
    """``‖ΔW‖_F / ‖Uᵀ W V‖_F`` with ``U``, ``V`` the top-r left and right singular vectors of ``ΔW`` and ``‖ΔW‖_F``
    from its singular values ``S`` (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models", §7.3):
    how much the update amplifies directions that ``W`` itself barely uses -- large when ``ΔW`` points where ``W``
    is small.  Pass the first r columns of ``U`` and ``V`` (r = the update's rank) as Hu et al. do."""
    w, u, v = _tensors({"weight": weight, "U": U, "V": V}, dtype)
    s = _singular_values(S)
    if u.shape[0] != w.shape[0] or v.shape[0] != w.shape[1] or u.shape[1] != v.shape[1]:
        raise ReprtoolsError(f"U {tuple(u.shape)} and V {tuple(v.shape)} do not fit the weight {tuple(w.shape)}")
    projected = torch.linalg.norm(u.T @ w @ v).double()
    if float(projected) == 0.0:
        raise ReprtoolsError("W has no component in the update's singular directions; the amplification is infinite")
    return float(torch.linalg.vector_norm(s.double()) / projected)


def intruder_dimensions(tuned_vectors: Any, base_vectors: Any, threshold: float = INTRUDER_THRESHOLD, *,
                        dtype: Any = None) -> int:
    """How many of the fine-tuned matrix's top singular vectors are *intruder dimensions* (Shuttleworth et al.,
    2024, "LoRA vs Full Fine-tuning: An Illusion of Equivalence", Def. 1): ``yⱼ`` is one when
    ``maxᵢ |cos(yⱼ, xᵢ)| < ε`` over the pretrained singular vectors ``xᵢ``.

    ``tuned_vectors``: the top-k left singular vectors of ``W' = W + ΔW`` as columns (k = :data:`INTRUDER_TOP_K` in the
    paper; :func:`top_singular_vectors` computes them); ``base_vectors``: ``W``'s singular vectors as columns (the
    paper compares with all of W's left singular vectors; compute them once per base and reuse them across
    checkpoints);
    ``threshold``: ε (:data:`INTRUDER_THRESHOLD`).  Singular vectors are unit vectors, so the cosine is the inner
    product; its sign is arbitrary, hence the absolute value."""
    if not 0.0 < threshold <= 1.0:
        raise ReprtoolsError(f"the intruder threshold must be in (0, 1], got {threshold}")
    y, x = _tensors({"tuned_vectors": tuned_vectors, "base_vectors": base_vectors}, dtype)
    if y.shape[0] != x.shape[0]:
        raise ReprtoolsError(f"tuned vectors of length {y.shape[0]} and base vectors of length {x.shape[0]} differ")
    y = y / torch.linalg.vector_norm(y, dim=0, keepdim=True)
    x = x / torch.linalg.vector_norm(x, dim=0, keepdim=True)
    best = (x.T @ y).abs().amax(dim=0)
    return int((best < threshold).sum())


def subspace_similarity(U_a: Any, U_b: Any, i: int | None = None, j: int | None = None, *,
                        dtype: Any = None) -> float:
    """Normalised subspace similarity ``φ(i, j) = ‖U_aᵢᵀ U_bⱼ‖_F² / min(i, j)`` between the spans of the first ``i``
    columns of ``U_a`` and the first ``j`` of ``U_b`` (orthonormal columns, e.g. two updates' top singular
    directions; Hu et al., 2021, §7.1, eq. 4).  1 when one span contains the other, 0 when they are orthogonal;
    equal to the mean of ``cos²`` of the ``min(i, j)`` principal angles between the spans."""
    a, b = _tensors({"U_a": U_a, "U_b": U_b}, dtype)
    if a.shape[0] != b.shape[0]:
        raise ReprtoolsError(f"U_a has rows of length {a.shape[0]}, U_b of length {b.shape[0]}; compare one module")
    i = a.shape[1] if i is None else int(i)
    j = b.shape[1] if j is None else int(j)
    if not (1 <= i <= a.shape[1] and 1 <= j <= b.shape[1]):
        raise ReprtoolsError(f"i={i}, j={j} must lie in 1..{a.shape[1]} and 1..{b.shape[1]}")
    overlap = torch.linalg.norm(a[:, :i].T @ b[:, :j]).double() ** 2
    return min(max(float(overlap / min(i, j)), 0.0), 1.0)  # rounding can overshoot 1 by an ulp or two


def numerical_rank(S: Any, rtol: float = 1e-5) -> int:
    """How many singular values exceed ``rtol · σ₁``: the rank r of an update whose factors were stored in float32
    or lower (their products leave ~1e-7 σ₁ of rounding in directions that are exactly zero), the r to hand
    :func:`amplification_factor` and :func:`subspace_similarity`."""
    s = _singular_values(S)
    if not s.numel() or float(s.max()) == 0.0:
        return 0
    return int((s > rtol * s.max()).sum())

