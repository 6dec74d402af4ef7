"""`reprtools train` on tiny models: every method trains, saves a standard adapter that plain peft reloads on
the ORIGINAL base with the trained model's outputs, and the manifest says what happened."""

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from reprtools.adapters import METHODS, adalora_init_rank
from reprtools.train import TrainOptions, train


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("REPRTOOLS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _train(tmp_path, method, model="tiny-llama", **kw):
    opts = dict(output_dir=str(tmp_path / method), model=model, method=method, max_steps=4, progress=False,
                learning_rate=5e-3, batch_size=4, num_examples=40)
    opts.update(kw)
    return train(TrainOptions(**opts))


def _logits(model, ids):
    with torch.no_grad():
        return model.eval()(ids).logits


@pytest.mark.parametrize(
    "method,model", [(m, "tiny-llama") for m in METHODS] + [("lora", "tiny-gemma"), ("dora", "tiny-qwen")]
)
def test_adapter_reloads_on_original_base_with_trained_outputs(tmp_path, method, model):
    result = _train(tmp_path, method, model=model)
    manifest = result.manifest
    run = tmp_path / method
    assert json.loads((run / "run.json").read_text()) == json.loads(json.dumps(manifest))
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    base_path = config["base_model_name_or_path"]
    assert base_path == manifest["base_model"]["name_or_path"]

    ids = torch.randint(4, 250, (2, 24), generator=torch.Generator().manual_seed(0))
    trained = _logits(result.model, ids)
    base = AutoModelForCausalLM.from_pretrained(base_path)  # the ORIGINAL weights, from the recorded path
    base_logits = _logits(base, ids)
    reloaded = _logits(PeftModel.from_pretrained(base, str(run / "adapter")), ids)
    assert torch.allclose(reloaded, trained, atol=1e-5), f"{method}: reloaded adapter differs from the trained model"
    assert not torch.allclose(trained, base_logits, atol=1e-5), f"{method}: training changed nothing"
    assert manifest["training"]["steps_done"] == 4
    assert len(manifest["loss_curve"]) == 4
    assert 0 < manifest["trainable_params"] < manifest["base_params"]


def test_lora_loss_goes_down(tmp_path):
    manifest = _train(tmp_path, "lora", max_steps=12, learning_rate=1e-2).manifest
    losses = [row["loss"] for row in manifest["loss_curve"]]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_adalora_ranks_move_from_init_toward_target_and_regulariser_is_logged_apart(tmp_path):
    manifest = _train(tmp_path, "adalora", max_steps=10).manifest
    ranks = manifest["final_rank_per_module"]
    init_r = adalora_init_rank(8)
    assert len(ranks) == 14  # 7 linear layers x 2 blocks
    assert max(ranks.values()) <= init_r
    assert sum(ranks.values()) < init_r * len(ranks), "update_and_allocate never pruned a rank"
    assert sum(ranks.values()) == pytest.approx(8 * len(ranks), abs=len(ranks))  # budget: an average of target_r
    config = manifest["peft_config"]
    assert config["total_step"] == 10 and config["init_r"] == init_r and config["target_r"] == 8
    weight = config["orth_reg_weight"]
    for row in manifest["loss_curve"]:
        assert row["orth_reg"] > 0
        assert row["task_loss"] == pytest.approx(row["loss"] - weight * row["orth_reg"])


def test_pissa_saved_at_double_rank_for_the_original_base(tmp_path):
    manifest = _train(tmp_path, "pissa").manifest
    config = json.loads((tmp_path / "pissa" / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 16 and manifest["saved_rank"] == 16 and manifest["rank"] == 8
    assert config["init_lora_weights"] is True  # loads as a plain LoRA
    assert any("PiSSA" in note for note in manifest["notes"])


def test_vera_saves_its_shared_projections(tmp_path):
    _train(tmp_path, "vera")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "vera" / "adapter" / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any("vera_A" in k for k in keys) and any("vera_B" in k for k in keys)


def test_manifest_records_the_run(tmp_path):
    manifest = _train(tmp_path, "dora", ratio=0.5, lang="bn", seed=3).manifest
    assert manifest["data"]["counts"] == {"en": 20, "bn": 20}
    assert len(manifest["data"]["ids_sha256"]) == 64
    assert manifest["seed"] == 3
    assert len(manifest["base_model"]["fingerprint_sha256"]) == 64
    assert {"torch", "transformers", "peft", "python"} <= set(manifest["versions"])
    assert manifest["tokens_per_second"] > 0 and manifest["wall_time_s"] > 0
    assert manifest["peft_config"]["use_dora"] is True
    assert set(manifest["final_rank_per_module"].values()) == {8}
    assert manifest["trainable_percent"] == pytest.approx(100 * manifest["trainable_params"] / manifest["base_params"])


def test_same_seed_same_result(tmp_path):
    a = _train(tmp_path / "a", "lora").manifest
    b = _train(tmp_path / "b", "lora").manifest
    assert a["data"]["ids_sha256"] == b["data"]["ids_sha256"]
    assert [r["loss"] for r in a["loss_curve"]] == pytest.approx([r["loss"] for r in b["loss_curve"]])


def test_match_budget_picks_the_closest_rank(tmp_path):
    manifest = _train(tmp_path, "dora", match_budget="lora").manifest
    # tiny-llama: LoRA rank 8 = 8 * sum(in + out) = 16,384; DoRA adds one magnitude per output feature
    per_rank, magnitudes = 16384 // 8, manifest["trainable_params"] - manifest["rank"] * (16384 // 8)
    best = min(range(1, 33), key=lambda r: abs(r * per_rank + magnitudes - 16384))
    assert manifest["rank"] == best == 7
    assert manifest["budget_match"]["target_params"] == 16384


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    _train(tmp_path, "lora", max_steps=4, save_steps=2)
    run = tmp_path / "lora"
    # simulate a crash after the checkpoint at step 4: no manifest, no adapter
    (run / "run.json").unlink()
    import shutil

    shutil.rmtree(run / "adapter")
    manifest = _train(tmp_path, "lora", max_steps=6, save_steps=2, resume=True).manifest
    assert manifest["training"]["resumed_from"].endswith("checkpoint-4")
    assert manifest["training"]["steps_done"] == 6
    assert (run / "run.json").is_file() and (run / "adapter" / "adapter_config.json").is_file()


@pytest.mark.parametrize("source,lang", [("tydiqa", "sw"), ("xnli", "ur")])
def test_trains_on_the_shared_study_data(tmp_path, shared_data, source, lang):
    manifest = _train(tmp_path, "lora", data=f"{source}:{shared_data / source}", lang=lang, ratio=0.1,
                      num_examples=100, max_steps=1, batch_size=2).manifest
    assert manifest["data"]["counts"] == {"en": 90, lang: 10}
    assert manifest["data"]["source"]["kind"] == source
