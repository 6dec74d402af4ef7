"""No evaluation item a run trained on: TyDiQA's held-out split, content hashes in the mix, and check_heldout."""

import hashlib
import json
import math
import sys
import unicodedata

import pytest

from reprtools.data import Example, load_examples, mix, read_tydiqa
from reprtools.data.overlap import check_heldout, content_sha256, trained_content
from reprtools.data.tydiqa import HOLDOUT, SPLIT_SEED, heldout_ids
from reprtools.errors import ReprtoolsError


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


def qa(qa_id, question, context="Nairobi is the capital of Kenya."):
    return qa_id, {"id": qa_id, "question": question, "answers": [{"text": "Nairobi", "answer_start": 0}]}, context


def write_tydiqa(path, items):
    """A TyDiQA file with one paragraph per (id, qa, context) item, plus an unanswered question."""
    paragraphs = [{"context": context, "qas": [q]} for _, q, context in items]
    paragraphs.append({"context": "x", "qas": [{"id": f"{path.stem}-none", "question": "?", "answers": []}]})
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": paragraphs}]}), encoding="utf-8")


def reference_heldout(ids, share, seed):
    """Independent float64 reference: round half up of share * n, ids ordered by sha256 of 'seed:id'."""
    k = math.floor(share * len(ids) + 0.5 + 1e-9)
    return set(sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())[:k])


BN = [qa(f"bengali-{i}", f"Question {i}?") for i in range(13)]


@pytest.fixture
def tydiqa_dir(tmp_path):
    root = tmp_path / "tydiqa"
    root.mkdir()
    write_tydiqa(root / "bengali_tydiqa_dev.json", BN)
    write_tydiqa(root / "english_tydiqa_train.json", [qa(f"english-t{i}", f"Train {i}?") for i in range(5)])
    # the dev file repeats one train question under another id: it must not count as held out
    write_tydiqa(root / "english_tydiqa_dev.json",
                 [qa(f"english-d{i}", f"Dev {i}?") for i in range(4)] + [qa("english-dup", "Train 2?")])
    return root


def test_dev_only_language_is_split_disjointly(tydiqa_dir):
    train = read_tydiqa(tydiqa_dir, "bn", split="train")
    held = read_tydiqa(tydiqa_dir, "bn", split="heldout")
    dev = read_tydiqa(tydiqa_dir, "bn", split="dev")
    ids = [item[0] for item in BN]
    assert len(held) == 3 and len(train) == 10  # 0.2 * 13 = 2.6 -> 3
    assert {ex.id for ex in held} == reference_heldout(ids, 0.2, 0)
    assert {ex.id for ex in train}.isdisjoint(ex.id for ex in held)
    assert {ex.id for ex in train} | {ex.id for ex in held} == {ex.id for ex in dev} == set(ids)
    assert {content_sha256(ex) for ex in train}.isdisjoint(content_sha256(ex) for ex in held)


def test_split_ignores_file_order_and_the_run_seed(tydiqa_dir, tmp_path):
    other = tmp_path / "reversed"
    other.mkdir()
    write_tydiqa(other / "bengali_tydiqa_dev.json", list(reversed(BN)))
    held = {ex.id for ex in read_tydiqa(tydiqa_dir, "bn", split="heldout")}
    assert {ex.id for ex in read_tydiqa(other, "bn", split="heldout")} == held
    # the split has its own seed: another split seed moves it, but nothing about a run does
    moved = {ex.id for ex in read_tydiqa(tydiqa_dir, "bn", split="heldout", seed=5)}
    assert moved == reference_heldout([item[0] for item in BN], 0.2, 5) and moved != held
    assert (HOLDOUT, SPLIT_SEED) == (0.2, 0)


@pytest.mark.parametrize("n, share, k", [(13, 0.2, 3), (5, 0.5, 3), (10, 0.25, 3), (100, 0.145, 15), (7, 0, 0),
                                         (7, 1, 7), (2, 0.2, 0)])
def test_holdout_rounds_half_up(n, share, k):
    ids = [f"q{i}" for i in range(n)]
    held = heldout_ids(ids, share, 0)
    assert len(held) == k and held == reference_heldout(ids, share, 0)


