"""Heatmaps from a results frame: panels, one shared colour scale within the measure's bounds, masked
missing cells, directed matrices kept directed, the chance level and the estimator named."""

from __future__ import annotations

import numpy as np
import pytest
from report_frames import CHECKPOINTS, LANGS, N_LAYERS, N_SENTENCES, layer_cka_matrices, synthetic_frame

from reprtools.errors import ReprtoolsError
from reprtools.report import (
    language_pair_heatmap,
    layer_cka_heatmap,
    layer_heatmap,
    load_layer_cka,
    separability_heatmap,
)
from reprtools.report.heatmaps import heatmap_meshes
from reprtools.report.labels import language_name
from reprtools.results import MEASURES, frame


@pytest.fixture(scope="module")
def df():
    return synthetic_frame()


def colour_bars(fig) -> list:
    return [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def drawn(mesh) -> np.ndarray:
    """The mesh's cell values with masked cells as NaN, rows as drawn (top row first)."""
    return np.ma.filled(mesh.get_array().astype(float), np.nan)


def assert_one_scale_within_bounds(meshes, metric: str) -> None:
    assert len({m.get_clim() for m in meshes}) == 1
    assert len({id(m.norm) for m in meshes}) == 1
    lo, hi = meshes[0].get_clim()
    lo_b, hi_b = MEASURES[metric].bounds
    assert lo_b <= lo < hi <= hi_b


def test_shift_heatmap_a_panel_per_language_one_scale_one_colour_bar(df):
    fig = layer_heatmap(df, "cka_linear_debiased")
    meshes = heatmap_meshes(fig)
    assert len(meshes) == len(LANGS)
    assert_one_scale_within_bounds(meshes, "cka_linear_debiased")
    assert len(colour_bars(fig)) == 1
    assert colour_bars(fig)[0].get_ylabel().replace("\n", " ") == MEASURES["cka_linear_debiased"].label
    assert [ax.get_title() for ax in fig.axes[:3]] == [language_name(c) for c in LANGS]
    ax = meshes[0].axes
    assert [t.get_text() for t in ax.get_yticklabels()] == [ck for ck, _ in CHECKPOINTS]
    sel = df[(df.comparison == "shift") & (df.metric == "cka_linear_debiased") & (df.lang == "en")]
    expected = sel.pivot(index="checkpoint", columns="layer", values="value").loc[[ck for ck, _ in CHECKPOINTS]]
    np.testing.assert_allclose(drawn(meshes[0]), expected.to_numpy())


def test_per_checkpoint_panels_have_languages_as_rows(df):
    fig = layer_heatmap(df, "cosine_same_sentence", panels="checkpoint", width="one")
    meshes = heatmap_meshes(fig)
    assert len(meshes) == len(CHECKPOINTS)
    assert [ax.get_title() for ax in fig.axes[:2]] == [ck for ck, _ in CHECKPOINTS]
    assert drawn(meshes[0]).shape == (len(LANGS), N_LAYERS)
    assert fig.get_size_inches()[0] == pytest.approx(3.3)


def test_missing_cells_are_masked_and_limits_clip_to_bounds():
    rows = [dict(checkpoint=ck, method=m, comparison="shift", reference="base", lang=lang, layer=layer,
                 metric="cka_linear", value=0.5 + 0.1 * layer)
            for ck, m in CHECKPOINTS for lang in ("en", "hi") for layer in range(3)
            if not (ck == "dora-hi-10" and lang == "hi" and layer == 1)]
    rows.append(dict(rows[0], lang="hi", checkpoint="lora_hi_10", layer=5, value=1.0))  # only one cell at layer 5
    fig = layer_heatmap(frame(rows), "cka_linear")
    hindi = drawn(heatmap_meshes(fig)[1])
    assert hindi.shape == (2, 4)
    assert np.isnan(hindi[1, 1]) and np.isnan(hindi[1, 3]) and np.isfinite(hindi[0, 3])
    english = drawn(heatmap_meshes(fig)[0])
    assert np.isnan(english[:, 3]).all()  # English has no layer 5: masked, not zero
    assert heatmap_meshes(fig)[0].get_clim()[1] <= 1.0


def test_checkpoint_pairs_rows_name_both_checkpoints(df):
    fig = layer_heatmap(df, "cka_linear_debiased", comparison="checkpoints")
    ax = heatmap_meshes(fig)[0].axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["lora_hi_10 vs. dora-hi-10"]


def test_unknown_rows_raise_one_line(df):
    with pytest.raises(ReprtoolsError, match="no 'shift' rows with metric 'nope'") as info:
        layer_heatmap(df, "nope")
    assert "\n" not in str(info.value) and "cka_linear" in str(info.value)
    with pytest.raises(ReprtoolsError, match="panels"):
        layer_heatmap(df, "cka_linear", panels="sideways")


def test_separability_panel_per_measure_chance_and_direction(df):
    fig = separability_heatmap(df)
    meshes = heatmap_meshes(fig)
    assert len(meshes) == 4
    titles = [m.axes.get_title().replace("\n", " ") for m in meshes]
    assert titles[0] == MEASURES["silhouette"].label
    assert "chance 0.33" in titles[1]
    assert "lower = more separable" in titles[2]
    assert len(colour_bars(fig)) == 4  # different measures: a scale each
    assert [t.get_text() for t in meshes[0].axes.get_yticklabels()] == ["Base", "lora_hi_10", "dora-hi-10"]
    sil_lo, sil_hi = meshes[0].get_clim()
    assert sil_lo == pytest.approx(-sil_hi) and meshes[0].cmap.name.startswith("RdBu")  # natural zero
    assert meshes[2].cmap.name.endswith("_r")  # lower is better: reversed, bright = separable
    for mesh, metric in zip(meshes, ("silhouette", "probe_accuracy", "davies_bouldin", "fisher_ratio")):
        lo, hi = mesh.get_clim()
        assert MEASURES[metric].bounds[0] <= lo < hi <= MEASURES[metric].bounds[1]


def test_directed_retrieval_is_not_mirrored(df):
    rows = df[~((df.comparison == "crosslingual") & (df.metric == "retrieval_top1")
                & (df.checkpoint == "base") & (df.layer == 0))]
    extra = [dict(checkpoint="base", method="base", comparison="crosslingual", layer=0, lang=a, lang_b=b,
                  metric="retrieval_top1", value=v, chance=1 / N_SENTENCES)
             for a, b, v in (("en", "hi", 0.9), ("hi", "en", 0.2), ("en", "bn", 0.6))]
    import pandas as pd

    fig = language_pair_heatmap(pd.concat([rows, frame(extra)], ignore_index=True), "retrieval_top1", layers=[0])
    base = drawn(heatmap_meshes(fig)[0])  # rows = query (en, hi, bn), columns = target
    assert base[0, 1] == pytest.approx(0.9) and base[1, 0] == pytest.approx(0.2)
    assert base[0, 2] == pytest.approx(0.6) and np.isnan(base[2, 0])  # bn -> en was not measured
    assert np.isnan(np.diag(base)).all()
    assert f"chance {1 / N_SENTENCES:.2f}" in fig._suptitle.get_text()
    assert "query" in fig._suptitle.get_text()


def test_symmetric_pairs_are_mirrored_and_panels_share_a_scale(df):
    fig = language_pair_heatmap(df, "cka_linear_debiased")
    meshes = heatmap_meshes(fig)
    assert len(meshes) == 3 * 3  # models x (first, middle, last layer)
    assert_one_scale_within_bounds(meshes, "cka_linear_debiased")
    assert len(colour_bars(fig)) == 1
    mat = drawn(meshes[0])
    np.testing.assert_allclose(mat, mat.T)
    assert {ax.get_ylabel() for ax in fig.axes} >= {"Layer 0", "Layer 2", "Layer 4"}


def test_cosine_gap_centred_on_zero_and_made_from_raw_cosines(df):
    without_gap = df[df.metric != "cosine_gap"]
    fig = language_pair_heatmap(without_gap, "cosine_gap", layers=[1])
    mesh = heatmap_meshes(fig)[0]
    lo, hi = mesh.get_clim()
    assert lo == pytest.approx(-hi) and mesh.cmap.name.startswith("RdBu")
    sel = df[(df.metric == "cosine_gap") & (df.checkpoint == "base") & (df.layer == 1)]
    expected = dict(zip(zip(sel.lang, sel.lang_b), sel.value))
    mat = drawn(mesh)
    assert mat[0, 1] == pytest.approx(expected[("en", "hi")]) and mat[1, 0] == pytest.approx(expected[("en", "hi")])


def test_layer_cka_from_npz_names_the_estimator(tmp_path):
    path = tmp_path / "layer_cka.npz"
    np.savez(path, **layer_cka_matrices())
    mats = load_layer_cka(path)
    assert set(mats) == {"cka_linear", "cka_linear_debiased"}
    assert set(mats["cka_linear_debiased"]) == {"base", "lora_hi_10_vs_base"}
    fig = layer_cka_heatmap(mats)
    meshes = heatmap_meshes(fig)
    assert len(meshes) == 2 and len(colour_bars(fig)) == 1
    assert "debiased" in colour_bars(fig)[0].get_ylabel()
    assert meshes[1].axes.get_ylabel() == "Layer (lora_hi_10)" and meshes[1].axes.get_xlabel() == "Layer (base)"
    lo, hi = meshes[0].get_clim()
    assert hi == 1.0 and lo >= -1.0
    assert not meshes[0].axes.yaxis_inverted()  # layer 0 at the bottom
    np.testing.assert_allclose(drawn(meshes[1]), mats["cka_linear_debiased"]["lora_hi_10_vs_base"])
    biased = layer_cka_heatmap(path, "cka_linear")
    assert colour_bars(biased)[0].get_ylabel() == MEASURES["cka_linear"].label


def test_layer_cka_reads_the_earlier_npz_layout_and_rejects_other_files(tmp_path):
    old = tmp_path / "old.npz"
    near = layer_cka_matrices()["cka_linear:base"]
    np.savez(old, base=near, base_rows=np.arange(N_LAYERS), base_cols=np.arange(N_LAYERS))
    assert list(load_layer_cka(old)) == ["cka_linear"]
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ReprtoolsError, match="not a readable .npz"):
        load_layer_cka(tmp_path / "bad.npz")
    with pytest.raises(ReprtoolsError, match="no layer CKA file"):
        load_layer_cka(tmp_path / "missing.npz")
    with pytest.raises(ReprtoolsError, match="no cka_linear_debiased"):
        layer_cka_heatmap(load_layer_cka(old))
