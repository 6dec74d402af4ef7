"""Booktabs LaTeX tables of a results frame: one per (comparison, metric) present.

Rows are the models (a checkpoint, or a method for rows that summarise several runs), with the reference,
the language (or language pair), task, role or module where the rows differ in them; columns are layers --
at most ten, evenly spaced with the first and the last, for deep models (the caption says so).  A cell is
``value``, ``value ± half-width`` when every interval of the table is symmetric about its value, else
``value [low, high]``.  pandas pivots the frame and :meth:`pandas.io.formats.style.Styler.to_latex` writes the
tabular; what is done here by hand is only what booktabs needs besides: escaping, the caption and label, and
a ``\\cmidrule`` under the "Layer" heading.  Needs ``\\usepackage{booktabs}``.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from reprtools.errors import ReprtoolsError
from reprtools.fileio import atomic_path
from reprtools.report import labels
from reprtools.report.select import chance_text, check_unique
from reprtools.results import COMPARISON_TITLES, CROSSLINGUAL, METHOD_LABELS, NO_LAYER, measure, method_label

if TYPE_CHECKING:
    import pandas as pd

MAX_LAYERS = 10
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\u2192": r"$\rightarrow$",
        "\u2013": "--", "\u2212": "$-$", "\u00b1": r"$\pm$"}
_TEX_RE = re.compile("|".join(map(re.escape, _TEX)))


def tex(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (and arrows, dashes and minus signs spelled out)."""
    return _TEX_RE.sub(lambda m: _TEX[m.group()], str(text))


def _num(v: float, decimals: int) -> str:
    s = f"{v:.{decimals}f}"
    if float(s) == 0:
        return s.lstrip("-")
    return "$-$" + s[1:] if s.startswith("-") else s


def _interval_style(sel: "pd.DataFrame", decimals: int) -> str:
    """``"pm"`` when every interval is symmetric about its value (to rounding), ``"range"`` when some is not,
    ``""`` when there is none."""
    ci = sel.dropna(subset=["value", "ci_low", "ci_high"])
    if ci.empty:
        return ""
    half = (ci["ci_high"] - ci["ci_low"]) / 2
    off = ((ci["ci_high"] + ci["ci_low"]) / 2 - ci["value"]).abs()
    return "pm" if bool((off <= 0.25 * half + 10 ** -(decimals + 1)).all()) else "range"


def _cell(value: float, lo: float, hi: float, style: str, decimals: int) -> str:
    if not math.isfinite(value):
        return "--"
    text = _num(value, decimals)
    if not style or not (math.isfinite(lo) and math.isfinite(hi)):
        return text
    if style == "pm":
        return text + r"{\scriptsize\,$\pm$\," + _num((hi - lo) / 2, decimals) + "}"
    return text + r"{\scriptsize\,[" + _num(lo, decimals) + ", " + _num(hi, decimals) + "]}"


def _ref_label(ref: str) -> str:
    return "Base" if ref == "base" else method_label(ref) if ref in METHOD_LABELS else ref


def _row_columns(sel: "pd.DataFrame", comparison: str) -> "pd.DataFrame":
    """The row-heading columns of a table (display text) and ``_key`` (their order)."""
    import pandas as pd

    out = pd.DataFrame(index=sel.index)
    out["Model"] = [labels.model_label(c, m) for c, m in zip(sel["checkpoint"], sel["method"])]
    refs = set(sel["reference"])
    if refs - {"", "base"}:
        out["Reference"] = sel["reference"].map(_ref_label)
    langs = labels.ordered_langs(list(sel["lang"]) + list(sel["lang_b"]))
    if comparison == CROSSLINGUAL or (sel["lang_b"] != "").any():
        directed = measure(sel["metric"].iloc[0]).directed
        out["Languages"] = [labels.pair_label(a, b, directed) if b else labels.language_name(a)
                            for a, b in zip(sel["lang"], sel["lang_b"])]
    elif sel["lang"].nunique() > 1:
        out["Language"] = sel["lang"].map(labels.language_name)
    for col in ("task", "role", "module"):
        if (sel[col] != "").any():
            out[col.capitalize()] = sel[col]
    order = {code: i for i, code in enumerate(langs)}
    out["_key"] = [(labels.model_key(c, m), labels.model_key(r), order.get(a, 0), order.get(b, -1), t, ro, mo)
                   for c, m, r, a, b, t, ro, mo in zip(sel["checkpoint"], sel["method"], sel["reference"],
                                                         sel["lang"], sel["lang_b"], sel["task"], sel["role"],
                                                         sel["module"])]
    return out


def table_frame(sel: "pd.DataFrame", comparison: str, decimals: int = 3,
                max_layers: int = MAX_LAYERS) -> tuple["pd.DataFrame", list[int], list[int], str]:
    """The table of one comparison and metric as a frame of cell text: row-heading columns, then one column
    per shown layer; also the shown layers, all layers, and the interval style."""
    heads = _row_columns(sel, comparison)
    names = [c for c in heads.columns if c != "_key"]
    check_unique(sel.join(heads[names]), names + ["layer"], f"{comparison} {sel['metric'].iloc[0]} table")
    layers = sorted(int(x) for x in sel["layer"].unique())
    shown = labels.spread_layers(layers, max_layers) if NO_LAYER not in layers else layers
    style = _interval_style(sel, decimals)
    cells = [_cell(v, lo, hi, style, decimals) for v, lo, hi in
             zip(sel["value"], sel["ci_low"], sel["ci_high"])]
    long = heads.assign(_cell=cells, layer=sel["layer"].astype(int))
    wide = long.pivot(index=names, columns="layer", values="_cell").reindex(columns=shown).fillna("--")
    order = long.drop_duplicates(names).sort_values("_key", kind="stable")[names]
    wide = wide.reindex(list(order.itertuples(index=False, name=None)) if len(names) > 1 else order[names[0]])
    return wide.reset_index(), shown, layers, style