def test_language_with_a_train_file_holds_out_its_dev_file_less_train_questions(tydiqa_dir):
    assert [ex.id for ex in read_tydiqa(tydiqa_dir, "en", split="train")] == [f"english-t{i}" for i in range(5)]
    held = load_examples(f"tydiqa:{tydiqa_dir}", langs="en", split="heldout")
    assert [ex.id for ex in held] == [f"english-d{i}" for i in range(4)]  # not english-dup
    assert len(read_tydiqa(tydiqa_dir, "en", split="dev")) == 5
    assert [f.path.rsplit("/", 1)[1] for f in held.files] == ["english_tydiqa_dev.json", "english_tydiqa_train.json"]


def test_heldout_dataset_records_its_split(tydiqa_dir):
    held = load_examples(f"tydiqa:{tydiqa_dir}", langs="bn,en", split="heldout", holdout=0.5, seed=3)
    assert held.params == {"langs": ["bn", "en"], "split": "heldout", "holdout": 0.5, "seed": 3}
    assert held.counts() == {"bn": 7, "en": 4}  # 6.5 -> 7
    assert held.manifest()["params"]["holdout"] == 0.5


def test_heldout_errors(tydiqa_dir, tmp_path):
    write_tydiqa(tydiqa_dir / "telugu_tydiqa_dev.json", [qa("telugu-0", "Q?")])
    with pytest.raises(ReprtoolsError) as err:
        read_tydiqa(tydiqa_dir, "te", split="heldout")
    assert "telugu_tydiqa_dev.json: holding out 0.2 of its 1 answered questions leaves none for split 'heldout'" \
        in one_line_error(err)
    write_tydiqa(tmp_path / "swahili_tydiqa_train.json", [qa("sw-0", "Q?")])
    with pytest.raises(ReprtoolsError, match=r"no 'sw' examples .*no swahili_tydiqa_dev.json"):
        read_tydiqa(tmp_path, "sw", split="heldout")
    with pytest.raises(ReprtoolsError, match="holdout must be a number between 0 and 1"):
        read_tydiqa(tydiqa_dir, "bn", split="heldout", holdout=2)


def test_hub_heldout_is_validation_less_train(monkeypatch):
    import types
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)

    def row(qa_id, question):
        return {"id": qa_id, "title": "t", "context": "Nairobi ni mji.", "question": question,
                "answers": {"text": ["Nairobi"], "answer_start": [0]}}

    hub = {"train": [row("swahili-1-0", "Mji?")],
           "validation": [row("swahili-2-0", "Mji?"), row("swahili-3-0", "Nini?")]}
    calls = []
    module = types.ModuleType("datasets")
    module.load_dataset = lambda name, config, split: calls.append(split) or hub[split]
    monkeypatch.setitem(sys.modules, "datasets", module)
    held = load_examples("hf:tydiqa", langs="sw", split="heldout")
    assert [ex.id for ex in held] == ["swahili-3-0"] and calls == ["validation", "train"]
    assert len(load_examples("hf:tydiqa", langs="sw", split="dev")) == 2


def test_shared_tydiqa_split(shared_data):
    root = shared_data / "tydiqa"
    counts = {}
    for lang, dev_n in {"bn": 113, "te": 669}.items():
        train = read_tydiqa(root, lang, split="train")
        held = read_tydiqa(root, lang, split="heldout")
        counts[lang] = (len(train), len(held))
        assert {ex.id for ex in train} | {ex.id for ex in held} == {ex.id for ex in read_tydiqa(root, lang, "dev")}
        assert len(train) + len(held) == dev_n
    assert counts == {"bn": (90, 23), "te": (535, 134)}
    for lang, name in {"en": "english", "sw": "swahili"}.items():
        # held out = the dev file less questions (same passage and question) that the train file also has
        def questions(split):
            doc = json.loads((root / f"{name}_tydiqa_{split}.json").read_text(encoding="utf-8"))
            return {(q["id"], " ".join(p["context"].split()), q["question"].strip())
                    for a in doc["data"] for p in a["paragraphs"] for q in p["qas"] if q["answers"]}
        seen = {(context, question) for _, context, question in questions("train")}
        expected = {qa_id for qa_id, context, question in questions("dev") if (context, question) not in seen}
        held = read_tydiqa(root, lang, split="heldout")
        assert {ex.id for ex in held} == expected and len(held) == {"en": 440, "sw": 496}[lang]


# --- content hashes --------------------------------------------------------------------------------------

def ex(input, instruction="Answer.", output="o", id="x", lang="en"):
    return Example(id, lang, instruction, input, output)


