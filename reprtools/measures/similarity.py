"""Sentence-level cosine similarity and bitext retrieval between two representations.

Inputs are numpy arrays or torch tensors of shape ``(n, d)`` whose row ``i`` is sentence ``i`` (or its
translation); the arithmetic runs in torch on the inputs' device, in the dtype chosen as in
:mod:`reprtools.measures.cka` (``dtype=None``: float64 on the CPU, float32 on an accelerator).  Results are
Python floats.  A zero vector, NaN/inf, mismatched shapes or fewer than 2 rows raise
:class:`~reprtools.errors.ReprtoolsError`.

Raw cosines of transformer hidden states are inflated by anisotropy (most vectors share a few dominant
directions; Ethayarajh, 2019, "How Contextual are Contextualized Word Representations?", EMNLP), so compare
cosine values between checkpoints or languages rather than reading them as absolute similarities.
"""

from __future__ import annotations

from typing import Any

import torch

from reprtools.errors import ReprtoolsError
from reprtools.measures.cka import ArrayLike, _prepare

__all__ = ["cosine_base", "cosine_parallel", "retrieval_top1"]


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


def _mean_rowwise_cosine(A: Any, B: Any, names: tuple[str, str], dtype: Any) -> float:
    a, b = _prepare({names[0]: A, names[1]: B}, dtype, same_width=True)
    cos = (_unit_rows(a, names[0]) * _unit_rows(b, names[1])).sum(dim=1)
    return float(cos.to(torch.float64).mean())


def cosine_base(X_base: ArrayLike, X_ckpt: ArrayLike, *, dtype: Any = None) -> float:
    r"""Mean cosine between each sentence's base-model and adapted-checkpoint representation.

    Shapes: ``X_base`` and ``X_ckpt`` are both ``(n, d)`` (same layer of the same model, so the same width);
    row ``i`` of both is sentence ``i``; ``n >= 2``.

    Formula: :math:`\frac{1}{n}\sum_i \frac{x_i^\top y_i}{\lVert x_i\rVert\,\lVert y_i\rVert}`, in
    ``[-1, 1]``; 1 means every sentence vector kept its direction.

    Invariances: a positive rescaling of any single row, and the same orthogonal transform applied to both
    inputs.  *Not* invariant to translation (centring changes cosines), nor to a transform of one input only.

    Raises :class:`ReprtoolsError` for a zero row, NaN/inf, or mismatched shapes.

    Reference: the cosine measure of Salton, Wong & Yang (1975), "A Vector Space Model for Automatic
    Indexing", CACM 18(11); read it with the anisotropy caveat of Ethayarajh (2019), see the module docstring.
    """
    return _mean_rowwise_cosine(X_base, X_ckpt, ("X_base", "X_ckpt"), dtype)


def cosine_parallel(XA: ArrayLike, XB: ArrayLike, *, dtype: Any = None) -> float:
    r"""Mean cosine between parallel sentences in two languages.

    Shapes: ``XA`` and ``XB`` are both ``(n, d)`` from the same layer of one model; row ``i`` of ``XA`` is the
    translation of row ``i`` of ``XB``; ``n >= 2``.

    Formula: :math:`\frac{1}{n}\sum_i \cos(a_i, b_i)`, in ``[-1, 1]``; higher means the two languages are
    mapped to closer directions.  Compare against the mean cosine of *non*-parallel pairs (or use
    :func:`retrieval_top1`), since anisotropy alone makes unrelated sentences look similar.

    Invariances: a positive rescaling of any single row, and one orthogonal transform applied to both inputs;
    not translation.

    Raises :class:`ReprtoolsError` for a zero row, NaN/inf, or mismatched shapes.

    Reference: cosine similarity of parallel sentences as the basis of cross-lingual alignment analyses, cf.
    Libovický, Rosa & Fraser (2020), "On the Language Neutrality of Pre-trained Multilingual
    Representations", Findings of EMNLP (who also show that subtracting each language's mean vector helps).
    """
    return _mean_rowwise_cosine(XA, XB, ("XA", "XB"), dtype)


def retrieval_top1(XA: ArrayLike, XB: ArrayLike, *, dtype: Any = None) -> float:
    r"""Top-1 accuracy of cosine nearest-neighbour retrieval of each sentence's translation (A -> B).

    Shapes: ``XA`` and ``XB`` are both ``(n, d)``; row ``i`` of ``XA`` is the translation of row ``i`` of
    ``XB``; ``n >= 2``.

    Formula: the share of rows ``i`` for which :math:`\cos(a_i, b_i) > \cos(a_i, b_j)` for every other
    candidate ``j``, except candidates that are copies of the same sentence pair (:math:`a_j = a_i` and
    :math:`b_j = b_i` exactly, as created by bootstrap resampling, see
    :func:`~reprtools.measures.bootstrap.bootstrap_ci`), which never count against row ``i``.  A tie with any
    other candidate counts as a miss -- a deterministic, conservative rule under which a collapsed
    representation (all rows of ``XB`` equal) scores 0, not 1.  On continuous data without duplicates this
    equals "``argmax_j cos(a_i, b_j) == i``".  Chance level is ``1/n``; the value is in ``[0, 1]``.  Retrieval
    is one direction only: call it with the arguments swapped for B -> A.

    Invariances: a positive rescaling of any single row, one orthogonal transform applied to both inputs, and
    a permutation applied to the rows of both inputs.

    Cost: one ``n x n`` similarity matrix.

    Raises :class:`ReprtoolsError` for a zero row, NaN/inf, or mismatched shapes.

    Reference: the parallel-sentence (bitext) retrieval evaluation of Artetxe & Schwenk (2019), "Massively
    Multilingual Sentence Embeddings for Zero-Shot Cross-Lingual Transfer and Beyond", TACL (Tatoeba
    similarity search), here with plain cosine rather than the margin criterion.
    """
    a, b = _prepare({"XA": XA, "XB": XB}, dtype, same_width=True)
    sims = _unit_rows(a, "XA") @ _unit_rows(b, "XB").T
    own = sims.diagonal().clone()
    # copies of the same (a_i, b_i) pair, e.g. from bootstrap resampling, share a group and are not rivals
    _, group = torch.unique(torch.cat([a, b], dim=1), dim=0, return_inverse=True)
    same_vector = group[:, None] == group[None, :]
    rivals = sims.masked_fill(same_vector, float("-inf")).amax(dim=1)
    return float((own > rivals).to(torch.float64).mean())
