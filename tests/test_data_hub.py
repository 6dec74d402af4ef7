"""The hf: sources without network: the hub switched off, `datasets` missing, the hub unreachable, and rows from a
fake `datasets` module converted like local files."""

import sys
import types

import pytest

from reprtools.data import Example, load_examples, mix_langs
from reprtools.data.tydiqa import TYDIQA_INSTRUCTION
from reprtools.data.xnli import heldout_rows
from reprtools.errors import ReprtoolsError


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


def fake_datasets(load):
    module = types.ModuleType("datasets")
    module.load_dataset = load
    return module


@pytest.fixture
def online(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("spec, langs, local", [
    ("hf:xnli", mix_langs("hi", 0.1), "download XNLI and use xnli:DIR"),  # what `reprtools train` asks for
    ("hf:xnli", None, "download XNLI and use xnli:DIR"),
    ("hf:tydiqa", "en,sw", "download TyDiQA-GoldP and use tydiqa:DIR"),
])
@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_offline_says_the_hub_is_unreachable(monkeypatch, online, spec, langs, local, var):
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(lambda *a, **k: pytest.fail("must not load")))
    monkeypatch.setenv(var, "1")
    with pytest.raises(ReprtoolsError) as err:
        load_examples(spec, langs=langs)
    assert one_line_error(err) == f"{spec} needs the Hugging Face hub, which is unreachable ({var} is set); {local}"


def test_offline_without_datasets_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # as where `datasets` is not installed
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ReprtoolsError, match="unreachable"):
        load_examples("hf:xnli", langs="en,hi")


def test_without_datasets_package_says_how_to_install(monkeypatch, online):
    monkeypatch.setitem(sys.modules, "datasets", None)
    for spec in ("hf:tydiqa", "hf:xnli"):
        with pytest.raises(ReprtoolsError) as err:
            load_examples(spec, langs="en")
        assert f"{spec} needs the optional 'datasets' package: pip install -e '.[hub]'" in one_line_error(err)


def test_unreachable_hub_and_other_failures(monkeypatch, online):
    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach huggingface.co\nsecond line")

    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(unreachable))
    with pytest.raises(ReprtoolsError) as err:
        load_examples("hf:tydiqa")
    assert one_line_error(err) == ("hf:tydiqa needs the Hugging Face hub, which is unreachable (ConnectionError: "
                                   "Couldn't reach huggingface.co); download TyDiQA-GoldP and use tydiqa:DIR")

    class DatasetNotFoundError(Exception):
        pass

    def renamed(*args, **kwargs):
        raise DatasetNotFoundError("Dataset 'facebook/xnli' doesn't exist on the Hub")

    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(renamed))
    with pytest.raises(ReprtoolsError) as err:
        load_examples("hf:xnli", langs="en")
    assert one_line_error(err).startswith("could not load facebook/xnli (en, validation) from the Hugging Face hub "
                                          "(DatasetNotFoundError: Dataset 'facebook/xnli' doesn't exist")


def hub_rows(calls):
    def load(name, config, split):
        calls.append((name, config, split))
        if name == "google-research-datasets/tydiqa":
            return [
                {"id": "swahili-1-0", "title": "t", "context": "Nairobi ni mji.", "question": "Mji? ",
                 "answers": {"text": ["Nairobi"], "answer_start": [0]}},
                {"id": "arabic-2-0", "title": "t", "context": "c", "question": "q",
                 "answers": {"text": ["c"], "answer_start": [0]}},
            ]
        return [{"premise": f"{config} p{i}", "hypothesis": f"h{i}", "label": i % 3} for i in range(10)]
    return load


def test_hub_rows_convert_like_local_files(monkeypatch, online):
    calls = []
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(hub_rows(calls)))
    tydiqa = load_examples("hf:tydiqa", langs="swh", split="dev")
    assert calls == [("google-research-datasets/tydiqa", "secondary_task", "validation")]
    assert list(tydiqa) == [Example("swahili-1-0", "sw", TYDIQA_INSTRUCTION,
                                    "Passage: Nairobi ni mji.\nQuestion: Mji?", "Nairobi")]
    assert tydiqa.files[0].path == "hf://google-research-datasets/tydiqa/secondary_task/validation"
    xnli = load_examples("hf:xnli", langs="en,hin", split="heldout", holdout=0.2)
    assert xnli.counts() == {"en": 2, "hi": 2}
    assert {ex.id.rsplit("-", 1)[1] for ex in xnli} == {str(r) for r in heldout_rows(10, 0.2)}
    assert xnli[0].output == ["entailment", "neutral", "contradiction"][int(xnli[0].id.rsplit("-", 1)[1]) % 3]


def test_train_languages_reach_the_hub_loader(monkeypatch, online):
    """`reprtools train --data hf:xnli --lang hi` loads exactly the languages the mix uses."""
    calls = []
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(hub_rows(calls)))
    assert load_examples("hf:xnli", langs=mix_langs("hi", 0.1)).counts() == {"en": 8, "hi": 8}
    assert [config for _, config, _ in calls] == ["en", "hi"]
    calls.clear()
    load_examples("hf:xnli", langs=mix_langs("hi", 0))  # an English-only run needs no Hindi
    assert [config for _, config, _ in calls] == ["en"]


def test_hub_language_errors(monkeypatch, online):
    monkeypatch.setitem(sys.modules, "datasets", fake_datasets(hub_rows([])))
    with pytest.raises(ReprtoolsError) as err:
        load_examples("hf:xnli")
    assert "hf:xnli loads one XNLI language at a time, so name the languages" in one_line_error(err)
    with pytest.raises(ReprtoolsError, match="XNLI has no 'bn'; XNLI languages: ar, bg"):
        load_examples("hf:xnli", langs="bn")
    with pytest.raises(ReprtoolsError, match=r"TyDiQA has no Hindi \(hi\)"):
        load_examples("hf:tydiqa", langs="hi")
    with pytest.raises(ReprtoolsError, match="no 'te' examples in hf:tydiqa split 'train'; languages present: ar"):
        load_examples("hf:tydiqa", langs="ar,te")

