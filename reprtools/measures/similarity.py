"""Sentence-level cosine similarity and bitext retrieval between two representations.

Inputs are numpy arrays or torch tensors of shape ``(n, d)`` whose row ``i`` is sentence ``i`` (or its
translation); the arithmetic runs in torch on the inputs' device, in the dtype chosen as in
:mod:`reprtools.measures.cka` (``dtype=None``: float64 on the CPU, float32 on an accelerator).  Results are
Python floats.  A zero vector, NaN/inf, mismatched shapes or fewer than 2 rows raise
:class:`~reprtools.errors.ReprtoolsError`.

Raw cosines of transformer hidden states are inflated by anisotropy (most vectors share a few dominant
directions; Ethayarajh, 2019, "How Contextual are Contextualized Word Representations?", EMNLP), so compare
cosine values between checkpoints or languages rather than reading them as absolute similarities: for
translations, :func:`cosine_gap` subtracts the mean cosine of non-translations (:func:`cosine_nonparallel`).

Intervals: :func:`cosine_same_sentence` and :func:`cosine_parallel` are means of per-sentence terms, so a percentile
bootstrap over sentences is valid for them; :func:`cosine_nonparallel`, :func:`cosine_gap` and
:func:`retrieval_top1` couple every pair of rows and take the jackknife (see
:mod:`reprtools.measures.resampling`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from reprtools.errors import ReprtoolsError
from reprtools.measures.cka import ArrayLike, _prepare, _sum64

__all__ = [
    "cosine_gap",
    "cosine_nonparallel",
    "cosine_parallel",
    "cosine_same_sentence",
    "retrieval_chance",
    "retrieval_top1",
]


def _unit_rows(t: torch.Tensor, name: str) -> torch.Tensor:
    norms = torch.linalg.vector_norm(t, dim=1)
    zero = norms == 0
    if bool(zero.any()):
        i = int(zero.nonzero()[0, 0])
        raise ReprtoolsError(
            f"{name} row {i} is a zero vector ({int(zero.sum())} in all); cosine is undefined for it, so drop "
            "those sentences"
        )
    return t / norms[:, None]


def _units(A: Any, B: Any, names: tuple[str, str], dtype: Any) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = _prepare({names[0]: A, names[1]: B}, dtype, same_width=True)
    return _unit_rows(a, names[0]), _unit_rows(b, names[1])


def _matched(ua: torch.Tensor, ub: torch.Tensor) -> torch.Tensor:
    """Sum over rows of cos(a_i, b_i), accumulated in float64."""
    return _sum64((ua * ub).sum(dim=1))


def _unmatched(ua: torch.Tensor, ub: torch.Tensor, matched: torch.Tensor) -> torch.Tensor:
    """Sum over ordered pairs i != j of cos(a_i, b_j) = (sum_i a^_i) . (sum_j b^_j) - sum_i cos(a_i, b_i), O(n d)."""
    return _sum64(ua, dim=0).dot(_sum64(ub, dim=0)) - matched


def cosine_same_sentence(X_base: ArrayLike, X_ckpt: ArrayLike, *, dtype: Any = None) -> float:
    r"""Mean cosine between each sentence's base-model and adapted-checkpoint representation (how far the
    adapter turned each sentence vector; 1 = no shift in direction).

    Shapes: ``X_base`` and ``X_ckpt`` are both ``(n, d)`` (same layer of the same model, so the same width);
    row ``i`` of both is sentence ``i``; ``n >= 2``.

    Formula: :math:`\frac{1}{n}\sum_i \frac{x_i^\top y_i}{\lVert x_i\rVert\,\lVert y_i\rVert}`, in
    ``[-1, 1]``; 1 means every sentence vector kept its direction.  A mean of per-sentence terms, so the
    bootstrap interval applies (:data:`~reprtools.measures.resampling.INTERVAL_SCHEME`).

    Invariances: a positive rescaling of any single row, and the same orthogonal transform applied to both
    inputs.  *Not* invariant to translation (centring changes cosines), nor to a transform of one input only.

    Raises :class:`ReprtoolsError` for a zero row, NaN/inf, or mismatched shapes.

    Reference: the cosine measure of Salton, Wong & Yang (1975), "A Vector Space Model for Automatic
    Indexing", CACM 18(11); read it with the anisotropy caveat of Ethayarajh (2019), see the module docstring.
    """
    ua, ub = _units(X_base, X_ckpt, ("X_base", "X_ckpt"), dtype)
    return float(_matched(ua, ub)) / ua.shape[0]


def cosine_parallel(XA: ArrayLike, XB: ArrayLike, *, dtype: Any = None) -> float:
    r"""Mean cosine between parallel sentences in two languages.

    Shapes: ``XA`` and ``XB`` are both ``(n, d)`` from the same layer of one model; row ``i`` of ``XA`` is the
    translation of row ``i`` of ``XB``; ``n >= 2``.

    Formula: :math:`\frac{1}{n}\sum_i \cos(a_i, b_i)`, in ``[-1, 1]``; higher means the two languages are
    mapped to closer directions.  Read it against :func:`cosine_nonparallel` (or use :func:`cosine_gap` or
    :func:`retrieval_top1`), since anisotropy alone makes unrelated sentences look similar.

    Invariances: a positive rescaling of any single row, and one orthogonal transform applied to both inputs;
    not translation.

    Raises :class:`ReprtoolsError` for a zero row, NaN/inf, or mismatched shapes.

    Reference: cosine similarity of parallel sentences as the basis of cross-lingual alignment analyses, cf.
    Libovický, Rosa & Fraser (2020), "On the Language Neutrality of Pre-trained Multilingual
    Representations", Findings of EMNLP (who also show that subtracting each language's mean vector helps).
    """
    ua, ub = _units(XA, XB, ("XA", "XB"), dtype)
    return float(_matched(ua, ub)) / ua.shape[0]


def cosine_nonparallel(XA: ArrayLike, XB: ArrayLike, *, dtype: Any = None) -> float:
    r"""Mean cosine between sentences that are *not* translations of each other: the baseline of
    :func:`cosine_parallel`.

    Shapes: as :func:`cosine_parallel` (row ``i`` of ``XA`` translates row ``i`` of ``XB``), ``n >= 2``.

    Formula: the mean over all ``n(n-1)`` ordered pairs ``i != j`` of :math:`\cos(a_i, b_j)`, computed in
    ``O(n d)`` as :math:`\big[(\sum_i \hat a_i)^\top(\sum_j \hat b_j) - \sum_i \hat a_i^\top \hat b_i\big] /
    (n(n-1))` with unit rows :math:`\hat a_i, \hat b_j`.  In ``[-1, 1]``.  Raw cosines between hidden states of
    a language model are high for *any* two sentences (anisotropy; Ethayarajh, 2019), and this is that level
    for the two languages at hand.  It is a U-statistic of order 2 (Hoeffding, 1948), unbiased for the cosine
    of two unrelated sentences.

    Invariances: as :func:`cosine_parallel`, plus any permutation of the rows of both inputs together.

    Raises :class:`ReprtoolsError` for a zero row, NaN/inf, or mismatched shapes.

    References: Ethayarajh (2019), "How Contextual are Contextualized Word Representations?", EMNLP;
    Hoeffding (1948), "A Class of Statistics with Asymptotically Normal Distribution", Ann. Math. Statist. 19(3).
    """
    ua, ub = _units(XA, XB, ("XA", "XB"), dtype)
    n = ua.shape[0]
    return float(_unmatched(ua, ub, _matched(ua, ub))) / (n * (n - 1))


def cosine_gap(XA: ArrayLike, XB: ArrayLike, *, dtype: Any = None) -> float:
    r"""How much closer translations are than non-translations:
    :func:`cosine_parallel` :math:`-` :func:`cosine_nonparallel`.

    Shapes: as :func:`cosine_parallel`, ``n >= 2``.

    Formula: :math:`\frac1n \sum_i \cos(a_i, b_i) - \frac{1}{n(n-1)} \sum_{i \ne j} \cos(a_i, b_j)`, in
    ``[-2, 2]``.  About 0 when the rows of ``XB`` carry no information about which row of ``XA`` they translate
    (e.g. shuffled translations), however anisotropic the space; positive when translations share direction
    beyond the common one.  Subtracting the non-parallel level is the same idea as the language-mean centring of
    Libovický et al. (2020), applied to the score instead of the vectors.

    Invariances: as :func:`cosine_nonparallel`.

    Raises :class:`ReprtoolsError` for a zero row, NaN/inf, or mismatched shapes.

    Reference: Libovický, Rosa & Fraser (2020), "On the Language Neutrality of Pre-trained Multilingual
    Representations", Findings of EMNLP; Ethayarajh (2019), EMNLP (anisotropy).
    """
    ua, ub = _units(XA, XB, ("XA", "XB"), dtype)
    n = ua.shape[0]
    matched = _matched(ua, ub)
    return float(matched) / n - float(_unmatched(ua, ub, matched)) / (n * (n - 1))


def retrieval_top1(XA: ArrayLike, XB: ArrayLike, *, dtype: Any = None) -> float:
    r"""Top-1 accuracy of cosine nearest-neighbour retrieval of each sentence's translation (A -> B).

    Shapes: ``XA`` and ``XB`` are both ``(n, d)``; row ``i`` of ``XA`` is the translation of row ``i`` of
    ``XB``; ``n >= 2``.

    Formula: the share of rows ``i`` for which :math:`\cos(a_i, b_i) > \cos(a_i, b_j)` for every ``j != i``.
    A tie counts as a miss -- a deterministic, conservative rule under which a collapsed representation (all
    rows of ``XB`` equal) scores 0, not 1, and so do sentences that occur twice in the set (de-duplicate them
    first).  On continuous data this equals "``argmax_j cos(a_i, b_j) == i``".  The value is in ``[0, 1]``;
    chance is :func:`retrieval_chance` ``(n) = 1/n``, and the task gets easier as ``n`` falls, so compare
    values at the same ``n``.  One direction only: call it with the arguments swapped for B -> A.

    Invariances: a positive rescaling of any single row, one orthogonal transform applied to both inputs, and
    a permutation applied to the rows of both inputs.

    Cost: one ``n x n`` similarity matrix.  Intervals take the jackknife, never a bootstrap: a bootstrap
    resample holds about 63% distinct candidates, which makes retrieval easier (issue 6).

    Raises :class:`ReprtoolsError` for a zero row, NaN/inf, or mismatched shapes.

    Reference: the parallel-sentence (bitext) retrieval evaluation of Artetxe & Schwenk (2019), "Massively
    Multilingual Sentence Embeddings for Zero-Shot Cross-Lingual Transfer and Beyond", TACL (Tatoeba
    similarity search), here with plain cosine rather than the margin criterion.
    """
    ua, ub = _units(XA, XB, ("XA", "XB"), dtype)
    sims = ua @ ub.T
    own = sims.diagonal().clone()
    rivals = sims.fill_diagonal_(float("-inf")).amax(dim=1)
    return float((own > rivals).to(torch.float64).mean())


def retrieval_chance(n: int) -> float:
    """Expected :func:`retrieval_top1` among ``n`` candidates when the representations carry no information
    about which row is the translation: ``1/n`` (under a random matching each of the ``n`` candidates is
    equally likely to be the nearest).  Raises :class:`ReprtoolsError` for ``n < 1``."""
    if not (isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1):
        raise ReprtoolsError(f"n={n!r} must be a positive number of candidate sentences")
    return 1.0 / int(n)
