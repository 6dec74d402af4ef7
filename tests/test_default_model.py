"""The default model end to end: Gemma 3 270M (real, multilingual, offline), converted once into the cache."""

import json
from pathlib import Path

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


def test_eval_of_the_default_model_and_a_one_step_lora_on_shared_xnli(tmp_path, shared_data):
    """``reprtools eval`` end to end on the real model: the base and a LoRA trained for one step, scored by
    lm-evaluation-harness on the first 4 held-out XNLI items of en and hi from the shared data."""
    import numpy as np

    from reprtools import results
    from reprtools.data.xnli import LABELS, heldout_rows
    from reprtools.evaluate import EvalOptions, evaluate
    from reprtools.train import TrainOptions, train

    xnli = shared_data / "xnli"
    if not all((xnli / f"dev-{lang}.tsv").is_file() for lang in ("en", "hi")):
        pytest.skip(f"no XNLI dev-en.tsv/dev-hi.tsv in {xnli}")
    if any(xnli.glob("train-*.tsv")):
        pytest.skip("this test's held-out rows assume dev files only (with train files, all of dev is held out)")
    train(TrainOptions(output_dir=str(tmp_path / "lora-hi"), method="lora", max_steps=1, num_examples=4,
                       batch_size=2, progress=False))
    result = evaluate(EvalOptions(checkpoints=[str(tmp_path / "lora-hi")], data=str(xnli), langs="en,hi", limit=4,
                                  bootstrap=200, output_dir=str(tmp_path / "eval"), progress=False))

    df = results.read_results(result.scores_csv)
    assert sorted(zip(df["checkpoint"], df["lang"])) == [("base", "en"), ("base", "hi"), ("lora-hi", "en"),
                                                         ("lora-hi", "hi")]
    assert (df["metric"] == "accuracy").all() and (df["n"] == 4).all()
    assert df["value"].between(0, 1).all()
    assert ((df["ci_low"] <= df["value"]) & (df["value"] <= df["ci_high"])).all()
    assert Path(result.summary["model"]).name == "gemma-3-270m"  # the default model's converted directory
    for lang in ("en", "hi"):
        # the first 4 held-out rows of the file (split seed 0, 20%), each with the file's own label as target
        rows = [line.split("\t") for line in (xnli / f"dev-{lang}.tsv").read_text(encoding="utf-8").splitlines()
                if line.strip()]
        first = sorted(heldout_rows(len(rows), 0.2, 0))[:4]
        for name in ("base", "lora-hi"):
            path = result.output_dir / "items" / name / f"{lang}.jsonl"
            items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
            assert [it["id"] for it in items] == [f"xnli-{lang}-{row}" for row in first]
            assert [it["target"] for it in items] == [LABELS.index(rows[row][2].strip()) for row in first]
            assert all(it["pred"] in (0, 1, 2) and it["correct"] == (it["pred"] == it["target"]) for it in items)
            value = df.loc[(df["checkpoint"] == name) & (df["lang"] == lang), "value"].item()
            assert value == pytest.approx(np.mean([it["correct"] for it in items]))
