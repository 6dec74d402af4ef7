"""`reprtools train` on tiny models: every method trains, saves a standard adapter that plain peft reloads on
the ORIGINAL base with the trained model's outputs, and the manifest says what happened."""

import json
import shutil

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from reprtools.adapters import METHODS, adalora_init_rank
from reprtools.errors import ReprtoolsError
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
    # no --max-steps: one pass over 40 examples at batch 4 is 10 steps, and AdaLoRA's schedule must be told so
    manifest = _train(tmp_path, "adalora", max_steps=None, num_examples=40, batch_size=4).manifest
    ranks = manifest["final_rank_per_module"]
    init_r = adalora_init_rank(8)
    assert len(ranks) == 14  # 7 linear layers x 2 blocks
    assert max(ranks.values()) <= init_r
    assert sum(ranks.values()) < init_r * len(ranks), "update_and_allocate never pruned a rank"
    assert sum(ranks.values()) == pytest.approx(8 * len(ranks), abs=len(ranks))  # budget: an average of target_r
    config = manifest["peft_config"]
    assert config["total_step"] == manifest["training"]["steps_done"] == 10
    assert config["init_r"] == init_r and config["target_r"] == 8
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
    import peft
    import transformers
    from safetensors import safe_open

    manifest = _train(tmp_path, "dora", ratio=0.5, lang="bn", seed=3).manifest
    assert manifest["data"]["counts"] == {"en": 20, "bn": 20}
    # the keys the probe groups seeds by: method, base model, target language and ratio, seed
    assert (manifest["data"]["target_lang"], manifest["data"]["ratio"]) == ("bn", 0.5)
    assert (manifest["options"]["lang"], manifest["options"]["ratio"], manifest["seed"]) == ("bn", 0.5, 3)
    assert manifest["versions"]["torch"] == torch.__version__
    assert (manifest["versions"]["transformers"], manifest["versions"]["peft"]) == (transformers.__version__,
                                                                                    peft.__version__)
    assert manifest["peft_config"]["use_dora"] is True
    assert set(manifest["final_rank_per_module"].values()) == {8}
    # the trainable parameters are exactly what the adapter file holds (DoRA: A, B and the magnitudes) ...
    with safe_open(str(tmp_path / "dora" / "adapter" / "adapter_model.safetensors"), "pt") as f:
        assert manifest["trainable_params"] == sum(f.get_tensor(k).numel() for k in f.keys())
    # ... and the base parameters what the original base holds
    base = AutoModelForCausalLM.from_pretrained(manifest["base_model"]["name_or_path"])
    assert manifest["base_params"] == sum(p.numel() for p in base.parameters())
    assert manifest["tokens_per_second"] == pytest.approx(manifest["tokens_seen"] / manifest["wall_time_s"])


