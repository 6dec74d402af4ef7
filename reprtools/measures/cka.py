"""Centered kernel alignment (CKA) between two representations of the same sentences.

Every function takes plain arrays (numpy arrays or torch tensors, on any device) whose rows are the same ``n``
sentences; the feature widths may differ.  The arithmetic runs in torch on the inputs' device:

* numpy input is wrapped with :func:`torch.from_numpy` (no copy where possible) and stays on the CPU;
* when the inputs sit on different devices, everything moves to the first non-CPU device among them;
* ``dtype=None`` computes in float64 on the CPU and in float32 on an accelerator (float64 there if an input is
  float64 already); pass ``dtype=torch.float64`` (or ``"float64"``) to ask for float64 anywhere.

Scalar measures return a Python ``float``.  The batched layer x layer matrix, biased or debiased, lives in
:mod:`reprtools.measures.cka_matrix`.
Degenerate input (NaN/inf, a constant representation, mismatched or too few rows) raises
:class:`~reprtools.errors.ReprtoolsError` instead of returning NaN.

References
----------
Kornblith, Norouzi, Lee & Hinton (2019). Similarity of Neural Network Representations Revisited. ICML.
Song, Smola, Gretton, Bedo & Borgwardt (2012). Feature Selection via Dependence Maximization. JMLR 13.
Nguyen, Raghu & Kornblith (2021). Do Wide and Deep Networks Learn the Same Things? ICLR.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union

import numpy as np
import torch

from reprtools.errors import ReprtoolsError

ArrayLike = Union[np.ndarray, torch.Tensor]
Method = Literal["auto", "feature", "gram"]

__all__ = ["cka_linear", "cka_linear_debiased", "cka_rbf"]

_METHODS = ("auto", "feature", "gram")
_DTYPE_NAMES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


# --------------------------------------------------------------------------------------------------------------
# Input handling shared by all measure modules (private; imported by similarity.py and separability.py).
# --------------------------------------------------------------------------------------------------------------


def _to_tensor(x: Any, name: str) -> torch.Tensor:
    """``x`` as a torch tensor on its own device, detached, with its own dtype (numbers only)."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            a = np.asarray(x)
        except Exception:  # ragged nested lists and the like
            raise ReprtoolsError(
                f"{name} could not be read as an array ({type(x).__name__}); pass a numpy array or a torch tensor"
            ) from None
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) or np.iscomplexobj(a):
            raise ReprtoolsError(f"{name} has dtype {a.dtype}; pass a real-valued numeric array of hidden states")
        t = torch.from_numpy(np.ascontiguousarray(a))
    if t.is_complex():
        raise ReprtoolsError(f"{name} has complex dtype {t.dtype}; pass a real-valued array of hidden states")
    return t


def _pick_device(tensors: Sequence[torch.Tensor]) -> torch.device:
    """The first non-CPU device among ``tensors``, else the CPU."""
    for t in tensors:
        if t.device.type != "cpu":
            return t.device
    return torch.device("cpu")


