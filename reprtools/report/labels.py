"""Names and order in figures and tables: languages, models, language pairs, which layers a table shows.

Labels of measures and methods come from :mod:`reprtools.results` (the registry); this module only turns the
values of a results frame into display names and a stable order.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Iterable, Sequence

from reprtools.errors import ReprtoolsError
from reprtools.results import METHOD_LABELS, method_label

if TYPE_CHECKING:
    import pandas as pd

_METHOD_ORDER = {m: i for i, m in enumerate(METHOD_LABELS)}  # base first, then LoRA, DoRA, ...


def language_name(code: str) -> str:
    """English name of a language code (``"hi"`` -> ``"Hindi"``); several codes joined by ``+`` become a
    comma-separated list; a code nothing knows comes back unchanged."""
    code = str(code)
    if "+" in code:
        return ", ".join(language_name(c) for c in code.split("+"))
    try:  # reprtools.languages.language_name (backed by langcodes) where this version has it
        from reprtools.languages import language_name as _name
    except ImportError:
        return code
    try:
        return str(_name(code)) or code
    except (ReprtoolsError, LookupError, ValueError, TypeError):
        return code


def pair_label(a: str, b: str, directed: bool) -> str:
    """``English → Hindi`` for a directed measure (query -> target), ``English–Hindi`` otherwise."""
    return language_name(a) + (" \u2192 " if directed else "\u2013") + language_name(b)


def is_base(checkpoint: str, method: str = "") -> bool:
    return checkpoint == "base" or method == "base"


def model_label(checkpoint: str, method: str = "") -> str:
    """``Base`` for the base model; a checkpoint's name, with its method's label where the name does not say
    it (``run3 (DoRA)``); a method's label for a row that summarises several runs (no checkpoint)."""
    if is_base(checkpoint, method):
        return "Base" if checkpoint in ("base", "") else checkpoint
    if not checkpoint:
        return method_label(method)
    if method and method.lower() not in checkpoint.lower():
        return f"{checkpoint} ({method_label(method)})"
    return checkpoint


def _natural(text: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def model_key(checkpoint: str, method: str = "") -> tuple:
    """Sort key: base first, then by method in :data:`reprtools.results.METHOD_LABELS` order, then by name
    (numbers in names compare as numbers)."""
    if is_base(checkpoint, method):
        return (0, 0, [])
    return (1, _METHOD_ORDER.get(method, len(_METHOD_ORDER)), _natural(checkpoint or method))


def models(df: "pd.DataFrame") -> list[tuple[str, str]]:
    """The frame's distinct ``(checkpoint, method)``, in :func:`model_key` order."""
    pairs = dict.fromkeys(zip(df["checkpoint"], df["method"]))
    return sorted(pairs, key=lambda cm: model_key(*cm))


def ordered_langs(codes: Iterable[str]) -> list[str]:
    """Distinct language codes in order of first appearance (``en+hi`` counts as ``en``, ``hi``)."""
    out: list[str] = []
    for code in codes:
        for c in str(code).split("+"):
            if c and c not in out:
                out.append(c)
    return out


def spread_layers(layers: Sequence[int], at_most: int = 10) -> list[int]:
    """At most ``at_most`` of ``layers``, evenly spaced, always including the first and the last."""
    layers = sorted(set(int(x) for x in layers))
    if len(layers) <= at_most:
        return layers
    idx = {round(i * (len(layers) - 1) / (at_most - 1)) for i in range(at_most)}
    return [layers[i] for i in sorted(idx)]
