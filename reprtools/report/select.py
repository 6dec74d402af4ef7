"""Which rows of a results frame a figure or table shows: by ``comparison`` and metric, never guessed."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np

from reprtools.errors import ReprtoolsError
from reprtools.results import CROSSLINGUAL

if TYPE_CHECKING:
    import pandas as pd


def rows_of(df: "pd.DataFrame", comparison: str, metric: str, *, layered: bool = True) -> "pd.DataFrame":
    """The rows of one ``comparison`` and ``metric`` (only those with a layer when ``layered``);
    :class:`ReprtoolsError` naming the metrics that are there when there are none."""
    sel = df[(df["comparison"] == comparison) & (df["metric"] == metric)]
    if layered:
        sel = sel[sel["layer"] >= 0]
    if sel.empty:
        have = sorted(set(df.loc[df["comparison"] == comparison, "metric"]))
        raise ReprtoolsError(f"no {comparison!r} rows with metric {metric!r}" + (" and a layer" if layered else "")
                             + f"; {comparison!r} metrics present: {', '.join(have) or 'none'}")
    return sel


def check_unique(sel: "pd.DataFrame", keys: Sequence[str], what: str) -> None:
    """:class:`ReprtoolsError` when two rows would fill the same cell (e.g. two probes of checkpoints with
    the same name concatenated)."""
    dup = sel.duplicated(list(keys))
    if dup.any():
        row = sel[dup].iloc[0]
        where = ", ".join(f"{k}={row[k]}" for k in keys if not k.startswith("_"))
        raise ReprtoolsError(f"two rows for the same {what} cell ({where}); draw one study cell or probe at a "
                             "time, or give the checkpoints distinct names")


def with_cosine_gap(df: "pd.DataFrame") -> "pd.DataFrame":
    """``df`` plus ``cosine_gap`` rows (translations minus non-translations) made from its
    ``cosine_parallel`` and ``cosine_nonparallel`` rows, when it has both but no gap rows; else ``df``."""
    import pandas as pd

    cross = df[df["comparison"] == CROSSLINGUAL]
    if (cross["metric"] == "cosine_gap").any():
        return df
    keys = ["checkpoint", "method", "layer", "lang", "lang_b"]
    par = cross[cross["metric"] == "cosine_parallel"].drop_duplicates(keys)
    non = cross[cross["metric"] == "cosine_nonparallel"].drop_duplicates(keys)
    if par.empty or non.empty:
        return df
    both = par.merge(non[keys + ["value"]], on=keys, suffixes=("", "_non"))
    both["value"] = both["value"] - both.pop("value_non")
    both["metric"] = "cosine_gap"
    both[["ci_low", "ci_high", "chance"]] = np.nan
    both["interval"] = ""
    return pd.concat([df, both[df.columns]], ignore_index=True)


def chance_text(sel: "pd.DataFrame") -> str:
    """The rows' chance level as text, two significant digits (``0.33``, ``0.005``, or a range
    ``0.25\u20130.33``); empty where there is none."""
    chance = sel["chance"].dropna()
    if chance.empty:
        return ""
    lo, hi = float(chance.min()), float(chance.max())
    return f"{lo:.2g}" if math.isclose(lo, hi, rel_tol=1e-3) else f"{lo:.2g}\u2013{hi:.2g}"


def check_frame(df) -> None:
    """:class:`ReprtoolsError` unless ``df`` is a results frame (``reprtools.results.frame`` /
    ``read_results``)."""
    import pandas as pd

    from reprtools.results import COLUMNS

    if not isinstance(df, pd.DataFrame):
        raise ReprtoolsError(f"expected a results DataFrame, got {type(df).__name__}; read metrics.csv with "
                             "reprtools.results.read_results")
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ReprtoolsError(f"the frame lacks column(s) {', '.join(missing)}; build it with "
                             "reprtools.results.frame or read_results")
