"""Pure measures of how representations differ: plain functions on ``(n, d)`` arrays, no models or files.

Paired measures compare two representations of the same sentences (e.g. base model vs adapted checkpoint);
cross-lingual measures compare parallel sentences in two languages; separability measures score how well
several languages separate in one representation.  Inputs are numpy arrays or torch tensors (any device);
scalar measures return Python floats.  Degenerate input raises :class:`reprtools.errors.ReprtoolsError`.

The registries map a measure's name to its function (read-only):

* :data:`PAIRED_MEASURES` -- ``f(X_base, X_ckpt) -> float``, rows = the same sentences;
* :data:`CROSS_LINGUAL` -- ``f(XA, XB) -> float``, row ``i`` of ``XA`` translates row ``i`` of ``XB``;
* :data:`SEPARABILITY` -- ``f(X, labels) -> float`` (or ``f({lang: X_lang})``); for ``davies_bouldin`` lower
  means more separable, for the others higher does (see :data:`LOWER_IS_MORE_SEPARABLE`).
"""

from types import MappingProxyType

from reprtools.measures.bootstrap import BootstrapResult, bootstrap_ci
from reprtools.measures.cka import cka_linear, cka_linear_debiased, cka_linear_matrix, cka_rbf
from reprtools.measures.separability import (
    davies_bouldin,
    fisher_ratio,
    from_language_dict,
    probe_accuracy,
    silhouette,
)
from reprtools.measures.similarity import cosine_base, cosine_parallel, retrieval_top1

PAIRED_MEASURES = MappingProxyType(
    {
        "cka_linear": cka_linear,
        "cka_linear_debiased": cka_linear_debiased,
        "cka_rbf": cka_rbf,
        "cosine_base": cosine_base,
    }
)

CROSS_LINGUAL = MappingProxyType(
    {
        "cosine_parallel": cosine_parallel,
        "retrieval_top1": retrieval_top1,
        "cka_linear": cka_linear,
    }
)

SEPARABILITY = MappingProxyType(
    {
        "silhouette": silhouette,
        "probe_accuracy": probe_accuracy,
        "davies_bouldin": davies_bouldin,
        "fisher_ratio": fisher_ratio,
    }
)

LOWER_IS_MORE_SEPARABLE = frozenset({"davies_bouldin"})

__all__ = [
    "BootstrapResult",
    "CROSS_LINGUAL",
    "LOWER_IS_MORE_SEPARABLE",
    "PAIRED_MEASURES",
    "SEPARABILITY",
    "bootstrap_ci",
    "cka_linear",
    "cka_linear_debiased",
    "cka_linear_matrix",
    "cka_rbf",
    "cosine_base",
    "cosine_parallel",
    "davies_bouldin",
    "fisher_ratio",
    "from_language_dict",
    "probe_accuracy",
    "retrieval_top1",
    "silhouette",
]