def _caption(sel: "pd.DataFrame", comparison: str, shown, layers, style: str, missing: bool) -> str:
    m = measure(sel["metric"].iloc[0])
    parts = [f"{m.label[:1].upper()}{m.label[1:]}, {COMPARISON_TITLES.get(comparison, comparison)}."]
    if m.lower_is_better and "lower" not in m.label.lower():
        parts.append("Lower values mean more similar representations.")
    if m.directed:
        parts.append("Language pairs are directed (query \u2192 target).")
    langsets = [x for x in dict.fromkeys(sel["lang"]) if "+" in x]
    if len(langsets) == 1 and sel["lang"].nunique() == 1:
        parts.append(f"Languages: {labels.language_name(langsets[0])}.")
    chance = chance_text(sel)
    if chance:
        parts.append(f"Chance level {chance}.")
    kinds = " / ".join(k for k in dict.fromkeys(sel["interval"]) if k) or "confidence"
    if style == "pm":
        parts.append(f"\u00b1 gives half the width of the {kinds} interval.")
    elif style == "range":
        parts.append(f"Brackets give the {kinds} interval.")
    if len(shown) < len(layers):
        parts.append(f"{len(shown)} of {len(layers)} layers shown, evenly spaced, first and last included.")
    if missing:
        parts.append("-- marks a value that was not measured.")
    return " ".join(parts)


def latex_table(df: "pd.DataFrame", comparison: str, metric: str, *, decimals: int = 3,
                max_layers: int = MAX_LAYERS) -> str:
    """The booktabs table (``table`` or ``table*`` environment) of one comparison and metric of ``df``."""
    sel = df[(df["comparison"] == comparison) & (df["metric"] == metric)]
    if sel.empty:
        raise ReprtoolsError(f"no {comparison!r} rows with metric {metric!r} to tabulate")
    wide, shown, layers, style = table_frame(sel, comparison, decimals, max_layers)
    n_heads = wide.shape[1] - len(shown)
    body = wide.iloc[:, n_heads:]
    for col in wide.columns[:n_heads]:
        wide[col] = wide[col].map(tex)
    if n_heads > 1:  # a model's name on its first row only
        first = wide.columns[0]
        wide[first] = wide[first].where(wide[first] != wide[first].shift(), "")
    layered = shown != [NO_LAYER]
    import pandas as pd

    wide.columns = pd.MultiIndex.from_tuples(
        [("", tex(c)) for c in wide.columns[:n_heads]]
        + [("Layer" if layered else "", str(x) if layered else "Value") for x in shown])
    inches = {"": 0.45, "pm": 0.85, "range": 1.2}[style] * len(shown) + 0.8 * n_heads  # rough printed width
    caption = tex(_caption(sel, comparison, shown, layers, style, bool((body == "--").any().any())))
    latex = wide.style.hide(axis="index").to_latex(
        hrules=True, column_format="l" * n_heads + "r" * len(shown), multicol_align="c", position="t",
        position_float="centering", environment="table*" if inches > 3.3 else "table",
        caption=caption, label=f"tab:{_slug(comparison)}-{_slug(metric)}")
    return _booktabs(latex, n_heads, len(shown), layered)


def _booktabs(latex: str, n_heads: int, n_values: int, layered: bool) -> str:
    """Styler's output with the empty top-left heading cell dropped and a \\cmidrule under "Layer"."""
    lines = latex.splitlines()
    top = lines.index(r"\toprule")
    if layered:
        lines[top + 1] = lines[top + 1].replace(rf"\multicolumn{{{n_heads}}}{{c}}{{}}", " & " * (n_heads - 1))
        lines.insert(top + 2, rf"\cmidrule(lr){{{n_heads + 1}-{n_heads + n_values}}}")
    else:
        del lines[top + 1]  # the empty upper heading row
    return "% Written by reprtools.report.tables; needs \\usepackage{booktabs}.\n" + "\n".join(lines) + "\n"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-") or "x"


def write_tables(df: "pd.DataFrame", out_dir: str | os.PathLike, *, decimals: int = 3,
                 max_layers: int = MAX_LAYERS) -> list[Path]:
    """Write ``{comparison}_{metric}.tex`` into ``out_dir`` for every (comparison, metric) of ``df``, each
    atomically; returns the paths.  :class:`ReprtoolsError` when ``df`` has no rows."""
    if df.empty:
        raise ReprtoolsError("no rows to tabulate; run `reprtools probe` first")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReprtoolsError(f"cannot create {out} ({exc.strerror}); choose a writable output directory") from None
    written = []
    for comparison, metric in dict.fromkeys(zip(df["comparison"], df["metric"])):
        text = latex_table(df, comparison, metric, decimals=decimals, max_layers=max_layers)
        path = out / f"{_slug(comparison)}_{_slug(metric)}.tex".replace("-", "_")
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        written.append(path)
    return written
