"""Percentile-bootstrap confidence intervals for any measure, resampling sentences (Efron & Tibshirani, 1993)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch

from reprtools.errors import ReprtoolsError
from reprtools.measures.separability import from_language_dict

__all__ = ["BootstrapResult", "bootstrap_ci"]


class BootstrapResult(NamedTuple):
    """``(value, low, high)``: the measure on the full data and the percentile interval around it."""

    value: float
    low: float
    high: float


def _rows(x: Any) -> int:
    if isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim >= 1:
        return int(x.shape[0])
    raise ReprtoolsError(
        f"bootstrap_ci resamples rows of numpy arrays or torch tensors; got {type(x).__name__}"
        + (" with no rows" if isinstance(x, (np.ndarray, torch.Tensor)) else "")
    )


def _take(x: Any, idx: np.ndarray) -> Any:
    if isinstance(x, torch.Tensor):
        return x[torch.as_tensor(idx, device=x.device)]
    return x[idx]


def _scalar(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ReprtoolsError(
            f"{what} returned {type(value).__name__}; bootstrap_ci needs a measure that returns one number"
        ) from None
    return v


def bootstrap_ci(
    measure: Callable[..., Any],
    *arrays: Any,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    labels: Any = None,
    max_fail_frac: float = 0.1,
    measure_kwargs: Mapping[str, Any] | None = None,
) -> BootstrapResult:
    r"""Percentile bootstrap interval of ``measure(*arrays)``, resampling sentences with replacement.

    Inputs: ``arrays`` are parallel numpy arrays or torch tensors with the same number of rows ``n`` (row
    ``i`` of every array is sentence ``i``: e.g. ``(X_base, X_ckpt)`` or ``(XA, XB)``).  Each resample draws
    ``n`` row indices with replacement and applies the *same* indices to every array, so pairs stay paired.
    Tensors are indexed on their own device.

    With ``labels`` (shape ``(n,)``, language per row) the resampling is stratified: every row is replaced by a
    random row of the same language, so each language keeps exactly its size and no language disappears, and
    the measure is called as ``measure(*resampled, labels=resampled_labels)`` -- the form the separability
    measures take.  A single dict ``{lang: array}`` in place of ``arrays`` is stacked with
    :func:`~reprtools.measures.separability.from_language_dict` and stratified by its keys.

    Interval: :math:`\hat\theta` = the measure on the full data; :math:`\hat\theta^*_b`, ``b = 1..n_boot``, on
    the resamples; ``(low, high)`` are the :math:`\alpha/2` and :math:`1-\alpha/2` quantiles of the
    :math:`\hat\theta^*_b` (numpy's linear interpolation).  Returns ``BootstrapResult(value, low, high)``, a
    3-tuple.  The percentile interval need not be centred on ``value`` and, for a biased statistic (e.g. the
    biased CKA, which rises with duplicated rows), may even exclude it.

    Caveat for :func:`~reprtools.measures.separability.probe_accuracy`: duplicated rows can land in both the
    training and the test folds, so resampled accuracies are optimistic.

    ``n_boot=0`` returns ``(value, nan, nan)``.  ``measure_kwargs`` are passed on every call (e.g.
    ``{"dtype": torch.float32}``).  Deterministic for a given ``seed`` (numpy ``default_rng``).

    Degenerate resamples: a resample on which the measure raises :class:`ReprtoolsError` (or returns NaN/inf)
    is skipped with a warning; when more than ``max_fail_frac`` of ``n_boot`` fail, :class:`ReprtoolsError` is
    raised.  Any other exception propagates.  An error on the full data propagates unchanged.

    Reference: Efron & Tibshirani (1993), *An Introduction to the Bootstrap*, Chapman & Hall, ch. 13
    (percentile intervals).
    """
    kwargs = dict(measure_kwargs or {})
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 0):
        raise ReprtoolsError(f"n_boot={n_boot!r} must be a non-negative integer (0 = no interval)")
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha < 1.0):
        raise ReprtoolsError(f"alpha={alpha!r} must be in (0, 1); 0.05 gives a 95% interval")
    if not (0.0 <= max_fail_frac <= 1.0):
        raise ReprtoolsError(f"max_fail_frac={max_fail_frac!r} must be in [0, 1]")
    if len(arrays) == 1 and isinstance(arrays[0], Mapping):
        if labels is not None:
            raise ReprtoolsError("pass either a dict {language: array} or arrays with labels, not both")
        x, labels = from_language_dict(arrays[0])
        arrays = (x,)
    if not arrays:
        raise ReprtoolsError("bootstrap_ci needs at least one array to resample")
    n = _rows(arrays[0])
    for i, a in enumerate(arrays[1:], start=1):
        if _rows(a) != n:
            raise ReprtoolsError(
                f"array 0 has {n} rows but array {i} has {_rows(a)}; bootstrap resamples parallel rows, so all "
                "arrays need the same sentences in the same order"
            )
    what = getattr(measure, "__name__", repr(measure))

    strata = None
    if labels is not None:
        if isinstance(labels, torch.Tensor):
            labels = labels.detach().cpu().numpy()
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise ReprtoolsError(f"labels has shape {labels.shape} but the arrays have {n} rows; give one per row")
        _, codes = np.unique(labels, return_inverse=True)
        strata = [np.flatnonzero(codes.reshape(-1) == c) for c in range(codes.max() + 1)]
        kwargs["labels"] = labels

    value = _scalar(measure(*arrays, **kwargs), what)
    if n_boot == 0:
        return BootstrapResult(value, math.nan, math.nan)

    rng = np.random.default_rng(seed)
    allowed = math.floor(max_fail_frac * n_boot)
    stats: list[float] = []
    failures = 0
    last_error = ""
    for _ in range(n_boot):
        if strata is None:
            idx = rng.integers(0, n, size=n)
        else:
            idx = np.empty(n, dtype=np.int64)
            for members in strata:  # each row is replaced by a random row of its own language
                idx[members] = members[rng.integers(0, len(members), size=len(members))]
            kwargs["labels"] = labels[idx]
        try:
            v = _scalar(measure(*(_take(a, idx) for a in arrays), **kwargs), what)
            if not math.isfinite(v):
                raise ReprtoolsError(f"{what} returned {v}")
        except ReprtoolsError as err:
            failures += 1
            last_error = str(err)
            if failures > allowed:
                raise ReprtoolsError(
                    f"{failures} of {n_boot} bootstrap resamples were degenerate for {what} (last: {last_error}); "
                    "use more sentences or raise max_fail_frac"
                ) from None
            continue
        stats.append(v)
    if failures:
        warnings.warn(
            f"bootstrap_ci skipped {failures} of {n_boot} degenerate resamples for {what} (last: {last_error})",
            RuntimeWarning,
            stacklevel=2,
        )
    if not stats:
        raise ReprtoolsError(f"all {n_boot} bootstrap resamples were degenerate for {what} (last: {last_error})")
    low, high = np.quantile(np.asarray(stats), [alpha / 2.0, 1.0 - alpha / 2.0])
    return BootstrapResult(value, float(low), float(high))
