"""The one results schema: every table reprtools writes (probe, evaluation, weights, and a study that
concatenates them) has these columns, so a whole study is one ``pd.concat``.

One row is one number:

* **what was measured** -- ``checkpoint`` (the run's name, ``base`` for the base model, empty for a row that
  summarises several runs), ``method``, ``comparison`` (one of :data:`COMPARISONS`: nothing is inferred from
  which columns happen to be empty), ``reference`` (what the checkpoint is compared with: ``base``, another
  checkpoint, another method), ``module`` (a weight matrix, for weights), ``task``, ``format`` and ``role`` (for
  evaluation: e.g. ``xnli``, ``instruct`` / ``harness``, ``transfer`` / ``retention``), ``layer`` (0 = embedding output, i = block i; -1 where
  a number has no layer), ``lang`` and ``lang_b`` (``lang_b`` for language pairs; ``en+hi+bn`` for a number over
  several languages), ``metric`` (a name in :data:`MEASURES`);
* **the number** -- ``value`` on its natural scale (scores and accuracies as fractions in [0, 1]), ``ci_low`` and
  ``ci_high`` (NaN where there is no interval), ``interval`` (how the interval was made: ``bootstrap``,
  ``jackknife``, ``seed-pairs``, or empty), ``n`` (sentences, items or pairs behind the number) and ``chance``
  (the value under no relationship -- ``1/n`` for retrieval, the majority share for a classifier -- or NaN);
* **the run's own settings**, copied from its ``run.json`` -- ``model``, ``target_lang``, ``ratio``, ``seed``
  (empty / NaN for the base model or an adapter without ``run.json``).

The measure registry (:data:`MEASURES`) is the one place that knows each metric's label, direction, bounds and
the comparisons it appears in; the probe, the figures and the tables all read it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Iterable, Mapping

from reprtools.errors import ReprtoolsError

if TYPE_CHECKING:  # pandas is imported lazily: `import reprtools` stays fast
    import pandas as pd

# ------------------------------------------------------------------------------------------------ columns
MEASURE_COLUMNS = ("checkpoint", "method", "comparison", "reference", "module", "task", "format", "role", "layer",
                   "lang", "lang_b", "metric", "value", "ci_low", "ci_high", "interval", "n", "chance")
RUN_COLUMNS = ("model", "target_lang", "ratio", "seed")
COLUMNS = MEASURE_COLUMNS + RUN_COLUMNS
_TEXT = ("checkpoint", "method", "comparison", "reference", "module", "task", "format", "role", "lang", "lang_b", "metric",
         "interval", "model", "target_lang")
_FLOAT = ("value", "ci_low", "ci_high", "chance", "ratio")
_INT = ("layer", "n", "seed")
NO_LAYER = -1

# ------------------------------------------------------------------------------------------- comparisons
SHIFT = "shift"                   # a checkpoint against its base model, same sentences, per language
CHECKPOINTS = "checkpoints"       # a checkpoint against another checkpoint (different methods or settings)
SEEDS = "seeds"                   # a run against a run of the same method and data that differs only in seed
SEED_FLOOR = "seed_floor"         # per method: how much two seeds of it differ (the noise floor)
METHODS = "methods"               # two methods over cross-seed pairs, beside each method's floor
CROSSLINGUAL = "crosslingual"     # two languages within one model (parallel sentences)
SEPARABILITY = "separability"     # all languages together within one model
EVALUATION = "evaluation"         # task scores (reprtools eval)
WEIGHTS = "weights"               # how an adapter changes a weight matrix (reprtools weights)
COMPARISONS = (SHIFT, CHECKPOINTS, SEEDS, SEED_FLOOR, METHODS, CROSSLINGUAL, SEPARABILITY, EVALUATION, WEIGHTS)

COMPARISON_TITLES = MappingProxyType({
    SHIFT: "against the base model",
    CHECKPOINTS: "checkpoint against checkpoint",
    SEEDS: "seed against seed",
    SEED_FLOOR: "seed noise floor",
    METHODS: "method against method (across seeds)",
    CROSSLINGUAL: "cross-lingual alignment",
    SEPARABILITY: "language separability",
    EVALUATION: "task scores",
    WEIGHTS: "weight changes",
})


# ---------------------------------------------------------------------------------------------- measures
@dataclass(frozen=True)
class Measure:
    """What the report layer needs to know about a metric.

    ``label`` names it in figures and tables; ``lower_is_better`` is its direction (``True`` for a distance or an
    index where lower means more similar / more separable); ``bounds`` is where its values can lie (colour
    scales never extend past them); ``identity`` is its value for a representation against itself (1 for a
    similarity, 0 for a dissimilarity, ``None`` where none); ``directed`` marks a measure of language pairs where
    ``lang -> lang_b`` differs from ``lang_b -> lang``; ``comparisons`` lists where it appears; ``baseline`` names
    the metric to subtract before reading it (a non-parallel baseline) or is empty.
    """

    name: str
    label: str
    comparisons: tuple[str, ...]
    lower_is_better: bool = False
    bounds: tuple[float, float] = (-math.inf, math.inf)
    identity: float | None = None
    directed: bool = False
    baseline: str = ""
    log_scale_ok: bool = False


_ALL = (SHIFT, CHECKPOINTS, SEEDS)
MEASURES: Mapping[str, Measure] = MappingProxyType({m.name: m for m in (
    Measure("cka_linear", "Linear CKA", _ALL + (CROSSLINGUAL,), bounds=(0.0, 1.0), identity=1.0),
    Measure("cka_linear_debiased", "Linear CKA (debiased)", _ALL + (CROSSLINGUAL,), bounds=(-1.0, 1.0),
            identity=1.0),
    Measure("cka_rbf", "RBF CKA", (SHIFT,), bounds=(0.0, 1.0), identity=1.0),
    Measure("cosine_same_sentence", "Cosine, same sentence", (SHIFT,), bounds=(-1.0, 1.0), identity=1.0),
    Measure("cosine_parallel", "Cosine of translations", (CROSSLINGUAL,), bounds=(-1.0, 1.0), identity=1.0,
            baseline="cosine_nonparallel"),
    Measure("cosine_nonparallel", "Cosine of non-translations", (CROSSLINGUAL,), bounds=(-1.0, 1.0)),
    Measure("cosine_gap", "Cosine gap (translations \u2212 others)", (CROSSLINGUAL,), bounds=(-2.0, 2.0)),
    Measure("retrieval_top1", "Top-1 retrieval accuracy", (CROSSLINGUAL,), bounds=(0.0, 1.0), identity=1.0,
            directed=True),
    Measure("silhouette", "Silhouette (cosine)", (SEPARABILITY,), bounds=(-1.0, 1.0)),
    Measure("probe_accuracy", "Language-ID probe accuracy", (SEPARABILITY,), bounds=(0.0, 1.0)),
    Measure("davies_bouldin", "Davies\u2013Bouldin index (lower = more separable)", (SEPARABILITY,),
            lower_is_better=True, bounds=(0.0, math.inf)),
    Measure("fisher_ratio", "Fisher ratio", (SEPARABILITY,), bounds=(0.0, math.inf), log_scale_ok=True),
    Measure("dissimilarity", "1 \u2212 debiased linear CKA", (SEED_FLOOR, METHODS), lower_is_better=True,
            bounds=(-1.0, 2.0), identity=0.0),
    Measure("accuracy", "Accuracy", (EVALUATION,), bounds=(0.0, 1.0), identity=1.0),
    Measure("exact_match", "Exact match", (EVALUATION,), bounds=(0.0, 1.0), identity=1.0),
    Measure("f1", "Token F1", (EVALUATION,), bounds=(0.0, 1.0), identity=1.0),
    Measure("squad_f1", "Token F1 (SQuAD v1.1 normalisation)", (EVALUATION,), bounds=(0.0, 1.0), identity=1.0),
    Measure("exceeds_seed_floor", "Method difference beyond both seed floors (1 = yes)", (METHODS,),
            bounds=(0.0, 1.0)),
    Measure("update_norm_relative", "\u2016\u0394W\u2016 / \u2016W\u2016", (WEIGHTS,), lower_is_better=True,
            bounds=(0.0, math.inf), identity=0.0, log_scale_ok=True),
    Measure("update_stable_rank", "Stable rank of \u0394W", (WEIGHTS,), bounds=(1.0, math.inf)),
    Measure("update_effective_rank", "Effective rank of \u0394W", (WEIGHTS,), bounds=(1.0, math.inf)),
    Measure("amplification_factor", "Amplification factor", (WEIGHTS,), bounds=(0.0, math.inf), log_scale_ok=True),
    Measure("intruder_dimensions", "Intruder dimensions", (WEIGHTS,), lower_is_better=True,
            bounds=(0.0, math.inf), identity=0.0),
    Measure("subspace_similarity_out", "Update subspace similarity (output side)", (WEIGHTS,), bounds=(0.0, 1.0),
            identity=1.0),
    Measure("subspace_similarity_in", "Update subspace similarity (input side)", (WEIGHTS,), bounds=(0.0, 1.0),
            identity=1.0),
)})

#: Metric names written by earlier versions -> today's name.
METRIC_ALIASES = MappingProxyType({"cosine_base": "cosine_same_sentence"})

METHOD_LABELS = MappingProxyType({"base": "Base", "lora": "LoRA", "dora": "DoRA", "vera": "VeRA",
                                  "adalora": "AdaLoRA", "pissa": "PiSSA"})


def measure(name: str) -> Measure:
    """The registry entry of ``name`` (an alias is resolved); a metric the registry does not know gets a plain
    entry with its name as label, so a table from a newer version still draws."""
    name = METRIC_ALIASES.get(name, name)
    return MEASURES.get(name) or Measure(name, name.replace("_", " "), ())


def measures_of(comparison: str) -> tuple[str, ...]:
    """The metrics a comparison kind reports, in registry order (what the probe computes and the report draws)."""
    return tuple(name for name, m in MEASURES.items() if comparison in m.comparisons)


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


# ------------------------------------------------------------------------------------------------ frames
def frame(rows: Iterable[Mapping] = ()) -> "pd.DataFrame":
    """A results frame with exactly :data:`COLUMNS`, in order and with their dtypes; missing text columns are
    empty strings, missing numbers NaN, a missing layer :data:`NO_LAYER`."""
    import pandas as pd

    df = pd.DataFrame(list(rows))
    return _conform(df)


def _conform(df: "pd.DataFrame") -> "pd.DataFrame":
    import numpy as np
    import pandas as pd

    out = pd.DataFrame(index=df.index)
    for col in COLUMNS:
        if col in _TEXT:
            out[col] = df[col].fillna("").astype(str) if col in df else ""
        elif col in _FLOAT:
            out[col] = pd.to_numeric(df[col], errors="coerce").astype(float) if col in df else np.nan
        else:
            default = NO_LAYER if col == "layer" else pd.NA
            values = pd.to_numeric(df[col], errors="coerce") if col in df else pd.Series(default, index=df.index)
            if col == "layer":
                values = values.fillna(NO_LAYER)
            out[col] = values.astype("Int64")
    return out.reset_index(drop=True)


def _derive_comparison(df: "pd.DataFrame") -> "pd.Series":
    """For a table written before ``comparison`` existed: the kind, from the columns that version filled."""
    import numpy as np

    ref, lang, lang_b = df["reference"].fillna(""), df["lang"].fillna(""), df["lang_b"].fillna("")
    return np.select(
        [lang.str.contains("+", regex=False), lang_b != "", ref == "base", ref != ""],
        [SEPARABILITY, CROSSLINGUAL, SHIFT, CHECKPOINTS],
        default="",
    )


def read_results(path: str | os.PathLike) -> "pd.DataFrame":
    """Read a results table (``metrics.csv``), validated, with renamed metrics mapped to today's names and, for a
    table written before ``comparison`` existed, the comparison derived once here.  Bad input raises
    :class:`ReprtoolsError` with one line saying what is wrong."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ReprtoolsError(f"no results table at {path}; run `reprtools probe` first or point at its metrics.csv")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ReprtoolsError(f"{path} is not UTF-8 text (byte {exc.start}); give the metrics.csv reprtools wrote") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ReprtoolsError(f"cannot read {path} as a CSV table ({reason})") from None
    needed = {"checkpoint", "method", "reference", "layer", "lang", "lang_b", "metric", "value"}
    missing = sorted(needed - set(raw.columns))
    if missing:
        raise ReprtoolsError(f"{path} is not a reprtools results table: no column(s) {', '.join(missing)}")
    if raw.empty:
        raise ReprtoolsError(f"{path} has no rows; run the probe again")
    raw["metric"] = raw["metric"].replace(dict(METRIC_ALIASES))
    if "comparison" not in raw.columns:
        raw["comparison"] = _derive_comparison(raw)
    unknown = sorted(set(raw["comparison"]) - set(COMPARISONS))
    if unknown:
        raise ReprtoolsError(f"{path}: unknown comparison kind(s) {', '.join(map(repr, unknown))}; "
                             f"known: {', '.join(COMPARISONS)}")
    df = _conform(raw)
    for col in ("value", "layer"):
        bad = raw[col].astype(str).str.strip().ne("") & df[col].isna()
        if bad.any():
            line = int(bad.to_numpy().nonzero()[0][0]) + 2
            raise ReprtoolsError(f"{path} line {line}: {col} {raw[col].iloc[line - 2]!r} is not a number")
    if df["value"].isna().all():
        raise ReprtoolsError(f"{path} has no numeric values")
    return df


def write_results(df: "pd.DataFrame", path: str | os.PathLike) -> Path:
    """Write ``df`` (conformed to :data:`COLUMNS`) as UTF-8 CSV, atomically; floats keep full precision."""
    from reprtools.fileio import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        _conform(df).to_csv(tmp, index=False, encoding="utf-8", float_format="%.17g")
    return path
