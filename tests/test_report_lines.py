"""Seed floor plot: a panel per method pair, the difference beside both floors, layers beyond them marked."""

from __future__ import annotations

import numpy as np
import pytest
from report_frames import synthetic_frame

from reprtools.errors import ReprtoolsError
from reprtools.report import seed_floor_plot
from reprtools.results import frame


def test_difference_beside_both_floors_with_marks():
    df = synthetic_frame()
    fig = seed_floor_plot(df)
    (ax,) = fig.axes
    assert ax.get_title() == "LoRA vs. DoRA"
    lines = ax.get_lines()
    pairs = df[(df.comparison == "methods") & (df.metric == "dissimilarity")].sort_values("layer")
    floor = df[df.comparison == "seed_floor"]
    ys = [np.asarray(line.get_ydata(), dtype=float) for line in lines]
    assert any(np.allclose(y, pairs.value) for y in ys)  # the difference
    for method in ("lora", "dora"):  # each floor
        assert any(np.allclose(y, floor[floor.method == method].sort_values("layer").value) for y in ys)
    flags = df[(df.comparison == "methods") & (df.metric == "exceeds_seed_floor")]
    marked = sorted(flags.loc[flags.value == 1, "layer"])
    assert 0 < len(marked) < len(flags)
    stars = [line for line in lines if line.get_marker() == "*"]
    assert len(stars) == 1 and list(stars[0].get_xdata()) == marked
    assert len(ax.collections) == 3  # two floor bands and the difference's interval
    legend = fig.legends[0]
    assert {t.get_text() for t in legend.get_texts()} >= {"LoRA seed floor", "DoRA seed floor"}


def test_floors_alone_and_no_rows():
    floor_only = synthetic_frame()
    floor_only = floor_only[floor_only.comparison == "seed_floor"]
    fig = seed_floor_plot(floor_only, width="one")
    assert [ax.get_title() for ax in fig.axes] == ["Seed noise floor"]
    with pytest.raises(ReprtoolsError, match="seed"):
        seed_floor_plot(frame([dict(comparison="shift", metric="cka_linear", value=1.0, layer=0)]))
