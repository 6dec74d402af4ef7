"""`reprtools probe` on checkpoints of all five methods and on runs that differ only in seed (tiny model): the
files it writes, every comparison kind in the table, numbers that agree with an independent recomputation, the
base weights read once and left bit-identical, reuse of saved representations, intervals that bracket their
value, the seed noise floor, figures redrawn from metrics.csv alone, and the CLI's bad inputs."""

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from reprtools import results
from reprtools.adapters import METHODS
from reprtools.probe import ProbeOptions, probe
from reprtools_cli.main import main

LANGS = ["en", "hi", "bn"]


@pytest.fixture(scope="session")
def runs(tiny_runs):
    """Every method's tiny run and a second seed of LoRA and DoRA (conftest's session fixture, shared with
    test_weights); every probe here writes into a folder of its own."""
    return tiny_runs


@pytest.fixture(scope="session")
def probed(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("probe")
    return probe(ProbeOptions(checkpoints=[str(runs / m) for m in METHODS], langs=LANGS, max_sentences=12,
                              output_dir=str(out), progress=False))


@pytest.fixture(scope="session")
def seeds(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds")
    names = ["lora", "lora-s1", "dora", "dora-s1"]
    return probe(ProbeOptions(checkpoints=[str(runs / n) for n in names], langs=["en", "hi"], max_sentences=10,
                              output_dir=str(out), progress=False, figures=True))


def _reps(out, names, langs):
    return {(name, lang): load_file(str(out / "representations" / name / f"{lang}.safetensors"))
            for name in names for lang in langs}


def _naive_linear_cka(x, y):
    """Kornblith et al. 2019 with an explicit centering matrix, in float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = h @ x @ x.T @ h, h @ y @ y.T @ h
    return np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l))


def _unbiased_hsic(k, l):
    """Song et al. 2012, eq. 5, written out with loops-free numpy on zero-diagonal Grams."""
    n = k.shape[0]
    k, l = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    one = np.ones(n)
    return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (one @ k @ l @ one)) / (n * (n - 3))


def _naive_debiased_cka(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    k, l = x @ x.T, y @ y.T
    return _unbiased_hsic(k, l) / np.sqrt(_unbiased_hsic(k, k) * _unbiased_hsic(l, l))


def _cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T


def test_probe_writes_the_documented_files(probed):
    out = probed.output_dir
    assert (out / "metrics.csv").is_file() and (out / "summary.json").is_file() and (out / "layer_cka.npz").is_file()
    assert tuple(pd.read_csv(out / "metrics.csv", nrows=0).columns) == results.COLUMNS
    for name in ["base", *METHODS]:
        for lang in LANGS:
            tensors = load_file(str(out / "representations" / name / f"{lang}.safetensors"))
            assert sorted(tensors, key=lambda k: int(k.split(".")[1])) == [f"layer.{i}" for i in range(3)]
            assert all(t.shape == (12, 64) and t.dtype == np.float32 for t in tensors.values())
    assert {p.suffix for p in (out / "figures").iterdir()} == {".pdf", ".png", ".svg"}
    assert list((out / "tables").glob("*.tex"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["langs"] == LANGS and summary["layers"] == 3 and summary["pool"] == "mean"
    assert summary["cka_estimator"] == "cka_linear_debiased"
    assert {c["method"] for c in summary["checkpoints"]} == set(METHODS)
    with np.load(out / "layer_cka.npz") as npz:
        assert {"cka_linear:base", "cka_linear_debiased:base", "cka_linear_debiased:lora_vs_base"} <= set(npz.files)
        assert npz["cka_linear_debiased:lora_vs_base"].shape == (3, 3)


def test_the_base_weights_are_read_once(probed):
    assert probed.summary["base_weight_loads"] == 1


def test_every_comparison_is_in_the_table(probed):
    df = probed.metrics
    assert set(df["comparison"]) == {results.SHIFT, results.CHECKPOINTS, results.CROSSLINGUAL, results.SEPARABILITY}
    shift = df[df["comparison"] == results.SHIFT]
    assert set(shift["metric"]) == {"cka_linear", "cka_linear_debiased", "cka_rbf", "cosine_same_sentence"}
    assert set(shift["checkpoint"]) == set(METHODS) and set(shift["reference"]) == {"base"}
    sep = df[df["comparison"] == results.SEPARABILITY]
    assert set(sep["checkpoint"]) == {"base", *METHODS} and set(sep["lang"]) == {"en+hi+bn"}
    assert np.allclose(sep.loc[sep["metric"] == "probe_accuracy", "chance"], 1 / 3)
    cross = df[df["comparison"] == results.CROSSLINGUAL]
    retrieval = cross[cross["metric"] == "retrieval_top1"]
    assert set(zip(retrieval["lang"], retrieval["lang_b"])) == {(a, b) for a in LANGS for b in LANGS if a != b}
    assert np.allclose(retrieval["chance"], 1 / 12)
    assert set(cross["metric"]) >= {"cosine_parallel", "cosine_nonparallel", "cosine_gap", "cka_linear_debiased"}
    assert set(df.loc[df["checkpoint"] == "base", "method"]) == {"base"}
    assert (df["n"] == 12).all()
    assert df["ci_low"].isna().all()  # no --bootstrap: no intervals, NaN rather than made up


def test_every_row_is_in_the_registry_and_within_its_bounds(probed, seeds):
    for df in (probed.metrics, seeds.metrics):
        for metric, comparison, value in zip(df["metric"], df["comparison"], df["value"]):
            entry = results.MEASURES[metric]
            assert comparison in entry.comparisons, (metric, comparison)
            low, high = entry.bounds
            assert math.isnan(value) or low - 1e-9 <= value <= high + 1e-9, (metric, value)


def test_run_settings_come_from_run_json(probed, runs):
    run = json.loads((runs / "lora" / "run.json").read_text())
    lora = probed.metrics[probed.metrics["checkpoint"] == "lora"].iloc[0]
    assert lora["seed"] == run["seed"] == 0
    assert lora["model"] == "tiny-llama" and lora["target_lang"] == run["options"]["lang"]
    assert lora["ratio"] == pytest.approx(run["options"]["ratio"])
    base = probed.metrics[probed.metrics["checkpoint"] == "base"].iloc[0]
    assert base["model"] == "" and pd.isna(base["seed"])


def test_numbers_agree_with_an_independent_recomputation(probed):
    reps = _reps(probed.output_dir, ["base", *METHODS], LANGS)
    checked = 0
    for r in probed.metrics.itertuples():
        layer = f"layer.{r.layer}"
        if r.comparison == results.SHIFT:
            x, y = reps["base", r.lang][layer], reps[r.checkpoint, r.lang][layer]
        elif r.comparison == results.CROSSLINGUAL:
            x, y = reps[r.checkpoint, r.lang][layer], reps[r.checkpoint, r.lang_b][layer]
        else:
            continue
        if r.metric == "cka_linear":
            expected = _naive_linear_cka(x, y)
        elif r.metric == "cka_linear_debiased":
            expected = _naive_debiased_cka(x, y)
        elif r.metric in ("cosine_same_sentence", "cosine_parallel"):
            expected = np.mean(np.diag(_cos(x, y)))
        elif r.metric == "cosine_nonparallel":
            c = _cos(x, y)
            expected = (c.sum() - np.trace(c)) / (c.size - len(c))
        elif r.metric == "retrieval_top1":
            expected = np.mean(np.argmax(_cos(x, y), axis=1) == np.arange(len(x)))
        else:
            continue
        assert r.value == pytest.approx(expected, abs=1e-5), r
        checked += 1
    assert checked > 300


def test_adapters_shift_representations_but_not_the_embeddings(probed):
    df = probed.metrics
    cka = df[(df["comparison"] == results.SHIFT) & (df["metric"] == "cka_linear")]
    cka = cka.set_index(["checkpoint", "layer", "lang"])["value"]
    for m in METHODS:
        assert cka[m, 0, "en"] == pytest.approx(1.0, abs=1e-6)  # adapters leave the embedding output alone
    assert cka["lora", 2, "en"] < 1.0 - 1e-6


def test_base_weights_are_bit_identical_after_every_checkpoint(runs, tmp_path):
    """The base is read once and every checkpoint (LoRA, VeRA, AdaLoRA, ...) is wrapped on it and unwrapped."""
    import torch
    from transformers import AutoModelForCausalLM

    from reprtools.checkpoints import read_checkpoints
    from reprtools.models import load_tokenizer, resolve_model
    from reprtools.representations import CaptureSettings, collect

    cks = read_checkpoints([str(runs / m) for m in ("lora", "vera", "adalora", "dora", "pissa")])
    source = str(resolve_model(cks[0].base).path)
    model = AutoModelForCausalLM.from_pretrained(source)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []

    import reprtools.capture as capture_module
    real_capture = capture_module.capture

    def checking_capture(m, *args, **kwargs):
        seen.append(type(m).__name__)
        return real_capture(m, *args, **kwargs)

    capture_module.capture = checking_capture
    try:
        loads = []
        reps, count = collect(tmp_path / "reps", cks, {"en": ["one two", "three four five", "six"] * 2}, "fp",
                              lambda: loads.append(1) or model, lambda: load_tokenizer(source),
                              CaptureSettings(), torch.device("cpu"), progress=False)
    finally:
        capture_module.capture = real_capture
    assert count == 1 and len(loads) == 1
    assert seen == ["LlamaForCausalLM"] + ["PeftModelForCausalLM"] * 5
    after = model.state_dict()
    assert set(after) == set(before)
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    for m in ("lora", "vera", "adalora"):
        assert not np.allclose(reps[m]["en"][-1], reps["base"]["en"][-1])


def test_saved_representations_are_reused_without_the_model(probed, runs, monkeypatch):
    import reprtools.capture as capture_module

    def no_capture(*args, **kwargs):
        raise AssertionError("captured again although the representations were saved")

    monkeypatch.setattr(capture_module, "capture", no_capture)
    again = probe(ProbeOptions(checkpoints=[str(runs / m) for m in METHODS], langs=LANGS, max_sentences=12,
                               output_dir=str(probed.output_dir), progress=False, figures=False))
    assert again.summary["base_weight_loads"] == 0
    pd.testing.assert_frame_equal(again.metrics, probed.metrics)


def test_intervals_bracket_their_value_and_say_how_they_were_made(runs, tmp_path):
    result = probe(ProbeOptions(checkpoints=[str(runs / "lora")], langs=["en", "hi"], max_sentences=8, bootstrap=20,
                                output_dir=str(tmp_path / "p"), progress=False, figures=False))
    df = result.metrics
    assert df["ci_low"].notna().all() and df["ci_high"].notna().all()
    assert (df["ci_low"] <= df["value"] + 1e-12).all() and (df["value"] <= df["ci_high"] + 1e-12).all()
    scheme = df.groupby("metric")["interval"].agg(set)
    assert scheme["cosine_same_sentence"] == {"bootstrap"} and scheme["cosine_parallel"] == {"bootstrap"}
    for metric in ("cka_linear_debiased", "cka_linear", "retrieval_top1", "probe_accuracy", "cosine_gap"):
        assert scheme[metric] == {"jackknife"}, metric


def test_seed_runs_give_a_noise_floor_and_cross_seed_method_differences(seeds):
    df = seeds.metrics
    pairs = df[df["comparison"] == results.SEEDS]
    assert {frozenset((a, b)) for a, b in zip(pairs["checkpoint"], pairs["reference"])} == {
        frozenset(("lora", "lora-s1")), frozenset(("dora", "dora-s1"))}
    assert set(pairs["metric"]) == {"cka_linear", "cka_linear_debiased"}
    other = df[df["comparison"] == results.CHECKPOINTS]
    assert {frozenset((a, b)) for a, b in zip(other["checkpoint"], other["reference"])} == {
        frozenset(p) for p in [("lora", "dora"), ("lora", "dora-s1"), ("lora-s1", "dora"), ("lora-s1", "dora-s1")]}

    assert seeds.summary["seed_groups"] == {"lora": ["lora", "lora-s1"], "dora": ["dora", "dora-s1"]}
    floor = df[df["comparison"] == results.SEED_FLOOR]
    assert set(floor["method"]) == {"lora", "dora"} and set(floor["metric"]) == {"dissimilarity"}
    assert len(floor) == 2 * 3 and set(floor["lang"]) == {"en+hi"} and (floor["n"] == 1).all()
    # the floor is 1 - debiased CKA between the two seeds, all languages' sentences together
    reps = _reps(seeds.output_dir, ["lora", "lora-s1"], ["en", "hi"])
    row = floor[(floor["method"] == "lora") & (floor["layer"] == 2)].iloc[0]
    stack = [np.concatenate([reps[n, lang]["layer.2"] for lang in ("en", "hi")]) for n in ("lora", "lora-s1")]
    assert row["value"] == pytest.approx(1 - _naive_debiased_cka(*stack), abs=1e-5)
    assert row["ci_low"] <= row["value"] <= row["ci_high"]

    methods = df[df["comparison"] == results.METHODS]
    diff = methods[methods["metric"] == "dissimilarity"]
    assert len(diff) == 3 and (diff["n"] == 2).all()  # cross-seed pairs only: (dora, lora-s1), (dora-s1, lora)
    row = diff[diff["layer"] == 2].iloc[0]
    cross = [(("dora", "lora-s1")), ("dora-s1", "lora")]
    reps = _reps(seeds.output_dir, ["lora", "lora-s1", "dora", "dora-s1"], ["en", "hi"])

    def stacked(n):
        return np.concatenate([reps[n, lang]["layer.2"] for lang in ("en", "hi")])

    expected = np.mean([1 - _naive_debiased_cka(stacked(a), stacked(b)) for a, b in cross])
    assert row["value"] == pytest.approx(expected, abs=1e-5)
    flags = methods[methods["metric"] == "exceeds_seed_floor"].set_index("layer")["value"]
    floors = floor.set_index(["method", "layer"])
    for layer, flag in flags.items():
        d = diff.set_index("layer").loc[layer]
        above = all(d["ci_low"] > floors.loc[(m, layer), "ci_high"] for m in ("lora", "dora"))
        assert flag == float(above)
    assert (seeds.output_dir / "figures" / "seed_floor.png").is_file()


def test_heatmap_redraws_from_metrics_alone(probed, tmp_path, capsys):
    only = tmp_path / "only"
    only.mkdir()
    shutil.copy(probed.metrics_csv, only / "metrics.csv")
    code, err = _cli(capsys, "heatmap", str(only))
    assert code == 0, err
    assert list((only / "figures").glob("*.pdf")) and list((only / "tables").glob("*.tex"))


@pytest.mark.parametrize("content,needle", [
    (b"checkpoint,method\n\xff\xfe,x\n", "not UTF-8"),
    (b"a,b\n1,2\n", "not a reprtools results table"),
    (b"", "cannot read"),
])
def test_heatmap_bad_metrics_is_one_line(tmp_path, capsys, content, needle):
    (tmp_path / "metrics.csv").write_bytes(content)
    code, err = _cli(capsys, "heatmap", str(tmp_path))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code not in (0, None) and len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "figures").exists()


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
        (lambda runs, tmp: [str(runs / "lora"), "--bootstrap", "-1"], "bootstrap"),
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
    ck = result.summary["checkpoints"][0]
    assert (ck["name"], ck["method"]) == ("dora", "dora")
    assert set(result.metrics["seed"].dropna()) == {0}  # run.json beside adapter/ is still read
