"""`reprtools weights` on tiny adapters of all five methods: each method's ΔW equals peft's merged minus unmerged
weights; the table's rows are in the results schema and the registry's bounds, with numbers that agree with an
independent float64 recomputation from the merged weights; an adapter compared with a copy of itself has subspace
similarity 1; and the CLI's bad inputs end in one line."""

import copy
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from reprtools import results
from reprtools.adapters import METHODS
from reprtools.checkpoints import read_checkpoint
from reprtools.errors import ReprtoolsError
from reprtools.weights import base_weights, module_role, read_updates, weights
from reprtools_cli.main import main


@pytest.fixture(scope="module")
def runs(tiny_runs, tmp_path_factory):
    """The session's tiny runs (tests/conftest.py), copied: ``weights`` writes into its first checkpoint by
    default; and a copy of the LoRA run, which must compare as identical to it."""
    root = tmp_path_factory.mktemp("wruns")
    for name in [*METHODS, "lora-s1"]:
        shutil.copytree(tiny_runs / name, root / name)
    shutil.copytree(root / "lora", root / "lora-copy")
    return root


@pytest.fixture(scope="module")
def base(runs):
    from transformers import AutoModelForCausalLM

    ck = read_checkpoint(runs / "lora")
    return AutoModelForCausalLM.from_pretrained(ck.base, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def table(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("weights")
    names = list(METHODS) + ["lora-s1", "lora-copy"]
    return out, weights([runs / n for n in names], out, device="cpu", figures=False)


def _merged(base, ck):
    from peft import PeftModel

    wrapped = PeftModel.from_pretrained(copy.deepcopy(base), str(ck.adapter_dir))
    return wrapped, {n: m.weight.detach() for n, m in wrapped.merge_and_unload().named_modules()
                     if isinstance(m, torch.nn.Linear)}


@pytest.mark.parametrize("method", METHODS)
def test_update_is_merged_minus_unmerged(runs, base, method):
    from peft import PeftModel

    ck = read_checkpoint(runs / method)
    updates = read_updates(PeftModel.from_pretrained(copy.deepcopy(base), str(ck.adapter_dir)))
    _, merged = _merged(base, ck)
    unmerged = base_weights(base, [u.name for u in updates])
    assert len(updates) == 2 * 7  # 2 blocks x all-linear
    assert {u.module for u in updates} == {"q", "k", "v", "o", "gate", "up", "down"}
    assert {u.layer for u in updates} == {1, 2}
    for u in updates:
        expected = merged[u.name].double() - unmerged[u.name].double()
        got = u.matrix().double()
        assert float(expected.abs().max()) > 0, f"{method} {u.name}: the adapter did not train"
        # merged weights are float32: their rounding (~1e-7 of |W|) bounds the agreement
        tol = 5e-6 * float(unmerged[u.name].abs().max())
        assert float((got - expected).abs().max()) < tol, (method, u.name)
        assert u.factored == (method != "dora")  # factored unless the method forces materialising


def test_module_role():
    assert module_role("model.layers.3.self_attn.q_proj") == (4, "q")
    assert module_role("model.layers.0.mlp.down_proj") == (1, "down")
    assert module_role("model.layers.11.self_attn.qkv_proj") == (12, "qkv_proj")
    assert module_role("transformer.h.2.mlp.gate_up_proj") == (3, "gate_up_proj")
    assert module_role("lm_head") == (-1, "lm_head")


def test_table_schema_registry_and_files(table):
    out, df = table
    assert list(df.columns) == list(results.COLUMNS)
    assert set(df["comparison"]) == {results.WEIGHTS}
    for metric, rows in df.groupby("metric"):
        entry = results.MEASURES[metric]
        assert results.WEIGHTS in entry.comparisons
        assert rows["value"].between(*entry.bounds).all(), metric
    again = results.read_results(out / "weights.csv")
    pd.testing.assert_frame_equal(again, df)
    spectra = pd.read_csv(out / "spectra.csv")
    assert set(spectra["checkpoint"]) == set(df["checkpoint"]) - {""}
    assert (spectra.groupby(["checkpoint", "name"])["singular_value"].apply(lambda s: s.is_monotonic_decreasing)).all()
    assert (out / "weights.json").is_file()
    own = df[df["reference"] == "base"]
    assert set(own["layer"]) == {1, 2} and len(own[own.metric == "update_norm_relative"]) == 7 * 14


def test_numbers_agree_with_the_merged_weights(runs, base, table):
    _, df = table
    for method in METHODS:
        ck = read_checkpoint(runs / method)
        _, merged = _merged(base, ck)
        name = "model.layers.1.mlp.up_proj"
        W = base.get_submodule(name).weight.detach().double().numpy()
        D = merged[name].double().numpy() - W
        row = df[(df.checkpoint == method) & (df.reference == "base") & (df.layer == 2) & (df.module == "up")]
        value = dict(zip(row.metric, row.value))
        ref_norm = np.linalg.norm(D) / np.linalg.norm(W)
        assert value["update_norm_relative"] == pytest.approx(ref_norm, rel=1e-4)
        s = np.linalg.svd(D, compute_uv=False)
        if method != "dora":  # DoRA's full-rank update: its trailing spectrum is float32 rounding in the reference
            assert value["update_stable_rank"] == pytest.approx((s ** 2).sum() / s[0] ** 2, rel=1e-3)
        # intruders: the top 10 left singular vectors of W + ΔW against all of W's, |cos| < 0.5
        u_tuned = np.linalg.svd(W + D)[0][:, :10]
        u_base = np.linalg.svd(W)[0]
        ref = int((np.abs(u_base.T @ u_tuned).max(axis=0) < 0.5).sum())
        assert value["intruder_dimensions"] == ref


def test_subspace_similarity_rows(table):
    _, df = table
    pair = df[(df.reference == "lora-copy") & (df.checkpoint == "lora")]
    assert len(pair) == 2 * 14
    np.testing.assert_allclose(pair["value"], 1.0, atol=1e-9)  # the same update: identical spans
    others = df[~df.reference.isin(["base", "lora-copy", "seeds"])]
    assert len(others) and (others["value"] < 1 - 1e-6).all()  # different adapters learn different directions


def test_seed_floor_is_the_mean_over_seed_pairs(table):
    _, df = table
    floor = df[df.reference == "seeds"]
    assert set(floor["method"]) == {"lora"} and (floor["checkpoint"] == "").all()
    # lora and lora-copy share seed 0: only lora/lora-s1 and lora-copy/lora-s1 are seed pairs (equal, as the
    # copy is the same adapter), so the floor equals the lora/lora-s1 row, not the copy's similarity of 1
    assert (floor["n"] == 2).all() and len(floor) == 2 * 14
    pair = df[(df.checkpoint == "lora") & (df.reference == "lora-s1")]
    merged = floor.merge(pair, on=["layer", "module", "metric"], suffixes=("", "_pair"))
    assert len(merged) == len(floor)
    np.testing.assert_allclose(merged["value"], merged["value_pair"], rtol=1e-12)


def test_bad_options(runs, tmp_path):
    with pytest.raises(ReprtoolsError, match="top-k"):
        weights([runs / "lora"], tmp_path, top_k=0)
    with pytest.raises(ReprtoolsError, match="threshold"):
        weights([runs / "lora"], tmp_path, threshold=1.5)
    with pytest.raises(ReprtoolsError, match="at least one"):
        weights([], tmp_path)


def test_an_adapter_of_other_shapes_is_a_one_line_error(runs, tmp_path):
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "bad"
    shutil.copytree(runs / "lora" / "adapter", bad)
    tensors = load_file(str(bad / "adapter_model.safetensors"))
    key = next(k for k in tensors if "lora_A" in k)
    tensors[key] = torch.zeros(tensors[key].shape[0], tensors[key].shape[1] + 3)
    save_file(tensors, str(bad / "adapter_model.safetensors"))
    with pytest.raises(ReprtoolsError, match="does not load on its base") as info:
        weights([bad], tmp_path / "out", device="cpu", figures=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out" / "weights.csv").exists()


def _cli(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main(["weights", *map(str, args)])
    return exit_info.value.code, capsys.readouterr()


@pytest.mark.parametrize("case", ["missing", "file", "not-adapter", "output-file", "top-k", "threshold", "formats"])
def test_cli_bad_inputs_are_one_line(runs, tmp_path, capsys, case):
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    empty = tmp_path / "empty"
    empty.mkdir()
    args = {"missing": [tmp_path / "nope"], "file": [afile], "not-adapter": [empty],
            "output-file": [runs / "lora", "-o", afile], "top-k": [runs / "lora", "--top-k", "0"],
            "threshold": [runs / "lora", "--threshold", "2"],
            "formats": [runs / "lora", "-o", tmp_path / "w", "--formats", "gif"]}[case]
    code, captured = _cli(capsys, *args)
    assert code != 0
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reprtools: error: ") and "Traceback" not in captured.err
    assert not list(tmp_path.glob("**/weights.csv"))


def test_cli_writes_the_table(runs, tmp_path, capsys):
    code, captured = _cli(capsys, runs / "vera", runs / "adalora", "-o", tmp_path / "w", "-q", "--formats", "png")
    assert code == 0
    df = results.read_results(tmp_path / "w" / "weights.csv")
    assert set(df["checkpoint"]) == {"vera", "adalora"}
    assert "weights.csv" in captured.out
    for stem in ("weights_update_norm_relative", "weights_intruder_dimensions", "weights_subspace_similarity",
                 "weights_spectra"):
        assert (tmp_path / "w" / "figures" / f"{stem}.png").stat().st_size > 0
    assert not list((tmp_path / "w" / "figures").glob("*.pdf"))


def test_figures(table, tmp_path):
    from reprtools.report.heatmaps import heatmap_meshes
    from reprtools.report.weights import module_heatmap, similarity_matrix

    from reprtools.report.weights import draw_weights

    out, df = table
    spectra = pd.read_csv(out / "spectra.csv")
    written = draw_weights(df, tmp_path, spectra, formats=["png"])
    assert sorted(p.name for p in written) == ["weights_intruder_dimensions.png", "weights_spectra.png",
                                               "weights_subspace_similarity.png", "weights_update_norm_relative.png"]
    from reprtools.report.weights import spectra_plot

    fig = spectra_plot(spectra)
    assert [ax.get_title() for ax in fig.axes] == ["Layer 1, q", "Layer 1, down", "Layer 2, q", "Layer 2, down"]
    lines = fig.axes[0].get_lines()
    assert len(lines) == 7  # a line per checkpoint
    q1 = spectra[(spectra.layer == 1) & (spectra.module == "q")]
    assert sorted(len(line.get_xdata()) for line in lines) == sorted(q1.groupby("checkpoint").size())
    fig = module_heatmap(df, "intruder_dimensions")
    meshes = heatmap_meshes(fig)
    assert len(meshes) == 7  # a panel per checkpoint
    own = df[(df.reference == "base") & (df.metric == "intruder_dimensions")]
    # every cell of every panel is a row of the table (modules x layers, in the drawn order)
    drawn = np.sort(np.concatenate([np.asarray(m.get_array()).ravel() for m in meshes]))
    np.testing.assert_allclose(drawn, np.sort(own["value"].to_numpy()))
    assert all("." not in t.get_text() for ax in fig.axes for t in ax.texts)  # counts as integers
    fig = similarity_matrix(df)
    meshes = heatmap_meshes(fig)
    assert len(meshes) == 2  # the tiny model's two layers
    mat = np.asarray(meshes[0].get_array()).reshape(7, 7)
    np.testing.assert_allclose(np.diag(mat), 1.0)
    np.testing.assert_allclose(mat, mat.T)
    layer1 = df[(df.layer == 1) & (df.metric == "subspace_similarity_out") & (df.checkpoint == "lora")
                & (df.reference == "lora-s1")]
    assert np.isclose(mat, layer1["value"].mean()).any()


def test_embeddings_are_left_out_and_a_zero_update_has_only_its_norm(base):
    from peft import LoraConfig, get_peft_model

    from reprtools.weights import base_vectors, measure_update

    model = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, target_modules=["embed_tokens", "q_proj"]))
    updates = read_updates(model)  # LoRA initialises B = 0: every update is zero
    assert [u.module for u in updates] == ["q", "q"]
    weight = base.get_submodule(updates[0].name).weight.detach()
    measured = measure_update(updates[0], weight, base_vectors(weight))
    assert measured.values == {"update_norm_relative": 0.0, "intruder_dimensions": 0.0}
    assert measured.U.shape[1] == 0  # no directions to compare with another checkpoint


def test_intruder_count_matches_peft_detection(runs, base, table):
    """peft's reduce_intruder_dimension (LoRA only) detects intruders the same way and prints a count per layer."""
    import re

    from peft import PeftModel
    from peft.tuners.lora.intruders import reduce_intruder_dimension

    _, df = table
    ck = read_checkpoint(runs / "lora")
    model = PeftModel.from_pretrained(copy.deepcopy(base), str(ck.adapter_dir))
    lines = []
    reduce_intruder_dimension(model, logging_sink=lines.append)
    peft_counts = {}
    for line in (x for x in lines if "Intruders" in x or "No intruders" in x):
        name, _, rest = line.partition(": ")
        match = re.search(r"Intruders: (\d+)", rest)
        peft_counts[module_role(name.removeprefix("base_model.model."))] = int(match.group(1)) if match else 0
    ours = df[(df.checkpoint == "lora") & (df.reference == "base") & (df.metric == "intruder_dimensions")]
    assert len(peft_counts) == len(ours) == 14
    assert {(int(r.layer), r.module): int(r.value) for r in ours.itertuples()} == peft_counts
    assert sum(peft_counts.values()) > 0  # the tiny adapters do have intruders: the comparison is not vacuous


def test_a_bf16_base_is_measured_in_float(runs, base, table, tmp_path):
    """A base stored in bf16 loads as bf16 (half the memory) and every measure upcasts: the numbers match the
    float32 base's to bf16 precision."""
    import json

    bf16 = tmp_path / "base-bf16"
    copy.deepcopy(base).to(torch.bfloat16).save_pretrained(bf16)
    run = tmp_path / "lora-bf16"
    shutil.copytree(runs / "lora" / "adapter", run)
    config = json.loads((run / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(bf16)
    (run / "adapter_config.json").write_text(json.dumps(config))
    df = weights([run], tmp_path / "out", device="cpu", figures=False)
    _, ref = table
    got = df[df.metric == "update_norm_relative"].set_index(["layer", "module"])["value"]
    want = ref[(ref.checkpoint == "lora") & (ref.reference == "base") & (ref.metric == "update_norm_relative")]
    want = want.set_index(["layer", "module"])["value"]
    assert np.isfinite(df["value"]).all()
    np.testing.assert_allclose(got.sort_index(), want.sort_index(), rtol=2e-2)
