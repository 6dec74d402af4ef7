"""Paper-ready heatmaps and LaTeX tables drawn from a probe's ``metrics.csv`` alone (no model is loaded).

``metrics.csv`` is tidy, one measurement per row, with exactly these columns::

    checkpoint,method,reference,layer,lang,lang_b,metric,value,ci_low,ci_high

Each row belongs to one *family*, told apart by which columns are filled:

* ``reference`` filled: the checkpoint compared with another model (``"base"`` or a checkpoint), per
  language -- ``cka_linear``, ``cka_linear_debiased``, ``cka_rbf``, ``cosine_base``.
* ``lang_b`` filled (``reference`` empty): two languages compared within one model --
  ``cosine_parallel``, ``retrieval_top1``, ``cka_linear``.
* separability (``reference`` and ``lang_b`` empty, ``lang`` names all languages joined by ``+``, e.g.
  ``en+hi+bn``): ``silhouette``, ``probe_accuracy``, ``fisher_ratio``, ``davies_bouldin``.
* anything else with ``reference`` and ``lang_b`` empty: a per-language measure of one model.

Figures (each function returns a :class:`matplotlib.figure.Figure`; none touches pyplot's global state):

* :func:`separability_heatmap` -- models x layers, one panel (and colour bar) per separability metric.
* :func:`layer_heatmap` / :func:`cka_to_base_heatmap` -- checkpoints x layers with one panel per
  language, or languages x layers with one panel per checkpoint; one colour scale for all panels.
* :func:`language_pair_heatmap` -- language x language matrices at chosen layers, one shared scale.
* :func:`layer_cka_heatmap` -- layer x layer CKA from an ``(L, L)`` or ``(La, Lb)`` array
  (:func:`load_layer_cka` reads the probe's ``.npz`` / ``.json`` / ``.npy`` file).

:func:`save_figure` writes PDF / PNG (300 dpi) / SVG atomically; :func:`draw_all` draws everything the data
supports.  :func:`latex_table` and :func:`write_tables` write booktabs tables.

Paper conventions: figures are exactly 3.3 in (``width="one"``) or 6.9 in (``width="two"``) wide, text is
7-9 pt, colour maps are colour-blind safe (viridis; the diverging RdBu only where values have both signs,
centred on 0), layer axes are labelled "Layer" with integer ticks (thinned when crowded), small grids carry
their values, and PDFs embed TrueType (Type 42) fonts as publishers require.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Union

import matplotlib
import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from reprtools.errors import ReprtoolsError
from reprtools.fileio import atomic_path

__all__ = [
    "COLUMNS",
    "DEFAULT_FORMATS",
    "LayerCKA",
    "MetricRow",
    "checkpoint_pair_heatmap",
    "cka_to_base_heatmap",
    "draw_all",
    "heatmap_meshes",
    "language_name",
    "language_pair_heatmap",
    "latex_table",
    "layer_cka_heatmap",
    "layer_heatmap",
    "load_layer_cka",
    "metric_label",
    "read_metrics",
    "save_figure",
    "separability_heatmap",
    "write_tables",
]

#: The header of metrics.csv, in order.
COLUMNS: tuple[str, ...] = (
    "checkpoint", "method", "reference", "layer", "lang", "lang_b", "metric", "value", "ci_low", "ci_high",
)
#: Formats :func:`save_figure` writes by default.
DEFAULT_FORMATS: tuple[str, ...] = ("pdf", "png", "svg")
_FORMATS = ("pdf", "png", "svg", "eps")

#: Figure widths in inches: one column / two columns of a typical two-column paper (ACL, NeurIPS, ICML...).
WIDTHS = {"one": 3.3, "two": 6.9}

#: Code -> English name for the study's languages; :func:`language_name` also consults reprtools.languages.
LANGUAGE_NAMES = {"en": "English", "hi": "Hindi", "bn": "Bengali", "ur": "Urdu", "sw": "Swahili", "te": "Telugu"}

METHOD_NAMES = {"lora": "LoRA", "dora": "DoRA", "vera": "VeRA", "adalora": "AdaLoRA", "pissa": "PiSSA", "base": "Base"}
_METHOD_ORDER = ("base", "lora", "dora", "vera", "adalora", "pissa")

# Colour-bar labels; "\n" breaks keep a vertical colour bar's label no taller than the bar.
_METRIC_LABELS = {
    "cka_linear": "Linear CKA",
    "cka_linear_debiased": "Linear CKA\n(debiased)",
    "cka_rbf": "RBF CKA",
    "cosine_base": "Cosine\nsimilarity",
    "cosine_parallel": "Cosine similarity\n(parallel)",
    "retrieval_top1": "Top-1 retrieval\naccuracy",
    "silhouette": "Silhouette\n(cosine)",
    "probe_accuracy": "Probe\naccuracy",
    "davies_bouldin": "Davies\u2013Bouldin\n(lower = better)",
    "fisher_ratio": "Fisher ratio",
}
# Names in table captions where they differ from the one-line colour-bar label.
_CAPTION_NAMES = {"davies_bouldin": "Davies\u2013Bouldin index"}
SEPARABILITY_METRICS = ("silhouette", "probe_accuracy", "fisher_ratio", "davies_bouldin")
_LOWER_IS_BETTER = {"davies_bouldin"}
# Measures where lang -> lang_b differs from lang_b -> lang (never mirrored).
_DIRECTED = {"retrieval_top1"}
# Self-similarity is 1 for these (used to fill a language x language diagonal when it is not masked).
_SIMILARITIES = {"cosine_parallel", "retrieval_top1", "cka_linear", "cka_linear_debiased", "cka_rbf", "cosine_base"}
# Where a metric's values can lie; colour limits never extend past these.
_BOUNDS = {
    "cka_linear": (0.0, 1.0), "cka_rbf": (0.0, 1.0), "retrieval_top1": (0.0, 1.0), "probe_accuracy": (0.0, 1.0),
    "cosine_base": (-1.0, 1.0), "cosine_parallel": (-1.0, 1.0), "silhouette": (-1.0, 1.0),
    "davies_bouldin": (0.0, math.inf), "fisher_ratio": (0.0, math.inf),
}
_LOG_OK = {"fisher_ratio"}

_SEQUENTIAL = "viridis"
_DIVERGING = "RdBu_r"
_MISSING = "#d9d9d9"  # cells with no measurement (and a masked diagonal)

# Font sizes (pt): all text in a figure is 7-9 pt.
_FS_TICK = 7
_FS_ANNOT = 7
_FS_LABEL = 8
_FS_TITLE = 8
_CHAR_W = 0.6  # average glyph width / font size, DejaVu Sans (a slight over-estimate)

_PAPER_RC = {
    "font.family": "sans-serif",
    "font.size": _FS_LABEL,
    "axes.titlesize": _FS_TITLE,
    "axes.labelsize": _FS_LABEL,
    "xtick.labelsize": _FS_TICK,
    "ytick.labelsize": _FS_TICK,
    "legend.fontsize": _FS_TICK,
    "figure.titlesize": 9,
    "axes.linewidth": 0.5,
    "axes.titlepad": 3.0,
    "axes.labelpad": 2.0,
    "xtick.major.width": 0.5,
    "ytick.major.width": 0.5,
    "xtick.major.size": 2.0,
    "ytick.major.size": 2.0,
    "xtick.major.pad": 2.0,
    "ytick.major.pad": 2.0,
    "pdf.fonttype": 42,  # TrueType, not Type 3: ACL/IEEE/ACM PDF checks reject Type 3 fonts
    "ps.fonttype": 42,
    "svg.fonttype": "path",
    "svg.hashsalt": "reprtools",  # deterministic SVG ids
    "savefig.dpi": 300,
    "figure.dpi": 100,
    "axes.unicode_minus": True,
}

Source = Union[str, "os.PathLike[str]", Iterable["MetricRow"], Iterable[Mapping[str, Any]]]


# --------------------------------------------------------------------------------------------------------
# Reading metrics.csv
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricRow:
    """One row of metrics.csv, parsed: ``layer`` is an int, ``value`` a float (may be NaN), a missing
    confidence interval is ``None`` in both ``ci_low`` and ``ci_high``; empty text columns are ``""``."""

    checkpoint: str
    method: str
    reference: str
    layer: int
    lang: str
    lang_b: str
    metric: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None

    @property
    def has_ci(self) -> bool:
        return self.ci_low is not None and self.ci_high is not None

    @property
    def kind(self) -> str:
        """``"reference"`` (vs. the base), ``"model_pair"`` (vs. another checkpoint), ``"pair"`` (two
        languages), ``"separability"`` or ``"single"`` (see the module docstring)."""
        if self.reference:
            return "reference" if self.reference == "base" else "model_pair"
        if self.lang_b:
            return "pair"
        if "+" in self.lang or self.metric in SEPARABILITY_METRICS:
            return "separability"
        return "single"


def _parse_float(text: str, column: str, where: str, *, allow_empty: bool) -> float | None:
    text = (text or "").strip()
    if not text:
        if allow_empty:
            return None
        raise ReprtoolsError(f"{where}: {column} is empty; write a number (or 'nan' for an undefined value)")
    try:
        return float(text)
    except ValueError:
        raise ReprtoolsError(f"{where}: {column} {text!r} is not a number; write a decimal such as 0.875") from None


def _parse_record(rec: Mapping[str, Any], where: str) -> MetricRow:
    def text(col: str) -> str:
        v = rec.get(col, "")
        return "" if v is None else str(v).strip()

    for col in ("checkpoint", "method", "lang", "metric"):
        if not text(col):
            raise ReprtoolsError(f"{where}: {col} is empty; every row needs checkpoint, method, lang and metric")
    raw_layer = rec.get("layer", "")
    if isinstance(raw_layer, (int, np.integer)) and not isinstance(raw_layer, bool):
        layer = int(raw_layer)
    else:
        try:
            layer = int(str(raw_layer).strip())
        except ValueError:
            raise ReprtoolsError(
                f"{where}: layer {raw_layer!r} is not an integer; use 0 for the embeddings and i for block i"
            ) from None
    if layer < 0:
        raise ReprtoolsError(f"{where}: layer {layer} is negative; use 0 for the embeddings and i for block i")

    def num(col: str, allow_empty: bool) -> float | None:
        v = rec.get(col, "")
        if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
            return float(v)
        return _parse_float("" if v is None else str(v), col, where, allow_empty=allow_empty)

    value = num("value", False)
    lo, hi = num("ci_low", True), num("ci_high", True)
    if (lo is None) != (hi is None):
        raise ReprtoolsError(f"{where}: only one of ci_low/ci_high is set; fill both or leave both empty")
    if lo is not None and hi is not None:
        if math.isnan(lo) and math.isnan(hi):
            lo = hi = None
        elif lo > hi:
            raise ReprtoolsError(f"{where}: ci_low {lo} is above ci_high {hi}; swap them")
    return MetricRow(
        checkpoint=text("checkpoint"),
        method=text("method").lower(),
        reference=text("reference"),
        layer=layer,
        lang=text("lang"),
        lang_b=text("lang_b"),
        metric=text("metric"),
        value=float(value),
        ci_low=lo,
        ci_high=hi,
    )


def _row_key(r: MetricRow) -> tuple:
    return (r.checkpoint, r.reference, r.layer, r.lang, r.lang_b, r.metric)


def _check_unique(rows: Sequence[MetricRow], wheres: Sequence[str]) -> None:
    seen: dict[tuple, str] = {}
    for r, where in zip(rows, wheres):
        key = _row_key(r)
        if key in seen:
            raise ReprtoolsError(
                f"{where}: duplicate measurement (checkpoint={r.checkpoint}, reference={r.reference or '-'}, "
                f"layer={r.layer}, lang={r.lang}, lang_b={r.lang_b or '-'}, metric={r.metric}), first at "
                f"{seen[key]}; keep one row per measurement (do not concatenate runs into one file)"
            )
        seen[key] = where


def read_metrics(path: str | os.PathLike[str]) -> list[MetricRow]:
    """Read and validate ``metrics.csv``; return its rows as :class:`MetricRow`, in file order.

    Raises :class:`ReprtoolsError` when the file is missing or empty, the header lacks columns (named in the
    message), a row has the wrong number of fields, a layer is not an integer, a value is not a number, only
    one CI bound is set, or the same measurement appears twice.  Extra columns are ignored.
    """
    p = Path(path)
    if not p.is_file():
        raise ReprtoolsError(f"metrics file not found: {p}; pass the metrics.csv that the probe wrote")
    with p.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise ReprtoolsError(f"{p} is empty; expected the header {','.join(COLUMNS)} and one row per measurement")
        header = [h.strip() for h in header]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise ReprtoolsError(
                f"{p}: header lacks column(s) {', '.join(missing)}; expected the header {','.join(COLUMNS)}"
            )
        dup = sorted({h for h in header if header.count(h) > 1 and h in COLUMNS})
        if dup:
            raise ReprtoolsError(f"{p}: column(s) {', '.join(dup)} appear twice in the header; keep one of each")
        rows: list[MetricRow] = []
        wheres: list[str] = []
        for fields in reader:
            if not fields or all(not f.strip() for f in fields):
                continue
            where = f"{p}, line {reader.line_num}"
            if len(fields) != len(header):
                raise ReprtoolsError(
                    f"{where}: expected {len(header)} fields, found {len(fields)}; quote fields that contain commas"
                )
            rows.append(_parse_record(dict(zip(header, fields)), where))
            wheres.append(where)
    _check_unique(rows, wheres)
    return rows


def _as_rows(metrics: Source) -> list[MetricRow]:
    """A path -> :func:`read_metrics`; an iterable of :class:`MetricRow` or of dicts -> validated rows."""
    if isinstance(metrics, (str, os.PathLike)):
        return read_metrics(metrics)
    if isinstance(metrics, Mapping) or not isinstance(metrics, Iterable):
        raise ReprtoolsError(
            f"metrics must be a path to metrics.csv or a list of rows, got {type(metrics).__name__}"
        )
    rows: list[MetricRow] = []
    wheres: list[str] = []
    for i, item in enumerate(metrics):
        where = f"metrics row {i}"
        if isinstance(item, MetricRow):
            rows.append(item)
        elif isinstance(item, Mapping):
            rows.append(_parse_record(item, where))
        else:
            raise ReprtoolsError(f"{where} is a {type(item).__name__}; give MetricRow objects or dicts keyed by column")
        wheres.append(where)
    _check_unique(rows, wheres)
    return rows


# --------------------------------------------------------------------------------------------------------
# Names, ordering, families
# --------------------------------------------------------------------------------------------------------


def language_name(code: str) -> str:
    """English name of a language code (``"hi"`` -> ``"Hindi"``); unknown codes come back unchanged.

    Also understands FLORES-style codes (``"hin_Deva"``) and the ISO codes reprtools.languages knows.
    """
    code = str(code).strip()
    low = code.lower()
    if low in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[low]
    try:  # the project's full language table, when present
        from reprtools.languages import LANGUAGES as _ALL

        if low in _ALL:
            return _ALL[low].name
        for lang in _ALL.values():
            if lang.flores.lower() == low or lang.flores.split("_")[0].lower() == low:
                return lang.name
    except Exception:  # pragma: no cover - languages.py is optional for figures
        pass
    head = re.split(r"[_\-]", low)[0]
    if head != low and head in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[head]
    return code


def _langset_name(langset: str) -> str:
    return ", ".join(language_name(c) for c in langset.split("+"))


def metric_label(metric: str, reference: str | None = None, *, one_line: bool = False) -> str:
    """Readable name of a metric for colour bars and captions (``"cka_linear"`` -> ``"Linear CKA"``).

    ``reference`` adds "vs. <reference>"; the label may contain line breaks unless ``one_line``.
    """
    label = _METRIC_LABELS.get(metric) or metric.replace("_", " ").strip().capitalize()
    if reference:
        label += "\nvs. " + ("base" if reference == "base" else reference)
    return label.replace("\n", " ") if one_line else label


def _method_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def _model_label(checkpoint: str, method: str) -> str:
    if checkpoint == "base" or method == "base":
        return "Base" if checkpoint == "base" else checkpoint
    if method and method not in checkpoint.lower():
        return f"{checkpoint} ({_method_name(method)})"
    return checkpoint


def _natural_key(s: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def _models(rows: Iterable[MetricRow]) -> list[tuple[str, str]]:
    """Ordered unique (checkpoint, method): base first, then by method (LoRA, DoRA, ...), then by name."""
    found: dict[str, str] = {}
    for r in rows:
        found.setdefault(r.checkpoint, r.method)

    def key(item: tuple[str, str]) -> tuple:
        ck, m = item
        is_base = ck == "base" or m == "base"
        order = _METHOD_ORDER.index(m) if m in _METHOD_ORDER else len(_METHOD_ORDER)
        return (0 if is_base else 1, order, _natural_key(ck))

    return sorted(found.items(), key=key)


def _languages(rows: Iterable[MetricRow]) -> list[str]:
    """Language codes in order of first appearance (a separability row's "en+hi+bn" counts as en, hi, bn)."""
    out: list[str] = []
    for r in rows:
        for code in (*r.lang.split("+"), r.lang_b):
            if code and code not in out:
                out.append(code)
    return out


def _families(rows: Iterable[MetricRow]) -> dict[tuple[str, str, str], list[MetricRow]]:
    """Rows grouped by (kind, metric, reference), families in order of first appearance; all
    checkpoint-vs-checkpoint rows of a metric form one family with reference ``"*"``."""
    fams: dict[tuple[str, str, str], list[MetricRow]] = {}
    for r in rows:
        kind = r.kind
        fams.setdefault((kind, r.metric, "*" if kind == "model_pair" else r.reference), []).append(r)
    return fams


def _default_layers(layers: Sequence[int]) -> list[int]:
    """First, middle and last layer (deduplicated, ascending)."""
    layers = sorted(set(layers))
    if not layers:
        return []
    return sorted({layers[0], layers[len(layers) // 2], layers[-1]})


def _check_layers(requested: Iterable[int], available: Sequence[int], what: str) -> list[int]:
    req = [int(x) for x in requested]
    bad = [x for x in req if x not in available]
    if bad:
        raise ReprtoolsError(
            f"layer(s) {', '.join(map(str, bad))} not in the {what} rows; available layers: "
            f"{', '.join(map(str, available))}"
        )
    if not req:
        raise ReprtoolsError(f"no layers chosen for {what}; pick some of: {', '.join(map(str, available))}")
    return req


def _width_inches(width: str | float) -> float:
    if isinstance(width, str):
        if width not in WIDTHS:
            raise ReprtoolsError(f"width {width!r} is unknown; use 'one' (3.3 in), 'two' (6.9 in) or inches as a number")
        return WIDTHS[width]
    w = float(width)
    if not 1.0 <= w <= 20.0:
        raise ReprtoolsError(f"width {w} in is out of range; use 'one', 'two' or a width between 1 and 20 inches")
    return w


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return s or "x"


# --------------------------------------------------------------------------------------------------------
# Colour scales and the heatmap primitive
# --------------------------------------------------------------------------------------------------------


@dataclass
class _Scale:
    norm: Normalize
    cmap: Any
    label: str
    fmt: str


def _annot_format(values: np.ndarray) -> str:
    finite = values[np.isfinite(values)]
    top = float(np.max(np.abs(finite))) if finite.size else 1.0
    if top < 10:
        return "{:.2f}"
    if top < 100:
        return "{:.1f}"
    return "{:.0f}"


def _make_scale(metric: str, values: Iterable[float], label: str, vmin: float | None = None,
                vmax: float | None = None) -> _Scale:
    """One colour scale for all panels of one metric: data-driven limits clipped to the metric's range;
    diverging (RdBu, centred on 0, symmetric) only when the values have both signs; viridis otherwise
    (reversed where lower is better, so "better" is always the bright end); log for wide positive ranges."""
    vals = np.asarray([v for v in values], dtype=float)
    finite = vals[np.isfinite(vals)]
    lo_b, hi_b = _BOUNDS.get(metric, (-math.inf, math.inf))
    dmin = float(finite.min()) if finite.size else 0.0
    dmax = float(finite.max()) if finite.size else 1.0
    lo = dmin if vmin is None else float(vmin)
    hi = dmax if vmax is None else float(vmax)
    signed = lo < 0.0 < hi
    use_log = False
    if signed:
        if vmin is None and vmax is None:
            m = max(abs(lo), abs(hi))
            lo, hi = -m, m
        cmap_name = _DIVERGING
    else:
        cmap_name = _SEQUENTIAL + ("_r" if metric in _LOWER_IS_BETTER else "")
        use_log = metric in _LOG_OK and vmin is None and vmax is None and lo > 0 and hi / lo > 100
    if vmin is None:
        lo = max(lo, lo_b)
    if vmax is None:
        hi = min(hi, hi_b)
    if not hi > lo:
        pad = 0.05 * abs(hi) if hi else 0.05
        lo, hi = (lo - pad if vmin is None else lo), (hi + pad if vmax is None else hi)
        if not hi > lo:
            hi = lo + 2 * pad
        if vmin is None and vmax is None and lo < lo_b:
            lo, hi = lo_b, max(hi, lo_b + 2 * pad)
        if vmax is None and hi > hi_b and vmin is None:
            lo, hi = min(lo, hi_b - 2 * pad), hi_b
    norm: Normalize = LogNorm(lo, hi) if use_log else Normalize(lo, hi)
    cmap = matplotlib.colormaps[cmap_name].with_extremes(bad=_MISSING)
    if use_log:
        label += " (log)"
    return _Scale(norm=norm, cmap=cmap, label=label, fmt=_annot_format(finite))


def _text_in(text: str, size: float) -> float:
    """Estimated width in inches of the longest line of ``text`` at ``size`` pt."""
    longest = max((len(line) for line in str(text).split("\n")), default=0)
    return longest * size * _CHAR_W / 72.0


@contextmanager
def _paper_style() -> Iterator[None]:
    with matplotlib.rc_context(_PAPER_RC):
        yield


@dataclass
class _Spec:
    """What :func:`_finalize` needs to know about one heatmap axes after layout."""

    ax: Any
    data: np.ndarray
    scale: _Scale
    x_layers: list[int] | None = None
    y_layers: list[int] | None = None
    annotate: bool | None = None
    origin_lower: bool = False
    max_side: float | None = None  # equal-aspect panels: largest allowed side, inches


def heatmap_meshes(fig: Figure) -> list[Any]:
    """The heatmap panels' QuadMesh artists of a figure made here (not its colour bars), in panel order;
    ``mesh.get_clim()`` gives a panel's colour limits."""
    return [c for ax in fig.axes for c in ax.collections if str(c.get_gid() or "").startswith("heatmap-")]


def _heatmap(ax, data: np.ndarray, scale: _Scale, row_labels: Sequence[str] | None,
             col_labels: Sequence[str] | None, *, origin_lower: bool = False, layer_x: bool = False,
             layer_y: bool = False):
    """Draw ``data`` (rows x cols, NaN = no value) as a vector pcolormesh; returns the QuadMesh."""
    n_rows, n_cols = data.shape
    small = n_rows <= 24 and n_cols <= 24
    mesh = ax.pcolormesh(
        np.arange(n_cols + 1), np.arange(n_rows + 1), np.ma.masked_invalid(data),
        cmap=scale.cmap, norm=scale.norm,
        edgecolors="white" if small else "face", linewidth=0.4 if small else 0.1,
    )
    # Mark the panel (unique within the figure; it also names the panel in SVG output).
    mesh.set_gid(f"heatmap-{len(heatmap_meshes(ax.figure)) + 1}")
    ax.set_facecolor(_MISSING)
    ax.set_xlim(0, n_cols)
    ax.set_ylim((0, n_rows) if origin_lower else (n_rows, 0))
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(axis="both", which="both", labelsize=_FS_TICK, length=0, pad=2)
    if layer_x:
        ax.tick_params(axis="x", length=2, width=0.5)
    if layer_y:
        ax.tick_params(axis="y", length=2, width=0.5)
    if col_labels is not None:
        ax.set_xticks(np.arange(n_cols) + 0.5, labels=list(col_labels))
    if row_labels is not None:
        ax.set_yticks(np.arange(n_rows) + 0.5, labels=list(row_labels))
    return mesh


def _thin(labels: Sequence[int], axis_pt: float, vertical: bool) -> list[int]:
    """Indices of the layer labels to show so they do not collide: all of them when they fit, else those at
    multiples of the smallest step in 2, 4, 5, 10, 20, 25, 50, ... that fits."""
    n = len(labels)
    if n == 0:
        return []
    widest = max(len(str(x)) for x in labels) * _FS_TICK * _CHAR_W
    spacing = (_FS_TICK * 1.6) if vertical else max(widest + 5.0, 11.0)
    max_ticks = max(2, int(axis_pt // spacing))
    if n <= max_ticks:
        return list(range(n))
    for step in (2, 4, 5, 10, 20, 25, 50, 100, 200, 500, 1000):
        chosen = [i for i, x in enumerate(labels) if x % step == 0]
        if 0 < len(chosen) <= max_ticks:
            return chosen
    return [0, n - 1]


def _luminance(rgba) -> float:
    r, g, b = rgba[:3]
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _finalize(fig: Figure, specs: Sequence[_Spec]) -> Figure:
    """After a layout pass: thin crowded layer ticks to what the measured axes hold, and write values into
    the cells of small grids (<= 12 x 12) whose cells are big enough for 7 pt text."""
    with _paper_style():
        engine = fig.get_layout_engine()
        engine.execute(fig)
        _fit_height(fig, specs, engine)
        for spec in specs:
            ax = spec.ax
            ax.apply_aspect()
            bbox = ax.get_window_extent()
            w_pt = bbox.width / fig.dpi * 72.0
            h_pt = bbox.height / fig.dpi * 72.0
            n_rows, n_cols = spec.data.shape
            labels_visible_x = any(t.get_visible() and t.get_text() for t in ax.get_xticklabels())
            labels_visible_y = any(t.get_visible() and t.get_text() for t in ax.get_yticklabels())
            if spec.x_layers is not None:
                keep = _thin(spec.x_layers, w_pt, vertical=False)
                ax.set_xticks([i + 0.5 for i in keep],
                              labels=[str(spec.x_layers[i]) for i in keep] if labels_visible_x else [])
            if spec.y_layers is not None:
                keep = _thin(spec.y_layers, h_pt, vertical=True)
                ax.set_yticks([i + 0.5 for i in keep],
                              labels=[str(spec.y_layers[i]) for i in keep] if labels_visible_y else [])
            if spec.annotate is False:
                continue
            finite = spec.data[np.isfinite(spec.data)]
            if not finite.size:
                continue
            texts = [spec.scale.fmt.format(v).replace("-", "\u2212") for v in finite]
            need_w = max(len(t) for t in texts) * _FS_ANNOT * _CHAR_W + 2.0
            need_h = _FS_ANNOT * 1.15
            fits = w_pt / n_cols >= need_w and h_pt / n_rows >= need_h
            if spec.annotate is None and not (fits and n_rows <= 12 and n_cols <= 12):
                continue
            for i in range(n_rows):
                for j in range(n_cols):
                    v = spec.data[i, j]
                    if not np.isfinite(v):
                        continue
                    rgba = spec.scale.cmap(spec.scale.norm(v))
                    color = "black" if _luminance(rgba) > 0.5 else "white"
                    ax.text(j + 0.5, i + 0.5, spec.scale.fmt.format(v).replace("-", "\u2212"),
                            ha="center", va="center", fontsize=_FS_ANNOT, color=color)
        # Lay out once more with the final ticks, then freeze the positions: saving to several formats
        # then costs no further layout passes (call fig.set_layout_engine("constrained") to re-enable).
        engine.execute(fig)
        _fit_height(fig, specs, engine, rounds=2)
        fig.set_layout_engine("none")
    return fig


def _fit_height(fig: Figure, specs: Sequence[_Spec], engine, rounds: int = 5) -> None:
    """For square-cell (equal-aspect) panels: narrow the layout area (centred) until no panel is larger than
    its ``max_side``, then change the figure height (never the width) until the panels fill their layout
    cells, so there are no empty bands between or around them."""
    equal = [s for s in specs if s.ax.get_aspect() == 1.0]
    if not equal:
        return
    rect_w = float(engine.get()["rect"][2])
    for _ in range(rounds):
        w_in, h_in = fig.get_size_inches()
        rows: dict[int, tuple[float, float]] = {}
        cols: dict[int, float] = {}
        for spec in equal:
            ax = spec.ax
            ax.apply_aspect()
            orig = ax.get_position(original=True)
            act = ax.get_position(original=False)
            cell_w, cell_h = orig.width * w_in, orig.height * h_in
            act_w, act_h = act.width * w_in, act.height * h_in
            n_r, n_c = spec.data.shape
            if spec.max_side:  # the widest this panel may be: longest side <= max_side
                allowed_w = spec.max_side * n_c / max(n_r, n_c)
                cols[ax.get_subplotspec().colspan.start] = max(cols.get(ax.get_subplotspec().colspan.start, 0.0),
                                                               cell_w - allowed_w)
            slack_h = cell_h - act_h
            grow = (cell_w - act_w) * n_r / n_c
            r = ax.get_subplotspec().rowspan.start
            prev = rows.get(r, (0.0, 0.0))
            rows[r] = (max(prev[0], slack_h), max(prev[1], grow))
        too_wide = sum(v for v in cols.values() if v > 0.02)
        if too_wide > 0.02:
            rect_w = max(rect_w - too_wide / w_in, 0.2)
            engine.set(rect=((1 - rect_w) / 2, 0.0, rect_w, 1.0))
            engine.execute(fig)
            continue
        shrink = sum(v[0] for v in rows.values())
        grow = sum(v[1] for v in rows.values())
        change = grow if grow > 0.02 else -shrink
        if abs(change) < 0.05:  # a colour bar's thickness follows the height, so stop near the fixed point
            break
        fig.set_size_inches(w_in, max(h_in + 0.85 * change, 0.8))
        engine.execute(fig)


def _new_figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, max(height_in, 0.8)), layout="constrained")
    fig.get_layout_engine().set(w_pad=2 / 72, h_pad=2 / 72, wspace=0.03, hspace=0.03)
    return fig


def _colorbar(fig: Figure, mesh, axes: Sequence[Any], label: str, *, vertical: bool, length_in: float):
    """One colour bar for ``axes``: on the right (``vertical``) or below, ~0.1 in thick, labelled."""
    if vertical:
        cb = fig.colorbar(mesh, ax=list(axes), location="right", shrink=1.0,
                          aspect=max(length_in / 0.1, 5.0), pad=0.02)
    else:
        cb = fig.colorbar(mesh, ax=list(axes), location="bottom", shrink=0.6,
                          aspect=max(length_in * 0.6 / 0.09, 5.0), pad=0.06)
    cb.set_label(label if vertical else label.replace("\n", " "), fontsize=_FS_LABEL, labelpad=3)
    cb.ax.tick_params(labelsize=_FS_TICK, width=0.5, length=2, pad=1.5)
    cb.outline.set_linewidth(0.4)
    return cb


def _cap_cell_width(fig: Figure, width_in: float, fixed_in: float, ncols: int, n_cells: int,
                    max_cell_in: float = 0.55) -> None:
    """With few layers, keep cells at most ``max_cell_in`` wide by laying out a centred, narrower block
    (``fixed_in``: labels and colour bars beside the heatmaps)."""
    content = fixed_in + ncols * (n_cells * max_cell_in + 0.1)
    if content < width_in - 0.2:
        frac = content / width_in
        fig.get_layout_engine().set(rect=((1 - frac) / 2, 0.0, frac, 1.0))


def _grid_shape(n_panels: int, ncols: int | None, width_in: float, max_cols: int) -> tuple[int, int]:
    if ncols is None:
        ncols = 1 if width_in < 4.5 else max_cols
    ncols = max(1, min(int(ncols), n_panels))
    return math.ceil(n_panels / ncols), ncols


def _remove_unused(axs, n_panels: int) -> list[Any]:
    flat = list(axs.flat)
    for ax in flat[n_panels:]:
        ax.remove()
    return flat[:n_panels]


# --------------------------------------------------------------------------------------------------------
# Figure 1/2: layer heatmaps (models x layers, languages x layers)
# --------------------------------------------------------------------------------------------------------


def _layer_grid(*, titles: Sequence[str | None], cube: np.ndarray, row_labels: Sequence[str],
                layers: Sequence[int], scale: _Scale, width_in: float, ncols: int | None,
                annotate: bool | None) -> Figure:
    """Panels sharing rows (``row_labels``), columns (``layers``) and one colour scale, one colour bar."""
    n_panels, n_rows, n_cols = cube.shape
    nrows_g, ncols_g = _grid_shape(n_panels, ncols, width_in, max_cols=3)
    ylab_w = max(_text_in(s, _FS_TICK) for s in row_labels) + 0.12
    cbar_w = 0.35 + max(1, scale.label.count("\n") + 1) * 0.14
    heat_w = (width_in - ylab_w - cbar_w - 0.1 * (ncols_g - 1)) / ncols_g
    cell_h = min(max(heat_w / n_cols * 0.7, 0.15), 0.26)
    panel_h = n_rows * cell_h
    title_h = 0.2 if any(titles) else 0.0
    heat_total = nrows_g * panel_h + (nrows_g - 1) * (title_h + 0.08)
    vertical = heat_total >= _text_in(scale.label, _FS_LABEL) * 1.05
    height = nrows_g * (panel_h + title_h) + (nrows_g - 1) * 0.08 + 0.38 + (0.0 if vertical else 0.5)
    with _paper_style():
        fig = _new_figure(width_in, height)
        _cap_cell_width(fig, width_in, ylab_w + (cbar_w if vertical else 0.0), ncols_g, n_cols)
        axs = fig.subplots(nrows_g, ncols_g, squeeze=False)
        axes = _remove_unused(axs, n_panels)
        specs: list[_Spec] = []
        mesh = None
        for k, ax in enumerate(axes):
            col = k % ncols_g
            has_below = k + ncols_g < n_panels
            mesh = _heatmap(ax, cube[k], scale, row_labels if col == 0 else None,
                            [str(x) for x in layers], layer_x=True)
            if col != 0:
                ax.set_yticks(np.arange(n_rows) + 0.5, labels=[])
            if has_below:
                ax.tick_params(axis="x", labelbottom=False, length=0)
            else:
                ax.set_xlabel("Layer", fontsize=_FS_LABEL)
            if titles[k]:
                ax.set_title(titles[k], fontsize=_FS_TITLE)
            specs.append(_Spec(ax, cube[k], scale, x_layers=list(layers), annotate=annotate))
        _colorbar(fig, mesh, axes, scale.label, vertical=vertical,
                  length_in=heat_total if vertical else width_in)
    return _finalize(fig, specs)


def _pick_rows(rows: Sequence[MetricRow], metric: str, reference: str, kinds: Iterable[str]) -> list[MetricRow]:
    kinds = set(kinds)
    return [r for r in rows if r.metric == metric and r.reference == reference and r.kind in kinds]


def _available(rows: Sequence[MetricRow]) -> str:
    fams = sorted({f"{m} (reference={'another checkpoint' if ref == '*' else ref or '-'})"
                   for (_, m, ref) in _families(rows)})
    return ", ".join(fams) if fams else "none (the metrics are empty)"


def layer_heatmap(metrics: Source, metric: str = "cka_linear", *, reference: str = "base", panels: str = "lang",
                  width: str | float = "two", ncols: int | None = None, annotate: bool | None = None,
                  vmin: float | None = None, vmax: float | None = None) -> Figure:
    """Layer heatmaps of a per-language ``metric`` measured against ``reference`` (``""`` for a within-model
    per-language metric).

    ``panels="lang"``: one panel per language, rows = checkpoints, columns = layers.
    ``panels="checkpoint"``: one panel per checkpoint, rows = languages, columns = layers.
    All panels share one colour scale (``vmin``/``vmax`` override it) and one colour bar.
    """
    rows = _as_rows(metrics)
    sel = _pick_rows(rows, metric, reference, ("reference", "model_pair", "single"))
    if not sel:
        raise ReprtoolsError(
            f"no per-language rows with metric={metric!r} and reference={reference!r}; available: {_available(rows)}"
        )
    if panels not in ("lang", "checkpoint", "model"):
        raise ReprtoolsError(f"panels={panels!r} is unknown; use 'lang' (one panel per language) or 'checkpoint'")
    models = _models(sel)
    langs = _languages(sel)
    layers = sorted({r.layer for r in sel})
    mi = {ck: i for i, (ck, _) in enumerate(models)}
    li = {c: i for i, c in enumerate(langs)}
    ki = {x: i for i, x in enumerate(layers)}
    cube = np.full((len(models), len(langs), len(layers)), np.nan)
    for r in sel:
        cube[mi[r.checkpoint], li[r.lang], ki[r.layer]] = r.value
    scale = _make_scale(metric, cube.ravel(), metric_label(metric, reference), vmin, vmax)
    width_in = _width_inches(width)
    model_labels = [_model_label(ck, m) for ck, m in models]
    lang_labels = [language_name(c) for c in langs]
    if panels == "lang":
        return _layer_grid(titles=lang_labels, cube=cube.transpose(1, 0, 2),
                           row_labels=model_labels, layers=layers, scale=scale, width_in=width_in, ncols=ncols,
                           annotate=annotate)
    return _layer_grid(titles=model_labels, cube=cube, row_labels=lang_labels, layers=layers, scale=scale,
                       width_in=width_in, ncols=ncols, annotate=annotate)


def cka_to_base_heatmap(metrics: Source, metric: str = "cka_linear", *, width: str | float = "two",
                        ncols: int | None = None, annotate: bool | None = None, vmin: float | None = None,
                        vmax: float | None = None) -> Figure:
    """CKA of each checkpoint to the base model: rows = checkpoints, columns = layers, one panel per language,
    one shared colour scale.  Same as :func:`layer_heatmap` with ``reference="base"``, ``panels="lang"``."""
    return layer_heatmap(metrics, metric, reference="base", panels="lang", width=width, ncols=ncols,
                         annotate=annotate, vmin=vmin, vmax=vmax)


def separability_heatmap(metrics: Source, which: Sequence[str] | None = None, *, width: str | float = "two",
                         ncols: int | None = None, annotate: bool | None = None) -> Figure:
    """Language separability per model and layer: one panel per metric (default: the separability metrics
    present, in the order silhouette, probe_accuracy, fisher_ratio, davies_bouldin, others), rows = models
    (base first), columns = layers; each metric has its own colour scale and labelled colour bar."""
    rows = _as_rows(metrics)
    sep = [r for r in rows if r.kind == "separability"]
    present = list(dict.fromkeys(r.metric for r in sep))
    if which is None:
        which = [m for m in SEPARABILITY_METRICS if m in present] + [m for m in present if m not in SEPARABILITY_METRICS]
    which = list(which)
    missing = [m for m in which if m not in present]
    if not sep or not which or missing:
        raise ReprtoolsError(
            f"no separability rows for {', '.join(missing or which or ['any metric'])}; "
            f"separability metrics present: {', '.join(present) or 'none'}"
        )
    sep = [r for r in sep if r.metric in which]
    models = _models(sep)
    langsets = list(dict.fromkeys(r.lang for r in sep))
    row_keys = [(ck, ls) for ck, _ in models for ls in langsets
                if any(r.checkpoint == ck and r.lang == ls for r in sep)]
    methods = dict(models)
    row_labels = [_model_label(ck, methods[ck]) + (f" ({ls})" if len(langsets) > 1 else "") for ck, ls in row_keys]
    layers = sorted({r.layer for r in sep})
    ri = {k: i for i, k in enumerate(row_keys)}
    ki = {x: i for i, x in enumerate(layers)}
    data = {m: np.full((len(row_keys), len(layers)), np.nan) for m in which}
    for r in sep:
        data[r.metric][ri[(r.checkpoint, r.lang)], ki[r.layer]] = r.value
    scales = {m: _make_scale(m, data[m].ravel(), metric_label(m)) for m in which}

    width_in = _width_inches(width)
    n_panels = len(which)
    nrows_g, ncols_g = _grid_shape(n_panels, ncols, width_in, max_cols=2)
    n_rows = len(row_keys)
    ylab_w = max(_text_in(s, _FS_TICK) for s in row_labels) + 0.12
    cbar_w = 0.75
    heat_w = (width_in - ylab_w - ncols_g * cbar_w) / ncols_g
    cell_h = min(max(heat_w / len(layers) * 0.7, 0.13), 0.26)
    min_h = max(_text_in(s.label, _FS_LABEL) for s in scales.values()) * 1.05
    panel_h = max(n_rows * cell_h, min_h)
    height = nrows_g * panel_h + (nrows_g - 1) * 0.12 + 0.4
    with _paper_style():
        fig = _new_figure(width_in, height)
        _cap_cell_width(fig, width_in, ylab_w + ncols_g * cbar_w, ncols_g, len(layers))
        axs = fig.subplots(nrows_g, ncols_g, squeeze=False)
        axes = _remove_unused(axs, n_panels)
        specs = []
        for k, (ax, m) in enumerate(zip(axes, which)):
            col = k % ncols_g
            mesh = _heatmap(ax, data[m], scales[m], row_labels if col == 0 else None,
                            [str(x) for x in layers], layer_x=True)
            if col != 0:
                ax.set_yticks(np.arange(n_rows) + 0.5, labels=[])
            if k + ncols_g < n_panels:
                ax.tick_params(axis="x", labelbottom=False, length=0)
            else:
                ax.set_xlabel("Layer", fontsize=_FS_LABEL)
            _colorbar(fig, mesh, [ax], scales[m].label, vertical=True, length_in=panel_h)
            specs.append(_Spec(ax, data[m], scales[m], x_layers=layers, annotate=annotate))
    return _finalize(fig, specs)


# --------------------------------------------------------------------------------------------------------
# Figure 3: language x language at chosen layers
# --------------------------------------------------------------------------------------------------------


def _pair_values(sel: Sequence[MetricRow], metric: str) -> tuple[dict[tuple, float], bool]:
    """{(checkpoint, layer, lang, lang_b): value}, and whether the measure is directed: retrieval always is
    (A -> B differs from B -> A), any other metric when both directions are measured with different values."""
    vals = {(r.checkpoint, r.layer, r.lang, r.lang_b): r.value for r in sel}
    directed = metric in _DIRECTED or any(
        (ck, ly, b, a) in vals and a != b and not math.isclose(v, vals[(ck, ly, b, a)], rel_tol=1e-9, abs_tol=1e-12)
        for (ck, ly, a, b), v in vals.items()
    )
    return vals, directed


def _square(keys: Sequence[str], get, *, directed: bool, mask_diagonal: bool, metric: str) -> np.ndarray:
    """``len(keys)``-square matrix of ``get(a, b)`` (NaN when unmeasured); a symmetric measure measured in one
    direction only is mirrored; a directed one never is (the other direction stays blank)."""
    n = len(keys)
    mat = np.full((n, n), np.nan)
    for i, a in enumerate(keys):
        for j, b in enumerate(keys):
            v = get(a, b)
            if not np.isfinite(v) and not directed:
                v = get(b, a)
            if i == j:
                if mask_diagonal:
                    v = np.nan
                elif not np.isfinite(v) and metric in _SIMILARITIES:
                    v = 1.0
            mat[i, j] = v
    return mat


def _pair_grid(*, mats: Mapping[tuple[Any, Any], np.ndarray], row_keys: Sequence[Any], row_labels: Sequence[str],
               col_keys: Sequence[Any], col_titles: Sequence[str], tick_labels: Sequence[str], scale: _Scale,
               width_in: float, annotate: bool | None) -> Figure:
    """Square matrices ``mats[(row_key, col_key)]`` in a grid: grid rows labelled on the left (short labels,
    e.g. "Layer 9"), grid columns titled on top (e.g. model names); one colour scale and one colour bar.  When
    the columns do not fit side by side at a legible size they wrap into further blocks of rows."""
    n = len(tick_labels)
    n_rows_g = len(row_keys)
    ylab_w = max(_text_in(s, _FS_TICK) for s in tick_labels) + 0.25
    cbar_w = 0.35 + (scale.label.count("\n") + 1) * 0.14
    # Cells at least 0.14 in so that 7 pt tick labels do not collide; panels 0.5-1.3 in.
    max_side, min_side = max(1.3, n * 0.14), max(0.5, n * 0.14)
    avail_w = width_in - ylab_w - cbar_w
    per_row = max(1, min(len(col_keys), int(avail_w // (min_side + 0.06))))
    blocks = math.ceil(len(col_keys) / per_row)
    side = min(avail_w / per_row - 0.06, max_side)
    cell = side / n
    widest = max(len(s) for s in tick_labels) * _FS_TICK * _CHAR_W
    rotate = 0 if cell * 72 >= widest + 3 else (45 if cell * 72 * 0.7 >= _FS_TICK * 1.25 else 90)
    title_fs = _FS_TITLE if side >= 0.8 else _FS_TICK
    titles = [_wrap(t, side + 0.12, title_fs) for t in col_titles]
    title_h = 0.06 + max(t.count("\n") + 1 for t in titles) * 0.14
    xt_h = max(_text_in(s, _FS_TICK) for s in tick_labels) * {0: 0.0, 45: 0.75, 90: 1.0}[rotate] + 0.15
    heat_total = blocks * n_rows_g * side + (blocks * n_rows_g - 1) * 0.06
    vertical = heat_total >= _text_in(scale.label, _FS_LABEL) * 1.05
    height = heat_total + blocks * (title_h + xt_h) + (0.0 if vertical else 0.5)
    with _paper_style():
        fig = _new_figure(width_in, height)
        content_w = ylab_w + 0.2 + per_row * (side + 0.06) + cbar_w
        if content_w < width_in - 0.1:  # panels at their largest: centre the block (saves layout passes)
            frac = content_w / width_in
            fig.get_layout_engine().set(rect=((1 - frac) / 2, 0.0, frac, 1.0))
        axs = fig.subplots(blocks * n_rows_g, per_row, squeeze=False)
        specs = []
        used = []
        mesh = None
        for ci_, ck in enumerate(col_keys):
            block, gj = divmod(ci_, per_row)
            for ri_, rk in enumerate(row_keys):
                ax = axs[block * n_rows_g + ri_, gj]
                used.append(ax)
                mat = mats[(rk, ck)]
                last = ri_ == n_rows_g - 1
                mesh = _heatmap(ax, mat, scale, tick_labels if gj == 0 else None, tick_labels if last else None)
                ax.set_aspect("equal")
                if gj != 0:
                    ax.set_yticks(np.arange(n) + 0.5, labels=[])
                else:
                    ax.set_ylabel(row_labels[ri_], fontsize=_FS_LABEL)
                if not last:
                    ax.set_xticks(np.arange(n) + 0.5, labels=[])
                elif rotate:
                    ax.tick_params(axis="x", labelrotation=rotate)
                    for t in ax.get_xticklabels():
                        t.set_ha("right" if rotate == 45 else "center")
                        t.set_rotation_mode("anchor" if rotate == 45 else "default")
                if ri_ == 0:
                    ax.set_title(titles[ci_], fontsize=title_fs)
                specs.append(_Spec(ax, mat, scale, annotate=annotate, max_side=max_side))
        for ax in axs.flat:
            if ax not in used:
                ax.remove()
        _colorbar(fig, mesh, used, scale.label, vertical=vertical,
                  length_in=heat_total if vertical else width_in)
    return _finalize(fig, specs)


def _select_models(all_models: list[tuple[str, str]], models: Sequence[str] | None, metric: str):
    if models is None:
        return all_models
    known = [ck for ck, _ in all_models]
    bad = [m for m in models if m not in known]
    if bad:
        raise ReprtoolsError(f"model(s) {', '.join(bad)} have no {metric} rows; choose from {', '.join(known)}")
    order = list(models)
    return sorted([item for item in all_models if item[0] in order], key=lambda item: order.index(item[0]))


def language_pair_heatmap(metrics: Source, metric: str = "cosine_parallel", *, layers: Sequence[int] | None = None,
                          models: Sequence[str] | None = None, width: str | float = "two",
                          mask_diagonal: bool = True, annotate: bool | None = None, vmin: float | None = None,
                          vmax: float | None = None) -> Figure:
    """Language x language matrices of a within-model ``metric`` (rows with ``lang_b`` filled and no
    reference) at ``layers`` (default: first, middle, last): grid rows = layers, grid columns = models (all,
    or ``models``, in that order).  One colour scale and one colour bar for all panels.

    A symmetric measure (cosine, CKA) measured for one direction of a pair is mirrored.  A directed one
    (``retrieval_top1``: lang -> lang_b) is not: rows are the source language, columns the target, and an
    unmeasured direction stays blank.  The diagonal is masked (grey) unless ``mask_diagonal=False`` (then a
    missing diagonal of a similarity is 1)."""
    rows = _as_rows(metrics)
    sel = [r for r in rows if r.metric == metric and r.kind == "pair"]
    if not sel:
        raise ReprtoolsError(f"no language-pair rows (lang_b filled, reference empty) for metric={metric!r}; "
                             f"available: {_available(rows)}")
    all_models = _select_models(_models(sel), models, metric)
    avail = sorted({r.layer for r in sel})
    chosen = _default_layers(avail) if layers is None else _check_layers(layers, avail, metric)
    langs = _languages(sel)
    vals, directed = _pair_values(sel, metric)
    mats = {
        (ly, ck): _square(langs, lambda a, b, ck=ck, ly=ly: vals.get((ck, ly, a, b), np.nan), directed=directed,
                          mask_diagonal=mask_diagonal, metric=metric)
        for ck, _ in all_models for ly in chosen
    }
    label = metric_label(metric) + ("\n(row \u2192 column)" if directed else "")
    scale = _make_scale(metric, np.concatenate([m.ravel() for m in mats.values()]), label, vmin, vmax)
    return _pair_grid(mats=mats, row_keys=chosen, row_labels=[f"Layer {ly}" for ly in chosen],
                      col_keys=[ck for ck, _ in all_models], col_titles=[_model_label(ck, m) for ck, m in all_models],
                      tick_labels=[language_name(c) for c in langs], scale=scale, width_in=_width_inches(width),
                      annotate=annotate)


def checkpoint_pair_heatmap(metrics: Source, metric: str = "cka_linear", *, layers: Sequence[int] | None = None,
                            langs: Sequence[str] | None = None, include_base: bool = True,
                            width: str | float = "two", annotate: bool | None = None, vmin: float | None = None,
                            vmax: float | None = None) -> Figure:
    """Model x model matrices of ``metric`` measured between checkpoints (rows whose ``reference`` names
    another checkpoint), with the base model as the first row/column when ``include_base`` and the metric was
    also measured against the base: grid rows = ``layers`` (default: first, middle, last), grid columns =
    languages.  Symmetric (each pair is mirrored), diagonal masked; one colour scale and one colour bar."""
    rows = _as_rows(metrics)
    sel = [r for r in rows if r.metric == metric and r.kind == "model_pair"]
    if not sel:
        raise ReprtoolsError(f"no checkpoint-vs-checkpoint rows (reference = another checkpoint) for "
                             f"metric={metric!r}; available: {_available(rows)}")
    if include_base:
        sel = sel + [r for r in rows if r.metric == metric and r.kind == "reference" and r.reference == "base"]
    vals = {(r.checkpoint, r.reference, r.layer, r.lang): r.value for r in sel}
    known = dict(_models(rows))
    methods = dict(_models(sel))
    for r in sel:
        methods.setdefault(r.reference, known.get(r.reference, "base" if r.reference == "base" else ""))
    models = [ck for ck, _ in _models([MetricRow(ck, m, "", 0, "x", "", metric, 0.0) for ck, m in methods.items()])]
    avail = sorted({r.layer for r in sel})
    chosen = _default_layers(avail) if layers is None else _check_layers(layers, avail, metric)
    all_langs = list(dict.fromkeys(r.lang for r in sel))
    if langs is not None:
        bad = [c for c in langs if c not in all_langs]
        if bad:
            raise ReprtoolsError(f"language(s) {', '.join(bad)} have no {metric} rows; choose from {', '.join(all_langs)}")
        all_langs = list(langs)
    mats = {
        (ly, lang): _square(models, lambda a, b, ly=ly, lang=lang: vals.get((a, b, ly, lang), np.nan),
                            directed=False, mask_diagonal=True, metric=metric)
        for ly in chosen for lang in all_langs
    }
    scale = _make_scale(metric, np.concatenate([m.ravel() for m in mats.values()]), metric_label(metric), vmin, vmax)
    return _pair_grid(mats=mats, row_keys=chosen, row_labels=[f"Layer {ly}" for ly in chosen], col_keys=all_langs,
                      col_titles=[language_name(c) for c in all_langs],
                      tick_labels=[_model_label(ck, methods.get(ck, "")) for ck in models], scale=scale,
                      width_in=_width_inches(width), annotate=annotate)


def _wrap(text: str, max_in: float, size: float) -> str:
    """Break ``text`` after '-', '_' or ' ' into lines no wider than ``max_in`` inches where possible,
    splitting as evenly as it can ("adalora-hi-10" -> "adalora-" / "hi-10", not "adalora-hi-" / "10")."""
    if _text_in(text, size) <= max_in:
        return text
    def best(pattern: str) -> int | None:
        cuts = [m.end() for m in re.finditer(pattern, text) if 0 < m.end() < len(text)]
        return min(cuts, key=lambda c: max(c, len(text) - c)) if cuts else None

    cut = best(" ")  # break between words first ("adalora-hi-10" / "vs. base"), then inside names
    if cut is not None:
        return _wrap(text[:cut].rstrip(), max_in, size) + "\n" + _wrap(text[cut:].lstrip(), max_in, size)
    cut = best(r"[-_]")
    if cut is None:
        return text
    return text[:cut] + "\n" + _wrap(text[cut:], max_in, size)


# --------------------------------------------------------------------------------------------------------
# Figure 4: layer x layer CKA
# --------------------------------------------------------------------------------------------------------


@dataclass
class LayerCKA:
    """One layer x layer matrix: ``matrix[i, j]`` compares row layer ``row_labels[i]`` (model on the y axis)
    with column layer ``col_labels[j]`` (x axis)."""

    name: str
    matrix: np.ndarray
    row_labels: list[int]
    col_labels: list[int]
    ylabel: str = "Layer"
    xlabel: str = "Layer"
    metric: str = "cka_linear"


def _names_for_key(key: str) -> dict[str, str]:
    """Panel title and axis labels for a matrix key: ``"base"`` -> "Base"; ``"dora-hi-10_vs_base"`` (the
    probe's name for checkpoint rows x base columns) -> "dora-hi-10 vs. base", y "Layer (dora-hi-10)",
    x "Layer (base)"."""
    m = re.fullmatch(r"(.+?)_vs_(.+)", key)
    if m:
        a, b = m.group(1), m.group(2)
        return {"name": f"{a} vs. {b}", "ylabel": f"Layer ({a})", "xlabel": f"Layer ({b})"}
    return {"name": "Base" if key == "base" else key, "ylabel": "Layer", "xlabel": "Layer"}


def _as_layer_cka(matrix: Any, row_labels=None, col_labels=None, *, name: str = "", xlabel: str = "Layer",
                  ylabel: str = "Layer", metric: str = "cka_linear", where: str = "layer CKA matrix") -> LayerCKA:
    if isinstance(matrix, LayerCKA):
        return matrix
    try:
        mat = np.asarray(matrix, dtype=float)
    except (TypeError, ValueError):
        raise ReprtoolsError(f"{where} is not numeric; give an (L, L) or (La, Lb) array of CKA values") from None
    if mat.ndim != 2 or 0 in mat.shape:
        raise ReprtoolsError(f"{where} has shape {mat.shape}; give a 2-D (L, L) or (La, Lb) array")
    la, lb = mat.shape

    def labels(given, count: int, which: str) -> list[int]:
        if given is None:
            return list(range(count))
        out = [int(x) for x in np.asarray(given).ravel()]
        if len(out) != count:
            raise ReprtoolsError(f"{where}: {len(out)} {which} labels for {count} {which}s; give one layer number per {which}")
        return out

    return LayerCKA(name=name, matrix=mat, row_labels=labels(row_labels, la, "row"),
                    col_labels=labels(col_labels, lb, "column"), ylabel=ylabel, xlabel=xlabel, metric=metric)


def _entries_from_json(obj: Any, where: str) -> list[LayerCKA]:
    def is_matrix(x: Any) -> bool:
        return isinstance(x, list) and len(x) > 0 and all(isinstance(r, list) for r in x)

    def from_dict(d: Mapping[str, Any], name: str) -> LayerCKA | None:
        mat_key = next((k for k in ("matrix", "cka", "values", "data") if is_matrix(d.get(k))), None)
        if mat_key is None:
            return None
        rows_ = d.get("row_layers", d.get("rows", d.get("layers_a", d.get("layers"))))
        cols_ = d.get("col_layers", d.get("cols", d.get("layers_b", d.get("layers"))))
        ma = d.get("model_a", d.get("row_model"))
        mb = d.get("model_b", d.get("col_model"))
        return _as_layer_cka(
            d[mat_key], rows_, cols_, name=str(d.get("name", name)), metric=str(d.get("metric", "cka_linear")),
            ylabel=f"Layer ({ma})" if ma else "Layer", xlabel=f"Layer ({mb})" if mb else "Layer", where=where,
        )

    if is_matrix(obj):
        return [_as_layer_cka(obj, where=where)]
    if isinstance(obj, Mapping):
        one = from_dict(obj, "")
        if one is not None:
            return [one]
        out = []
        for k, v in obj.items():
            if is_matrix(v):
                out.append(_as_layer_cka(v, where=f"{where} [{k}]", **_names_for_key(str(k))))
            elif isinstance(v, Mapping):
                e = from_dict(v, str(k))
                if e is not None:
                    out.append(e)
        return out
    if isinstance(obj, list):
        return [e for i, d in enumerate(obj) if isinstance(d, Mapping) for e in [from_dict(d, str(i))] if e is not None]
    return []


def load_layer_cka(path: str | os.PathLike[str]) -> list[LayerCKA]:
    """Read layer x layer matrices the probe wrote.

    * ``.npy``: one 2-D array.
    * ``.npz``: every 2-D array is a matrix named by its key; 1-D arrays ``layers`` (both axes),
      ``<key>_rows``/``<key>_cols`` or ``row_layers``/``col_layers`` give layer numbers.
    * ``.json``: a list of lists; or ``{"matrix": [[...]], "layers"|"rows"/"cols": [...], "model_a": ...,
      "model_b": ..., "name": ...}``; or a dict / list of those.
    """
    p = Path(path)
    if not p.is_file():
        raise ReprtoolsError(f"layer CKA file not found: {p}; pass the .npz/.json/.npy file the probe wrote")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            return [_as_layer_cka(np.load(p, allow_pickle=False), name=p.stem, where=str(p))]
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            out = []
            for k, a in arrays.items():
                if a.ndim != 2:
                    continue
                rows_ = arrays.get(f"{k}_rows", arrays.get("row_layers", arrays.get("layers")))
                cols_ = arrays.get(f"{k}_cols", arrays.get("col_layers", arrays.get("layers")))
                out.append(_as_layer_cka(a, rows_, cols_, where=f"{p} [{k}]", **_names_for_key(k)))
            entries = out
        elif suffix == ".json":
            with p.open(encoding="utf-8") as fh:
                entries = _entries_from_json(json.load(fh), str(p))
        else:
            raise ReprtoolsError(f"{p}: unknown layer CKA file type {suffix!r}; use .npz, .json or .npy")
    except (ValueError, OSError) as exc:
        if isinstance(exc, ReprtoolsError):
            raise
        raise ReprtoolsError(f"{p} could not be read ({exc}); rewrite it as .npz, .json or .npy") from None
    if not entries:
        raise ReprtoolsError(f"{p} holds no 2-D matrix; write the (L, L) CKA array, e.g. np.savez(path, cka=matrix)")
    return entries


def _coerce_layer_cka(obj: Any) -> list[LayerCKA]:
    if isinstance(obj, (str, os.PathLike)):
        return load_layer_cka(obj)
    if isinstance(obj, LayerCKA):
        return [obj]
    if isinstance(obj, Mapping):
        return [v if isinstance(v, LayerCKA) else _as_layer_cka(v, where=f"layer CKA [{k}]", **_names_for_key(str(k)))
                for k, v in obj.items()]
    if isinstance(obj, np.ndarray):
        return [_as_layer_cka(obj)]
    if isinstance(obj, Sequence) and obj and all(isinstance(x, LayerCKA) for x in obj):
        return list(obj)
    return [_as_layer_cka(obj)]


def layer_cka_heatmap(matrix: Any, row_labels: Sequence[int] | None = None, col_labels: Sequence[int] | None = None,
                      *, xlabel: str = "Layer", ylabel: str = "Layer", metric: str = "cka_linear",
                      title: str | None = None, width: str | float = "one", ncols: int | None = None,
                      annotate: bool | None = None, vmin: float | None = None, vmax: float | None = None) -> Figure:
    """Layer x layer similarity heatmap, layer 0 at the bottom left, square cells.

    ``matrix``: an ``(L, L)`` array (one model), an ``(La, Lb)`` array (rows = model on the y axis), a
    :class:`LayerCKA`, or a mapping ``{panel title: array | LayerCKA}`` / list of :class:`LayerCKA` drawn as
    panels with one shared colour scale.  ``row_labels``/``col_labels`` are the layer numbers (default
    0..L-1).  The colour scale is [0, 1] for CKA metrics (comparable across figures) unless ``vmin``/``vmax``.
    """
    if isinstance(matrix, (Mapping, LayerCKA)) or (isinstance(matrix, Sequence) and matrix
                                                   and all(isinstance(x, LayerCKA) for x in matrix)):
        entries = _coerce_layer_cka(matrix)
        if not entries:
            raise ReprtoolsError("no layer CKA matrices given; pass an (L, L) array or {name: array}")
    else:
        entries = [_as_layer_cka(matrix, row_labels, col_labels, name=title or "", xlabel=xlabel, ylabel=ylabel,
                                 metric=metric)]
    metric = entries[0].metric if len({e.metric for e in entries}) == 1 else metric
    values = np.concatenate([e.matrix.ravel() for e in entries])
    if metric.startswith("cka") and vmin is None and vmax is None:
        finite = values[np.isfinite(values)]
        if finite.size and finite.min() >= -1e-6 and finite.max() <= 1 + 1e-6:
            vmin, vmax = 0.0, 1.0
    scale = _make_scale(metric, values, metric_label(metric), vmin, vmax)
    width_in = _width_inches(width)
    n_panels = len(entries)
    if ncols is None:
        ncols = max(1, int(width_in // 1.6))
    nrows_g, ncols_g = _grid_shape(n_panels, ncols, width_in, max_cols=3)
    cbar_w = 0.35 + (scale.label.count("\n") + 1) * 0.14
    side = min((width_in - cbar_w - 0.45 * ncols_g) / ncols_g - 0.05, 2.6)
    titles = [_wrap(e.name if len(entries) > 1 else (title or ""), side + 0.3, _FS_TITLE) for e in entries]
    title_h = 0.06 + max(t.count("\n") + 1 for t in titles) * 0.14 if any(titles) else 0.0
    heat_total = nrows_g * side + (nrows_g - 1) * (title_h + 0.4)
    height = nrows_g * (side + title_h + 0.38) + 0.05
    with _paper_style():
        fig = _new_figure(width_in, height)
        axs = fig.subplots(nrows_g, ncols_g, squeeze=False)
        axes = _remove_unused(axs, n_panels)
        specs = []
        mesh = None
        for k, (ax, e) in enumerate(zip(axes, entries)):
            mesh = _heatmap(ax, e.matrix, scale, [str(x) for x in e.row_labels], [str(x) for x in e.col_labels],
                            origin_lower=True, layer_x=True, layer_y=True)
            ax.set_aspect("equal")
            ax.set_xlabel(e.xlabel, fontsize=_FS_LABEL)
            ax.set_ylabel(e.ylabel, fontsize=_FS_LABEL)
            if titles[k]:
                ax.set_title(titles[k], fontsize=_FS_TITLE)
            specs.append(_Spec(ax, e.matrix, scale, x_layers=e.col_labels, y_layers=e.row_labels,
                               annotate=annotate, origin_lower=True, max_side=2.6))
        _colorbar(fig, mesh, axes, scale.label, vertical=True, length_in=heat_total)
    return _finalize(fig, specs)


# --------------------------------------------------------------------------------------------------------
# Saving, draw_all
# --------------------------------------------------------------------------------------------------------


def _atomic_write(final: Path, write) -> None:
    """Write via ``write(fileobj)`` to a temporary file beside ``final``, then rename over it."""
    with atomic_path(final) as tmp, open(tmp, "wb") as fh:
        write(fh)


def save_figure(fig: Figure, out_dir: str | os.PathLike[str], stem: str,
                formats: Sequence[str] = DEFAULT_FORMATS, *, dpi: int = 300) -> list[Path]:
    """Save ``fig`` as ``out_dir/stem.<fmt>`` for each format (pdf, png at ``dpi``, svg, eps); returns the paths.

    Each file is written to a temporary name in ``out_dir`` and renamed into place, so an interrupted save
    leaves no half-written figure.  The figure size is kept exactly (no tight bounding box), so a figure made
    with ``width="one"`` is 3.3 in wide on the page.  Output carries no timestamps (reproducible files).
    """
    if isinstance(formats, str):
        formats = (formats,)
    fmts = [f.lower().lstrip(".") for f in formats]
    bad = [f for f in fmts if f not in _FORMATS]
    if bad or not fmts:
        raise ReprtoolsError(f"figure format(s) {', '.join(bad) or '(none)'} unsupported; use some of {', '.join(_FORMATS)}")
    if not stem or "/" in stem or "\\" in stem or stem.startswith("."):
        raise ReprtoolsError(f"figure name {stem!r} is not a plain file name; give a name such as 'cka_to_base'")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReprtoolsError(f"cannot create output directory {out} ({exc.strerror}); choose a writable directory") from None
    metadata = {"pdf": {"CreationDate": None, "ModDate": None}, "svg": {"Date": None}, "eps": {"CreationDate": None}}
    written: list[Path] = []
    with _paper_style():
        for fmt in fmts:
            final = out / f"{stem}.{fmt}"
            _atomic_write(final, lambda fh, fmt=fmt: fig.savefig(
                fh, format=fmt, dpi=dpi, metadata=metadata.get(fmt), facecolor="white"))
            written.append(final)
    return written


def draw_all(metrics_csv: Source, out_dir: str | os.PathLike[str], layer_cka: Any = None,
             width: str | float = "two", formats: Sequence[str] = DEFAULT_FORMATS) -> list[Path]:
    """Draw every figure the metrics support into ``out_dir``; return the written paths.

    * ``separability``: :func:`separability_heatmap` (if any separability rows);
    * ``<metric>_vs_<reference>_by_lang``: :func:`layer_heatmap` (checkpoints x layers, a panel per
      language) for each CKA metric measured against a reference;
    * ``<metric>_vs_<reference>_by_checkpoint``: :func:`layer_heatmap` (languages x layers, a panel per
      checkpoint) for each other per-language metric, e.g. cosine_base (without ``_vs_...`` for a
      within-model per-language metric); call :func:`layer_heatmap` for the other view;
    * ``<metric>_checkpoint_pairs``: :func:`checkpoint_pair_heatmap` for each metric measured between
      checkpoints (reference = another checkpoint);
    * ``<metric>_pairs``: :func:`language_pair_heatmap` for each language-pair metric;
    * ``layer_cka``: :func:`layer_cka_heatmap` when ``layer_cka`` is given (a path to .npz/.json/.npy, an
      array, a :class:`LayerCKA` or a mapping name -> array; several matrices share one scale).

    Kinds without rows are skipped; :class:`ReprtoolsError` when there is nothing at all to draw.
    """
    rows = _as_rows(metrics_csv)
    _width_inches(width)
    written: list[Path] = []

    def emit(fig: Figure, stem: str) -> None:
        try:
            written.extend(save_figure(fig, out_dir, stem, formats))
        finally:
            fig.clear()  # Figure objects are not registered with pyplot; clearing frees them now

    fams = _families(rows)
    if any(kind == "separability" for kind, _, _ in fams):
        emit(separability_heatmap(rows, width=width), "separability")
    for kind, metric, ref in fams:
        if kind not in ("reference", "single"):
            continue
        stem = _slug(metric) + (f"_vs_{_slug(ref)}" if ref else "")
        if metric.startswith("cka"):  # CKA to the reference: checkpoints x layers, a panel per language
            emit(layer_heatmap(rows, metric, reference=ref, panels="lang", width=width), f"{stem}_by_lang")
        else:  # e.g. cosine_base: languages x layers, a panel per checkpoint
            emit(layer_heatmap(rows, metric, reference=ref, panels="checkpoint", width=width),
                 f"{stem}_by_checkpoint")
    for kind, metric, _ in fams:
        if kind == "model_pair":
            emit(checkpoint_pair_heatmap(rows, metric, width=width), f"{_slug(metric)}_checkpoint_pairs")
    for kind, metric, _ in fams:
        if kind == "pair":
            emit(language_pair_heatmap(rows, metric, width=width), f"{_slug(metric)}_pairs")
    if layer_cka is not None:
        entries = _coerce_layer_cka(layer_cka)
        emit(layer_cka_heatmap(entries, width=width), "layer_cka")
    if not written:
        raise ReprtoolsError("nothing to draw: the metrics have no rows and no layer CKA matrix was given; "
                             "run the probe first or pass layer_cka=")
    return written


# --------------------------------------------------------------------------------------------------------
# LaTeX tables
# --------------------------------------------------------------------------------------------------------

_TEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}
_TEX_RE = re.compile(r"[\\&%$#_{}~^]")


def _tex(text: str) -> str:
    """Escape LaTeX special characters (``_ & % # $ { } ~ ^ \\``) in plain text."""
    out = _TEX_RE.sub(lambda m: _TEX_SPECIAL[m.group()], str(text))
    return out.replace("\u2013", "--").replace("\u2192", r"$\rightarrow$")


def _tex_num(v: float, decimals: int) -> str:
    if v is None or not math.isfinite(v):
        return "--"
    s = f"{v:.{decimals}f}"
    if s.startswith("-"):
        s = "$-$" + s[1:] if float(s) != 0 else s[1:]
    return s


def _pick_family(rows: Sequence[MetricRow], metric: str, reference: str | None) -> tuple[str, str, str]:
    fams = [k for k in _families(rows) if k[1] == metric and (reference is None or k[2] == reference)]
    if not fams:
        raise ReprtoolsError(
            f"no rows with metric={metric!r}" + (f" and reference={reference!r}" if reference is not None else "")
            + f"; available: {_available(rows)}"
        )
    order = {"reference": 0, "model_pair": 1, "pair": 2, "separability": 3, "single": 4}
    return min(fams, key=lambda k: (order[k[0]] + (0 if k[2] in ("base", "") else 1), k[2]))


def latex_table(metrics: Source, out_path: str | os.PathLike[str] | None = None, metric: str = "cka_linear",
                layers: Sequence[int] | None = None, *, reference: str | None = None, columns: str = "layers",
                ci: str = "auto", decimals: int = 3, caption: str | None = None, label: str | None = None) -> str:
    """A booktabs table of one metric: rows = models (checkpoint and method; base first, separated by a
    rule), columns = ``layers`` (default: first, middle and last; fewer when that would exceed 12 value
    columns), grouped under one heading per language (or language pair) when there are several.
    ``columns="langs"`` swaps the two: languages as columns grouped under each layer.

    ``reference`` picks the comparison (default ``"base"`` if measured, else the within-model rows; pass
    ``""`` for within-model cka_linear between languages).  Values have ``decimals`` decimals; with a CI,
    ``ci="pm"`` adds ``± half its width``, ``"interval"`` adds ``[lo, hi]``, ``"none"`` nothing, and ``"auto"``
    uses ± when every CI in the table is near-symmetric about its value, else ``[lo, hi]``.  Missing values
    are ``--``.  Writes ``out_path`` (atomically) if given and returns the LaTeX source.  Needs
    ``\\usepackage{booktabs}``.
    """
    rows = _as_rows(metrics)
    if ci not in ("auto", "pm", "interval", "none"):
        raise ReprtoolsError(f"ci={ci!r} is unknown; use 'auto', 'pm', 'interval' or 'none'")
    if columns not in ("layers", "langs"):
        raise ReprtoolsError(f"columns={columns!r} is unknown; use 'layers' or 'langs'")
    if reference not in (None, "", "base", "*") and any(r.reference == reference for r in rows):
        kind, ref = "model_pair", reference  # one reference checkpoint: the other checkpoints against it
        sel = [r for r in rows if r.metric == metric and r.reference == reference]
        if not sel:
            raise ReprtoolsError(f"no rows with metric={metric!r} and reference={reference!r}; "
                                 f"available: {_available(rows)}")
    else:
        kind, metric, ref = _pick_family(rows, metric, reference)
        sel = _families(rows)[(kind, metric, ref)]
    return _latex_family(sel, kind, metric, ref, out_path=out_path, layers=layers, columns=columns, ci=ci,
                         decimals=decimals, caption=caption, label=label, methods=dict(_models(rows)))


def _latex_family(sel: Sequence[MetricRow], kind: str, metric: str, ref: str, *, out_path, layers, columns: str,
                  ci: str, decimals: int, caption: str | None, label: str | None, methods: Mapping[str, str]) -> str:
    # Column keys: languages (reference/single), language pairs (pair) or the language set (separability).
    langs = _languages(sel)
    directed = False
    if kind == "pair":
        _, directed = _pair_values(sel, metric)
        if directed:
            lang_keys = [(a, b) for a in langs for b in langs if a != b
                         and any(r.lang == a and r.lang_b == b for r in sel)]
        else:
            lang_keys = [(a, b) for i, a in enumerate(langs) for b in langs[i + 1:]
                         if any({r.lang, r.lang_b} == {a, b} for r in sel)]
        arrow = " \u2192 " if directed else "\u2013"
        key_name = {k: language_name(k[0]) + arrow + language_name(k[1]) for k in lang_keys}
    else:
        lang_keys = list(dict.fromkeys(r.lang for r in sel))
        key_name = {k: (_langset_name(k) if "+" in k else language_name(k)) for k in lang_keys}

    def lookup(r: MetricRow) -> Any:
        if kind == "pair":
            k = (r.lang, r.lang_b)
            return k if k in key_name else (r.lang_b, r.lang)
        return r.lang

    # Table rows: models (checkpoint, method), or for checkpoint-vs-checkpoint rows each measured pair.
    def row_key(r: MetricRow) -> tuple[str, str]:
        return (r.checkpoint, r.reference if kind == "model_pair" else "")

    cells: dict[tuple[tuple[str, str], Any, int], MetricRow] = {}
    for r in sel:
        cells.setdefault((row_key(r), lookup(r), r.layer), r)

    avail = sorted({r.layer for r in sel})
    methods = {**dict(_models(sel)), **methods}
    order = {ck: i for i, (ck, _) in enumerate(_models(
        [*sel, *[MetricRow(r.reference, methods.get(r.reference, ""), "", 0, "x", "", metric, 0.0)
                 for r in sel if r.reference]]))}
    row_keys = sorted(dict.fromkeys(row_key(r) for r in sel),
                      key=lambda k: (order[k[0]], order.get(k[1], -1)))

    def row_label(k: tuple[str, str]) -> str:
        return f"{k[0]} vs. {k[1]}" if k[1] else k[0]

    def row_method(k: tuple[str, str]) -> str:
        if k[1]:
            return f"{_method_name(methods.get(k[0], ''))} / {_method_name(methods.get(k[1], ''))}"
        m = methods.get(k[0], "")
        return "--" if k[0] == "base" or m == "base" else _method_name(m)
    # How CIs are shown: "auto" -> "± half-width" when every CI of the metric is near-symmetric about its
    # value, else "[lo, hi]".
    with_ci = [r for r in sel if r.has_ci and math.isfinite(r.value)]
    mode = ci
    if mode == "auto":
        def symmetric(c: MetricRow) -> bool:
            half = (c.ci_high - c.ci_low) / 2
            return abs((c.ci_high + c.ci_low) / 2 - c.value) <= 0.25 * half + 10 ** -(decimals + 1)
        mode = "pm" if all(symmetric(c) for c in with_ci) else "interval"
    if not with_ci:
        mode = "none"
    # Rough printed width (inches, \small): the two label columns plus one column per value.
    label_in = 0.07 * max(len(row_label(k)) for k in row_keys) + 0.07 * max(len(row_method(k)) for k in row_keys) + 0.25
    col_in = {"none": 0.47, "pm": 0.82, "interval": 1.15}[mode]

    def printed_width(n_values: int) -> float:
        return label_in + n_values * col_in

    if layers is None:
        first_mid_last = _default_layers(avail)
        candidates = [first_mid_last, first_mid_last[1:], first_mid_last[-1:]]
        chosen = next((c for c in candidates if printed_width(len(c) * len(lang_keys)) <= WIDTHS["two"]),
                      candidates[-1])
    else:
        chosen = _check_layers(layers, avail, metric)

    if columns == "layers":
        outer = [("lang", k) for k in lang_keys]
        inner = [("layer", x) for x in chosen]
    else:
        outer = [("layer", x) for x in chosen]
        inner = [("lang", k) for k in lang_keys]

    def head(item: tuple[str, Any], short: bool) -> str:
        what, k = item
        if what == "layer":
            return f"L{k}" if short else f"Layer {k}"
        return _tex(key_name[k])

    col_items = [(o, i) for o in outer for i in inner]

    def cell_of(k: tuple[str, str], o, i) -> MetricRow | None:
        lang = o[1] if o[0] == "lang" else i[1]
        layer = o[1] if o[0] == "layer" else i[1]
        return cells.get((k, lang, layer))

    table_cells = [[cell_of(k, o, i) for (o, i) in col_items] for k in row_keys]
    if not any(c is not None and c.has_ci for row in table_cells for c in row):
        mode = "none"

    def fmt(c: MetricRow | None) -> str:
        if c is None:
            return "--"
        s = _tex_num(c.value, decimals)
        if mode == "none" or not c.has_ci or not math.isfinite(c.value):
            return s
        if mode == "pm":
            return s + r"{\scriptsize\,$\pm$\," + _tex_num((c.ci_high - c.ci_low) / 2, decimals) + "}"
        return s + r"{\scriptsize\,[" + _tex_num(c.ci_low, decimals) + ", " + _tex_num(c.ci_high, decimals) + "]}"

    n_val = len(col_items)
    grouped = len(outer) > 1
    lines: list[str] = []
    lines.append(r"% Generated by reprtools.figures.latex_table; needs \usepackage{booktabs}.")
    env = "table" if printed_width(n_val) <= WIDTHS["one"] else "table*"
    lines.append(rf"\begin{{{env}}}[t]")
    lines.append(r"\centering")
    lines.append(r"\small")

    # Caption.
    name = _CAPTION_NAMES.get(metric) or metric_label(metric, one_line=True)
    layer_list = ", ".join(map(str, chosen[:-1])) + (" and " if len(chosen) > 1 else "") + str(chosen[-1])
    at_layers = f"at layer{'s' if len(chosen) > 1 else ''} {layer_list}"
    if caption is None:
        if kind == "reference":
            what = "base model" if ref == "base" else f"reference model {ref}"
            caption = f"{name} between each checkpoint and the {what}, per language, {at_layers}."
        elif kind == "model_pair":
            caption = f"{name} between pairs of checkpoints, per language, {at_layers}."
        elif kind == "pair":
            caption = f"{name} between languages within each model, {at_layers}."
            if directed:
                caption += " Pairs are directed (source \u2192 target)."
        elif kind == "separability":
            caption = f"{name} of the languages ({'; '.join(key_name[k] for k in lang_keys)}) in each model, {at_layers}."
        else:
            caption = f"{name} per language in each model, {at_layers}."
        if metric in _LOWER_IS_BETTER:
            caption += " Lower is better."
        caption_tex = _tex(caption)
        if mode == "pm":
            caption_tex += r" Where a bootstrap confidence interval was computed, $\pm$ gives half its width."
        elif mode == "interval":
            caption_tex += " Brackets give the bootstrap confidence interval where one was computed."
        if any(c is None or not math.isfinite(c.value) for row in table_cells for c in row):
            caption_tex += " -- marks a value that was not measured."
    else:
        caption_tex = _tex(caption)
    if label is None:
        label = "tab:" + _slug(metric.replace("_", "-")) + (
            "-checkpoint-pairs" if ref == "*" else f"-vs-{_slug(ref)}" if ref else "") + (
            "-pairs" if kind == "pair" else "")
    lines.append(rf"\caption{{{caption_tex}}}")
    lines.append(rf"\label{{{label}}}")
    lines.append(r"\begin{tabular}{@{}ll" + "r" * n_val + "@{}}")
    lines.append(r"\toprule")
    if grouped:
        parts = ["", ""]
        rules = []
        for g, o in enumerate(outer):
            start = 3 + g * len(inner)
            parts.append(rf"\multicolumn{{{len(inner)}}}{{c}}{{{head(o, False)}}}")
            rules.append(rf"\cmidrule(lr){{{start}-{start + len(inner) - 1}}}")
        lines.append(" & ".join(parts) + r" \\")
        lines.append(" ".join(rules))
        sub = [head(i, short=(i[0] == "layer")) for (_, i) in col_items]
    else:
        sub = [head(i, short=False) for (_, i) in col_items]
    lines.append(" & ".join(["Checkpoints" if kind == "model_pair" else "Checkpoint", "Method", *sub]) + r" \\")
    lines.append(r"\midrule")
    base_done = False
    for k, cells_row in zip(row_keys, table_cells):
        is_base = not k[1] and (k[0] == "base" or methods.get(k[0]) == "base")
        if base_done and not is_base:
            lines.append(r"\midrule")
            base_done = False
        lines.append(" & ".join([_tex(row_label(k)), _tex(row_method(k)), *[fmt(c) for c in cells_row]]) + r" \\")
        base_done = base_done or is_base
    lines.append(r"\bottomrule")
    lines.append(r"\end{tabular}")
    lines.append(rf"\end{{{env}}}")
    text = "\n".join(lines) + "\n"
    if out_path is not None:
        p = Path(out_path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReprtoolsError(f"cannot create directory {p.parent} ({exc.strerror}); choose a writable path") from None
        _atomic_write(p, lambda fh: fh.write(text.encode("utf-8")))
    return text


def write_tables(metrics_csv: Source, out_dir: str | os.PathLike[str], *, layers: Sequence[int] | None = None,
                 ci: str = "auto") -> list[Path]:
    """Write one booktabs table per metric (per comparison) present: ``table_<metric>_vs_base.tex``,
    ``table_<metric>_checkpoint_pairs.tex`` (all checkpoint-vs-checkpoint rows), ``table_<metric>_pairs.tex``
    (language pairs) or ``table_<metric>.tex`` (separability, per-language).  Returns the written paths."""
    rows = _as_rows(metrics_csv)
    if ci not in ("auto", "pm", "interval", "none"):
        raise ReprtoolsError(f"ci={ci!r} is unknown; use 'auto', 'pm', 'interval' or 'none'")
    out = Path(out_dir)
    written: list[Path] = []
    all_methods = dict(_models(rows))
    for (kind, metric, ref), sel in _families(rows).items():
        stem = "table_" + _slug(metric) + (
            "_checkpoint_pairs" if ref == "*" else f"_vs_{_slug(ref)}" if ref else "") + (
            "_pairs" if kind == "pair" else "")
        path = out / f"{stem}.tex"
        fam_layers = None
        if layers is not None:
            avail = {r.layer for r in sel}
            fam_layers = [x for x in layers if x in avail] or None
        _latex_family(sel, kind, metric, ref, out_path=path, layers=fam_layers, columns="layers", ci=ci,
                      decimals=3, caption=None, label=None, methods=all_methods)
        written.append(path)
    if not written:
        raise ReprtoolsError("no tables to write: the metrics have no rows; run the probe first")
    return written
