"""Figures and LaTeX tables from metrics.csv alone: files, shared colour scales, paper conventions, errors."""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from matplotlib.text import Text

from reprtools import figures as F
from reprtools.errors import ReprtoolsError

LANGS = ("en", "hi", "bn")
CHECKPOINTS = (("lora_hi_10", "lora"), ("dora-hi-10", "dora"))  # an underscore name tests LaTeX escaping
N_LAYERS = 5
REFERENCE_METRICS = ("cka_linear", "cka_linear_debiased", "cka_rbf", "cosine_base")
PAIR_METRICS = ("cosine_parallel", "retrieval_top1", "cka_linear")
SEPARABILITY = ("silhouette", "probe_accuracy", "davies_bouldin", "fisher_ratio")


def synthetic_rows(n_layers: int = N_LAYERS, seed: int = 0) -> list[list[str]]:
    """All metric kinds for base + 2 checkpoints; about half the rows carry a CI, the rest leave it empty."""
    rng = random.Random(seed)
    rows: list[list[str]] = []

    def add(ck, method, ref, layer, lang, lang_b, metric, value, ci=True):
        lo = hi = ""
        if ci and rng.random() < 0.5:
            half = 0.01 + 0.02 * rng.random()
            lo, hi = f"{value - half:.6f}", f"{value + half:.6f}"
        rows.append([ck, method, ref, str(layer), lang, lang_b, metric, f"{value:.6f}", lo, hi])

    models = [("base", "base"), *CHECKPOINTS]
    (a, ma), (b, _) = CHECKPOINTS
    for layer in range(n_layers):  # checkpoint vs checkpoint: reference = the other checkpoint's name
        for lang in LANGS:
            add(a, ma, b, layer, lang, "", "cka_linear", rng.uniform(0.8, 1.0))
    for ck, method in CHECKPOINTS:
        for layer in range(n_layers):
            for lang in LANGS:
                for metric in REFERENCE_METRICS:
                    add(ck, method, "base", layer, lang, "", metric, 1 - 0.2 * rng.random() * layer / n_layers)
    for ck, method in models:
        for layer in range(n_layers):
            for i, a in enumerate(LANGS):
                for j, b in enumerate(LANGS):
                    if i < j:
                        add(ck, method, "", layer, a, b, "cosine_parallel", rng.uniform(0.2, 0.9))
                        add(ck, method, "", layer, a, b, "cka_linear", rng.uniform(0.4, 0.95))
                    if i != j:  # retrieval is directed: both directions, different values
                        add(ck, method, "", layer, a, b, "retrieval_top1", rng.uniform(0.0, 1.0))
            langset = "+".join(LANGS)
            add(ck, method, "", layer, langset, "", "silhouette", rng.uniform(-0.2, 0.4))  # signed
            add(ck, method, "", layer, langset, "", "probe_accuracy", rng.uniform(0.6, 1.0))
            add(ck, method, "", layer, langset, "", "davies_bouldin", rng.uniform(0.5, 3.0), ci=False)
            add(ck, method, "", layer, langset, "", "fisher_ratio", rng.uniform(0.5, 5.0), ci=False)
    return rows


def write_csv(path: Path, rows, header=F.COLUMNS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def layer_cka_matrix(n: int = N_LAYERS) -> np.ndarray:
    idx = np.arange(n)
    return np.exp(-np.abs(np.subtract.outer(idx, idx)) / 3.0)


@pytest.fixture(scope="module")
def metrics_csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("metrics") / "metrics.csv", synthetic_rows())


