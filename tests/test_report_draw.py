"""draw_all and draw: every figure a frame supports, valid files, nothing leaked, old tables still drawn,
bad input as one line."""

from __future__ import annotations

import csv
import gc
import weakref

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest
from report_frames import LANGS, N_LAYERS, layer_cka_matrices, synthetic_frame

from reprtools.errors import ReprtoolsError
from reprtools.report import draw, draw_all
from reprtools.results import frame

STEMS = {
    "separability", "cka_linear_vs_base_by_lang", "cka_linear_debiased_vs_base_by_lang", "cka_rbf_vs_base_by_lang",
    "cosine_same_sentence_vs_base_by_checkpoint", "cka_linear_debiased_checkpoint_pairs",
    "cka_linear_debiased_seed_pairs", "cosine_gap_language_pairs", "retrieval_top1_language_pairs",
    "cka_linear_debiased_language_pairs", "layer_cka", "seed_floor",
}


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    npz = out.parent / "layer_cka.npz"
    np.savez(npz, **layer_cka_matrices())
    return out, draw_all(synthetic_frame(), out, layer_cka=npz, width="one")


def test_every_figure_in_every_format(drawn):
    out, paths = drawn
    assert {p.stem for p in paths} == STEMS
    assert len(paths) == 3 * len(STEMS) and {p.suffix for p in paths} == {".pdf", ".png", ".svg"}
    assert sorted(out.iterdir()) == sorted(paths)  # nothing else: no temporary files
    for p in paths:
        data = p.read_bytes()
        if p.suffix == ".png":
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and matplotlib.image.imread(p).shape[1] in (990, 991)
        elif p.suffix == ".pdf":
            assert data.startswith(b"%PDF") and b"%%EOF" in data[-64:]
        else:
            assert b"<svg" in data[:2000] and data.rstrip().endswith(b"</svg>")


def test_figures_do_not_leak(tmp_path, monkeypatch):
    import reprtools.report as report

    made = []
    real = report.save_figure

    def keep(fig, *args, **kwargs):
        made.append(weakref.ref(fig))
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(report, "save_figure", keep)
    df = synthetic_frame()
    draw_all(df[df.comparison == "separability"], tmp_path, formats=("png",))
    gc.collect()
    assert made and all(ref() is None for ref in made)
    assert plt.get_fignums() == []


def test_nothing_to_draw_raises(tmp_path):
    no_layers = frame([dict(checkpoint="base", method="base", comparison="evaluation", task="xnli",
                            metric="accuracy", value=0.5)])
    with pytest.raises(ReprtoolsError, match="nothing to draw"):
        draw_all(no_layers, tmp_path)
    with pytest.raises(ReprtoolsError, match="DataFrame"):
        draw_all([{"metric": "cka_linear"}], tmp_path)


OLD_COLUMNS = ("checkpoint", "method", "reference", "layer", "lang", "lang_b", "metric", "value", "ci_low", "ci_high")


def write_old_probe(directory) -> None:
    """A probe directory as earlier versions wrote it: no comparison column, cosine_base, biased npz."""
    rows = []
    for ck, method in (("lora_hi_10", "lora"), ("dora-hi-10", "dora")):
        for layer in range(N_LAYERS):
            for lang in LANGS:
                for metric in ("cka_linear", "cka_linear_debiased", "cka_rbf", "cosine_base"):
                    rows.append([ck, method, "base", layer, lang, "", metric, 0.9 - 0.01 * layer, "", ""])
    for ck, method in (("base", "base"), ("lora_hi_10", "lora")):
        for layer in range(N_LAYERS):
            rows.append([ck, method, "", layer, "en", "hi", "retrieval_top1", 0.7, "", ""])
            rows.append([ck, method, "", layer, "hi", "en", "retrieval_top1", 0.4, "", ""])
            rows.append([ck, method, "", layer, "en", "hi", "cosine_parallel", 0.8, "", ""])
            rows.append([ck, method, "", layer, "en+hi", "", "silhouette", 0.1, "0.05", "0.15"])
    with (directory / "metrics.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(OLD_COLUMNS)
        writer.writerows(rows)
    near = layer_cka_matrices()["cka_linear:base"]
    np.savez(directory / "layer_cka.npz", base=near, base_rows=np.arange(N_LAYERS), base_cols=np.arange(N_LAYERS))


def test_draw_reads_an_old_probe_directory(tmp_path):
    write_old_probe(tmp_path)
    paths = draw(tmp_path, formats=("png",))
    figures = {p.stem for p in paths if p.parent == tmp_path / "figures"}
    assert figures == {"separability", "cka_linear_vs_base_by_lang", "cka_linear_debiased_vs_base_by_lang",
                       "cka_rbf_vs_base_by_lang", "cosine_same_sentence_vs_base_by_checkpoint",
                       "retrieval_top1_language_pairs", "layer_cka"}
    tables = {p.name for p in paths if p.parent == tmp_path / "tables"}
    assert {"shift_cosine_same_sentence.tex", "crosslingual_cosine_parallel.tex",
            "separability_silhouette.tex"} <= tables
    elsewhere = tmp_path / "elsewhere"
    assert all(p.is_relative_to(elsewhere) for p in draw(tmp_path / "metrics.csv", elsewhere, formats=("svg",)))


def test_draw_bad_tables_one_line(tmp_path):
    (tmp_path / "metrics.csv").write_bytes("checkpoint,method\nbase,\xe9t\xe9\n".encode("latin-1"))
    with pytest.raises(ReprtoolsError, match="not UTF-8") as info:
        draw(tmp_path)
    assert "\n" not in str(info.value)
    with pytest.raises(ReprtoolsError, match="no results table"):
        draw(tmp_path / "missing")
