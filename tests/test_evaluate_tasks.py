"""`reprtools eval` beyond XNLI's instruct format (tiny model): TyDiQA-GoldP in both formats, XNLI in lm-eval's own
format cross-checked item by item against the `lm_eval` CLI on the exported tasks, the overlap guard, lm-eval task
names passed through, and bad input."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from reprtools import results
from reprtools.data.overlap import content_sha256
from reprtools.data.tydiqa import heldout_ids
from reprtools.errors import ReprtoolsError
from reprtools.evaluate import EvalOptions, evaluate
from reprtools.measures.qa import f1, squad_f1
from reprtools.train import TrainOptions, train
from reprtools_cli.main import main

NAMES = {"en": "english", "bn": "bengali", "sw": "swahili"}
QUESTIONS = 20


def _tydiqa_dir(root):
    """en and sw with train and dev files, bn with a dev file only (as in the shared data); two gold answers."""
    root.mkdir()
    town = {"en": "town", "bn": "গ্রাম", "sw": "mji"}
    for lang, name in NAMES.items():
        for split in ("dev", "train") if lang != "bn" else ("dev",):
            paras = [{"context": f"{town[lang]} {split}{i} .",
                      "qas": [{"id": f"{name}-{split}{i}-0", "question": f"q {split}{i}?",
                               "answers": [{"text": f"{town[lang]} {split}{i}", "answer_start": 0},
                                           {"text": f"{split}{i}", "answer_start": len(town[lang]) + 1}]}]}
                     for i in range(QUESTIONS)]
            (root / f"{name}_tydiqa_{split}.json").write_text(
                json.dumps({"data": [{"title": "t", "paragraphs": paras}]}, ensure_ascii=False), encoding="utf-8")
    return root


def _xnli_dir(root):
    root.mkdir()
    for lang, (p, h) in {"en": ("A cat {} sat.", "A cat {} is here."),
                         "hi": ("बिल्ली {} बैठी।", "बिल्ली {} यहाँ है।")}.items():
        lines = [f"{p.format(i)}\t{h.format(i)}\t{('entailment', 'neutral', 'contradiction')[i % 3]}\n"
                 for i in range(20)]
        (root / f"dev-{lang}.tsv").write_text("".join(lines), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaltasks")
    tydiqa, xnli = _tydiqa_dir(root / "tydiqa"), _xnli_dir(root / "xnli")
    train(TrainOptions(output_dir=str(root / "qa"), model="tiny-llama", method="lora", data=f"tydiqa:{tydiqa}",
                       lang="bn", ratio=0.5, num_examples=16, max_steps=2, max_length=128, progress=False))
    return root, tydiqa, xnli


@pytest.fixture(scope="module")
def tydiqa_scores(setup):
    root, tydiqa, _ = setup
    return evaluate(EvalOptions(checkpoints=[str(root / "qa")], task="tydiqa", data=str(tydiqa), langs="en,bn,sw",
                                output_dir=str(root / "ty"), bootstrap=200, progress=False))


def _items(res, name, lang):
    path = res.output_dir / "items" / name / f"{lang}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_tydiqa_rows_are_means_of_items_with_every_gold_answer(tydiqa_scores):
    df = results.read_results(tydiqa_scores.scores_csv)
    assert set(df["metric"]) == {"exact_match", "f1", "squad_f1"} and (df["task"] == "tydiqa").all()
    assert (df["format"] == "instruct").all() and df["chance"].isna().all()
    for row in df[~df["lang"].str.contains("+", regex=False)].itertuples():
        items = _items(tydiqa_scores, row.checkpoint, row.lang)
        for it in items:
            assert len(it["answers"]) == 2  # both gold answers, not just the first
            assert it["f1"] == pytest.approx(f1(it["prediction"], it["answers"], row.lang))
            assert it["squad_f1"] == pytest.approx(squad_f1(it["prediction"], it["answers"]))
        assert row.value == pytest.approx(np.mean([it[row.metric] for it in items]))
        assert row.n == len(items) and row.ci_low <= row.value <= row.ci_high


def test_tydiqa_non_english_mean_and_roles(tydiqa_scores):
    df = tydiqa_scores.scores
    mean = df[df["lang"] == "bn+sw"]
    assert len(mean) == 2 * 3  # base and the run, three metrics
    for row in mean.itertuples():
        per = df[(df["checkpoint"] == row.checkpoint) & (df["metric"] == row.metric) & df["lang"].isin(["bn", "sw"])]
        assert row.value == pytest.approx(per["value"].mean()) and row.n == per["n"].sum()
        assert row.ci_low <= row.value <= row.ci_high
    run = df[df["checkpoint"] == "qa"].drop_duplicates("lang").set_index("lang")["role"]
    assert run["bn"] == "transfer" and run["en"] == "retention" and run["sw"] == "other" and run["bn+sw"] == "mean"


def test_tydiqa_scores_only_heldout_questions(tydiqa_scores):
    bn = {it["id"] for it in _items(tydiqa_scores, "base", "bn")}
    assert bn == heldout_ids([f"bengali-dev{i}-0" for i in range(QUESTIONS)])  # bn has no train file: split
    en = {it["id"] for it in _items(tydiqa_scores, "base", "en")}
    assert en == {f"english-dev{i}-0" for i in range(QUESTIONS)}  # en has a train file: the whole dev file
    info = json.loads((tydiqa_scores.output_dir / "eval.json").read_text(encoding="utf-8"))
    assert info["overlap_check"]["qa"].startswith("no item in training data")
    assert "greedy" in info["protocol"]


def test_tydiqa_harness_format_runs_lm_evals_own_task(setup, tmp_path):
    root, tydiqa, _ = setup
    res = evaluate(EvalOptions(checkpoints=[str(root / "qa")], task="tydiqa", format="harness", data=str(tydiqa),
                               langs="bn", limit=2, output_dir=str(tmp_path / "h"), bootstrap=0, progress=False))
    assert (res.scores["format"] == "harness").all() and list(res.scores["n"].unique()) == [2]
    yaml = next(iter(res.summary["tasks"].values()))["yaml"]
    assert "tydiqa_goldp_bn.yaml" in yaml and "include:" in yaml


def test_overlap_with_training_data_is_refused(setup, tmp_path, capsys):
    root, tydiqa, _ = setup
    tampered = tmp_path / "tampered"
    shutil.copytree(root / "qa", tampered)
    from reprtools.data import load_examples

    held = [ex for ex in load_examples(f"tydiqa:{tydiqa}", langs=["bn"], split="heldout") if ex.lang == "bn"]
    run = json.loads((tampered / "run.json").read_text(encoding="utf-8"))
    run["data"]["content_sha256"].append(content_sha256(held[0]))
    (tampered / "run.json").write_text(json.dumps(run), encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(tampered), "--task", "tydiqa", "--data", str(tydiqa), "--langs", "bn", "-o", str(out), "-q"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err and "training data" in err and held[0].id in err
    assert not out.exists()


def test_a_run_without_content_hashes_is_scored_and_says_so(setup, tmp_path):
    root, tydiqa, _ = setup
    old = tmp_path / "old"
    shutil.copytree(root / "qa", old)
    run = json.loads((old / "run.json").read_text(encoding="utf-8"))
    del run["data"]["content_sha256"]
    (old / "run.json").write_text(json.dumps(run), encoding="utf-8")
    res = evaluate(EvalOptions(checkpoints=[str(old)], task="tydiqa", data=str(tydiqa), langs="sw", limit=1,
                               output_dir=str(tmp_path / "o"), bootstrap=0, progress=False))
    assert res.summary["overlap_check"]["old"].startswith("not recorded")


def test_xnli_harness_matches_the_lm_eval_cli_item_by_item(setup, tmp_path):
    """The acceptance check: the tasks reprtools exported, scored by the `lm_eval` CLI on the same model (base
    and adapter), give the same prediction on every item, hence the same accuracy."""
    from reprtools.checkpoints import read_checkpoint
    from reprtools.models import resolve_model

    root, _, xnli = setup
    res = evaluate(EvalOptions(checkpoints=[str(root / "qa")], task="xnli", format="harness", data=str(xnli),
                               langs="en,hi", output_dir=str(tmp_path / "x"), bootstrap=0, progress=False))
    assert all("include: lm_eval_xnli_" in t["yaml"] for t in res.summary["tasks"].values())
    assert (res.output_dir / "tasks" / "lm_eval_xnli_en.yaml.inc").is_file()  # self-contained: lm-eval's own file
    ck = read_checkpoint(root / "qa")
    base_dir = resolve_model(ck.base).path
    for name, model_args in (("base", f"pretrained={base_dir}"),
                             ("qa", f"pretrained={base_dir},peft={ck.adapter_dir}")):
        out = tmp_path / f"cli-{name}"
        subprocess.run([sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", model_args,
                        "--tasks", ",".join(res.summary["tasks"]), "--include_path", str(res.output_dir / "tasks"),
                        "--device", "cpu", "--batch_size", "8", "--log_samples", "--output_path", str(out)],
                       check=True, capture_output=True, timeout=600)
        for lang in ("en", "hi"):
            task = f"xnli_{lang}_harness_local"
            sample_file = next(out.rglob(f"samples_{task}_*.jsonl"))
            cli = {json.loads(line)["doc"]["id"]: bool(json.loads(line)["acc"])
                   for line in sample_file.read_text(encoding="utf-8").splitlines()}
            ours = {it["id"]: it["correct"] for it in _items(res, name, lang)}
            assert ours == cli
            row = res.scores[(res.scores["checkpoint"] == name) & (res.scores["lang"] == lang)]
            assert float(row["value"].iloc[0]) == pytest.approx(np.mean(list(cli.values())))


@pytest.mark.parametrize("opts, words", [
    ({"task": "tydiqa", "langs": "hi"}, "(hi)"),                          # a language TyDiQA lacks
    ({"task": "tydiqa", "data": None}, "hub"),                           # no --data: the hub's, unreachable
    ({"task": "xnli"}, "xnli"),                                           # TyDiQA files given for XNLI
    ({"task": "no_such_task_anywhere"}, "unknown task"),
    ({"task": "xnli", "format": "harness", "langs": "bn", "data": "XNLI"}, None),
])
def test_bad_input_is_one_line(setup, tmp_path, opts, words):
    root, tydiqa, xnli = setup
    data = {"XNLI": str(xnli), None: None}.get(opts.get("data"), str(tydiqa)) if "data" in opts else str(tydiqa)
    options = {**opts, "data": data}
    with pytest.raises(ReprtoolsError) as exc:
        evaluate(EvalOptions(checkpoints=[str(root / "qa")], output_dir=str(tmp_path / "o"), progress=False,
                             **options))
    message = str(exc.value)
    assert "\n" not in message and (words is None or words in message)
    assert not (tmp_path / "o").exists()


def test_an_lm_eval_task_offline_is_one_line(setup, tmp_path):
    root, _, _ = setup
    with pytest.raises(ReprtoolsError) as exc:
        evaluate(EvalOptions(checkpoints=[str(root / "qa")], task="xnli_{lang}", langs="sw", limit=2,
                             output_dir=str(tmp_path / "o"), progress=False))
    assert "\n" not in str(exc.value) and "hub" in str(exc.value)
    assert not (tmp_path / "o").exists()