@pytest.fixture(scope="module")
def drawn(metrics_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    npz = out.parent / "layer_cka.npz"  # the probe's layout: <key>, <key>_rows, <key>_cols
    mats = {"base": layer_cka_matrix(), "lora_hi_10_vs_base": layer_cka_matrix() ** 2}
    arrays = {**mats, **{f"{k}_rows": np.arange(N_LAYERS) for k in mats},
              **{f"{k}_cols": np.arange(N_LAYERS) for k in mats}}
    np.savez(npz, **arrays)
    paths = F.draw_all(metrics_csv, out, layer_cka=npz)
    return out, paths


# ---------------------------------------------------------------------------------------------- reading


def test_read_metrics_parses_types_and_empty_ci(metrics_csv):
    rows = F.read_metrics(metrics_csv)
    assert len(rows) == len(synthetic_rows())
    assert all(isinstance(r.layer, int) and isinstance(r.value, float) for r in rows)
    assert any(r.ci_low is None and r.ci_high is None for r in rows)
    assert any(r.has_ci for r in rows)
    kinds = {r.kind for r in rows}
    assert kinds == {"reference", "model_pair", "pair", "separability"}


def test_bad_header_names_missing_columns(tmp_path):
    header = [c for c in F.COLUMNS if c not in ("lang_b", "ci_high")]
    path = write_csv(tmp_path / "m.csv", [], header=header)
    with pytest.raises(ReprtoolsError, match="lang_b") as info:
        F.read_metrics(path)
    assert "ci_high" in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_bad_values_raise(tmp_path):
    with pytest.raises(ReprtoolsError, match="not found"):
        F.read_metrics(tmp_path / "nope.csv")
    good = synthetic_rows()[0]
    bad_layer = [*good[:3], "three", *good[4:]]
    with pytest.raises(ReprtoolsError, match=r"line 2: layer 'three' is not an integer"):
        F.read_metrics(write_csv(tmp_path / "a.csv", [bad_layer]))
    bad_value = [*good[:7], "high", "", ""]
    with pytest.raises(ReprtoolsError, match="value 'high' is not a number"):
        F.read_metrics(write_csv(tmp_path / "b.csv", [bad_value]))
    with pytest.raises(ReprtoolsError, match="duplicate measurement"):
        F.read_metrics(write_csv(tmp_path / "c.csv", [good, good]))
    half_ci = [*good[:8], "0.5", ""]
    with pytest.raises(ReprtoolsError, match="only one of ci_low/ci_high"):
        F.read_metrics(write_csv(tmp_path / "d.csv", [half_ci]))


def test_draw_all_with_no_rows_raises(tmp_path):
    empty = write_csv(tmp_path / "m.csv", [])
    with pytest.raises(ReprtoolsError, match="nothing to draw"):
        F.draw_all(empty, tmp_path / "out")


# ---------------------------------------------------------------------------------------------- draw_all


def test_draw_all_writes_every_kind_in_every_format(drawn):
    out, paths = drawn
    stems = {p.stem for p in paths}
    expected = {"separability", "layer_cka"}
    expected |= {f"{m}_vs_base_by_lang" for m in REFERENCE_METRICS if m.startswith("cka")}
    expected |= {"cosine_base_vs_base_by_checkpoint", "cka_linear_checkpoint_pairs"}
    expected |= {f"{m}_pairs" for m in PAIR_METRICS}
    assert stems == expected
    assert {p.suffix for p in paths} == {".pdf", ".png", ".svg"}
    assert len(paths) == 3 * len(expected)
    for p in paths:
        assert p.parent == out and p.is_file() and p.stat().st_size > 0, p
        head = p.read_bytes()[:8]
        if p.suffix == ".png":
            assert head == b"\x89PNG\r\n\x1a\n"
            img = matplotlib.image.imread(p)
            assert img.ndim == 3 and img.shape[1] in (round(6.9 * 300), round(6.9 * 300) + 1)
        elif p.suffix == ".pdf":
            assert head.startswith(b"%PDF")
            assert b"%%EOF" in p.read_bytes()[-64:]
        else:
            assert b"<svg" in p.read_bytes()[:2000]


def test_no_temporary_files_left(drawn):
    out, paths = drawn
    assert sorted(out.iterdir()) == sorted(paths)
    assert not [p for p in out.iterdir() if p.name.startswith(".") or "tmp" in p.name]


def test_save_figure_leaves_nothing_half_written(tmp_path, metrics_csv, monkeypatch):
    fig = F.separability_heatmap(metrics_csv)
    (tmp_path / "sep.png").write_bytes(b"old")

    def broken(fh, **kwargs):
        fh.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        F.save_figure(fig, tmp_path, "sep", formats=("png",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sep.png"]
    assert (tmp_path / "sep.png").read_bytes() == b"old"
    with pytest.raises(ReprtoolsError, match="unsupported"):
        F.save_figure(fig, tmp_path, "sep", formats=("gif",))


# ---------------------------------------------------------------------------------------------- colour scales


def test_cka_to_base_panels_share_one_scale(metrics_csv):
    fig = F.cka_to_base_heatmap(metrics_csv)
    meshes = F.heatmap_meshes(fig)
    assert len(meshes) == len(LANGS)  # one panel per language
    assert len({m.get_clim() for m in meshes}) == 1
    assert len(fig.axes) == len(meshes) + 1  # a single colour bar
    values = [r.value for r in F.read_metrics(metrics_csv) if r.metric == "cka_linear" and r.reference == "base"]
    lo, hi = meshes[0].get_clim()
    assert lo == pytest.approx(min(values)) and hi == pytest.approx(max(values))
    assert meshes[0].get_cmap().name.startswith("viridis")  # sequential: CKA is not signed


def test_language_pair_panels_share_one_scale(metrics_csv):
    fig = F.language_pair_heatmap(metrics_csv, "retrieval_top1")
    meshes = F.heatmap_meshes(fig)
    assert len(meshes) == 3 * 3  # 3 models x (first, middle, last layer)
    assert len({m.get_clim() for m in meshes}) == 1
    assert len(fig.axes) == len(meshes) + 1
    titles = {ax.get_title() for ax in fig.axes}
    assert {"Base", "lora_hi_10", "dora-hi-10"} <= titles
    assert {ax.get_ylabel() for ax in fig.axes} >= {"Layer 0", "Layer 2", "Layer 4"}
    data = meshes[0].get_array()
    assert np.ma.getmaskarray(data).reshape(3, 3).diagonal().all()  # diagonal masked


def test_one_direction_retrieval_is_not_mirrored(metrics_csv):
    rows = [r for r in F.read_metrics(metrics_csv) if r.metric != "retrieval_top1" or r.lang < r.lang_b]
    retrieval = F.heatmap_meshes(F.language_pair_heatmap(rows, "retrieval_top1", layers=[0], models=["base"]))
    cosine = F.heatmap_meshes(F.language_pair_heatmap(rows, "cosine_parallel", layers=[0], models=["base"]))
    missing_retrieval = np.ma.getmaskarray(retrieval[0].get_array()).reshape(3, 3)
    missing_cosine = np.ma.getmaskarray(cosine[0].get_array()).reshape(3, 3)
    assert missing_cosine.sum() == 3  # only the diagonal: symmetric pairs are mirrored
    assert missing_retrieval.sum() == 6  # diagonal + the unmeasured direction of each pair


def test_checkpoint_pair_matrix_includes_base(metrics_csv):
    fig = F.checkpoint_pair_heatmap(metrics_csv, "cka_linear")
    meshes = F.heatmap_meshes(fig)
    assert len(meshes) == 3 * len(LANGS)  # (first, middle, last layer) x languages
    assert len({m.get_clim() for m in meshes}) == 1
    ax = meshes[0].axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Base", "lora_hi_10", "dora-hi-10"]
    data = np.ma.filled(meshes[0].get_array().reshape(3, 3).astype(float), np.nan)
    assert np.isnan(np.diag(data)).all() and np.isfinite(data[~np.eye(3, dtype=bool)]).all()
    assert np.allclose(data, data.T, equal_nan=True)


def test_layer_heatmap_per_checkpoint_panels(metrics_csv):
    fig = F.layer_heatmap(metrics_csv, "cosine_base", panels="checkpoint", width="one")
    meshes = F.heatmap_meshes(fig)
    assert len(meshes) == len(CHECKPOINTS)
    assert len({m.get_clim() for m in meshes}) == 1
    first = meshes[0].axes
    assert [t.get_text() for t in first.get_yticklabels()] == ["English", "Hindi", "Bengali"]


def test_separability_signed_metric_is_centred(metrics_csv):
    fig = F.separability_heatmap(metrics_csv)
    meshes = F.heatmap_meshes(fig)
    assert len(meshes) == len(SEPARABILITY)
    sil, probe = meshes[0], meshes[1]  # order: silhouette, probe_accuracy, fisher_ratio, davies_bouldin
    lo, hi = sil.get_clim()
    assert lo < 0 < hi and lo == pytest.approx(-hi)
    assert sil.get_cmap().name.startswith("RdBu")
    assert probe.get_clim()[0] > 0 and probe.get_cmap().name == "viridis"
    labels = [ax.get_ylabel() for ax in fig.axes if ax not in [m.axes for m in meshes]]
    assert "Silhouette\n(cosine)" in labels and "Probe\naccuracy" in labels


# ---------------------------------------------------------------------------------------------- paper conventions


@pytest.mark.parametrize("width, inches", [("one", 3.3), ("two", 6.9)])
def test_widths_and_font_sizes(metrics_csv, width, inches):
    fig = F.cka_to_base_heatmap(metrics_csv, width=width)
    assert fig.get_size_inches()[0] == pytest.approx(inches)
    fig.draw_without_rendering()
    sizes = {t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip() and t.get_visible()}
    assert sizes and min(sizes) >= 7 and max(sizes) <= 9


def test_layer_axis_integer_and_thinned_when_crowded():
    rows = [F.MetricRow("dora-hi-10", "dora", "base", layer, lang, "", "cka_linear", 0.9)
            for layer in range(33) for lang in LANGS]
    fig = F.cka_to_base_heatmap(rows, width="one")
    bottom = F.heatmap_meshes(fig)[-1].axes
    assert bottom.get_xlabel() == "Layer"
    labels = [t.get_text() for t in bottom.get_xticklabels() if t.get_text()]
    assert labels and all(re.fullmatch(r"\d+", s) for s in labels)
    assert 2 <= len(labels) < 33 and labels[0] == "0"
    assert not bottom.texts  # 33 columns: too many to annotate


def test_small_grid_annotated(metrics_csv):
    fig = F.separability_heatmap(metrics_csv, ["probe_accuracy"])
    ax = F.heatmap_meshes(fig)[0].axes
    assert len(ax.texts) == 3 * N_LAYERS  # base + 2 checkpoints, 5 layers
    assert all(re.fullmatch(r"\d\.\d\d", t.get_text()) for t in ax.texts)


def test_language_names():
    assert [F.language_name(c) for c in ("en", "hi", "bn", "ur", "sw", "te")] == [
        "English", "Hindi", "Bengali", "Urdu", "Swahili", "Telugu"]
    assert F.language_name("xx") == "xx"
    assert F.metric_label("cka_linear") == "Linear CKA"
    assert F.metric_label("silhouette", one_line=True) == "Silhouette (cosine)"


# ---------------------------------------------------------------------------------------------- layer x layer


def test_layer_cka_heatmap_from_array_and_files(tmp_path):
    mat = layer_cka_matrix()
    fig = F.layer_cka_heatmap(mat, width="one")
    (mesh,) = F.heatmap_meshes(fig)
    assert mesh.get_clim() == (0.0, 1.0)
    assert mesh.axes.get_xlabel() == "Layer" and mesh.axes.get_ylabel() == "Layer"
    assert [t.get_text() for t in mesh.axes.get_xticklabels()] == [str(i) for i in range(N_LAYERS)]

    rect = F.layer_cka_heatmap(mat[:, :3], col_labels=[0, 2, 4], xlabel="Layer (dora-hi-10)",
                               ylabel="Layer (base)")
    ax = F.heatmap_meshes(rect)[0].axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "2", "4"]

    (tmp_path / "cka.json").write_text(json.dumps({"matrix": mat.tolist(), "layers": list(range(N_LAYERS)),
                                                   "model_a": "base", "model_b": "base"}))
    (entry,) = F.load_layer_cka(tmp_path / "cka.json")
    assert entry.matrix.shape == (N_LAYERS, N_LAYERS) and entry.xlabel == "Layer (base)"
    with pytest.raises(ReprtoolsError, match="2-D"):
        F.layer_cka_heatmap(np.ones(4))
    with pytest.raises(ReprtoolsError, match="labels"):
        F.layer_cka_heatmap(mat, row_labels=[0, 1])


# ---------------------------------------------------------------------------------------------- LaTeX


def _body_rows(tex: str) -> list[str]:
    body = tex.split("\\midrule", 1)[1].split("\\bottomrule")[0]
    return [line for line in body.splitlines() if line.strip().endswith("\\\\")]


def test_latex_table_booktabs_escaping_and_rows(metrics_csv, tmp_path):
    out = tmp_path / "cka.tex"
    tex = F.latex_table(metrics_csv, out, metric="cka_linear")
    assert out.read_text() == tex
    for rule in ("\\toprule", "\\midrule", "\\bottomrule", "\\caption{", "\\label{tab:"):
        assert rule in tex
    spec = re.search(r"\\begin\{tabular\}\{([^}]*)\}", tex).group(1)
    assert "|" not in spec
    rows = _body_rows(tex)
    assert len(rows) == len(CHECKPOINTS)  # vs. base: checkpoints only
    assert rows[0].startswith("lora\\_hi\\_10 & LoRA")
    assert "lora_hi_10" not in tex
    assert re.search(r"\d\.\d{3}\{\\scriptsize\\,\$\\pm\$\\,\d\.\d{3}\}", tex)  # value with ± half-CI
    assert re.search(r"& \d\.\d{3} &|& \d\.\d{3} \\\\", tex)  # and a value without a CI
    assert not list(tmp_path.glob(".*"))

    sep = F.latex_table(metrics_csv, None, metric="silhouette", layers=[0, 4], ci="interval")
    sep_rows = _body_rows(sep)
    assert len(sep_rows) == 1 + len(CHECKPOINTS) and sep_rows[0].startswith("base & --")
    assert "Layer 0 & Layer 4" in sep and "[" in sep


def test_latex_escapes_special_characters():
    rows = [F.MetricRow("a&b%c#d_e", "lora", "base", 0, "en", "", "cka_linear", 0.5, 0.4, 0.6)]
    tex = F.latex_table(rows, metric="cka_linear")
    assert "a\\&b\\%c\\#d\\_e" in tex
    with pytest.raises(ReprtoolsError, match="no rows with metric='nope'"):
        F.latex_table(rows, metric="nope")


def test_write_tables_one_file_per_metric(metrics_csv, tmp_path):
    paths = F.write_tables(metrics_csv, tmp_path)
    names = {p.name for p in paths}
    assert {f"table_{m}_vs_base.tex" for m in REFERENCE_METRICS} <= names
    assert {f"table_{m}_pairs.tex" for m in PAIR_METRICS} <= names
    assert {f"table_{m}.tex" for m in SEPARABILITY} <= names
    assert "table_cka_linear_checkpoint_pairs.tex" in names
    assert len(names) == len(REFERENCE_METRICS) + len(PAIR_METRICS) + len(SEPARABILITY) + 1
    pairs = (tmp_path / "table_cka_linear_checkpoint_pairs.tex").read_text()
    assert _body_rows(pairs)[0].startswith("lora\\_hi\\_10 vs. dora-hi-10 & LoRA / DoRA")
    assert sorted(tmp_path.iterdir()) == sorted(paths)
    assert all("\\toprule" in p.read_text() for p in paths)
