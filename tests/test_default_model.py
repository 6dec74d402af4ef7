"""The default model end to end: Gemma 3 270M (real, multilingual, offline), converted once into the cache."""

import json

import pytest
import torch

pytestmark = pytest.mark.slow


def test_dora_on_the_default_model_and_demo_data(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from reprtools.train import TrainOptions, train

    result = train(TrainOptions(output_dir=str(tmp_path / "dora-hi"), method="dora", max_steps=2,
                                num_examples=16, batch_size=2, progress=False))
    manifest = json.loads((tmp_path / "dora-hi" / "run.json").read_text())
    assert manifest["base_model"]["name"] == "gemma-3-270m"
    assert manifest["base_params"] == 268_098_176
    assert manifest["data"]["counts"] == {"en": 14, "hi": 2}
    assert len(manifest["final_rank_per_module"]) == 18 * 7  # every linear layer of the 18 blocks, no LM head

    tokenizer_ids = torch.tensor([[2, 651, 6037, 529, 5135, 563]])
    with torch.no_grad():
        trained = result.model.eval()(tokenizer_ids).logits
        base = AutoModelForCausalLM.from_pretrained(manifest["base_model"]["name_or_path"])
        reloaded = PeftModel.from_pretrained(base, str(tmp_path / "dora-hi" / "adapter")).eval()(tokenizer_ids).logits
    assert torch.allclose(reloaded, trained, atol=1e-4)