def test_content_sha256_reference_and_normalisation():
    assert content_sha256(ex("Passage: a\nQuestion: b")) == \
        hashlib.sha256("Answer.\nPassage: a Question: b".encode()).hexdigest()[:16]
    cafe = "Caf\u00e9 in Nairobi"
    assert unicodedata.normalize("NFD", cafe) != cafe
    base = content_sha256(ex(cafe))
    assert content_sha256(ex(unicodedata.normalize("NFD", cafe))) == base
    assert content_sha256(ex("  Caf\u00e9 \t in\n\nNairobi ")) == base
    assert content_sha256(ex(cafe, output="another label", id="y", lang="sw")) == base  # relabelled duplicate
    assert content_sha256(ex("Cafe in Nairobi")) != base
    assert content_sha256(ex(cafe, instruction="Translate.")) != base
    assert content_sha256(ex("b c", instruction="a")) != content_sha256(ex("c", instruction="a b"))
    assert len(base) == 16 and int(base, 16) >= 0


def test_mix_records_content_of_exactly_the_chosen_examples():
    data = [ex(f"en text {i}", id=f"en-{i}") for i in range(40)] + \
        [ex(f"sw maandishi {i}", id=f"sw-{i}", lang="sw") for i in range(40)]
    m = mix(data, "sw", 0.25, 20, seed=1)
    recorded = m.to_dict()["content_sha256"]
    chosen = {e.id for e in m.examples}
    assert recorded == sorted(hashlib.sha256(f"Answer.\n{e.input}".encode()).hexdigest()[:16] for e in m.examples)
    assert len(recorded) == 20 and len(chosen) == 20
    unchosen = {content_sha256(e) for e in data if e.id not in chosen}
    assert unchosen.isdisjoint(recorded)
    assert mix(data, "sw", 0.25, 20, seed=2).to_dict()["content_sha256"] != recorded


# --- check_heldout ---------------------------------------------------------------------------------------

def test_check_heldout_refuses_overlap_and_passes_disjoint_items():
    data = [ex(f"sw maandishi {i}", id=f"sw-{i}", lang="sw") for i in range(30)]
    m = mix(data, "sw", 1, 10, seed=0)
    manifest = {"data": m.to_dict()}
    chosen = {e.id for e in m.examples}
    held = [e for e in data if e.id not in chosen]
    assert trained_content(manifest) == {content_sha256(e) for e in m.examples}
    assert check_heldout(held, manifest, "run-a") == 20
    first = m.examples[0]
    relabelled = ex(f"  {first.input} ", output="changed", id="eval-7", lang="sw")
    with pytest.raises(ReprtoolsError) as err:
        check_heldout(held[:4] + [relabelled], manifest, "run-a")
    assert one_line_error(err).startswith("1 of the 5 evaluation items in sw were in run-a's training data "
                                          "(first: eval-7); evaluate on held-out items")
    with pytest.raises(ReprtoolsError, match=r"^10 of the 30 evaluation items in sw"):
        check_heldout(data, manifest, "run-a")


def test_runs_without_content_hashes_and_damaged_manifests():
    assert trained_content({"data": {"ids_sha256": "ab"}}) is None
    assert check_heldout([ex("a")], {"data": {}}, "old-run") == 0
    with pytest.raises(ReprtoolsError, match="data.content_sha256 is not a list"):
        check_heldout([ex("a")], {"data": {"content_sha256": "abc"}}, "bad-run")


def test_tydiqa_train_mix_never_meets_heldout(tydiqa_dir):
    train = load_examples(f"tydiqa:{tydiqa_dir}", langs="en,bn")
    manifest = {"data": mix(train, "bn", 0.5, 10, seed=4).to_dict()}
    held = load_examples(f"tydiqa:{tydiqa_dir}", langs="bn,en", split="heldout")
    assert check_heldout(held, manifest, "run") == len(held) == 7
    with pytest.raises(ReprtoolsError, match="evaluation items in bn, en were in run's training data"):
        check_heldout(load_examples(f"tydiqa:{tydiqa_dir}", langs="bn,en", split="dev"), manifest, "run")


def test_shared_data_runs_never_meet_heldout(shared_data):
    for spec, lang in ((f"tydiqa:{shared_data / 'tydiqa'}", "bn"), (f"xnli:{shared_data / 'xnli'}", "sw")):
        train = load_examples(spec, langs=f"en,{lang}")
        manifest = {"data": mix(train, lang, 0.5, 180, seed=0).to_dict()}
        held = load_examples(spec, langs=f"en,{lang}", split="heldout")
        assert check_heldout(held, manifest, "run") == len(held)
