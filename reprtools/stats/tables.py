"""Writing the stats tables: each one as tidy CSV (full precision) and a booktabs LaTeX table (pandas'
``Styler.to_latex``; needs ``\\usepackage{booktabs}``), both atomically."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from reprtools.fileio import atomic_path
from reprtools.report.tables import tex

if TYPE_CHECKING:
    import pandas as pd

#: columns that are settings, not numbers, and constant columns a LaTeX table need not repeat
_DROP_IF_CONSTANT = ("model", "task", "format", "metric", "reference", "paired_on", "formula", "margin", "alpha")


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "--"
        text = f"{v:.3g}" if (abs(v) < 1e-3 and v != 0) or abs(v) >= 1e4 else f"{v:.4f}".rstrip("0").rstrip(".")
        return "$-$" + text[1:] if text.startswith("-") else text
    return tex(v)


def latex(df: "pd.DataFrame", caption: str, label: str) -> str:
    """The booktabs table of ``df``: settings that are the same on every row move to the caption."""
    shown = df.copy()
    fixed = [c for c in _DROP_IF_CONSTANT if c in shown and shown[c].nunique(dropna=False) == 1 and len(shown) > 1]
    note = "; ".join(f"{c}: {shown[c].iloc[0]}" for c in fixed)
    shown = shown.drop(columns=fixed)
    body = shown.astype(object).map(_fmt)
    body.columns = [tex(c) for c in shown.columns]
    numeric = [shown[c].dtype.kind in "fiu" for c in shown.columns]
    text = body.style.hide(axis="index").to_latex(
        hrules=True, column_format="".join("r" if n else "l" for n in numeric), position="t",
        position_float="centering", caption=tex(caption + (f" ({note})" if note else "")), label=label)
    return "% Written by reprtools.stats; needs \\usepackage{booktabs}.\n" + text


def write_table(df: "pd.DataFrame", out_dir: str | os.PathLike, name: str, caption: str) -> list[Path]:
    """Write ``name.csv`` and ``name.tex`` into ``out_dir`` atomically; returns both paths."""
    out = Path(out_dir)
    csv, tex_path = out / f"{name}.csv", out / f"{name}.tex"
    with atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False, float_format="%.17g", encoding="utf-8")
    with atomic_path(tex_path) as tmp:
        tmp.write_text(latex(df, caption, f"tab:stats-{name}") if len(df) else f"% {caption}: no rows\n",
                       encoding="utf-8")
    return [csv, tex_path]
