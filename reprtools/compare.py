"""What the probe compares with what, per layer, on pooled representations alone (no model, no files).

Every number comes out as one row of the results schema (:mod:`reprtools.results`), with its comparison kind:

* ``shift`` -- each checkpoint against the base, per language: linear, debiased linear and RBF CKA, and
  ``cosine_same_sentence`` (mean cosine between each sentence's base and checkpoint vectors);
* ``checkpoints`` / ``seeds`` -- each two checkpoints, per language: linear and debiased linear CKA (``seeds``
  where the two runs differ only in seed, read from their ``run.json``);
* ``crosslingual`` -- each two languages within each model: ``cosine_parallel`` with its non-parallel baseline
  ``cosine_nonparallel`` and the gap between them, ``retrieval_top1`` in both directions (chance ``1/n``), linear
  and debiased linear CKA;
* ``separability`` -- all languages together within each model: silhouette, language-ID probe accuracy (chance
  ``1/languages``), Davies-Bouldin index, Fisher ratio;
* ``seed_floor`` and ``methods`` -- where runs of a method differ only in seed: per method, the dissimilarity
  (1 - debiased CKA, all languages' sentences together) between its seeds, the noise floor; per two methods, the
  same over cross-seed pairs, and ``exceeds_seed_floor`` = 1 where that difference is above both methods' floors
  beyond their intervals.

Intervals (:mod:`reprtools.measures.resampling`) use one set of resampled sentence indices per replicate, the
same for every language and model, since row ``i`` is the same sentence everywhere.  The floors and method
differences always carry an interval (a sentence jackknife of the mean over seed pairs, widened to the range of
the pairs); the other numbers carry one when ``bootstrap > 0``.
"""

from __future__ import annotations

import math
from itertools import combinations, permutations
from typing import Callable, Sequence

import numpy as np

from reprtools import results as R
from reprtools.checkpoints import Checkpoint, cross_seed_pairs, is_seed_pair, seed_groups, seed_pairs

# what each comparison computes comes from the one measure registry (reprtools.results.MEASURES)
SHIFT_MEASURES = R.measures_of(R.SHIFT)
CHECKPOINT_MEASURES = R.measures_of(R.CHECKPOINTS)
CROSSLINGUAL_MEASURES = tuple(m for m in R.measures_of(R.CROSSLINGUAL) if not R.MEASURES[m].directed)
SEPARABILITY_MEASURES = R.measures_of(R.SEPARABILITY)
HEADLINE_CKA = "cka_linear_debiased"  # unbiased where sentences < features, where the biased estimator is inflated


def measure_function(name: str) -> Callable:
    """The array function behind a metric of :data:`reprtools.results.MEASURES`."""
    from reprtools import measures

    return getattr(measures, name)


def _stack_langs(arrays: Sequence[np.ndarray], per: int) -> list[np.ndarray]:
    """``arrays`` = runs x languages, flat; each run's languages concatenated (rows stay parallel)."""
    return [np.concatenate(arrays[i:i + per]) for i in range(0, len(arrays), per)]


def _separability(fn: Callable, grouped: bool = False) -> Callable:
    """``fn(X, labels)`` on the languages' arrays stacked.  ``grouped``: the last array holds sentence ids, and
    ``fn`` also gets ``groups`` so a sentence and its translations always share a cross-validation fold (else a
    test sentence's translations sit in the training folds, and each jackknife replicate draws new folds)."""
    def on_languages(*xs):
        if grouped:
            *xs, ids = xs
        labels = np.repeat(np.arange(len(xs)), [len(x) for x in xs])
        extra = {"groups": np.tile(ids, len(xs))} if grouped else {}
        return fn(np.concatenate(xs), labels, **extra)
    return on_languages


def _mean_dissimilarity(pairs: list[tuple[int, int]], per: int) -> Callable:
    """1 - debiased CKA averaged over ``pairs`` of runs; the arrays are runs x languages, flat."""
    cka = measure_function("cka_linear_debiased")

    def fn(*arrays):
        runs = _stack_langs(arrays, per)
        return float(np.mean([1.0 - cka(runs[a], runs[b]) for a, b in pairs]))
    return fn


class _Table:
    """Collects rows; ``add`` computes one number (and its interval) from parallel arrays."""

    def __init__(self, runs: dict[str, Checkpoint | None], resampler, floor_resampler):
        self.runs, self.resampler, self.floor_resampler = runs, resampler, floor_resampler
        self.rows: list[dict] = []

    def _run_columns(self, name: str) -> dict:
        ck = self.runs.get(name)
        return ck.run_columns() if ck is not None else {}

    def add(self, name: str, comparison: str, metric: str, fn: Callable, arrays, *, layer: int, lang: str = "",
            lang_b: str = "", reference: str = "", chance: float = math.nan, method: str | None = None) -> dict:
        n = len(arrays[0])
        if self.resampler is not None:
            value, low, high = self.resampler.interval(metric, fn, *arrays)
            scheme = self.resampler.scheme(metric)
        else:
            value, low, high, scheme = fn(*arrays), math.nan, math.nan, ""
        ck = self.runs.get(name)
        row = {"checkpoint": name, "method": method or (ck.method if ck else "base"), "comparison": comparison,
               "reference": reference, "layer": layer, "lang": lang, "lang_b": lang_b, "metric": metric,
               "value": float(value), "ci_low": low, "ci_high": high, "interval": scheme, "n": n, "chance": chance,
               **self._run_columns(name)}
        self.rows.append(row)
        return row

    def add_floor(self, method: str, comparison: str, reference: str, fn: Callable, arrays, pair_values,
                  *, layer: int, lang: str) -> dict:
        value, low, high = self.floor_resampler.interval("dissimilarity", fn, *arrays,
                                                          value=float(np.mean(pair_values)))
        row = {"checkpoint": "", "method": method, "comparison": comparison, "reference": reference, "layer": layer,
               "lang": lang, "metric": "dissimilarity", "value": float(value),
               "ci_low": min(low, *pair_values), "ci_high": max(high, *pair_values),
               "interval": "jackknife+seed-range", "n": len(pair_values)}
        self.rows.append(row)
        return row