def _resolve_dtype(dtype: Any, device: torch.device, tensors: Sequence[torch.Tensor]) -> torch.dtype:
    """The compute dtype: ``dtype`` if given, else float64 on the CPU, float32 elsewhere (float64 if an input is)."""
    if dtype is not None:
        if isinstance(dtype, str):
            if dtype not in _DTYPE_NAMES:
                raise ReprtoolsError(f"dtype={dtype!r} is not known; use one of {sorted(_DTYPE_NAMES)}")
            dtype = _DTYPE_NAMES[dtype]
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ReprtoolsError(f"dtype={dtype!r} is not a floating torch dtype; pass torch.float32 or torch.float64")
        return dtype
    if device.type == "cpu" or any(t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def _check_finite(t: torch.Tensor, name: str) -> None:
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        raise ReprtoolsError(
            f"{name} contains {int(bad.sum())} NaN/inf value(s) (as {str(t.dtype).removeprefix('torch.')}); "
            "drop or fix those sentences before measuring"
        )


def _prepare(
    arrays: Mapping[str, Any], dtype: Any = None, *, min_rows: int = 2, same_width: bool = False
) -> list[torch.Tensor]:
    """Validate 2-D arrays with the same number of rows and return them as tensors on one device in one dtype."""
    tensors = {name: _to_tensor(x, name) for name, x in arrays.items()}
    for name, t in tensors.items():
        if t.ndim != 2:
            raise ReprtoolsError(
                f"{name} has shape {tuple(t.shape)}; expected a 2-D (n sentences, d features) array"
            )
        if t.shape[1] < 1:
            raise ReprtoolsError(f"{name} has shape {tuple(t.shape)} with no features; pass at least one column")
    names = list(tensors)
    n = tensors[names[0]].shape[0]
    for name in names[1:]:
        if tensors[name].shape[0] != n:
            raise ReprtoolsError(
                f"{names[0]} has {n} rows but {name} has {tensors[name].shape[0]}; rows must be the same sentences "
                "in the same order"
            )
    if same_width:
        d = tensors[names[0]].shape[1]
        for name in names[1:]:
            if tensors[name].shape[1] != d:
                raise ReprtoolsError(
                    f"{names[0]} has {d} features but {name} has {tensors[name].shape[1]}; this measure compares "
                    "vectors in one space, so both need the same width"
                )
    if n < min_rows:
        raise ReprtoolsError(f"{names[0]} has {n} row(s); this measure needs at least {min_rows} sentences")
    return _on_one_device(tensors, dtype)


def _on_one_device(tensors: dict[str, torch.Tensor], dtype: Any = None) -> list[torch.Tensor]:
    """``tensors`` moved to one device and the computation dtype (:func:`_pick_device`, :func:`_resolve_dtype`),
    each checked finite, in order."""
    device = _pick_device(list(tensors.values()))
    cdtype = _resolve_dtype(dtype, device, list(tensors.values()))
    out = []
    for name, t in tensors.items():
        t = t.to(device=device, dtype=cdtype)
        _check_finite(t, name)
        out.append(t)
    return out


def _centered(t: torch.Tensor, name: str) -> torch.Tensor:
    """Column-centred copy of ``t``; a representation whose rows are all identical raises."""
    if bool((t == t[:1]).all()):
        raise ReprtoolsError(
            f"{name} has zero variance (all {t.shape[0]} rows are identical); CKA is undefined for a constant "
            "representation, so check that the hidden states were extracted correctly"
        )
    return t - t.mean(dim=0, keepdim=True)


def _ratio(num: torch.Tensor, den: torch.Tensor, what: str) -> float:
    den_f = float(den)
    if not math.isfinite(den_f) or den_f <= 0.0:
        raise ReprtoolsError(
            f"{what}: the normaliser is {den_f} (under/overflow in this dtype); rescale the inputs or pass "
            "dtype=torch.float64"
        )
    return float(num) / den_f


_F64 = torch.float64


def _sum64(t: torch.Tensor, dim=None) -> torch.Tensor:
    """Sum accumulated in float64 (cheap insurance for the n^2-term sums of float32 Gram entries)."""
    return t.sum(dtype=_F64) if dim is None else t.sum(dim=dim, dtype=_F64)


def _norm64(t: torch.Tensor, dim=None) -> torch.Tensor:
    """Frobenius / Euclidean norm accumulated in float64 (torch's float32 norm of a 1500 x 1500 Gram matrix is
    off by ~4e-5 relative, which would show directly in CKA)."""
    return torch.linalg.vector_norm(t, dim=dim, dtype=_F64)


def _check_method(method: str) -> None:
    if method not in _METHODS:
        raise ReprtoolsError(f"method={method!r} is not known; use one of {', '.join(_METHODS)}")


def _pair_form(method: str, n: int, dx: int, dy: int) -> str:
    """``"feature"`` or ``"gram"``: the forced one, or the one that needs fewer multiply-adds."""
    _check_method(method)
    if method != "auto":
        return method
    feature_cost = n * (dx * dy + dx * dx + dy * dy)
    gram_cost = n * n * (dx + dy) + 3 * n * n
    return "feature" if feature_cost <= gram_cost else "gram"


# --------------------------------------------------------------------------------------------------------------
# Linear CKA
# --------------------------------------------------------------------------------------------------------------


def cka_linear(X: ArrayLike, Y: ArrayLike, *, dtype: Any = None, method: Method = "auto") -> float:
    r"""Linear CKA between two representations of the same ``n`` sentences (Kornblith et al., 2019).

    Shapes: ``X`` is ``(n, d_x)``, ``Y`` is ``(n, d_y)``; row ``i`` of both is sentence ``i``; ``n >= 2``.

    Formula, with column-centred :math:`X_c, Y_c`:

    .. math:: \mathrm{CKA}(X, Y) = \frac{\lVert Y_c^\top X_c \rVert_F^2}
              {\lVert X_c^\top X_c \rVert_F \, \lVert Y_c^\top Y_c \rVert_F}
              = \frac{\langle K_c, L_c \rangle_F}{\lVert K_c \rVert_F \lVert L_c \rVert_F},
              \quad K_c = X_c X_c^\top,\ L_c = Y_c Y_c^\top .

    It is the biased HSIC estimator :math:`\mathrm{tr}(KHLH)/(n-1)^2` normalised, with
    :math:`H = I - \mathbf{1}\mathbf{1}^\top / n`.  The value lies in ``[0, 1]``; 1 means the two
    representations agree up to an orthogonal transform and isotropic scaling.

    Invariances: orthogonal transforms of either input, isotropic scaling, translation (adding a constant
    row vector); symmetric in ``X`` and ``Y``.  Not invariant to general invertible linear maps.

    ``method="auto"`` picks the feature-space form (``d x d`` cross-covariances) or the Gram form (``n x n``
    Gram matrices), whichever needs fewer multiply-adds -- roughly the feature form when ``d < 2n/3``;
    ``"feature"`` / ``"gram"`` force one.  Both give the same value up to rounding.

    Raises :class:`ReprtoolsError` for NaN/inf, a constant representation, mismatched rows or ``n < 2``.

    Reference: Kornblith, Norouzi, Lee & Hinton (2019), "Similarity of Neural Network Representations
    Revisited", ICML, Eq. (5) and Sec. 3.
    """
    x, y = _prepare({"X": X, "Y": Y}, dtype)
    xc, yc = _centered(x, "X"), _centered(y, "Y")
    n, dx = xc.shape
    dy = yc.shape[1]
    if _pair_form(method, n, dx, dy) == "feature":
        num = _sum64((yc.T @ xc).square())
        den = _norm64(xc.T @ xc) * _norm64(yc.T @ yc)
    else:
        k, ell = xc @ xc.T, yc @ yc.T
        num = _sum64(k * ell)
        den = _norm64(k) * _norm64(ell)
    return _ratio(num, den, "cka_linear")


# --------------------------------------------------------------------------------------------------------------
# Debiased linear CKA
# --------------------------------------------------------------------------------------------------------------


def _hsic1_parts_feature(xc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For K = xc xc^T with zeroed diagonal: (diag of K before zeroing, K~ 1, 1^T K~ 1), all in O(n d)."""
    kd = _sum64(xc.square(), dim=1)
    col_sum = xc.sum(dim=0)  # about 0, as xc is centred; kept so the formula holds for any xc
    k1 = (xc @ col_sum).to(_F64) - kd
    s = _sum64(col_sum.square()) - kd.sum()
    return kd, k1, s


def _hsic1_feature(xc, yc, px, py, n: int) -> torch.Tensor:
    kd, k1, sk = px
    ld, l1, sl = py
    tr = _sum64((xc.T @ yc).square()) - kd.dot(ld)
    return (tr + sk * sl / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * k1.dot(l1)) / (n * (n - 3))


def _hsic1_gram(k: torch.Tensor, ell: torch.Tensor, n: int) -> torch.Tensor:
    """Unbiased HSIC of Song et al. (2012) for Gram matrices whose diagonals are already zero."""
    k1, l1 = _sum64(k, dim=1), _sum64(ell, dim=1)
    tr = _sum64(k * ell)
    return (tr + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * k1.dot(l1)) / (n * (n - 3))


def cka_linear_debiased(X: ArrayLike, Y: ArrayLike, *, dtype: Any = None, method: Method = "auto") -> float:
    r"""Debiased linear CKA, built on the unbiased HSIC estimator (Song et al., 2012; Nguyen et al., 2021).

    Shapes: ``X`` is ``(n, d_x)``, ``Y`` is ``(n, d_y)``, rows = the same sentences, ``n >= 4``.

    Formula: columns are centred, :math:`K = X_c X_c^\top` and :math:`L = Y_c Y_c^\top` with their diagonals
    set to zero (:math:`\tilde K, \tilde L`), and

    .. math:: \mathrm{HSIC}_1(K, L) = \frac{1}{n(n-3)} \Big[ \mathrm{tr}(\tilde K \tilde L)
              + \frac{\mathbf 1^\top \tilde K \mathbf 1 \; \mathbf 1^\top \tilde L \mathbf 1}{(n-1)(n-2)}
              - \frac{2}{n-2} \mathbf 1^\top \tilde K \tilde L \mathbf 1 \Big],
              \qquad \mathrm{CKA}_1 = \frac{\mathrm{HSIC}_1(K, L)}{\sqrt{\mathrm{HSIC}_1(K, K)\,\mathrm{HSIC}_1(L, L)}}.

    HSIC_1 is a U-statistic, so it is unbiased; the biased CKA of :func:`cka_linear` is inflated when ``d`` is
    comparable to or larger than ``n`` (two independent random representations score well above 0), which
    this estimator removes.  The two agree as ``n`` grows.  The value can be slightly negative.

    Invariances: as :func:`cka_linear` -- orthogonal transforms, isotropic scaling, translation, symmetry.

    ``method`` as in :func:`cka_linear`: the feature form evaluates the same expression in ``O(n d^2)``
    without building ``n x n`` matrices (:math:`\mathrm{tr}(\tilde K\tilde L) = \lVert X_c^\top Y_c\rVert_F^2
    - \sum_i K_{ii} L_{ii}`, :math:`\tilde K \mathbf 1 = X_c X_c^\top \mathbf 1 - \mathrm{diag}(K)`).

    Raises :class:`ReprtoolsError` for ``n < 4``, NaN/inf, a constant representation, mismatched rows, or when
    HSIC_1 of an input with itself is not positive (too few distinct sentences).

    References: Song et al. (2012), "Feature Selection via Dependence Maximization", JMLR 13, Theorem 2;
    Nguyen, Raghu & Kornblith (2021), "Do Wide and Deep Networks Learn the Same Things?", ICLR, Sec. 3.
    """
    x, y = _prepare({"X": X, "Y": Y}, dtype, min_rows=4)
    xc, yc = _centered(x, "X"), _centered(y, "Y")
    n, dx = xc.shape
    dy = yc.shape[1]
    if _pair_form(method, n, dx, dy) == "feature":
        px, py = _hsic1_parts_feature(xc), _hsic1_parts_feature(yc)
        hxy = _hsic1_feature(xc, yc, px, py, n)
        hxx = _hsic1_feature(xc, xc, px, px, n)
        hyy = _hsic1_feature(yc, yc, py, py, n)
    else:
        k, ell = xc @ xc.T, yc @ yc.T
        k.fill_diagonal_(0.0)
        ell.fill_diagonal_(0.0)
        hxy, hxx, hyy = _hsic1_gram(k, ell, n), _hsic1_gram(k, k, n), _hsic1_gram(ell, ell, n)
    for name, h in (("X", hxx), ("Y", hyy)):
        if not float(h) > 0.0:
            raise ReprtoolsError(
                f"unbiased HSIC of {name} with itself is {float(h):.3g} (not positive) with n={n}; use more "
                "(distinct) sentences or the biased cka_linear"
            )
    return _ratio(hxy, torch.sqrt(hxx * hyy), "cka_linear_debiased")


# --------------------------------------------------------------------------------------------------------------
# RBF CKA
# --------------------------------------------------------------------------------------------------------------


def _median(v: torch.Tensor) -> torch.Tensor:
    """Median of a 1-D tensor; the mean of the two middle values when the count is even (as numpy)."""
    m = v.numel()
    if m % 2:
        return v.kthvalue((m + 1) // 2).values
    return 0.5 * (v.kthvalue(m // 2).values + v.kthvalue(m // 2 + 1).values)


def _rbf_gram(x: torch.Tensor, sigma_frac: float, name: str) -> torch.Tensor:
    xc = _centered(x, name)  # distances are translation-invariant; centring only improves rounding
    n = xc.shape[0]
    sq = xc.square().sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (xc @ xc.T)).clamp_min_(0.0)
    d2.fill_diagonal_(0.0)
    upper = torch.ones(n, n, dtype=torch.bool, device=x.device).triu_(1)
    med = _median(d2[upper].sqrt())
    if not float(med) > 0.0:
        raise ReprtoolsError(
            f"the median pairwise distance in {name} is 0 (more than half of the sentence pairs are duplicates); "
            "the RBF bandwidth is undefined, so de-duplicate the sentences or use cka_linear"
        )
    sigma = sigma_frac * med
    return torch.exp(d2 / (-2.0 * sigma * sigma))


def _center_gram(k: torch.Tensor) -> torch.Tensor:
    """H K H with H = I - 11^T/n, done as row/column mean removal."""
    mean_col = k.mean(dim=0, keepdim=True)
    mean_row = k.mean(dim=1, keepdim=True)
    return k - mean_col - mean_row + k.mean()


def cka_rbf(X: ArrayLike, Y: ArrayLike, sigma_frac: float = 1.0, *, dtype: Any = None) -> float:
    r"""CKA with Gaussian (RBF) kernels, bandwidth a fraction of the median distance (Kornblith et al., 2019).

    Shapes: ``X`` is ``(n, d_x)``, ``Y`` is ``(n, d_y)``, rows = the same sentences, ``n >= 2``.

    Formula: :math:`K_{ij} = \exp(-\lVert x_i - x_j\rVert^2 / (2\sigma_X^2))` with
    :math:`\sigma_X = \texttt{sigma\_frac} \cdot \mathrm{median}_{i<j} \lVert x_i - x_j \rVert` (median over
    the :math:`n(n-1)/2` distinct pairs; Kornblith et al.'s reference code takes the median over all
    :math:`n^2` entries including the zero diagonal, which gives a slightly smaller bandwidth), likewise
    :math:`L` for ``Y``; then with :math:`H = I - \mathbf 1 \mathbf 1^\top/n`

    .. math:: \mathrm{CKA} = \frac{\mathrm{tr}(KHLH)}{\sqrt{\mathrm{tr}(KHKH)\,\mathrm{tr}(LHLH)}}

    (biased HSIC; the :math:`(n-1)^{-2}` factors cancel).  Value in ``[0, 1]``.  As ``sigma_frac`` grows the
    value approaches :func:`cka_linear`.

    Invariances: orthogonal transforms, translation, and isotropic scaling (the bandwidth scales with the data);
    symmetric in ``X`` and ``Y``.

    Cost: ``O(n^2 d)`` time and several ``n x n`` matrices of memory.

    Raises :class:`ReprtoolsError` for NaN/inf, a constant representation, a zero median distance, mismatched
    rows, ``n < 2`` or a non-positive ``sigma_frac``.

    Reference: Kornblith, Norouzi, Lee & Hinton (2019), "Similarity of Neural Network Representations
    Revisited", ICML, Sec. 3 ("Kernel selection").
    """
    if not (isinstance(sigma_frac, (int, float)) and math.isfinite(sigma_frac) and sigma_frac > 0):
        raise ReprtoolsError(f"sigma_frac={sigma_frac!r} must be a positive number (1.0 = the median distance)")
    x, y = _prepare({"X": X, "Y": Y}, dtype)
    kc = _center_gram(_rbf_gram(x, float(sigma_frac), "X"))
    lc = _center_gram(_rbf_gram(y, float(sigma_frac), "Y"))
    num = _sum64(kc * lc)
    den = _norm64(kc) * _norm64(lc)
    return _ratio(num, den, "cka_rbf")


def __getattr__(name: str) -> Any:
    """``cka_linear_matrix`` and its cost model moved to :mod:`reprtools.measures.cka_matrix` (this module stays
    under the size the developers' guide sets); old ``from reprtools.measures.cka import ...`` lines still work."""
    if name in ("cka_linear_matrix", "_matrix_costs", "_DEFAULT_BLOCK_BYTES"):
        from reprtools.measures import cka_matrix

        return getattr(cka_matrix, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
