"""The one registry of data sources: spec parsing, what each source provides, recognising plain paths, splits, and
the usage messages generated from it."""

import json

import pytest

from reprtools.data import SOURCES, load_examples, load_parallel
from reprtools.data.sources import EXAMPLES, PARALLEL, resolve, usage
from reprtools.errors import ReprtoolsError


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


def spec_for(source, tmp_path):
    return {"DIR": f"{source.kind}:{tmp_path}", "PATH": f"{source.kind}:{tmp_path / 'x.jsonl'}"}.get(
        source.arg, source.kind)


@pytest.mark.parametrize("purpose", [EXAMPLES, PARALLEL])
def test_every_source_resolves_for_what_it_provides_and_only_that(tmp_path, purpose):
    message = usage(purpose)
    for source in SOURCES:
        spec = spec_for(source, tmp_path)
        if source.provides(purpose):
            assert resolve(spec, purpose)[1] is source
            assert source.usage in message
        else:
            with pytest.raises(ReprtoolsError) as err:
                resolve(spec, purpose)
            assert one_line_error(err).startswith(f"{source.kind} gives ")
            assert message in str(err.value) and source.usage not in message


def test_both_purposes_are_served():
    assert {s.kind for s in SOURCES if s.provides(EXAMPLES)} >= {"demo", "tydiqa", "xnli", "jsonl", "hf:tydiqa",
                                                                  "hf:xnli"}
    assert {s.kind for s in SOURCES if s.provides(PARALLEL)} >= {"demo", "flores200", "text"}
    assert resolve(f"flores:{'/x'}", PARALLEL)[1].kind == "flores200"


def test_plain_directory_is_recognised_for_each_purpose(tmp_path):
    doc = {"data": [{"paragraphs": [{"context": "Nairobi.", "qas": [
        {"id": "q1", "question": "Where?", "answers": [{"text": "Nairobi", "answer_start": 0}]}]}]}]}
    (tmp_path / "english_tydiqa_dev.json").write_text(json.dumps(doc), encoding="utf-8")
    (tmp_path / "en.txt").write_text("one\ntwo\n", encoding="utf-8")
    (tmp_path / "yo.txt").write_text("ọ̀kan\nméjì\n", encoding="utf-8")
    assert load_examples(tmp_path, split="dev").kind == "tydiqa"
    assert load_parallel(tmp_path, "en,yo") == {"en": ["one", "two"], "yo": ["ọ̀kan", "méjì"]}
    (tmp_path / "dev-en.tsv").write_text("p\th\tneutral\n", encoding="utf-8")
    with pytest.raises(ReprtoolsError) as err:
        load_examples(tmp_path)
    assert f"holds tydiqa and xnli data; say which with tydiqa:{tmp_path} or xnli:{tmp_path}" in one_line_error(err)
    assert load_examples(f"xnli:{tmp_path}", split="all").kind == "xnli"


@pytest.mark.parametrize("spec, fragment", [
    ("", "data source must be a non-empty string; use demo, tydiqa:DIR, xnli:DIR, jsonl:PATH, hf:tydiqa or hf:xnli"),
    ("nope:thing", "unknown data source type 'nope:'"),
    ("/no/such/dir", "no such file or directory: /no/such/dir"),
    ("/no/such/file.jsonl", "no such file"),
    ("tydiqa:", "tydiqa: needs a directory after the colon, as in tydiqa:DIR"),
    ("jsonl:", "jsonl: needs a path after the colon, as in jsonl:PATH"),
    ("demo:extra", "demo takes nothing after it; write just demo"),
    ("flores200:/x", "flores200 gives parallel sentences for probing, not training examples"),
    ("text:/x", "text gives parallel sentences for probing, not training examples"),
    ("hf:squad", "unknown hub dataset 'hf:squad'; use hf:tydiqa or hf:xnli"),
])
def test_bad_specs(spec, fragment):
    with pytest.raises(ReprtoolsError) as err:
        load_examples(spec)
    assert fragment in one_line_error(err)


def test_unrecognised_directory_and_file(tmp_path):
    (tmp_path / "notes.md").write_text("x")
    with pytest.raises(ReprtoolsError) as err:
        load_examples(tmp_path)
    assert "holds no data files reprtools knows (TyDiQA-GoldP files" in one_line_error(err)
    with pytest.raises(ReprtoolsError, match="is not a data file or directory"):
        load_examples(tmp_path / "notes.md")
    with pytest.raises(ReprtoolsError, match="unknown hub dataset 'hf:flores'; use hf:tydiqa or hf:xnli"):
        load_examples("hf:flores")
    with pytest.raises(ReprtoolsError, match="the hub gives no parallel sentences"):
        load_parallel("hf:flores", "en")


def test_splits_are_checked_against_what_the_source_declares(tmp_path):
    with pytest.raises(ReprtoolsError) as err:
        load_examples("demo", split="dev")
    assert "split 'dev' applies only to tydiqa, xnli, hf:tydiqa and hf:xnli data; demo data is used whole" in \
        one_line_error(err)
    with pytest.raises(ReprtoolsError, match="unknown tydiqa split 'all'; use train or heldout or dev"):
        load_examples(f"tydiqa:{tmp_path}", split="all")
    with pytest.raises(ReprtoolsError, match="unknown xnli split 'dev'; use train or heldout or all"):
        load_examples(f"xnli:{tmp_path}", split="dev")
    assert len(load_examples("demo", langs="en", split="all")) > 0


def test_languages_are_checked_before_reading(tmp_path):
    with pytest.raises(ReprtoolsError, match="unknown language 'xx'"):
        load_examples("demo", langs="en,xx")
    with pytest.raises(ReprtoolsError, match="unknown language 'klingon2'"):
        load_parallel("demo", "klingon2")
