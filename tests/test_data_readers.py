"""Readers on small temporary files: JSONL, TyDiQA, XNLI, demo, and the datasets load_examples makes of them."""

import json

import pytest

import reprtools.data.demo as demo_module
from reprtools.data import Dataset, Example, load_examples, read_demo, read_jsonl, read_tydiqa, read_xnli
from reprtools.data.demo import demo_langs, read_demo_raw
from reprtools.data.tydiqa import TYDIQA_INSTRUCTION, tydiqa_files
from reprtools.data.xnli import XNLI_INSTRUCTION, heldout_rows, xnli_files
from reprtools.errors import ReprtoolsError


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


GOOD = {"id": "a1", "lang": "en", "instruction": "Say hi.", "input": "", "output": "hi"}


# --- JSONL -----------------------------------------------------------------------------------------------

def test_read_jsonl_defaults_and_blank_lines(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [
        GOOD,
        "",
        {"lang": "hi", "instruction": "Translate.", "output": "नमस्ते"},
    ])
    examples = read_jsonl(path)
    assert examples == [
        Example("a1", "en", "Say hi.", "", "hi"),
        Example("data-3", "hi", "Translate.", "", "नमस्ते"),
    ]


@pytest.mark.parametrize("line, fragment", [
    ('{"lang": "en", "instruction": "x", "output": "y"', "not valid JSON"),
    ('["not", "an", "object"]', "expected a JSON object, got an array"),
    ('{"lang": "en", "instruction": "x"}', "missing key 'output'"),
    ('{"lang": "en", "instruction": "", "output": "y"}', "'instruction' is empty"),
    ('{"lang": "en", "instruction": "x", "output": 5}', "'output' must be a string, got a number"),
    ('{"lang": "en", "instruction": "x", "input": null, "output": "y"}', "'input' must be a string, got null"),
    ('{"lang": "xx", "instruction": "x", "output": "y"}', "unknown language 'xx'; give an ISO 639 code"),
    ('{"id": "a1", "lang": "en", "instruction": "x", "output": "y"}', "id 'a1' was already used on line 1"),
    ('{"id": " ", "lang": "en", "instruction": "x", "output": "y"}', "'id' is empty"),
])
def test_read_jsonl_malformed_line_names_file_and_line(tmp_path, line, fragment):
    path = write_jsonl(tmp_path / "data.jsonl", [GOOD, "", line])
    with pytest.raises(ReprtoolsError) as err:
        read_jsonl(path)
    message = one_line_error(err)
    assert "data.jsonl line 3:" in message
    assert fragment in message


