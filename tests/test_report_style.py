"""Paper style: colour scales from the measure registry, widths and font sizes, atomic saving."""

from __future__ import annotations

import matplotlib.image
import pytest
from matplotlib.colors import LogNorm
from matplotlib.text import Text
from report_frames import synthetic_frame

from reprtools.errors import ReprtoolsError
from reprtools.report import layer_heatmap, save_figure
from reprtools.report.labels import spread_layers
from reprtools.report.style import natural_zero, shared_scale, width_inches, wrap_to
from reprtools.results import MEASURES


def test_scale_never_leaves_the_measure_bounds():
    scale = shared_scale("cka_linear", [0.98, 1.0, 1.0])
    lo, hi = scale.limits
    assert 0.0 <= lo < hi <= 1.0
    single = shared_scale("retrieval_top1", [1.0])  # one value at the upper bound: padded downwards
    assert single.limits[1] == 1.0 and single.limits[0] < 1.0
    forced = shared_scale("probe_accuracy", [0.5, 0.7], vmin=-3, vmax=5)
    assert forced.limits == (0.0, 1.0)


def test_diverging_only_where_zero_means_no_relation():
    assert natural_zero(MEASURES["cosine_gap"]) and natural_zero(MEASURES["silhouette"])
    assert not natural_zero(MEASURES["cosine_same_sentence"])  # a similarity: values cluster near 1
    gap = shared_scale("cosine_gap", [0.05, 0.3])  # all positive, still centred on 0
    assert gap.centred and gap.limits == (-0.3, 0.3) and gap.cmap.name.startswith("RdBu")
    cos = shared_scale("cosine_same_sentence", [0.8, 0.99])
    assert not cos.centred and cos.cmap.name == "viridis" and cos.limits == pytest.approx((0.8, 0.99))
    signed = shared_scale("cka_linear_debiased", [-0.05, 0.9])  # a signed measure straddling 0
    assert signed.centred


def test_direction_and_log_scale_from_the_registry():
    assert shared_scale("davies_bouldin", [0.5, 2.0]).cmap.name == "viridis_r"
    assert isinstance(shared_scale("fisher_ratio", [0.1, 50.0]).norm, LogNorm)
    assert not isinstance(shared_scale("fisher_ratio", [1.0, 5.0]).norm, LogNorm)
    assert not isinstance(shared_scale("davies_bouldin", [0.01, 50.0]).norm, LogNorm)  # not allowed for it


@pytest.mark.parametrize("width, inches", [("one", 3.3), ("two", 6.9)])
def test_widths_and_font_sizes(width, inches):
    fig = layer_heatmap(synthetic_frame(), "cka_linear", width=width)
    assert fig.get_size_inches()[0] == pytest.approx(inches)
    fig.draw_without_rendering()
    sizes = {t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip() and t.get_visible()}
    assert sizes and min(sizes) >= 7 and max(sizes) <= 9
    with pytest.raises(ReprtoolsError, match="width"):
        width_inches("three")


def test_save_figure_writes_valid_files_and_nothing_half_written(tmp_path, monkeypatch):
    fig = layer_heatmap(synthetic_frame(), "cka_linear", width="one")
    formats = ("pdf", "png", "svg")
    paths = save_figure(fig, tmp_path, "cka", formats)
    assert [p.name for p in paths] == ["cka.pdf", "cka.png", "cka.svg"]
    pdf = paths[0].read_bytes()
    assert pdf.startswith(b"%PDF") and b"%%EOF" in pdf[-64:] and b"/FontFile2" in pdf  # TrueType embedded
    assert matplotlib.image.imread(paths[1]).shape[1] in (990, 991)  # 3.3 in at 300 dpi
    assert b"<svg" in paths[2].read_bytes()[:2000]
    again = layer_heatmap(synthetic_frame(), "cka_linear", width="one")
    assert save_figure(again, tmp_path / "again", "cka", formats)[2].read_bytes() == paths[2].read_bytes()

    def broken(fh, **kwargs):
        fh.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        save_figure(fig, tmp_path, "cka", formats=("png",))
    assert (tmp_path / "cka.png").read_bytes()[:4] == b"\x89PNG"  # the old file, untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    with pytest.raises(ReprtoolsError, match="unsupported"):
        save_figure(fig, tmp_path, "cka", formats=("gif",))


def test_wrap_and_layer_spread():
    wrapped = wrap_to("Top-1 retrieval accuracy (chance 0.05): rows = query, columns = target", 2.0)
    assert wrapped.count("\n") >= 1 and wrapped.replace("\n", " ").startswith("Top-1 retrieval")
    shown = spread_layers(range(33))
    gaps = {b - a for a, b in zip(shown, shown[1:])}
    assert len(shown) == 10 and shown[0] == 0 and shown[-1] == 32 and max(gaps) - min(gaps) <= 1
    assert spread_layers([3, 1, 2]) == [1, 2, 3]
