"""The real files in ../shared/data load as they are (skipped where that folder is absent)."""

import pytest

from reprtools.data import load_examples, load_parallel, mix, read_flores, read_tydiqa, read_xnli
from reprtools.errors import ReprtoolsError


def test_tydiqa_counts_and_answers_in_context(shared_data):
    root = shared_data / "tydiqa"
    train = load_examples(f"tydiqa:{root}")
    # en and sw have train files; bn and te train on their dev files minus the held-out 20%.
    assert train.counts() == {"bn": 90, "en": 3696, "sw": 2755, "te": 535}
    assert {f.lang: f.path.rsplit("/", 1)[1] for f in train.files} == {
        "bn": "bengali_tydiqa_dev.json", "en": "english_tydiqa_train.json",
        "sw": "swahili_tydiqa_train.json", "te": "telugu_tydiqa_dev.json"}
    dev = read_tydiqa(root, split="dev")
    assert {lang: sum(ex.lang == lang for ex in dev) for lang in ("en", "bn", "sw", "te")} == {
        "en": 440, "bn": 113, "sw": 499, "te": 669}
    for ex in list(train) + dev:
        passage = ex.input.split("\nQuestion: ")[0].removeprefix("Passage: ")
        assert ex.output and ex.output in passage, ex.id
    assert len({ex.id for ex in train}) == len(train)


def test_xnli_split_disjoint_and_parallel(shared_data):
    root = shared_data / "xnli"
    every = read_xnli(root, part="all")
    assert {lang: sum(ex.lang == lang for ex in every) for lang in ("en", "hi", "sw", "ur")} == {
        "en": 2490, "hi": 2490, "sw": 2490, "ur": 2490}
    train = read_xnli(root, part="train")
    held = read_xnli(root, part="heldout")
    assert len(train) == 4 * 1992 and len(held) == 4 * 498
    assert {ex.id for ex in train}.isdisjoint(ex.id for ex in held)
    rows = {lang: {ex.id.rsplit("-", 1)[1] for ex in held if ex.lang == lang} for lang in ("en", "hi", "sw", "ur")}
    assert rows["en"] == rows["hi"] == rows["sw"] == rows["ur"]
    for lang in ("hi", "sw", "ur"):  # parallel rows carry the same label in every language
        assert [ex.output for ex in every if ex.lang == lang] == [ex.output for ex in every if ex.lang == "en"]


def test_flores_parallel(shared_data):
    sentences = read_flores(shared_data / "flores200", "en,hi,bn,ur,sw,te")
    assert {lang: len(items) for lang, items in sentences.items()} == dict.fromkeys(
        ["en", "hi", "bn", "ur", "sw", "te"], 1012)
    assert sentences["en"][0].startswith('"We now have 4-month-old mice')
    first = load_parallel(f"flores200:{shared_data / 'flores200'}", "en,te", max_sentences=5)
    assert first["te"] == sentences["te"][:5]
    assert load_parallel(shared_data / "flores200", ["sw"])["sw"] == sentences["sw"]


def test_study_mixes_on_real_data(shared_data):
    xnli = load_examples(f"xnli:{shared_data / 'xnli'}", langs="en,sw")
    m = mix(xnli, "sw", 0.5, 3000)
    assert m.counts == {"en": 1500, "sw": 1500}
    tydiqa = load_examples(f"tydiqa:{shared_data / 'tydiqa'}", langs="en,bn")
    with pytest.raises(ReprtoolsError, match="only 90 'bn' examples available"):
        mix(tydiqa, "bn", 0.1, 3000)
