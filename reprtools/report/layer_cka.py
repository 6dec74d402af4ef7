"""Layer x layer CKA: the probe's ``layer_cka.npz`` and its heatmap.

The probe writes one 2-D array per key ``"{estimator}:{name}"``: ``estimator`` is ``cka_linear`` or
``cka_linear_debiased``; ``name`` is ``base`` (the base model against itself) or ``{checkpoint}_vs_base``
(rows = the checkpoint's layers, columns = the base's).  Files from earlier versions have keys without the
estimator (``base``, ``{checkpoint}_vs_base``, biased linear CKA) and 1-D ``*_rows`` / ``*_cols`` arrays, which
are read as ``cka_linear``.

The debiased estimator is the headline: with fewer sentences than features biased CKA is inflated (two
independent representations score well above 0), which the unbiased HSIC estimator removes (Song et al., 2012;
Nguyen, Raghu & Kornblith, 2021; see :func:`reprtools.measures.cka_linear_debiased`).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence, Union

import numpy as np

from reprtools.errors import ReprtoolsError
from reprtools.report import labels
from reprtools.report.heatmaps import draw_heatmap
from reprtools.report.style import LAYER_MAP, colorbar, layer_ticks, new_figure, paper_style, shared_scale, width_inches
from reprtools.results import measure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ESTIMATORS = ("cka_linear_debiased", "cka_linear")  # headline first
LayerCKA = Mapping[str, Mapping[str, np.ndarray]]  # estimator -> name -> (rows, cols) matrix


def load_layer_cka(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """Read ``layer_cka.npz``: ``{estimator: {name: matrix}}`` (see the module docstring for the keys)."""
    path = Path(path)
    if not path.is_file():
        raise ReprtoolsError(f"no layer CKA file at {path}; run `reprtools probe` to write layer_cka.npz")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        raise ReprtoolsError(f"{path} is not a readable .npz file; run `reprtools probe` again to rewrite it") from None
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, arr in arrays.items():
        if arr.ndim != 2:
            continue  # earlier versions stored the layer numbers as 1-D arrays beside each matrix
        estimator, _, name = key.rpartition(":")
        out.setdefault(estimator or "cka_linear", {})[name] = arr.astype(float)
    if not out:
        raise ReprtoolsError(f"{path} holds no layer x layer matrix; run `reprtools probe` again to rewrite it")
    return out


def _ordered(names, checkpoints: Sequence[str]) -> list[str]:
    """``base`` first, then the checkpoints in the order given, then the others by name."""
    rank = {c: i for i, c in enumerate(checkpoints)}
    return sorted(names, key=lambda n: (n != "base", rank.get(n.removesuffix("_vs_base"), len(rank)),
                                        labels.model_key(n.removesuffix("_vs_base"))))


def _axes_labels(name: str) -> tuple[str, str, str]:
    """(title, y label, x label) for a matrix name."""
    if name == "base":
        return "Base vs. itself", "Layer (base)", "Layer (base)"
    a, sep, b = name.rpartition("_vs_")
    if not sep:
        return name, "Layer", "Layer"
    return f"{a} vs. {b}", f"Layer ({a})", f"Layer ({b})"


def layer_cka_heatmap(matrices: Union[LayerCKA, str, os.PathLike], estimator: str = "cka_linear_debiased", *,
                      checkpoints: Sequence[str] = (), width: str | float = "two") -> "Figure":
    """Layer x layer CKA of each matrix of ``estimator`` (``matrices`` as :func:`load_layer_cka` returns, or
    the path of the npz), a square panel each (base first, then ``checkpoints`` in that order), layer 0 at
    the bottom left; one shared colour scale (top at 1, the value for identical representations) whose
    colour bar names the estimator."""
    import pandas as pd

    if isinstance(matrices, (str, os.PathLike)):
        matrices = load_layer_cka(matrices)
    if estimator not in matrices or not matrices[estimator]:
        raise ReprtoolsError(f"no {estimator} layer x layer matrices; present: {', '.join(matrices) or 'none'}")
    mats = matrices[estimator]
    names = _ordered(mats, checkpoints)
    values = np.concatenate([np.asarray(mats[n], dtype=float).ravel() for n in names])
    scale = shared_scale(estimator, values, cmap=LAYER_MAP, centred=False, vmax=1.0,
                         label=measure(estimator).label)
    ncols = min(len(names), 3 if width_inches(width) > 4 else 2)
    nrows = -(-len(names) // ncols)
    side = min((width_inches(width) - 0.9) / ncols - 0.35, 2.2)
    with paper_style():
        fig = new_figure(width, nrows * (side + 0.55) + 0.1, square=True)
        axs = fig.subplots(nrows, ncols, squeeze=False)
        for ax in axs.flat[len(names):]:
            ax.remove()
        axes = list(axs.flat[: len(names)])
        for ax, name in zip(axes, names):
            mat = np.asarray(mats[name], dtype=float)
            draw_heatmap(ax, pd.DataFrame(mat), scale, square=True)
            ax.invert_yaxis()  # layer 0 at the bottom
            layer_ticks(ax, range(mat.shape[1]), "x")
            layer_ticks(ax, range(mat.shape[0]), "y")
            title, ylabel, xlabel = _axes_labels(name)
            ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        colorbar(fig, scale, axes)
    return fig