def test_tokens_per_second_counts_real_tokens_not_padding(tmp_path):
    """8 examples of 8 different lengths, batch 4, 2 steps: one pass, every example seen once.  Every batch
    mixes lengths, so it is padded, and only the real tokens may count."""
    from reprtools.data import load_examples, tokenize_example
    from reprtools.models import load_tokenizer, resolve_model

    rows = [{"instruction": "Repeat.", "input": "word " * (3 * i), "output": "ok", "lang": lang}
            for i, lang in enumerate(["en", "sw"] * 4)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    manifest = _train(tmp_path, "lora", data=f"jsonl:{data}", lang="sw", ratio=0.5, num_examples=8,
                      batch_size=4, max_steps=2).manifest

    tokenizer = load_tokenizer(resolve_model("tiny-llama").path)
    lengths = [len(tokenize_example(tokenizer, ex, 256)["input_ids"]) for ex in load_examples(f"jsonl:{data}")]
    assert len(set(lengths)) == 8  # so every batch of 4 holds padding
    assert manifest["tokens_seen"] == sum(lengths)
    assert manifest["tokens_per_second"] == pytest.approx(sum(lengths) / manifest["wall_time_s"])


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


def test_resume_finds_the_last_checkpoint_by_step_number(tmp_path):
    _train(tmp_path, "lora", max_steps=10, save_steps=5)
    run = tmp_path / "lora"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-10", "checkpoint-5"]
    # simulate a crash after the checkpoint at step 10: no manifest, no adapter
    (run / "run.json").unlink()
    shutil.rmtree(run / "adapter")
    manifest = _train(tmp_path, "lora", max_steps=12, save_steps=5, resume=True).manifest
    assert manifest["training"]["resumed_from"] == str(run / "checkpoints" / "checkpoint-10")  # not the "last" by name
    assert manifest["training"]["steps_done"] == 12
    assert [row["step"] for row in manifest["loss_curve"]] == list(range(1, 13))  # the history carries over
    # tokens: the whole run's, the checkpoint's count plus those of the two resumed steps
    at_checkpoint = json.loads((run / "checkpoints" / "checkpoint-10" / "trainer_state.json").read_text())
    assert manifest["tokens_seen"] > at_checkpoint["num_input_tokens_seen"] > 0
    assert (run / "run.json").is_file() and (run / "adapter" / "adapter_config.json").is_file()


def test_resume_with_nothing_to_resume_starts_from_the_beginning(tmp_path, capsys):
    manifest = _train(tmp_path, "lora", max_steps=2, resume=True).manifest
    assert manifest["training"]["resumed_from"] is None and manifest["training"]["steps_done"] == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_seed_draws_the_sample_its_order_and_the_initialisation(tmp_path):
    """What run.json's seed_draws says, one step at a time: the mix, the Trainer's data order and the adapter's
    initial weights each change with --seed and repeat with it."""
    from reprtools.train import build_peft_model, make_trainer, prepare_data, training_arguments

    def opts(seed):
        return TrainOptions(output_dir=str(tmp_path / "run"), model="tiny-llama", seed=seed, num_examples=40,
                            max_steps=4, progress=False)

    data = {seed: prepare_data(opts(seed)) for seed in (0, 1)}
    assert data[0].mix.ids_sha256 != data[1].mix.ids_sha256
    assert [ex.id for ex in prepare_data(opts(0)).mix.examples] == [ex.id for ex in data[0].mix.examples]

    def first_weights_and_order(seed):
        o = opts(seed)
        args = training_arguments(o, data[0])  # the same data for every seed: only order and init may differ
        build = build_peft_model(o, data[0], args.max_steps)
        lora_a = next(p.detach().clone() for n, p in build.model.named_parameters() if "lora_A" in n)
        loader = make_trainer(o, args, data[0], build).trainer.get_train_dataloader()
        return lora_a, [batch["input_ids"].tolist() for batch in loader]

    a0, order0 = first_weights_and_order(0)
    b0, again = first_weights_and_order(0)
    a1, order1 = first_weights_and_order(1)
    assert torch.equal(a0, b0), "the same seed must give the same initial adapter"
    assert order0 == again, "the same seed must give the same data order"
    assert not torch.equal(a0, a1), "the seed does not draw the adapter's initialisation"
    assert order0 != order1, "the seed does not draw the data order"


@pytest.mark.parametrize("ratio,langs", [(0.1, ["en", "sw"]), (0.0, ["en"]), (1.0, ["sw"])])
def test_the_data_loader_is_asked_for_the_languages_the_mix_draws_from(tmp_path, monkeypatch, ratio, langs):
    """hf:xnli cannot load without being told the languages; the others then load only what the mix uses."""
    import reprtools.data

    asked = []

    def spy(spec, **kwargs):
        asked.append((spec, kwargs.get("langs")))
        raise ReprtoolsError("stop here")

    monkeypatch.setattr(reprtools.data, "load_examples", spy)
    with pytest.raises(ReprtoolsError, match="stop here"):
        _train(tmp_path, "lora", data="hf:xnli", lang="sw", ratio=ratio)
    assert asked == [("hf:xnli", langs)]
    assert not (tmp_path / "lora").exists()


@pytest.mark.parametrize("source,lang", [("tydiqa", "sw"), ("xnli", "ur")])
def test_trains_on_the_shared_study_data(tmp_path, shared_data, source, lang):
    manifest = _train(tmp_path, "lora", data=f"{source}:{shared_data / source}", lang=lang, ratio=0.1,
                      num_examples=100, max_steps=1, batch_size=2).manifest
    assert manifest["data"]["counts"] == {"en": 90, lang: 10}
    assert manifest["data"]["source"]["kind"] == source


def test_target_modules_leave_the_controlled_setup_on_purpose(tmp_path):
    manifest = _train(tmp_path, "lora", target_modules="q_proj,v_proj", max_steps=1).manifest
    assert manifest["target_modules"] == ["q_proj", "v_proj"] and manifest["options"]["target_modules"] == "q_proj,v_proj"
    assert sorted({name.rsplit(".", 1)[1] for name in manifest["final_rank_per_module"]}) == ["q_proj", "v_proj"]
    assert manifest["trainable_params"] == 8 * ((64 + 64) + (64 + 32)) * 2  # rank x (in + out), 2 blocks


def test_global_batch_size_sets_the_accumulation_and_is_recorded(tmp_path):
    training = _train(tmp_path, "lora", batch_size=2, global_batch_size=8, max_steps=1).manifest["training"]
    assert (training["per_device_batch_size"], training["gradient_accumulation"], training["world_size"]) == (2, 4, 1)
    assert training["global_batch_size"] == 8


def test_global_batch_must_divide_over_the_processes():
    from reprtools.distributed import accumulation_steps

    assert accumulation_steps(32, 4, 2) == 4
    with pytest.raises(ReprtoolsError, match="not divisible by --batch-size 4 x 3 process"):
        accumulation_steps(32, 4, 3)


def test_hardware_records_processes_and_determinism():
    from types import SimpleNamespace

    from reprtools.distributed import hardware

    args = SimpleNamespace(device=torch.device("cpu"), world_size=1)
    before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        off = hardware(args)
        torch.use_deterministic_algorithms(True)
        on = hardware(args)
    finally:
        torch.use_deterministic_algorithms(before)
    assert (off["deterministic_algorithms"], on["deterministic_algorithms"]) == (False, True)
    assert off["device_type"] == "cpu" and off["num_processes"] == 1 and off["cuda"] is None and off["device"]
