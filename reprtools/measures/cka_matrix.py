"""Layer x layer linear CKA, biased or debiased, for all layers of one or two models in one batched pass.

Inputs and dtypes as in :mod:`reprtools.measures.cka` (numpy or torch, any device; ``dtype=None`` is float64 on
the CPU, float32 on an accelerator).  The result is a float64 numpy array.  Split from :mod:`~.cka` to keep
each module small; the scalar :func:`~reprtools.measures.cka.cka_linear` and
:func:`~reprtools.measures.cka.cka_linear_debiased` are the per-pair definitions every entry equals.

References
----------
Kornblith, Norouzi, Lee & Hinton (2019). Similarity of Neural Network Representations Revisited. ICML.
Song, Smola, Gretton, Bedo & Borgwardt (2012). Feature Selection via Dependence Maximization. JMLR 13.
Székely & Rizzo (2014). Partial distance correlation with methods for dissimilarities. Ann. Statist. 42(6).
Nguyen, Raghu & Kornblith (2021). Do Wide and Deep Networks Learn the Same Things? ICLR.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from reprtools.errors import ReprtoolsError
from reprtools.measures.cka import (
    _F64,
    Method,
    _centered,
    _check_finite,
    _check_method,
    _norm64,
    _pick_device,
    _resolve_dtype,
    _sum64,
    _to_tensor,
)

__all__ = ["cka_linear_matrix"]

_DEFAULT_BLOCK_BYTES = 4 * 2**30


def _layer_tensors(layers: Any, name: str) -> list[torch.Tensor]:
    """A stacked ``(L, n, d)`` array or a sequence of ``(n, d)`` arrays as a list of (unconverted) tensors."""
    if isinstance(layers, (torch.Tensor, np.ndarray)):
        t = _to_tensor(layers, name)
        if t.ndim != 3:
            raise ReprtoolsError(
                f"{name} has shape {tuple(t.shape)}; expected a stacked (L, n, d) array or a list of (n, d) arrays"
            )
        out = list(t.unbind(0))
    elif isinstance(layers, Sequence) and not isinstance(layers, (str, bytes)):
        out = [_to_tensor(x, f"{name}[{i}]") for i, x in enumerate(layers)]
    else:
        raise ReprtoolsError(
            f"{name} is a {type(layers).__name__}; pass a list of (n, d) arrays or a stacked (L, n, d) array"
        )
    if not out:
        raise ReprtoolsError(f"{name} is empty; pass at least one layer")
    for i, t in enumerate(out):
        if t.ndim != 2 or t.shape[1] < 1:
            raise ReprtoolsError(f"{name}[{i}] has shape {tuple(t.shape)}; expected a 2-D (n, d) array")
    return out


def _prepared_layer(t: torch.Tensor, name: str, device, dtype) -> torch.Tensor:
    t = t.to(device=device, dtype=dtype)
    _check_finite(t, name)
    return _centered(t, name)


def _blocks(count: int, size: int) -> list[range]:
    return [range(s, min(s + size, count)) for s in range(0, count, size)]


class _GramSide:
    """Normalised, flattened Gram matrices of one side, computed a block of layers at a time: centred
    (:math:`HKH`) for the biased CKA, U-centred for the debiased one."""

    def __init__(self, layers, name, n, device, dtype, debiased=False):
        self.layers, self.name, self.n, self.device, self.dtype = layers, name, n, device, dtype
        self.debiased = debiased

    def rows(self, idx: range) -> torch.Tensor:
        n = self.n
        out = torch.empty(len(idx), n, n, device=self.device, dtype=self.dtype)
        for r, i in enumerate(idx):
            xc = _prepared_layer(self.layers[i], f"{self.name}[{i}]", self.device, self.dtype)
            torch.matmul(xc, xc.T, out=out[r])
            if self.debiased:
                _u_center_(out[r])
            nrm = _norm64(out[r])
            if self.debiased and not float(nrm) > 0.0:
                raise ReprtoolsError(
                    f"{self.name}[{i}]: unbiased HSIC of the layer with itself is {float(nrm) ** 2:.3g} (not "
                    f"positive) with n={n}; use more (distinct) sentences or debiased=False"
                )
            if not (math.isfinite(float(nrm)) and float(nrm) > 0.0):
                raise ReprtoolsError(
                    f"{self.name}[{i}]: the Gram matrix norm is {float(nrm)} (under/overflow); rescale the input "
                    "or pass dtype=torch.float64"
                )
            out[r].div_(nrm)
        return out.view(len(idx), n * n)


def _u_center_(k: torch.Tensor) -> None:
    r"""U-centre a Gram matrix in place (Székely & Rizzo, 2014): with :math:`\tilde K` = ``k`` with a zero diagonal,
    row sums :math:`r` and total :math:`s`,
    :math:`\tilde U_{ij} = \tilde K_{ij} - \frac{r_i + r_j}{n-2} + \frac{s}{(n-1)(n-2)}` off the diagonal and 0 on
    it.  Then :math:`\langle \tilde U_K, \tilde U_L\rangle_F / (n(n-3))` is exactly the unbiased HSIC of Song et
    al. (2012), Theorem 2 (U-centring is an orthogonal projection, so
    :math:`\langle \tilde U_K, \tilde U_L\rangle = \langle \tilde U_K, \tilde L\rangle`, whose expansion is
    Song's three terms), and the debiased CKA matrix is one matmul of normalised, flattened U-centred Grams."""
    n = k.shape[0]
    k.fill_diagonal_(0.0)
    r = _sum64(k, dim=1)
    s = float(r.sum())
    r = (r / (n - 2)).to(k.dtype)
    k.sub_(r[:, None]).sub_(r[None, :]).add_(s / ((n - 1) * (n - 2)))
    k.fill_diagonal_(0.0)


def _feature_stack(layers, name, n, device, dtype) -> tuple[torch.Tensor, int]:
    """Centred layers side by side in one ``(n, L * d_max)`` matrix (narrower layers zero-padded)."""
    width = max(t.shape[1] for t in layers)
    z = torch.zeros(n, len(layers) * width, device=device, dtype=dtype)
    for i, t in enumerate(layers):
        z[:, i * width : i * width + t.shape[1]] = _prepared_layer(t, f"{name}[{i}]", device, dtype)
    return z, width


def _cross_tile(za, wa, ia: range, zb, wb, ib: range) -> torch.Tensor:
    """``||X_a^T X_b||_F^2`` for all a in ia, b in ib, from one matmul over the concatenated features."""
    a = za[:, ia.start * wa : ia.stop * wa]
    b = zb[:, ib.start * wb : ib.stop * wb]
    prod = a.T @ b  # (|ia| * wa, |ib| * wb): block (a, b) is X_a^T X_b
    return _sum64(prod.view(len(ia), wa, len(ib), wb).square(), dim=(1, 3))


def _self_norms_feature(z, w, count, block) -> torch.Tensor:
    """``||X_a^T X_a||_F`` for every layer a of a side, batched with bmm."""
    n = z.shape[0]
    out = []
    for blk in _blocks(count, block):
        x3 = z[:, blk.start * w : blk.stop * w].reshape(n, len(blk), w).transpose(0, 1)  # (b, n, w)
        out.append(_norm64(x3.transpose(1, 2) @ x3, dim=(-2, -1)))
    return torch.cat(out)


def _debias_parts(z, w, count) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Per layer ``a`` of a feature stack, the terms the unbiased HSIC adds to :math:`\lVert X_a^\top X_b\rVert_F^2`
    (as for one pair in :func:`reprtools.measures.cka._hsic1_parts_feature`), in float64: the diagonal
    :math:`\mathrm{diag}(K_a)` ``(L, n)``, the row sums :math:`\tilde K_a \mathbf 1` ``(L, n)`` and the total
    :math:`\mathbf 1^\top \tilde K_a \mathbf 1` ``(L,)``, with :math:`\tilde K_a` = :math:`X_a X_a^\top` less its
    diagonal.  One layer at a time, so no extra memory of the size of ``z``."""
    kd, k1, tot = [], [], []
    for a in range(count):
        x = z[:, a * w : (a + 1) * w]
        d = _sum64(x.square(), dim=1)
        col_sum = x.sum(dim=0)  # about 0, as the layer is centred; kept so the formula holds exactly
        kd.append(d)
        k1.append((x @ col_sum).to(_F64) - d)
        tot.append(_sum64(col_sum.square()) - d.sum())
    return torch.stack(kd), torch.stack(k1), torch.stack(tot)


def _debias(num, sq_a, sq_b, pa, pb, n) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Turn :math:`\lVert X_a^\top X_b\rVert_F^2` (all pairs) and :math:`\lVert X_a^\top X_a\rVert_F^2` into
    :math:`n(n-3)\,\mathrm{HSIC}_1` (Song et al., 2012, Theorem 2):
    :math:`\mathrm{tr}(\tilde K\tilde L) = \lVert X_a^\top X_b\rVert_F^2 - \mathrm{diag}(K)\cdot\mathrm{diag}(L)`,
    plus :math:`\frac{(\mathbf 1^\top\tilde K\mathbf 1)(\mathbf 1^\top\tilde L\mathbf 1)}{(n-1)(n-2)} -
    \frac{2}{n-2}(\tilde K\mathbf 1)\cdot(\tilde L\mathbf 1)`, each term a small matrix product over layers."""
    (kda, k1a, ta), (kdb, k1b, tb) = pa, pb
    c1, c2 = 1.0 / ((n - 1) * (n - 2)), 2.0 / (n - 2)
    num = num - kda @ kdb.T + c1 * torch.outer(ta, tb) - c2 * (k1a @ k1b.T)
    sq_a = sq_a - kda.square().sum(dim=1) + c1 * ta.square() - c2 * k1a.square().sum(dim=1)
    sq_b = sq_b - kdb.square().sum(dim=1) + c1 * tb.square() - c2 * k1b.square().sum(dim=1)
    return num, sq_a, sq_b


def _matrix_costs(n, da, dbw, la, lb, sum_da, sum_db, symmetric, itemsize, block_bytes) -> tuple[float, float]:
    """Multiply-adds of the feature and the (blocked) Gram path."""
    if symmetric:
        feature = n * (la * da) ** 2 / 2 + n * la * da * da
        per_block = max(1, block_bytes // (n * n * itemsize))
        nb = math.ceil(la / per_block)
        gram = n * n * sum_da * (nb + 1) / 2 + n * n * la * (la + 1) / 2
    else:
        feature = n * (la * da) * (lb * dbw) + n * (la * da * da + lb * dbw * dbw)
        per_block = max(1, block_bytes // (n * n * itemsize))
        b_recompute = 1 if lb <= per_block else math.ceil(la / per_block)
        gram = n * n * (sum_da + sum_db * b_recompute) + n * n * la * lb
    return feature, gram


def cka_linear_matrix(
    layers_a: Any,
    layers_b: Any = None,
    *,
    dtype: Any = None,
    method: Method = "auto",
    block_bytes: int = _DEFAULT_BLOCK_BYTES,
    debiased: bool = False,
) -> np.ndarray:
    r"""All-pairs linear CKA between the layers of one or two models, computed in a batched pass.

    Shapes: ``layers_a`` is a stacked ``(L_a, n, d)`` array or a sequence of ``L_a`` arrays of shape
    ``(n, d_i)``; ``layers_b`` likewise (``L_b`` layers) or ``None`` for the symmetric self-similarity matrix of
    ``layers_a``.  All layers share the same ``n`` sentences (rows).  Returns a float64 numpy array of shape
    ``(L_a, L_b)`` whose entry ``[i, j]`` is :func:`~reprtools.measures.cka.cka_linear`
    ``(layers_a[i], layers_b[j])``, or with ``debiased=True``
    :func:`~reprtools.measures.cka.cka_linear_debiased` ``(layers_a[i], layers_b[j])``.

    Formula: as :func:`~reprtools.measures.cka.cka_linear`,
    :math:`\lVert Y_c^\top X_c\rVert_F^2 / (\lVert X_c^\top X_c\rVert_F \lVert Y_c^\top Y_c\rVert_F)`; with
    ``debiased=True`` the unbiased HSIC of Song et al. (2012) replaces each biased HSIC, as in Nguyen, Raghu &
    Kornblith (2021), which removes the inflation of the biased CKA when ``d`` is comparable to ``n`` (needs
    ``n >= 4``; entries can be slightly negative).
    Invariances: per entry, those of :func:`~reprtools.measures.cka.cka_linear`; the self matrix is symmetric
    with a unit diagonal.

    Two batched paths, never a Python loop over pairs:

    * ``"gram"``: each layer's centred Gram matrix :math:`X_c X_c^\top` is computed once, flattened and
      divided by its Frobenius norm; the whole matrix is then one matmul of the stacked ``(L_a, n^2)`` by
      ``(n^2, L_b)`` rows.  Cost about :math:`n^2 \sum_i d_i + L_a L_b n^2`.  Debiased: each Gram matrix is
      U-centred instead (Székely & Rizzo, 2014), whose inner products are exactly
      :math:`n(n-3)\,\mathrm{HSIC}_1` (see :func:`_u_center_`).
    * ``"feature"``: the centred layers are laid side by side in one ``(n, L d)`` matrix (narrower layers are
      zero-padded, which changes no Frobenius norm), and ``Z_a^T Z_b`` yields every cross-covariance
      :math:`X_a^\top X_b` as a block; the squared Frobenius norm of each block is the numerator.  Cost about
      :math:`n L_a L_b d_a d_b` (half that for the self matrix).  Debiased: the unbiased HSIC adds terms built
      from each layer's row norms and row sums only (``O(n)`` numbers per layer), applied to the whole matrix
      with products of ``(L, n)`` matrices.
    * ``"auto"`` (default) picks the one with fewer multiply-adds.  Because the Gram matrices are shared by
      all pairs, the Gram path usually wins for whole matrices even when ``n > d`` (e.g. 33 layers,
      ``n = 6000``, ``d = 640``), unlike the single-pair :func:`cka_linear`.

    Memory: work is tiled so that one block of Gram matrices (or one cross-covariance tile) takes at most
    about ``block_bytes`` (default 4 GiB; peak extra memory is about twice that, plus the centred copy of the
    layers on the feature path).  When the Gram matrices of all layers do not fit, some are recomputed.

    Raises :class:`ReprtoolsError` for NaN/inf, a constant layer (named by index), mismatched ``n``, ``n < 2``
    (``n < 4`` debiased) or, debiased, a layer whose unbiased HSIC with itself is not positive.

    References: Kornblith, Norouzi, Lee & Hinton (2019), "Similarity of Neural Network Representations
    Revisited", ICML (layer x layer CKA heat maps, Fig. 2-5); Song et al. (2012), JMLR 13, Theorem 2; Székely &
    Rizzo (2014), Ann. Statist. 42(6); Nguyen, Raghu & Kornblith (2021), ICLR, Sec. 3.
    """
    _check_method(method)
    la_list = _layer_tensors(layers_a, "layers_a")
    lb_list = None if layers_b is None else _layer_tensors(layers_b, "layers_b")
    everything = la_list + (lb_list or [])
    n = la_list[0].shape[0]
    for name, lst in (("layers_a", la_list), ("layers_b", lb_list or [])):
        for i, t in enumerate(lst):
            if t.shape[0] != n:
                raise ReprtoolsError(
                    f"{name}[{i}] has {t.shape[0]} rows but layers_a[0] has {n}; every layer must hold the same "
                    "sentences in the same order"
                )
    if n < 2:
        raise ReprtoolsError(f"the layers have {n} row(s); CKA needs at least 2 sentences")
    if debiased and n < 4:
        raise ReprtoolsError(f"the layers have {n} rows; debiased CKA needs at least 4 sentences")
    if not (isinstance(block_bytes, int) and block_bytes > 0):
        raise ReprtoolsError(f"block_bytes={block_bytes!r} must be a positive integer number of bytes")
    device = _pick_device(everything)
    cdtype = _resolve_dtype(dtype, device, everything)
    itemsize = torch.empty((), dtype=cdtype).element_size()

    symmetric = lb_list is None
    side_b = la_list if symmetric else lb_list
    la, lb = len(la_list), len(side_b)
    wa = max(t.shape[1] for t in la_list)
    wb = max(t.shape[1] for t in side_b)
    form = method
    if method == "auto":
        feature_cost, gram_cost = _matrix_costs(
            n, wa, wb, la, lb, sum(t.shape[1] for t in la_list), sum(t.shape[1] for t in side_b),
            symmetric, itemsize, block_bytes,
        )
        form = "feature" if feature_cost <= gram_cost else "gram"

    if form == "gram":
        out = _matrix_gram(la_list, side_b, symmetric, n, device, cdtype, itemsize, block_bytes, debiased)
    else:
        out = _matrix_feature(la_list, side_b, symmetric, n, wa, wb, device, cdtype, itemsize, block_bytes, debiased)
    return out.to(device="cpu", dtype=torch.float64).numpy()


def _dot_rows(ga: torch.Tensor, gb: torch.Tensor, chunk: int = 1 << 20) -> torch.Tensor:
    """``ga @ gb.T`` over the n^2-long rows, accumulated in float64 one chunk of columns at a time."""
    if ga.dtype == _F64:
        return ga @ gb.T
    out = torch.zeros(ga.shape[0], gb.shape[0], device=ga.device, dtype=_F64)
    for s in range(0, ga.shape[1], chunk):
        a = ga[:, s : s + chunk].to(_F64)
        b = a if gb is ga else gb[:, s : s + chunk].to(_F64)
        out += a @ b.T
    return out


def _matrix_gram(la_list, lb_list, symmetric, n, device, dtype, itemsize, block_bytes, debiased) -> torch.Tensor:
    per_block = max(1, block_bytes // (n * n * itemsize))
    side_a = _GramSide(la_list, "layers_a", n, device, dtype, debiased)
    side_b = side_a if symmetric else _GramSide(lb_list, "layers_b", n, device, dtype, debiased)
    la, lb = len(la_list), len(lb_list)
    out = torch.empty(la, lb, device=device, dtype=_F64)
    blocks_a = _blocks(la, per_block)
    blocks_b = _blocks(lb, per_block)
    if symmetric:
        for bi, ia in enumerate(blocks_a):
            ga = side_a.rows(ia)
            for ib in blocks_a[bi:]:
                gb = ga if ib == ia else side_a.rows(ib)
                tile = _dot_rows(ga, gb)
                out[ia.start : ia.stop, ib.start : ib.stop] = tile
                out[ib.start : ib.stop, ia.start : ia.stop] = tile.T
        return out
    gb_all = side_b.rows(range(lb)) if len(blocks_b) == 1 else None
    for ia in blocks_a:
        ga = side_a.rows(ia)
        for ib in blocks_b:
            gb = gb_all if gb_all is not None else side_b.rows(ib)
            out[ia.start : ia.stop, ib.start : ib.stop] = _dot_rows(ga, gb)
    return out


def _matrix_feature(la_list, lb_list, symmetric, n, wa, wb, device, dtype, itemsize, block_bytes, debiased):
    za, wa = _feature_stack(la_list, "layers_a", n, device, dtype)
    zb, wb = (za, wa) if symmetric else _feature_stack(lb_list, "layers_b", n, device, dtype)
    la, lb = len(la_list), len(lb_list)
    per_block = max(1, math.isqrt(max(1, block_bytes // (wa * wb * itemsize))))
    num = torch.empty(la, lb, device=device, dtype=_F64)
    blocks_a = _blocks(la, per_block)
    if symmetric:
        for bi, ia in enumerate(blocks_a):
            for ib in blocks_a[bi:]:
                tile = _cross_tile(za, wa, ia, za, wa, ib)
                num[ia.start : ia.stop, ib.start : ib.stop] = tile
                num[ib.start : ib.stop, ia.start : ia.stop] = tile.T
        sq_a = sq_b = num.diagonal().clone()
    else:
        for ia in blocks_a:
            for ib in _blocks(lb, per_block):
                num[ia.start : ia.stop, ib.start : ib.stop] = _cross_tile(za, wa, ia, zb, wb, ib)
        sq_a = _self_norms_feature(za, wa, la, max(1, block_bytes // (wa * wa * itemsize))).square()
        sq_b = _self_norms_feature(zb, wb, lb, max(1, block_bytes // (wb * wb * itemsize))).square()
    if debiased:
        pa = _debias_parts(za, wa, la)
        num, sq_a, sq_b = _debias(num, sq_a, sq_b, pa, pa if symmetric else _debias_parts(zb, wb, lb), n)
    for name, sq in (("layers_a", sq_a), ("layers_b", sq_b)):
        bad = ~(torch.isfinite(sq) & (sq > 0))
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            if debiased and bool(torch.isfinite(sq[i])):
                raise ReprtoolsError(
                    f"{name}[{i}]: unbiased HSIC of the layer with itself is {float(sq[i]) / (n * (n - 3)):.3g} "
                    f"(not positive) with n={n}; use more (distinct) sentences or debiased=False"
                )
            raise ReprtoolsError(
                f"{name}[{i}]: the covariance norm is {float(sq[i]) ** 0.5} (under/overflow); rescale the input or "
                "pass dtype=torch.float64"
            )
    return num / (sq_a.sqrt()[:, None] * sq_b.sqrt()[None, :])
