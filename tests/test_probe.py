"""`reprtools probe` on checkpoints of all five methods (tiny model): the files it writes, numbers that agree
with an independent recomputation from the saved representations, reuse of saved representations, figures
redrawn from metrics.csv alone, and the CLI's bad inputs."""

import csv
import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

from reprtools.adapters import METHODS
from reprtools.probe import METRICS_COLUMNS, ProbeOptions, probe
from reprtools.train import TrainOptions, train
from reprtools_cli.main import main

LANGS = ["en", "hi", "bn"]


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    import os

    root = tmp_path_factory.mktemp("runs")
    os.environ["REPRTOOLS_CACHE"] = str(tmp_path_factory.getbasetemp() / "cache")
    for method in METHODS:
        train(TrainOptions(output_dir=str(root / method), model="tiny-llama", method=method, max_steps=2,
                           num_examples=16, learning_rate=2e-2, progress=False))
    return root


@pytest.fixture(scope="session")
def probed(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("probe")
    result = probe(ProbeOptions(checkpoints=[str(runs / m) for m in METHODS], langs=LANGS, max_sentences=12,
                                output_dir=str(out), progress=False))
    return result


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _naive_linear_cka(x, y):
    """Kornblith et al. 2019 with an explicit centering matrix, in float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    return np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l))


def test_probe_writes_the_documented_files(probed):
    out = probed.output_dir
    assert (out / "metrics.csv").is_file() and (out / "summary.json").is_file() and (out / "layer_cka.npz").is_file()
    with open(out / "metrics.csv", newline="") as f:
        assert tuple(next(csv.reader(f))) == METRICS_COLUMNS
    for name in ["base", *METHODS]:
        for lang in LANGS:
            tensors = load_file(str(out / "representations" / name / f"{lang}.safetensors"))
            assert sorted(tensors, key=lambda k: int(k.split(".")[1])) == [f"layer.{i}" for i in range(3)]
            assert all(t.shape == (12, 64) and t.dtype == np.float32 for t in tensors.values())
    figures = list((out / "figures").glob("*.png"))
    assert figures and all(p.stat().st_size > 1000 for p in figures)
    assert {p.suffix for p in (out / "figures").iterdir()} == {".pdf", ".png", ".svg"}
    assert list((out / "tables").glob("*.tex"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["langs"] == LANGS and summary["layers"] == 3
    assert {c["method"] for c in summary["checkpoints"]} == set(METHODS)


def test_every_comparison_is_in_the_table(probed):
    rows = _rows(probed.metrics_csv)
    kinds = {(r["checkpoint"], r["reference"], r["metric"]) for r in rows}
    for m in METHODS:
        for metric in ("cka_linear", "cka_linear_debiased", "cka_rbf", "cosine_base"):
            assert (m, "base", metric) in kinds
    assert ("lora", "dora", "cka_linear") in kinds or ("dora", "lora", "cka_linear") in kinds
    sep = [r for r in rows if r["metric"] == "silhouette"]
    assert {r["checkpoint"] for r in sep} == {"base", *METHODS}
    assert {r["lang"] for r in sep} == {"en+hi+bn"}
    pairs = {(r["lang"], r["lang_b"]) for r in rows if r["metric"] == "cosine_parallel"}
    assert pairs == {("en", "hi"), ("en", "bn"), ("hi", "bn")}
    assert {r["method"] for r in rows if r["checkpoint"] == "base"} == {"base"}


def test_numbers_agree_with_an_independent_recomputation(probed):
    out = probed.output_dir
    reps = {
        (name, lang): load_file(str(out / "representations" / name / f"{lang}.safetensors"))
        for name in ["base", *METHODS] for lang in LANGS
    }
    checked = 0
    for r in _rows(probed.metrics_csv):
        layer = f"layer.{r['layer']}"
        if r["metric"] == "cka_linear" and r["reference"] == "base":
            expected = _naive_linear_cka(reps["base", r["lang"]][layer], reps[r["checkpoint"], r["lang"]][layer])
        elif r["metric"] == "cosine_base":
            a = reps["base", r["lang"]][layer].astype(np.float64)
            b = reps[r["checkpoint"], r["lang"]][layer].astype(np.float64)
            expected = np.mean(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))
        elif r["metric"] == "cosine_parallel":
            a = reps[r["checkpoint"], r["lang"]][layer].astype(np.float64)
            b = reps[r["checkpoint"], r["lang_b"]][layer].astype(np.float64)
            expected = np.mean(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))
        else:
            continue
        assert float(r["value"]) == pytest.approx(expected, abs=1e-5), r
        checked += 1
    assert checked > 100


def test_adapters_shift_representations_but_not_the_embeddings(probed):
    rows = _rows(probed.metrics_csv)
    cka = {(r["checkpoint"], int(r["layer"]), r["lang"]): float(r["value"]) for r in rows
           if r["metric"] == "cka_linear" and r["reference"] == "base"}
    for m in METHODS:
        assert cka[m, 0, "en"] == pytest.approx(1.0, abs=1e-6)  # adapters leave the embedding output alone
    assert cka["lora", 2, "en"] < 1.0 - 1e-6


def test_saved_representations_are_reused_without_the_model(probed, runs, monkeypatch):
    import reprtools.capture as capture_module

    def no_capture(*args, **kwargs):
        raise AssertionError("captured again although the representations were saved")

    monkeypatch.setattr(capture_module, "capture", no_capture)
    again = probe(ProbeOptions(checkpoints=[str(runs / m) for m in METHODS], langs=LANGS, max_sentences=12,
                               output_dir=str(probed.output_dir), progress=False, figures=False))
    assert [r["value"] for r in again.rows] == [r["value"] for r in probed.rows]


def test_bootstrap_gives_intervals(runs, tmp_path):
    result = probe(ProbeOptions(checkpoints=[str(runs / "lora")], langs=["en", "hi"], max_sentences=6, bootstrap=5,
                                output_dir=str(tmp_path / "p"), progress=False, figures=False))
    rows = _rows(result.metrics_csv)
    assert rows
    for r in rows:
        low, high = float(r["ci_low"]), float(r["ci_high"])
        assert low <= high


def test_heatmap_redraws_from_metrics_alone(probed, tmp_path, capsys):
    only = tmp_path / "only"
    only.mkdir()
    shutil.copy(probed.metrics_csv, only / "metrics.csv")
    with pytest.raises(SystemExit) as exit_info:
        main(["heatmap", str(only)])
    assert exit_info.value.code == 0, capsys.readouterr().err
    assert list((only / "figures").glob("*.pdf")) and list((only / "tables").glob("*.tex"))


def _cli(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "make_args,needle",
    [
        (lambda runs, tmp: [str(tmp / "missing")], "checkpoint not found"),
        (lambda runs, tmp: [str(tmp)], "not a reprtools run or a PEFT adapter"),
        (lambda runs, tmp: [str(runs / "lora"), "--langs", "en,xx"], "xx"),
        (lambda runs, tmp: [str(runs / "lora"), "--langs", "en,hi", "--data", "flores200:/no/such"], "/no/such"),
        (lambda runs, tmp: [str(runs / "lora"), "--max-sentences", "2"], "at least 5"),
        (lambda runs, tmp: [str(runs / "lora"), "--pool", "max"], "pool"),
        (lambda runs, tmp: [str(runs / "lora"), "--device", "cuda:7"], "cuda"),
    ],
)
def test_probe_bad_input_is_one_line_and_writes_nothing(runs, tmp_path, capsys, make_args, needle):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    code, err = _cli(capsys, "probe", *make_args(runs, empty), "-o", str(out))
    assert code not in (0, None)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("reprtools: error:") and needle in lines[0], err
    assert not out.exists()


def test_probe_refuses_checkpoints_of_different_bases(runs, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(runs / "lora" / "adapter", other)
    config = json.loads((other / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path)
    (other / "adapter_config.json").write_text(json.dumps(config))
    code, err = _cli(capsys, "probe", str(runs / "lora"), str(other), "-o", str(tmp_path / "out"))
    assert code not in (0, None) and "different base models" in err


def test_probe_accepts_a_bare_adapter_directory(runs, tmp_path):
    result = probe(ProbeOptions(checkpoints=[str(runs / "dora" / "adapter")], langs=["en", "sw"], max_sentences=6,
                                output_dir=str(tmp_path / "p"), progress=False, figures=False))
    assert result.summary["checkpoints"][0] == {"name": "dora", "method": "dora", "path": str(runs / "dora" / "adapter")}
