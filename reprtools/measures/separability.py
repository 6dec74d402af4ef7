"""How separable the languages are in one representation: cluster scores and a language-ID probe.

Every measure takes either ``X`` of shape ``(N, d)`` with ``labels`` of shape ``(N,)`` (language codes or
ints), or a dict ``{lang: (n_lang, d) array}`` in place of ``X`` (see :func:`from_language_dict`).  There must
be at least 2 distinct labels and at least 2 sentences per label; otherwise
:class:`~reprtools.errors.ReprtoolsError` is raised, as for NaN/inf or a length mismatch.

``silhouette``, ``probe_accuracy`` and ``davies_bouldin`` are computed with scikit-learn on a float64 numpy
copy of the data (moved to the CPU); ``fisher_ratio`` runs in torch on the input's device.

Direction: higher silhouette, probe accuracy and Fisher ratio mean *more* separable languages; a *lower*
Davies-Bouldin index means more separable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy.spatial.distance import pdist
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import davies_bouldin_score, silhouette_score
from sklearn.model_selection import PredefinedSplit, StratifiedKFold, cross_val_predict, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from reprtools.errors import ReprtoolsError
from reprtools.measures.cka import ArrayLike, _pick_device, _prepare, _sum64, _to_tensor

__all__ = ["from_language_dict", "silhouette", "probe_accuracy", "davies_bouldin", "fisher_ratio"]


def from_language_dict(reps: Mapping[Any, ArrayLike]) -> tuple[ArrayLike, np.ndarray]:
    """Stack ``{lang: (n_lang, d) array}`` into ``(X, labels)``.

    ``X`` is ``(sum n_lang, d)``, the languages in the dict's order; ``labels`` is a numpy array holding each
    row's key.  ``X`` is a numpy array when every value is one, else a torch tensor (on the first non-CPU
    device among the values).  Raises :class:`ReprtoolsError` for an empty dict, a non-2-D value or unequal
    widths.
    """
    if not isinstance(reps, Mapping) or not reps:
        raise ReprtoolsError("expected a non-empty dict {language: (n, d) array}; got an empty or non-dict value")
    tensors = []
    for lang, x in reps.items():
        t = _to_tensor(x, f"reps[{lang!r}]")
        if t.ndim != 2:
            raise ReprtoolsError(f"reps[{lang!r}] has shape {tuple(t.shape)}; expected a 2-D (n, d) array")
        tensors.append(t)
    widths = {t.shape[1] for t in tensors}
    if len(widths) > 1:
        raise ReprtoolsError(f"the languages have different widths {sorted(widths)}; all must come from one layer")
    labels = np.concatenate([np.full(t.shape[0], lang, dtype=object) for lang, t in zip(reps, tensors)])
    labels = np.asarray(labels.tolist())  # a plain str/int array rather than object where possible
    if all(isinstance(x, np.ndarray) for x in reps.values()):
        return np.concatenate([np.asarray(x) for x in reps.values()], axis=0), labels
    device = _pick_device(tensors)
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return torch.cat([t.to(device=device, dtype=dtype) for t in tensors], dim=0), labels


def _labelled(X: Any, labels: Any, dtype: Any = None, min_per_class: int = 2):
    """Validated ``(x tensor, codes ndarray, classes ndarray)``; codes are 0..C-1 in sorted label order."""
    if isinstance(X, Mapping):
        if labels is not None:
            raise ReprtoolsError("pass either a dict {language: array} or X with labels, not both")
        X, labels = from_language_dict(X)
    elif labels is None:
        raise ReprtoolsError("labels are required when X is an array; pass labels=... or a dict {language: array}")
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ReprtoolsError(f"labels has shape {labels.shape}; expected one label per row, shape (N,)")
    (x,) = _prepare({"X": X}, dtype, min_rows=1)
    if labels.shape[0] != x.shape[0]:
        raise ReprtoolsError(f"X has {x.shape[0]} rows but labels has {labels.shape[0]}; give one label per row")
    try:
        classes, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    except TypeError:
        raise ReprtoolsError("labels mix types that cannot be sorted (e.g. str and int); use one type") from None
    if len(classes) < 2:
        raise ReprtoolsError(
            f"only one language ({classes[0] if len(classes) else 'none'!r}) is present; separability needs at "
            "least 2 distinct labels"
        )
    small = counts < min_per_class
    if small.any():
        which = ", ".join(f"{c!r} ({k})" for c, k in zip(classes[small], counts[small]))
        raise ReprtoolsError(f"each language needs at least {min_per_class} sentences; too few for: {which}")
    return x, codes.reshape(-1), classes


def _numpy64(x: torch.Tensor) -> np.ndarray:
    return x.to(device="cpu", dtype=torch.float64).numpy()


def silhouette(X: ArrayLike | Mapping, labels: Any = None) -> float:
    r"""Mean silhouette coefficient of the language clusters under cosine distance (Rousseeuw, 1987).

    Shapes: ``X`` ``(N, d)`` and ``labels`` ``(N,)``, or a dict ``{lang: (n_lang, d)}``.

    Formula: for row ``i`` in language ``c``, :math:`a_i` = mean cosine distance to the other rows of ``c``,
    :math:`b_i` = the smallest mean cosine distance to the rows of another language;
    :math:`s_i = (b_i - a_i)/\max(a_i, b_i)`; the score is :math:`\frac1N\sum_i s_i \in [-1, 1]`.  Higher =
    more separable; near 0 = overlapping languages.  Computed by :func:`sklearn.metrics.silhouette_score` with
    ``metric="cosine"``, ``O(N^2 d)``.

    Invariances: a positive rescaling of any single row; an orthogonal transform; relabelling the languages.
    Not translation (cosine distance depends on the origin).

    Raises :class:`ReprtoolsError` for a zero row, fewer than 2 languages or under 2 sentences per language.

    Reference: Rousseeuw (1987), "Silhouettes: a graphical aid to the interpretation and validation of cluster
    analysis", J. Comput. Appl. Math. 20.
    """
    x, codes, _ = _labelled(X, labels, torch.float64)
    zero = torch.linalg.vector_norm(x, dim=1) == 0
    if bool(zero.any()):
        raise ReprtoolsError(
            f"X row {int(zero.nonzero()[0, 0])} is a zero vector; cosine distance is undefined for it, so drop it"
        )
    return float(silhouette_score(_numpy64(x), codes, metric="cosine"))


def probe_accuracy(
    X: ArrayLike | Mapping,
    labels: Any = None,
    *,
    n_splits: int = 5,
    seed: int = 0,
    C: float = 1.0,
    max_iter: int = 1000,
    n_jobs: int | None = None,
    groups: Any = None,
) -> float:
    r"""Cross-validated accuracy of a logistic-regression language-ID probe (linear separability).

    Shapes: ``X`` ``(N, d)`` and ``labels`` ``(N,)``, or a dict ``{lang: (n_lang, d)}``.

    Method: a pipeline of :class:`~sklearn.preprocessing.StandardScaler` (fit on each training fold only) and
    multinomial :class:`~sklearn.linear_model.LogisticRegression` (L2, inverse strength ``C``).  Higher = more
    separable; chance is the majority-language share (``1/C`` for balanced languages).  Deterministic for a
    given ``seed``.  Folds:

    * ``groups=None``: a shuffled :class:`~sklearn.model_selection.StratifiedKFold` with ``n_splits`` folds
      and ``random_state=seed``; the score is the mean test-fold accuracy
      (:func:`~sklearn.model_selection.cross_val_score`).
    * ``groups``: integer sentence ids, one per row (``(N,)``; for a dict of languages with equal sizes also
      ``(n,)``, the id of row ``i`` in every language).  All rows of one sentence -- its translations -- share a
      fold, so the probe is never tested on a sentence it saw in another language.  Ids are dealt to folds in
      blocks of ``n_splits`` consecutive ids, each block in a seeded random order: folds are balanced to
      within one sentence per block, and a sentence's fold depends only on its id and ``seed``, not on which
      other sentences are present.  That stability is what the jackknife needs
      (:mod:`reprtools.measures.resampling`; pass ``np.arange(n)`` as one of the resampled arrays and use it
      here): a replicate then differs from the full data only by the deleted sentences, not also by a new
      random split, whose noise the jackknife variance would multiply by ``g - 1``.  The score is the accuracy
      over all rows, each predicted by the probe trained without its fold
      (:func:`~sklearn.model_selection.cross_val_predict` over a
      :class:`~sklearn.model_selection.PredefinedSplit`).

    Invariances: any invertible per-feature affine map (standardisation undoes it) and relabelling the
    languages; approximately invariant to rotations (the L2 penalty is rotation-invariant, standardisation is
    not).

    Raises :class:`ReprtoolsError` for fewer than 2 languages, a language with fewer than ``n_splits``
    sentences (pass a smaller ``n_splits`` or add sentences), bad ``groups``, or grouped folds whose training
    part lacks a language.

    References: Alain & Bengio (2017), "Understanding intermediate layers using linear classifier probes",
    ICLR workshop; cross-validation: Stone (1974), J. R. Stat. Soc. B 36.
    """
    if not (isinstance(n_splits, (int, np.integer)) and n_splits >= 2):
        raise ReprtoolsError(f"n_splits={n_splits!r} must be an integer >= 2")
    x, codes, _ = _labelled(X, labels, torch.float64)
    sizes = [int(v.shape[0]) for v in X.values()] if isinstance(X, Mapping) else None  # validated 2-D above
    counts = np.bincount(codes)
    if counts.min() < n_splits:
        raise ReprtoolsError(
            f"the smallest language has {counts.min()} sentences but n_splits={n_splits}; pass "
            f"n_splits<={counts.min()} or give every language at least {n_splits} sentences"
        )
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    if groups is None:
        folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        scores = cross_val_score(probe, _numpy64(x), codes, cv=folds, scoring="accuracy", n_jobs=n_jobs)
        return float(np.mean(scores))
    test_fold = _sentence_folds(_group_ids(groups, len(codes), sizes), n_splits, seed)
    for f in np.unique(test_fold):
        if len(np.unique(codes[test_fold != f])) < len(counts):
            raise ReprtoolsError(
                f"with groups, the training part of fold {f} lacks a language; give every language the same "
                "sentences (parallel rows) or pass groups=None"
            )
    pred = cross_val_predict(probe, _numpy64(x), codes, cv=PredefinedSplit(test_fold), n_jobs=n_jobs)
    return float(np.mean(pred == codes))


def _group_ids(groups: Any, n_rows: int, sizes: list[int] | None) -> np.ndarray:
    """Validated integer sentence ids, one per row; ``(n,)`` ids are repeated for every language of a dict."""
    if isinstance(groups, torch.Tensor):
        groups = groups.detach().cpu().numpy()
    ids = np.asarray(groups)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ReprtoolsError(f"groups must be a 1-D array of integer sentence ids; got shape {ids.shape}, {ids.dtype}")
    if sizes and len(set(sizes)) == 1 and len(ids) == sizes[0] and len(ids) != n_rows:
        ids = np.tile(ids, len(sizes))
    if len(ids) != n_rows:
        raise ReprtoolsError(f"groups has {len(ids)} ids but there are {n_rows} rows; give one sentence id per row")
    if ids.min() < 0:
        raise ReprtoolsError("groups holds a negative id; use sentence indices 0, 1, 2, ...")
    return ids.astype(np.uint64)


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele, Lea & Flood, 2014, OOPSLA): a fixed, well-mixed hash of uint64 keys."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _sentence_folds(ids: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """Fold of each id: ids ``b*k .. b*k+k-1`` (``k = n_splits``) go to the ``k`` folds in the order of their
    seeded hash keys, so the fold of an id depends only on the id and ``seed``; returns folds renumbered
    0..F-1 over the folds present."""
    k = np.uint64(n_splits)
    members = (ids // k)[:, None] * k + np.arange(n_splits, dtype=np.uint64)[None, :]  # each id's block
    with np.errstate(over="ignore"):
        keys = _mix64(members + _mix64(np.uint64(seed & 0xFFFFFFFFFFFFFFFF) + np.uint64(0x9E3779B97F4A7C15)))
    own = keys[np.arange(len(ids)), (ids % k).astype(np.int64)]
    fold = (keys < own[:, None]).sum(axis=1)
    return np.unique(fold, return_inverse=True)[1].reshape(-1)


def davies_bouldin(X: ArrayLike | Mapping, labels: Any = None) -> float:
    r"""Davies-Bouldin index of the language clusters (Davies & Bouldin, 1979). LOWER = more separable.

    Shapes: ``X`` ``(N, d)`` and ``labels`` ``(N,)``, or a dict ``{lang: (n_lang, d)}``.

    Formula: with centroid :math:`\mu_c` and mean Euclidean distance :math:`s_c` of language ``c``'s rows to
    it, :math:`DB = \frac1C \sum_c \max_{c' \ne c} \frac{s_c + s_{c'}}{\lVert \mu_c - \mu_{c'} \rVert}
    \ge 0`.  Computed by :func:`sklearn.metrics.davies_bouldin_score`.

    Invariances: translation, orthogonal transforms, isotropic scaling, relabelling the languages.

    Raises :class:`ReprtoolsError` when all language centroids coincide (scikit-learn would return 0, which
    reads as "perfectly separable"), for fewer than 2 languages or under 2 sentences per language.

    Reference: Davies & Bouldin (1979), "A Cluster Separation Measure", IEEE TPAMI 1(2).
    """
    x, codes, classes = _labelled(X, labels, torch.float64)
    xn = _numpy64(x)
    centroids = np.stack([xn[codes == c].mean(axis=0) for c in range(len(classes))])
    if np.allclose(pdist(centroids), 0):
        raise ReprtoolsError(
            "all language centroids coincide (to 1e-8), so the Davies-Bouldin index is undefined; if the data are "
            "tiny in magnitude, rescale them"
        )
    return float(davies_bouldin_score(xn, codes))


def fisher_ratio(X: ArrayLike | Mapping, labels: Any = None, *, dtype: Any = None) -> float:
    r"""Fisher's between- over within-language scatter, :math:`\mathrm{tr}(S_B)/\mathrm{tr}(S_W)` (Fisher, 1936).

    Shapes: ``X`` ``(N, d)`` and ``labels`` ``(N,)``, or a dict ``{lang: (n_lang, d)}``.

    Formula: with overall mean :math:`\mu`, language means :math:`\mu_c` and sizes :math:`n_c`,

    .. math:: S_B = \sum_c n_c (\mu_c - \mu)(\mu_c - \mu)^\top, \qquad
              S_W = \sum_c \sum_{i \in c} (x_i - \mu_c)(x_i - \mu_c)^\top,

    and the score is :math:`\mathrm{tr}(S_B)/\mathrm{tr}(S_W) = \sum_c n_c\lVert\mu_c-\mu\rVert^2 /
    \sum_i \lVert x_i - \mu_{c(i)}\rVert^2 \ge 0` (the traces are computed without forming ``d x d``
    matrices).  Higher = more separable.  For languages drawn from one distribution it is about
    :math:`(C-1)/(N-C)`.

    Invariances: translation, orthogonal transforms, isotropic scaling, relabelling the languages.

    Computed in torch on the input's device (``dtype`` as in :mod:`reprtools.measures.cka`).

    Raises :class:`ReprtoolsError` when :math:`\mathrm{tr}(S_W) = 0` (every language collapsed to a single
    point), for fewer than 2 languages or under 2 sentences per language.

    Reference: Fisher (1936), "The use of multiple measurements in taxonomic problems", Annals of Eugenics 7(2).
    """
    x, codes_np, classes = _labelled(X, labels, dtype)
    codes = torch.as_tensor(codes_np, device=x.device, dtype=torch.long)
    n_classes = len(classes)
    counts = torch.bincount(codes, minlength=n_classes).to(x.dtype)
    means = torch.zeros(n_classes, x.shape[1], device=x.device, dtype=x.dtype).index_add_(0, codes, x)
    means /= counts[:, None]
    mu = x.mean(dim=0)
    between = _sum64(counts * (means - mu).square().sum(dim=1))
    within = _sum64((x - means[codes]).square())
    first = torch.as_tensor([int(np.flatnonzero(codes_np == c)[0]) for c in range(n_classes)], device=x.device)
    if bool((x == x[first[codes]]).all()) or not float(within) > 0.0:
        raise ReprtoolsError(
            "the within-language scatter is 0 (each language's sentences are all identical), so the Fisher ratio "
            "is infinite; check the representations or use davies_bouldin"
        )
    return float(between) / float(within)
