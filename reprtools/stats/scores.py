"""Cell-level scores from a study's ``results.csv``, and the paired blocks the paired tests work on.

A *score* is one evaluation number of one training run: a ``transfer`` row (the run's target language) or a
``retention`` row (English), for one model, task, format and metric.  A *family* is what one analysis treats as
one outcome: (model, task, format, metric, role).  Within a family a *block* is (target language, ratio, seed):
the runs of the five methods in one block share their training data, seed and held-out items, so they are
compared with each other and never across blocks.  Nothing is paired on seeds alone.

Ratio-0 runs train on English only and serve every target language of their task, so two blocks that differ
only in target language can hold the very same runs and items (their retention scores are one measurement
copied).  :func:`paired_blocks` counts such a block once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reprtools import results
from reprtools.errors import ReprtoolsError

if TYPE_CHECKING:
    import pandas as pd

REFERENCE = "lora"
METHOD_ORDER = ("lora", "dora", "vera", "adalora", "pissa")
FAMILY = ("model", "task", "format", "metric", "role")
BLOCK = ("lang", "ratio", "seed")
ROLES = ("transfer", "retention")


def method_order(methods) -> list[str]:
    """``methods`` in the study's order (LoRA first), unknown ones after, alphabetically."""
    known = [m for m in METHOD_ORDER if m in set(methods)]
    return known + sorted(set(methods) - set(known))


def cell_scores(df: "pd.DataFrame") -> "pd.DataFrame":
    """One row per run and score: the family columns, ``lang`` (the run's target language, the block's
    language), ``eval_lang`` (the language scored), ``ratio``, ``seed``, ``method``, ``run`` (the checkpoint,
    i.e. the training run) and ``value``.  Raises :class:`ReprtoolsError` when there is nothing to analyse."""
    ev = df[(df["comparison"] == results.EVALUATION) & (df["checkpoint"] != "base") & df["role"].isin(ROLES)]
    ev = ev[ev["value"].notna()]
    if ev.empty:
        raise ReprtoolsError("results.csv has no transfer or retention scores of trained runs yet; "
                             "run `reprtools study` with the eval step on first")
    out = ev.rename(columns={"lang": "eval_lang", "target_lang": "lang", "checkpoint": "run"})
    cols = list(FAMILY) + ["lang", "eval_lang", "ratio", "seed", "method", "run", "value"]
    out = out[cols].copy()
    out["seed"] = out["seed"].astype("float").astype("Int64")
    return out.drop_duplicates(subset=[c for c in cols if c != "value"]).reset_index(drop=True)


def families(scores: "pd.DataFrame"):
    """``(key, frame)`` for each family of ``scores``, in a stable order."""
    for key, sub in scores.groupby(list(FAMILY), sort=True, dropna=False):
        yield dict(zip(FAMILY, key)), sub


def block_table(sub: "pd.DataFrame") -> "pd.DataFrame":
    """One family's scores as blocks x methods (NaN where a method has no run in a block), with duplicate
    blocks (the same run of every method scored on the same language) counted once."""
    wide = sub.pivot_table(index=list(BLOCK), columns="method", values="value", aggfunc="first", dropna=False)
    runs = sub.pivot_table(index=list(BLOCK), columns="method", values="run", aggfunc="first")
    lang = sub.groupby(list(BLOCK))["eval_lang"].first()
    ident = (runs.reindex(wide.index).fillna("").astype(str).agg("|".join, axis=1)
             + "@" + lang.reindex(wide.index).astype(str))
    wide = wide.loc[~ident.duplicated().to_numpy()]
    wide = wide.dropna(how="all")
    return wide[method_order(wide.columns)]


def paired_blocks(sub: "pd.DataFrame", variant: str, reference: str = REFERENCE) -> "pd.DataFrame":
    """The blocks of one family where both ``variant`` and ``reference`` have a score: columns ``x``
    (the variant), ``y`` (the reference) and ``d = x - y``, indexed by the block."""
    import pandas as pd

    wide = block_table(sub)
    if variant not in wide or reference not in wide:
        return pd.DataFrame(columns=["x", "y", "d"])
    both = wide[[variant, reference]].dropna()
    out = pd.DataFrame({"x": both[variant], "y": both[reference]})
    out["d"] = out["x"] - out["y"]
    return out


def base_scores(df: "pd.DataFrame", models) -> "pd.DataFrame":
    """The base model's score per (model, task, format, metric, eval_lang).  Base rows carry no run settings;
    where their ``model`` is empty and the study has a single model they are that model's, otherwise they
    cannot be attributed and are left out."""
    base = df[(df["comparison"] == results.EVALUATION) & (df["checkpoint"] == "base") & df["value"].notna()].copy()
    models = sorted(set(models))
    if (base["model"] == "").any():
        if len(models) != 1:
            base = base[base["model"] != ""]
        else:
            base.loc[base["model"] == "", "model"] = models[0]
    base = base.rename(columns={"lang": "eval_lang"})
    keys = ["model", "task", "format", "metric", "eval_lang"]
    return base.groupby(keys, as_index=False)["value"].mean().rename(columns={"value": "base_value"})


def cell_changes(scores: "pd.DataFrame", base: "pd.DataFrame") -> "pd.DataFrame":
    """The study's balancing question per cell (model, task, format, metric, method, target language ``lang``,
    ratio): each run's change from the base model in its target language (``transfer``: score - base score of
    that language) and in English (``retention``), then over the cell's seeds the mean (``transfer``,
    ``retention``), the sample SD (``transfer_sd``, ``retention_sd``; NaN for one seed) and ``n_seeds`` (runs
    with both scores).  Empty where there are no base scores to subtract."""
    import pandas as pd

    keys = ["model", "task", "format", "metric"]
    cell = keys + ["method", "lang", "ratio"]
    out_cols = cell + ["transfer", "transfer_sd", "retention", "retention_sd", "n_seeds"]
    ch = scores.merge(base, on=keys + ["eval_lang"], how="inner")
    if ch.empty:
        return pd.DataFrame(columns=out_cols)
    ch["change"] = ch["value"] - ch["base_value"]
    wide = ch.pivot_table(index=cell + ["seed"], columns="role", values="change", aggfunc="first")
    wide = wide.reindex(columns=list(ROLES)).dropna().reset_index()
    if wide.empty:
        return pd.DataFrame(columns=out_cols)
    agg = wide.groupby(cell, sort=True).agg(transfer=("transfer", "mean"), transfer_sd=("transfer", "std"),
                                            retention=("retention", "mean"), retention_sd=("retention", "std"),
                                            n_seeds=("seed", "size"))
    return agg.reset_index()[out_cols]
