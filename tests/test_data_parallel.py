"""Parallel sentences for probing: text folders, FLORES layout, demo alignment and the content hash."""

import json

import pytest

import reprtools.data.demo as demo_module
from reprtools.data import load_parallel, parallel_sha256
from reprtools.errors import ReprtoolsError


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


@pytest.fixture
def text_dir(tmp_path):
    root = tmp_path / "text"
    root.mkdir()
    write_lines(root / "en.txt", ["one", "two", "three"])
    write_lines(root / "hi.txt", ["एक", "दो", "तीन"])
    return root


def test_text_dir(text_dir):
    expected = {"en": ["one", "two", "three"], "hi": ["एक", "दो", "तीन"]}
    assert load_parallel(f"text:{text_dir}", "en,hi") == expected
    assert load_parallel(str(text_dir), ["hi", "en"]) == {"hi": expected["hi"], "en": expected["en"]}
    assert load_parallel(text_dir, "en,hi", max_sentences=2) == {"en": ["one", "two"], "hi": ["एक", "दो"]}


def test_flores_layouts(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    write_lines(flat / "eng_Latn.devtest", ["a", "b"])
    write_lines(flat / "swh_Latn.devtest", ["A", "B"])
    write_lines(flat / "swh_Latn.dev", ["X"])
    assert load_parallel(f"flores200:{flat}", "en,sw") == {"en": ["a", "b"], "sw": ["A", "B"]}
    nested = tmp_path / "release"
    (nested / "dev").mkdir(parents=True)
    write_lines(nested / "dev" / "eng_Latn.dev", ["a"])
    write_lines(nested / "dev" / "tel_Telu.dev", ["అ"])
    assert load_parallel(f"flores:{nested}", "en,te") == {"en": ["a"], "te": ["అ"]}


def test_text_dir_any_language_any_spelling(tmp_path):
    write_lines(tmp_path / "yo.txt", ["Ẹ kú àárọ̀"])
    write_lines(tmp_path / "ne.txt", ["शुभ प्रभात"])
    write_lines(tmp_path / "swh.txt", ["Habari za asubuhi"])
    write_lines(tmp_path / "Hawaiian.txt", ["Aloha kakahiaka"])
    write_lines(tmp_path / "notes.txt", ["not a language"])
    got = load_parallel(f"text:{tmp_path}", "yor,Nepali,sw,haw")
    assert got == {"yo": ["Ẹ kú àárọ̀"], "ne": ["शुभ प्रभात"], "sw": ["Habari za asubuhi"],
                   "haw": ["Aloha kakahiaka"]}
    write_lines(tmp_path / "sw.txt", ["Habari"])
    with pytest.raises(ReprtoolsError) as err:
        load_parallel(tmp_path, "sw")
    assert "has 2 files for 'sw' (sw.txt, swh.txt); keep one" in str(err.value) and "\n" not in str(err.value)


def test_flores_derived_names_and_other_spellings(tmp_path):
    write_lines(tmp_path / "yor_Latn.devtest", ["a"])  # derived from langcodes: ISO 639-3 + likely script
    write_lines(tmp_path / "npi_Deva.devtest", ["b"])  # FLORES-200 names the individual language
    write_lines(tmp_path / "ekk_Latn.devtest", ["c"])  # FLORES+ renamed est_Latn; found by normalising the name
    assert load_parallel(f"flores200:{tmp_path}", "yo,ne,et") == {"yo": ["a"], "ne": ["b"], "et": ["c"]}
    write_lines(tmp_path / "est_Latn.devtest", ["d"])  # the FLORES-200 name wins
    assert load_parallel(f"flores200:{tmp_path}", "et") == {"et": ["d"]}


def test_hash_is_content_based(text_dir):
    a = load_parallel(text_dir, "en,hi")
    assert parallel_sha256(a) == parallel_sha256({"hi": a["hi"], "en": a["en"]})
    assert parallel_sha256(a) != parallel_sha256({"en": a["en"], "hi": a["hi"][:2] + ["x"]})
    assert len(parallel_sha256(a)) == 64


@pytest.mark.parametrize("setup, langs, fragment", [
    (lambda root: None, "en,te", "no 'te' sentences in text:"),
    (lambda root: write_lines(root / "hi.txt", ["एक", "दो"]), "en,hi", "hi.txt has 2 sentences but"),
    (lambda root: (root / "hi.txt").write_text(""), "en,hi", "hi.txt is empty"),
    (lambda root: write_lines(root / "hi.txt", ["एक", " ", "तीन"]), "en,hi", "hi.txt line 2: empty line"),
    (lambda root: None, "en,xx", "unknown language 'xx'"),
])
def test_text_dir_errors(text_dir, setup, langs, fragment):
    setup(text_dir)
    with pytest.raises(ReprtoolsError) as err:
        load_parallel(f"text:{text_dir}", langs)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_missing_language_lists_files(text_dir):
    with pytest.raises(ReprtoolsError, match=r"files present: en.txt, hi.txt"):
        load_parallel(f"text:{text_dir}", "sw")


def test_flores_missing_language_lists_files(tmp_path):
    write_lines(tmp_path / "eng_Latn.devtest", ["a"])
    pattern = r"no 'bn' sentences .*no ben_Beng.devtest or .dev.*files present: eng_Latn.devtest"
    with pytest.raises(ReprtoolsError, match=pattern):
        load_parallel(f"flores200:{tmp_path}", "en,bn")


@pytest.mark.parametrize("spec, fragment", [
    ("nope:x", "unknown data source type 'nope:'"),
    ("/no/such/dir", "no such file or directory"),
    ("text:/no/such/dir", "no such directory"),
    ("", "non-empty"),
    ("tydiqa:/x", "tydiqa gives training examples, not parallel sentences for probing"),
])
def test_bad_specs(spec, fragment):
    with pytest.raises(ReprtoolsError, match=fragment):
        load_parallel(spec, "en")


def test_bad_max_sentences(text_dir):
    with pytest.raises(ReprtoolsError, match="max_sentences must be a positive integer"):
        load_parallel(text_dir, "en", max_sentences=0)


def test_demo_aligned_by_id(tmp_path, monkeypatch):
    root = tmp_path / "demo"
    root.mkdir()
    rows = {"en": [("demo-002", "two"), ("demo-001", "one")], "hi": [("demo-001", "एक"), ("demo-002", "दो")]}
    for lang, items in rows.items():
        write_lines(root / f"{lang}.jsonl", [json.dumps(
            {"id": i, "lang": lang, "instruction": "Say it.", "input": "", "output": out}, ensure_ascii=False)
            for i, out in items])
    monkeypatch.setattr(demo_module, "demo_dir", lambda: root)
    assert load_parallel("demo", "en,hi") == {"en": ["one", "two"], "hi": ["एक", "दो"]}
    assert load_parallel("demo", "hi", max_sentences=1) == {"hi": ["एक"]}
    write_lines(root / "hi.jsonl", [json.dumps({"id": "demo-001", "lang": "hi", "instruction": "x", "output": "y"})])
    with pytest.raises(ReprtoolsError, match="demo data is not parallel: 'hi' lacks 1 id"):
        load_parallel("demo", "en,hi")


def test_real_demo_parallel_if_present():
    langs = ["en", "hi", "bn", "ur", "sw", "te"]
    if not set(langs) <= set(demo_module.demo_langs()):
        pytest.skip("built-in demo data not (fully) written yet")
    sentences = load_parallel("demo", langs)
    assert len({len(items) for items in sentences.values()}) == 1
    assert len(sentences["en"]) > 0
