"""Pure measures of how representations differ: plain functions on ``(n, d)`` arrays, no models or files.

* shift and checkpoint comparisons, rows = the same sentences: :func:`cka_linear`, :func:`cka_linear_debiased`,
  :func:`cka_rbf`, :func:`cosine_same_sentence`, and the batched layer x layer :func:`cka_linear_matrix` (biased or
  debiased);
* cross-lingual, row ``i`` of ``XA`` translates row ``i`` of ``XB``: :func:`cosine_parallel`,
  :func:`cosine_nonparallel`, :func:`cosine_gap`, :func:`retrieval_top1` (chance :func:`retrieval_chance`), and
  the CKAs;
* separability of several languages in one representation, ``f(X, labels)`` or ``f({lang: X_lang})``:
  :func:`silhouette`, :func:`probe_accuracy`, :func:`davies_bouldin` (lower = more separable),
  :func:`fisher_ratio`;
* weight updates (:mod:`reprtools.measures.weights`): :func:`factored_svd`, :func:`relative_update_norm`,
  :func:`stable_rank`, :func:`effective_rank`, :func:`amplification_factor`, :func:`intruder_dimensions`,
  :func:`subspace_similarity`;
* extractive QA scores (:mod:`reprtools.measures.qa`): :func:`exact_match`, :func:`f1` (lm-eval's TyDiQA
  normalisation), :func:`squad_f1`;
* intervals (:mod:`reprtools.measures.resampling`): one set of resampled sentences shared by every language
  and model -- :class:`Resampler`, :func:`interval`, the scheme of each measure in :data:`INTERVAL_SCHEME`.

Inputs are numpy arrays or torch tensors (any device); scalar measures return Python floats.  Degenerate input
raises :class:`reprtools.errors.ReprtoolsError`.  Which name a results table uses for each measure, its
direction and bounds live in :mod:`reprtools.results`.
"""

from reprtools.measures.cka import cka_linear, cka_linear_debiased, cka_rbf
from reprtools.measures.cka_matrix import cka_linear_matrix
from reprtools.measures.resampling import (
    INTERVAL_SCHEME,
    SCHEMES,
    Interval,
    Resampler,
    bootstrap_interval,
    interval,
    jackknife_interval,
    scheme_for,
    shared_bootstrap,
    shared_jackknife,
)
from reprtools.measures.separability import (
    davies_bouldin,
    fisher_ratio,
    from_language_dict,
    probe_accuracy,
    silhouette,
)
from reprtools.measures.qa import exact_match, f1, squad_f1
from reprtools.measures.similarity import (
    cosine_gap,
    cosine_nonparallel,
    cosine_parallel,
    cosine_same_sentence,
    retrieval_chance,
    retrieval_top1,
)
from reprtools.measures.weights import (
    amplification_factor,
    effective_rank,
    factored_svd,
    intruder_dimensions,
    relative_update_norm,
    stable_rank,
    subspace_similarity,
)

__all__ = [
    "INTERVAL_SCHEME",
    "amplification_factor",
    "effective_rank",
    "exact_match",
    "f1",
    "factored_svd",
    "intruder_dimensions",
    "relative_update_norm",
    "squad_f1",
    "stable_rank",
    "subspace_similarity",
    "Interval",
    "Resampler",
    "SCHEMES",
    "bootstrap_interval",
    "cka_linear",
    "cka_linear_debiased",
    "cka_linear_matrix",
    "cka_rbf",
    "cosine_gap",
    "cosine_nonparallel",
    "cosine_parallel",
    "cosine_same_sentence",
    "davies_bouldin",
    "fisher_ratio",
    "from_language_dict",
    "interval",
    "jackknife_interval",
    "probe_accuracy",
    "retrieval_chance",
    "retrieval_top1",
    "scheme_for",
    "shared_bootstrap",
    "shared_jackknife",
    "silhouette",
]