def compute_metrics(reps: dict[str, dict[str, np.ndarray]], runs: dict[str, Checkpoint | None], langs: list[str],
                    resampler=None, floor_resampler=None) -> list[dict]:
    """Every row described in the module docstring, from ``reps[name][lang]`` of shape ``(L, n, d)`` (``base``
    first).  ``runs`` maps each name to its :class:`Checkpoint` (``None`` for the base).  ``resampler`` (a
    :class:`reprtools.measures.resampling.Resampler`, or ``None`` for no intervals) gives the intervals;
    ``floor_resampler`` those of the seed floors (required when runs differ only in seed)."""
    table = _Table(runs, resampler, floor_resampler)
    names = list(reps)
    checkpoints = [n for n in names if n != "base"]
    num_layers = next(iter(reps["base"].values())).shape[0]
    for layer in range(num_layers):
        at = {name: {lang: reps[name][lang][layer] for lang in langs} for name in names}
        _shift(table, at, checkpoints, langs, layer)
        _between_checkpoints(table, at, checkpoints, langs, layer)
        for name in names:
            _crosslingual(table, at[name], name, langs, layer)
            _separability_rows(table, at[name], name, langs, layer)
        _seed_floors(table, at, [runs[n] for n in checkpoints], langs, layer)
    return table.rows


def _shift(table: _Table, at, checkpoints, langs, layer) -> None:
    for name in checkpoints:
        for lang in langs:
            for metric in SHIFT_MEASURES:
                table.add(name, R.SHIFT, metric, measure_function(metric), (at["base"][lang], at[name][lang]),
                          layer=layer, lang=lang, reference="base")


def _between_checkpoints(table: _Table, at, checkpoints, langs, layer) -> None:
    for a, b in combinations(checkpoints, 2):
        kind = R.SEEDS if is_seed_pair(table.runs[a], table.runs[b]) else R.CHECKPOINTS
        for lang in langs:
            for metric in CHECKPOINT_MEASURES:
                table.add(a, kind, metric, measure_function(metric), (at[b][lang], at[a][lang]), layer=layer,
                          lang=lang, reference=b)


def _crosslingual(table: _Table, at, name, langs, layer) -> None:
    for la, lb in combinations(langs, 2):
        for metric in CROSSLINGUAL_MEASURES:
            table.add(name, R.CROSSLINGUAL, metric, measure_function(metric), (at[la], at[lb]), layer=layer,
                      lang=la, lang_b=lb)
    for metric in (m for m in R.measures_of(R.CROSSLINGUAL) if R.MEASURES[m].directed):
        for la, lb in permutations(langs, 2):  # a directed measure: lang -> lang_b, and back
            table.add(name, R.CROSSLINGUAL, metric, measure_function(metric), (at[la], at[lb]), layer=layer,
                      lang=la, lang_b=lb, chance=1.0 / len(at[la]))


def _separability_rows(table: _Table, at, name, langs, layer) -> None:
    if len(langs) < 2:
        return
    arrays = tuple(at[lang] for lang in langs)
    ids = np.arange(len(arrays[0]))
    for metric in SEPARABILITY_MEASURES:
        grouped = metric == "probe_accuracy"
        chance = 1.0 / len(langs) if grouped else math.nan
        table.add(name, R.SEPARABILITY, metric, _separability(measure_function(metric), grouped),
                  arrays + (ids,) if grouped else arrays, layer=layer, lang="+".join(langs), chance=chance)


def _seed_floors(table: _Table, at, checkpoints: list[Checkpoint], langs, layer) -> None:
    groups = seed_groups(checkpoints)
    if not groups:
        return
    every = "+".join(langs)
    cka = measure_function("cka_linear_debiased")

    def stacked(ck):
        return np.concatenate([at[ck.name][lang] for lang in langs])

    def dissimilarity_row(method, kind, reference, pairs):
        members = list(dict.fromkeys(ck for pair in pairs for ck in pair))
        index = {ck.name: i for i, ck in enumerate(members)}
        arrays = tuple(at[ck.name][lang] for ck in members for lang in langs)
        values = [1.0 - cka(stacked(a), stacked(b)) for a, b in pairs]
        fn = _mean_dissimilarity([(index[a.name], index[b.name]) for a, b in pairs], len(langs))
        return table.add_floor(method, kind, reference, fn, arrays, values, layer=layer, lang=every)

    floors = {m: dissimilarity_row(m, R.SEED_FLOOR, "", seed_pairs(members)) for m, members in groups.items()}
    by_method: dict[str, list[Checkpoint]] = {}
    for ck in checkpoints:
        if ck.seed is not None:
            by_method.setdefault(ck.method, []).append(ck)
    for ma, mb in combinations(sorted(by_method), 2):
        pairs = cross_seed_pairs(groups.get(ma, by_method[ma]), groups.get(mb, by_method[mb]))
        if not pairs:
            continue
        diff = dissimilarity_row(ma, R.METHODS, mb, pairs)
        flag = math.nan
        if ma in floors and mb in floors:
            flag = float(diff["ci_low"] > floors[ma]["ci_high"] and diff["ci_low"] > floors[mb]["ci_high"])
        table.rows.append({**diff, "metric": "exceeds_seed_floor", "value": flag, "ci_low": math.nan,
                           "ci_high": math.nan, "interval": ""})