def test_read_jsonl_missing_empty_and_not_utf8(tmp_path):
    with pytest.raises(ReprtoolsError, match="no such file"):
        read_jsonl(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(ReprtoolsError, match="holds no examples"):
        read_jsonl(tmp_path / "empty.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes('{"x": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(ReprtoolsError, match="not UTF-8"):
        read_jsonl(tmp_path / "latin1.jsonl")
    with pytest.raises(ReprtoolsError, match="is a directory"):
        read_jsonl(tmp_path)


def test_read_jsonl_accepts_any_language_and_stores_its_canonical_code(tmp_path):
    path = write_jsonl(tmp_path / "many.jsonl", [
        {**GOOD, "id": "a", "lang": "swh"}, {**GOOD, "id": "b", "lang": "Yoruba"},
        {**GOOD, "id": "c", "lang": "npi"}, {**GOOD, "id": "d", "lang": "haw"}, {**GOOD, "id": "e", "lang": "sw"}])
    assert [ex.lang for ex in read_jsonl(path)] == ["sw", "yo", "ne", "haw", "sw"]
    data = load_examples(path, langs="swh_Latn,yor")
    assert data.counts() == {"sw": 2, "yo": 1} and data.params == {"langs": ["sw", "yo"]}


# --- TyDiQA ----------------------------------------------------------------------------------------------

def tydiqa_doc(prefix, n, context="The capital of Kenya is Nairobi."):
    qas = [{"id": f"{prefix}-{i}", "question": f" Question {i}? ",
            "answers": [{"text": "Nairobi", "answer_start": context.index("Nairobi")}]} for i in range(n)]
    qas.append({"id": f"{prefix}-unanswered", "question": "?", "answers": []})
    return {"data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}


@pytest.fixture
def tydiqa_dir(tmp_path):
    root = tmp_path / "tydiqa"
    root.mkdir()
    for name, split, n in [("english", "train", 3), ("english", "dev", 2), ("swahili", "dev", 2),
                           ("telugu", "dev", 1)]:
        (root / f"{name}_tydiqa_{split}.json").write_text(json.dumps(tydiqa_doc(f"{name}-{split}", n)))
    (root / "README.md").write_text("not data")
    return root


def test_read_tydiqa_train_falls_back_to_dev(tydiqa_dir):
    files = tydiqa_files(tydiqa_dir, "en,sw")
    assert {code: p.name for code, p in files.items()} == {
        "en": "english_tydiqa_train.json", "sw": "swahili_tydiqa_dev.json"}
    examples = read_tydiqa(tydiqa_dir, "en,sw")
    assert [ex.id for ex in examples] == ["english-train-0", "english-train-1", "english-train-2",
                                          "swahili-dev-0", "swahili-dev-1"]
    first = examples[0]
    assert first.lang == "en" and first.output == "Nairobi" and first.instruction == TYDIQA_INSTRUCTION
    assert first.input == "Passage: The capital of Kenya is Nairobi.\nQuestion: Question 0?"


def test_read_tydiqa_all_languages_and_dev_split(tydiqa_dir):
    assert sorted({ex.lang for ex in read_tydiqa(tydiqa_dir)}) == ["en", "sw", "te"]
    dev = read_tydiqa(tydiqa_dir, split="dev")
    assert [ex.id for ex in dev if ex.lang == "en"] == ["english-dev-0", "english-dev-1"]


def test_read_tydiqa_errors(tydiqa_dir, tmp_path):
    with pytest.raises(ReprtoolsError) as err:
        read_tydiqa(tydiqa_dir, "bn")
    assert "no 'bn' examples" in one_line_error(err)
    assert "languages present for split 'train': en, sw, te" in str(err.value)
    with pytest.raises(ReprtoolsError, match="TyDiQA has no Hindi"):
        read_tydiqa(tydiqa_dir, "hi")
    with pytest.raises(ReprtoolsError, match="unknown TyDiQA split 'test'"):
        read_tydiqa(tydiqa_dir, split="test")
    with pytest.raises(ReprtoolsError, match="no such directory"):
        read_tydiqa(tmp_path / "missing")
    with pytest.raises(ReprtoolsError, match=r"no \*_tydiqa_train.json files"):
        read_tydiqa(tmp_path)


@pytest.mark.parametrize("content, fragment", [
    ('{"data": [', "not valid JSON"),
    ('{"version": 1}', "top level has no 'data'"),
    ('{"data": [{"paragraphs": [{"qas": []}]}]}', "data[0].paragraphs[0] has no 'context'"),
    ('{"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "x", "answers": []}]}]}]}',
     "data[0].paragraphs[0].qas[0] has no 'question'"),
    ('{"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "x", "question": "q", "answers": "c"}]}]}]}',
     "qas[0].answers should be a list"),
    ('{"data": [{"paragraphs": [{"context": "c", "qas": []}]}]}', "holds no answered questions"),
])
def test_read_tydiqa_malformed_file(tmp_path, content, fragment):
    (tmp_path / "bengali_tydiqa_dev.json").write_text(content)
    with pytest.raises(ReprtoolsError) as err:
        read_tydiqa(tmp_path, "bn")
    message = one_line_error(err)
    assert "bengali_tydiqa_dev.json" in message and fragment in message


# --- XNLI ------------------------------------------------------------------------------------------------

LABEL_WORDS = ["entailment", "neutral", "contradiction"]


def write_xnli(root, lang, n, prefix="dev", crlf=False):
    end = "\r\n" if crlf else "\n"
    rows = [f'{lang} "premise" {i}\t{lang} hypothesis {i}\t{LABEL_WORDS[i % 3]}' for i in range(n)]
    (root / f"{prefix}-{lang}.tsv").write_bytes((end.join(rows) + end).encode("utf-8"))


@pytest.fixture
def xnli_dir(tmp_path):
    root = tmp_path / "xnli"
    root.mkdir()
    write_xnli(root, "en", 20)
    write_xnli(root, "sw", 20, crlf=True)
    return root


def test_read_xnli_split_is_disjoint_parallel_and_seeded(xnli_dir):
    train = read_xnli(xnli_dir, part="train")
    held = read_xnli(xnli_dir, part="heldout")
    every = read_xnli(xnli_dir, part="all")
    assert len(every) == 40 and len(held) == 8 and len(train) == 32
    assert {ex.id for ex in train}.isdisjoint(ex.id for ex in held)
    rows = {lang: {ex.id.rsplit("-", 1)[1] for ex in held if ex.lang == lang} for lang in ("en", "sw")}
    assert rows["en"] == rows["sw"] == {str(r) for r in heldout_rows(20, 0.2, 0)}
    assert {ex.id for ex in read_xnli(xnli_dir, part="heldout", seed=1)} != {ex.id for ex in held}
    assert {ex.id for ex in read_xnli(xnli_dir, part="heldout")} == {ex.id for ex in held}
    ex = every[0]
    assert ex == Example("xnli-en-0", "en", XNLI_INSTRUCTION, 'Premise: en "premise" 0\nHypothesis: en hypothesis 0',
                         "entailment")
    assert every[20].output == "entailment" and every[20].id == "xnli-sw-0"  # CRLF stripped


def test_heldout_rows_rounding():
    assert len(heldout_rows(2490, 0.2)) == 498
    assert len(heldout_rows(5, 0.5)) == 3  # 2.5 rounds up
    assert heldout_rows(10, 0.0) == set()
    with pytest.raises(ReprtoolsError, match="holdout must be a number between 0 and 1"):
        heldout_rows(10, 1.5)


def test_read_xnli_prefers_real_train_files(xnli_dir):
    write_xnli(xnli_dir, "en", 7, prefix="train")
    write_xnli(xnli_dir, "sw", 7, prefix="train")
    assert {code: sorted(files) for code, files in xnli_files(xnli_dir, part="train").items()} == {
        "en": ["train"], "sw": ["train"]}
    train = read_xnli(xnli_dir, part="train")
    assert len(train) == 14 and train[0].id == "xnli-en-train-0"
    held = read_xnli(xnli_dir, part="heldout")
    assert len(held) == 40 and held[0].id == "xnli-en-0"
    assert len(read_xnli(xnli_dir, part="all")) == 54


@pytest.mark.parametrize("line, fragment", [
    ("only\ttwo", "expected 3 tab-separated columns (premise, hypothesis, label), found 2"),
    ("p\th\tmaybe", "unknown label 'maybe'"),
    ("\th\tneutral", "empty premise or hypothesis"),
])
def test_read_xnli_malformed_row_names_file_and_line(xnli_dir, line, fragment):
    path = xnli_dir / "dev-en.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.insert(4, line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ReprtoolsError) as err:
        read_xnli(xnli_dir, "en")
    message = one_line_error(err)
    assert "dev-en.tsv line 5:" in message and fragment in message


def test_read_xnli_header_and_contradictory_accepted(tmp_path):
    (tmp_path / "dev-hi.tsv").write_text("premise\thypothesis\tlabel\na\tb\tcontradictory\n", encoding="utf-8")
    assert read_xnli(tmp_path, part="all") == [
        Example("xnli-hi-0", "hi", XNLI_INSTRUCTION, "Premise: a\nHypothesis: b", "contradiction")]


def test_read_xnli_errors(xnli_dir, tmp_path):
    write_xnli(xnli_dir, "ur", 19)
    with pytest.raises(ReprtoolsError) as err:
        read_xnli(xnli_dir)
    assert "dev-ur.tsv has 19 rows but" in one_line_error(err) and "must be parallel" in str(err.value)
    with pytest.raises(ReprtoolsError) as err:
        read_xnli(xnli_dir, "te")
    assert "no 'te' examples" in one_line_error(err) and "languages present: en, sw, ur" in str(err.value)
    with pytest.raises(ReprtoolsError, match="unknown XNLI part 'dev'"):
        read_xnli(xnli_dir, part="dev")
    with pytest.raises(ReprtoolsError, match="is empty"):
        read_xnli(xnli_dir, "en", part="heldout", holdout=0)
    with pytest.raises(ReprtoolsError, match="no dev-"):
        read_xnli(tmp_path / "xnli" / "..")  # the parent holds no TSV files
    with pytest.raises(ReprtoolsError, match="no such directory"):
        read_xnli(tmp_path / "missing")


def test_xnli_files_named_by_any_spelling(tmp_path):
    write_xnli(tmp_path, "swh", 4)
    write_xnli(tmp_path, "yo", 4)
    assert sorted(xnli_files(tmp_path)) == ["sw", "yo"]
    assert load_examples(f"xnli:{tmp_path}", langs="sw", split="all").counts() == {"sw": 4}
    write_xnli(tmp_path, "sw", 4)
    with pytest.raises(ReprtoolsError) as err:
        xnli_files(tmp_path)
    assert "has two dev files for 'sw' (dev-sw.tsv, dev-swh.tsv); keep one" in one_line_error(err)


# --- demo ------------------------------------------------------------------------------------------------

def fake_demo(root, langs=("en", "hi"), n=3):
    root.mkdir(exist_ok=True)
    for lang in langs:
        write_jsonl(root / f"{lang}.jsonl", [
            {"id": f"demo-{i:03d}", "lang": lang, "instruction": "Translate.", "input": "", "output": f"{lang} {i}"}
            for i in range(1, n + 1)])
    return root


def test_read_demo_from_temp_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_module, "demo_dir", lambda: fake_demo(tmp_path / "demo"))
    assert demo_langs() == ["en", "hi"]
    examples = read_demo()
    assert [ex.id for ex in examples] == ["demo-001-en", "demo-002-en", "demo-003-en",
                                          "demo-001-hi", "demo-002-hi", "demo-003-hi"]
    assert [ex.id for ex in read_demo_raw("hi")["hi"]] == ["demo-001", "demo-002", "demo-003"]
    with pytest.raises(ReprtoolsError, match="no 'te' examples in the demo data; languages present: en, hi"):
        read_demo("te")
    dataset = load_examples("demo", langs="hi")
    assert dataset.kind == "demo" and dataset.counts() == {"hi": 3}
    assert [f.lang for f in dataset.files] == ["hi"] and len(dataset.files[0].sha256) == 64


def test_read_demo_lang_mismatch_and_missing(tmp_path, monkeypatch):
    root = fake_demo(tmp_path / "demo")
    write_jsonl(root / "hi.jsonl", [{"lang": "en", "instruction": "x", "output": "y"}])
    monkeypatch.setattr(demo_module, "demo_dir", lambda: root)
    with pytest.raises(ReprtoolsError, match="hi.jsonl line 1: lang is 'en' but this file holds 'hi'"):
        read_demo()
    monkeypatch.setattr(demo_module, "demo_dir", lambda: tmp_path / "nothing")
    with pytest.raises(ReprtoolsError, match="no built-in demo data"):
        read_demo()


def test_real_demo_files_are_well_formed():
    langs = demo_langs()
    if not langs:
        pytest.skip("built-in demo data not written yet")
    examples = read_demo()
    assert {ex.lang for ex in examples} == set(langs)
    assert len({ex.id for ex in examples}) == len(examples)
    raw = read_demo_raw()
    assert all(ex.id.startswith("demo-") for items in raw.values() for ex in items)


# --- load_examples ---------------------------------------------------------------------------------------

def test_load_examples_dispatch(tmp_path, tydiqa_dir, xnli_dir):
    tydiqa = load_examples(f"tydiqa:{tydiqa_dir}", langs="en,te")
    assert isinstance(tydiqa, Dataset) and tydiqa.kind == "tydiqa"
    assert tydiqa.counts() == {"en": 3, "te": 1} and tydiqa.params == {"langs": ["en", "te"], "split": "train",
                                                                   "holdout": 0.2, "seed": 0}
    assert [f.path.rsplit("/", 1)[1] for f in tydiqa.files] == ["english_tydiqa_train.json",
                                                                 "telugu_tydiqa_dev.json"]
    assert load_examples(str(tydiqa_dir), split="dev").counts() == {"en": 2, "sw": 2, "te": 1}

    xnli = load_examples(f"xnli:{xnli_dir}", split="heldout", holdout=0.5, seed=3)
    assert xnli.kind == "xnli" and xnli.counts() == {"en": 10, "sw": 10}
    assert xnli.params == {"langs": ["en", "sw"], "split": "heldout", "holdout": 0.5, "seed": 3}
    assert load_examples(xnli_dir).counts() == {"en": 16, "sw": 16}

    path = write_jsonl(tmp_path / "mine.jsonl", [GOOD, {**GOOD, "id": "b", "lang": "sw"}])
    for spec in (str(path), f"jsonl:{path}", path):
        data = load_examples(spec)
        assert data.kind == "jsonl" and len(data) == 2 and list(data)[0].id == "a1"
    assert load_examples(path, langs="sw").counts() == {"sw": 1}
    manifest = load_examples(path).manifest()
    assert manifest["num_examples"] == 2 and manifest["files"][0]["sha256"] and len(manifest["ids_sha256"]) == 64


def test_load_examples_whole_sources_and_missing_languages(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD])
    with pytest.raises(ReprtoolsError) as err:
        load_examples(path, split="heldout")
    assert "split 'heldout' applies only to tydiqa, xnli, hf:tydiqa and hf:xnli data" in one_line_error(err)
    with pytest.raises(ReprtoolsError, match="no 'hi' examples in .*languages present: en"):
        load_examples(path, langs="hi")
