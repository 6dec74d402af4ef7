"""`reprtools eval` on XNLI with checkpoints of every method (tiny model): the rows of scores.csv, accuracies that
agree with the per-item files, intervals that bracket their value, roles, the held-out items only, eval.json, and
the CLI's bad inputs (one line, nothing written)."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from reprtools import results
from reprtools.adapters import METHODS
from reprtools.data.xnli import LABELS, heldout_rows
from reprtools.evaluate import EvalOptions, evaluate
from reprtools.train import TrainOptions, train
from reprtools_cli.main import main

ROWS = 30  # 6 held out per language (holdout 0.2)


def _xnli_dir(root):
    root.mkdir()
    for lang, (p, h) in {"en": ("A cat {} sat.", "A cat {} is here."),
                         "hi": ("बिल्ली {} बैठी।", "बिल्ली {} यहाँ है।")}.items():
        lines = [f"{p.format(i)}\t{h.format(i)}\t{LABELS[i % 3]}\n" for i in range(ROWS)]
        (root / f"dev-{lang}.tsv").write_text("".join(lines), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    os.environ["REPRTOOLS_CACHE"] = str(tmp_path_factory.getbasetemp() / "cache")
    for method in METHODS:
        train(TrainOptions(output_dir=str(root / method), model="tiny-llama", method=method, max_steps=2,
                           num_examples=16, progress=False))
    return root, _xnli_dir(root / "xnli")


@pytest.fixture(scope="module")
def evaluated(setup):
    root, data = setup
    return evaluate(EvalOptions(checkpoints=[str(root / m) for m in METHODS], data=str(data), langs="en,hi",
                                output_dir=str(root / "out"), bootstrap=200, progress=False))


def test_rows_roles_and_schema(evaluated):
    df = results.read_results(evaluated.scores_csv)
    assert list(df.columns) == list(results.COLUMNS)
    assert len(df) == (1 + len(METHODS)) * 2
    assert set(df["checkpoint"]) == {"base", *METHODS}
    assert (df["comparison"] == results.EVALUATION).all() and (df["task"] == "xnli").all()
    assert (df["metric"] == "accuracy").all()
    base = df[df["checkpoint"] == "base"]
    assert (base["role"] == "reference").all() and (base["target_lang"] == "").all()
    runs = df[df["checkpoint"] != "base"]
    assert (runs["target_lang"] == "hi").all()  # the training default
    assert (runs.loc[runs["lang"] == "hi", "role"] == "transfer").all()
    assert (runs.loc[runs["lang"] == "en", "role"] == "retention").all()
    assert set(runs["method"]) == set(METHODS)


def test_chance_is_what_a_constant_answer_scores_on_the_items(evaluated):
    for row in evaluated.scores.itertuples():
        path = evaluated.output_dir / "items" / row.checkpoint / f"{row.lang}.jsonl"
        targets = [json.loads(line)["target"] for line in path.read_text(encoding="utf-8").splitlines()]
        best_constant = max(np.mean([t == label for t in targets]) for label in range(3))
        assert row.chance == pytest.approx(best_constant)


def test_accuracy_is_mean_of_items_and_only_heldout_items(evaluated):
    df = evaluated.scores
    held = heldout_rows(ROWS, 0.2, 0)
    for row in df.itertuples():
        path = evaluated.output_dir / "items" / row.checkpoint / f"{row.lang}.jsonl"
        items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        assert {it["id"] for it in items} == {f"xnli-{row.lang}-{r}" for r in held}
        for it in items:
            assert it["correct"] == (it["pred"] == it["target"])
            assert it["target"] == int(it["id"].rsplit("-", 1)[1]) % 3  # the label written in the TSV
        assert row.n == len(items) == len(held)
        assert row.value == pytest.approx(np.mean([it["correct"] for it in items]))


def test_intervals_bracket_and_are_bootstrap(evaluated):
    df = evaluated.scores
    assert (df["interval"] == "bootstrap").all()
    assert ((df["ci_low"] <= df["value"]) & (df["value"] <= df["ci_high"])).all()
    assert ((df["ci_low"] >= 0) & (df["ci_high"] <= 1)).all()


def test_eval_json(evaluated, setup):
    info = json.loads((evaluated.output_dir / "eval.json").read_text(encoding="utf-8"))
    for key in ("lm_eval_version", "tasks", "prompt_template", "limit", "model_fingerprint", "adapter_fingerprints"):
        assert key in info
    assert info["format"] == "instruct" and info["limit"] is None
    assert set(info["tasks"]) == {"xnli_en_instruct_local", "xnli_hi_instruct_local"}
    import hashlib
    for task in info["tasks"].values():
        assert hashlib.sha256(task["yaml"].encode()).hexdigest() == task["sha256"]
        assert "multiple_choice" in task["yaml"] and len(task["items_sha256"]) == 64
    assert set(info["adapter_fingerprints"]) == set(METHODS)


def test_limit(setup, tmp_path):
    root, data = setup
    res = evaluate(EvalOptions(checkpoints=[str(root / "lora")], data=str(data), langs="hi", limit=2,
                               output_dir=str(tmp_path / "o"), bootstrap=0, progress=False))
    assert list(res.scores["n"]) == [2, 2] and res.scores["ci_low"].isna().all()
    assert (res.scores["interval"] == "").all()


@pytest.mark.parametrize("args, words", [
    (["--task", "no_such_task"], "unknown task"),
    (["--format", "chat"], "--format"),
    (["--batch-size", "0"], "--batch-size"),
    (["--langs", "en,sw"], "'sw'"),
    (["--limit", "0"], "--limit"),
    (["--data", "MISSING"], "MISSING"),
])
def test_cli_bad_input_one_line_nothing_written(setup, tmp_path, capsys, args, words):
    root, data = setup
    out = tmp_path / "out"
    argv = ["eval", str(root / "lora"), "--data", str(data), "-o", str(out), "-q", *args]
    if args[0] == "--data":
        argv = ["eval", str(root / "lora"), "--data", str(tmp_path / "MISSING"), "-o", str(out), "-q"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reprtools: error:") and "\n" not in err and words in err
    assert not out.exists()


def test_cli_runs(setup, tmp_path, capsys):
    root, data = setup
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(root / "lora"), "--data", str(data), "-o", str(tmp_path / "o"), "-q", "--limit", "3",
              "--bootstrap", "50"])
    assert exc.value.code == 0
    assert len(pd.read_csv(tmp_path / "o" / "scores.csv")) == 4
    assert "accuracy" in capsys.readouterr().out


def _own_predictions(model, tok, lang, data):
    """Argmax over the label words of sum log p(word | training prompt), written out with plain torch."""
    import torch

    from reprtools.data.prompts import format_prompt
    from reprtools.data.xnli import read_xnli

    preds = {}
    for ex in read_xnli(data, [lang], part="heldout"):
        ctx = list(tok(format_prompt(ex))["input_ids"])
        scores = []
        for word in LABELS:
            cont = list(tok(word, add_special_tokens=False)["input_ids"])
            with torch.no_grad():
                logits = model(torch.tensor([ctx + cont])).logits[0].double()
            logp = torch.log_softmax(logits, dim=-1)
            scores.append(sum(float(logp[len(ctx) - 1 + i, t]) for i, t in enumerate(cont)))
        preds[ex.id] = int(np.argmax(scores))
    return preds


def test_predictions_match_an_independent_loglikelihood(evaluated, setup):
    from peft import PeftModel

    from reprtools.checkpoints import read_checkpoint
    from reprtools.models import load_model

    root, data = setup
    ck = read_checkpoint(root / "lora")
    loaded = load_model(ck.base)
    for name, model in (("base", loaded.model), ("lora", None)):
        if model is None:
            model = PeftModel.from_pretrained(loaded.model, str(ck.adapter_dir))
        model.eval()
        for lang in ("en", "hi"):
            path = evaluated.output_dir / "items" / name / f"{lang}.jsonl"
            ours = {it["id"]: it["pred"] for it in map(json.loads, path.read_text(encoding="utf-8").splitlines())}
            assert ours == _own_predictions(model, loaded.tokenizer, lang, str(data))


def test_order_of_checkpoints_does_not_change_scores(evaluated, setup, tmp_path):
    """Each adapter is unloaded back to the untouched base: scoring in reverse order gives the same items."""
    root, data = setup
    names = ["vera", "adalora", "lora"]
    res = evaluate(EvalOptions(checkpoints=[str(root / n) for n in names], data=str(data), langs="en",
                               output_dir=str(tmp_path / "rev"), bootstrap=0, progress=False))
    for name in ["base", *names]:
        a = (evaluated.output_dir / "items" / name / "en.jsonl").read_text(encoding="utf-8")
        b = (res.output_dir / "items" / name / "en.jsonl").read_text(encoding="utf-8")
        assert a == b


def test_an_output_path_that_is_a_file_is_one_line(setup, tmp_path, capsys):
    root, data = setup
    taken = tmp_path / "taken"
    taken.write_text("not a directory")
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(root / "lora"), "--data", str(data), "-o", str(taken), "-q"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.startswith("reprtools: error:") and "\n" not in err
    assert "not a directory" in err and taken.read_text() == "not a directory"


def test_generation_works_for_every_method(setup, tmp_path):
    """TyDiQA generates text: each of the five adapters (AdaLoRA's reloaded forward included) is scored."""
    root, _ = setup
    data = tmp_path / "tydiqa"
    data.mkdir()
    paras = [{"context": f"town {i} .", "qas": [{"id": f"english-{i}", "question": f"where {i}?",
                                                "answers": [{"text": f"town {i}", "answer_start": 0}]}]}
             for i in range(10)]
    (data / "english_tydiqa_dev.json").write_text(json.dumps({"data": [{"title": "t", "paragraphs": paras}]}))
    res = evaluate(EvalOptions(checkpoints=[str(root / m) for m in METHODS], task="tydiqa", data=str(data),
                               langs="en", output_dir=str(tmp_path / "o"), bootstrap=0, progress=False))
    assert set(res.scores["checkpoint"]) == {"base", *METHODS}
    assert res.scores["value"].between(0, 1).all() and (res.scores["n"] == 2).all()


def test_no_base_scores_only_the_checkpoints_with_the_same_items_and_intervals(evaluated, setup, tmp_path):
    root, data = setup
    res = evaluate(EvalOptions(checkpoints=[str(root / "lora")], data=str(data), langs="en,hi", base=False,
                               output_dir=str(tmp_path / "nb"), bootstrap=200, progress=False))
    assert set(res.scores["checkpoint"]) == {"lora"} and not (res.output_dir / "items" / "base").exists()
    both = evaluated.scores[evaluated.scores["checkpoint"] == "lora"].reset_index(drop=True)
    cols = ["lang", "value", "ci_low", "ci_high", "n"]
    assert res.scores[cols].reset_index(drop=True).equals(both[cols])  # same items, same resampled indices
