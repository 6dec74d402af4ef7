"""Read TyDiQA-GoldP (SQuAD-style JSON, one file per language and split) into :class:`Example` records.

Files are named ``{language}_tydiqa_{split}.json`` (``english_tydiqa_train.json``, ``bengali_tydiqa_dev.json``);
each holds ``data[].paragraphs[].{context, qas[].{id, question, answers[].{text, answer_start}}}``.
One example per question: the passage and question as input, the first answer as output, the TyDiQA question
id as id.  Questions without an answer are skipped.

Which questions make up each ``split`` of a language:

* ``"train"``: the train file; for a language with only a dev file (in the shared data: Bengali, Telugu), the
  dev file *minus* its held-out part (and minus any question repeating a held-out one under another id).
* ``"heldout"``: for a dev-only language, the held-out part of the dev file: the ``holdout`` share of its
  answered questions (:data:`HOLDOUT`, rounded half up), those whose ``sha256(f"{seed}:{question id}")`` sorts
  first (:data:`SPLIT_SEED`).  The split depends only on the ids, the share and the split seed -- not on the
  file's order and never on a run's ``--seed`` -- so every run of a study trains on the same pool and the same
  questions stay out of it.  For a language with a train file, the dev file less any question whose passage and
  question also occur in the train file (same :func:`~reprtools.data.overlap.content_sha256`; the shared
  Swahili files share 3 such questions, 2 even under the same id).
* ``"dev"``: the whole dev file.  For a dev-only language this *includes training items*; evaluate on
  ``"heldout"``.

This mirrors :mod:`reprtools.data.xnli`, whose dev file is split the same way (by row there, by question id here).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import NamedTuple

from reprtools.data.files import check_dir, read_text
from reprtools.data.hub import check_hub, hub_load
from reprtools.data.overlap import content_sha256
from reprtools.data.records import Dataset, Example, SourceFile, check_present
from reprtools.data.xnli import check_holdout
from reprtools.errors import ReprtoolsError
from reprtools.languages import TYDIQA_NAMES, parse_langs, tydiqa_name

#: The dataset on the Hugging Face hub (name, config) for ``hf:tydiqa``.
HF_TYDIQA = ("google-research-datasets/tydiqa", "secondary_task")
_LOCAL = "download TyDiQA-GoldP and use tydiqa:DIR"

#: The instruction of every TyDiQA example (always English, whatever the passage language).
TYDIQA_INSTRUCTION = "Answer the question using a short span copied from the passage."

SPLITS = ("train", "heldout", "dev")
#: Share of a dev-only language's questions held out of ``"train"`` (rounded half up).
HOLDOUT = 0.2
#: The seed of that split: the study's own, fixed, and not a run's ``--seed``.
SPLIT_SEED = 0
_FILE_RE = re.compile(r"^([a-z]+)_tydiqa_(train|dev)\.json$")


def tydiqa_example(qa_id: str, lang: str, context: str, question: str, answer: str) -> Example:
    """The :class:`Example` for one TyDiQA question."""
    return Example(
        id=qa_id,
        lang=lang,
        instruction=TYDIQA_INSTRUCTION,
        input=f"Passage: {context}\nQuestion: {question}",
        output=answer,
    )


def check_split(split: str) -> None:
    """Raise :class:`ReprtoolsError` unless ``split`` is one of :data:`SPLITS`."""
    if split not in SPLITS:
        raise ReprtoolsError(f"unknown TyDiQA split {split!r}; use 'train', 'heldout' or 'dev'")


def heldout_ids(ids: list[str], holdout: float = HOLDOUT, seed: int = SPLIT_SEED) -> set[str]:
    """The question ids held out of ``ids``: ``floor(holdout * len(ids) + 0.5)`` of them, those whose
    ``sha256(f"{seed}:{id}")`` sorts first (the product rounded to 9 decimals first, so float noise cannot move
    a half)."""
    check_holdout(holdout)
    k = int(math.floor(round(holdout * len(ids), 9) + 0.5))
    order = sorted(ids, key=lambda qa_id: hashlib.sha256(f"{seed}:{qa_id}".encode("utf-8")).digest())
    return set(order[:k])


def tydiqa_files(directory: str | os.PathLike, langs=None, split: str = "train") -> dict[str, Path]:
    """Which file each language is read from: ``{iso code: path}``.

    ``split="train"`` uses ``{name}_tydiqa_train.json`` and falls back to (the training part of)
    ``{name}_tydiqa_dev.json`` for a language without a train file (the returned path shows which was used);
    ``"heldout"`` and ``"dev"`` use dev files.  ``langs=None`` means every TyDiQA language with a usable file,
    in ISO-code order.
    """
    return {code: chosen.path for code, chosen in _plan(directory, langs, split).items()}


class _Choice(NamedTuple):
    path: Path  # the file read
    part: str  # the part of it used: "all", "train" or "heldout" (see :func:`read_tydiqa_part`)
    unseen_in: Path | None = None  # a train file whose questions are dropped from it


def _plan(directory, langs, split: str) -> dict[str, _Choice]:
    """What each language's examples of ``split`` are read from (see the module docstring)."""
    check_split(split)
    root = check_dir(directory, "tydiqa:", "*_tydiqa_*.json")
    found: dict[str, dict[str, Path]] = {}  # iso code -> {split: path}
    for path in sorted(root.iterdir()):
        match = _FILE_RE.match(path.name)
        if match and match.group(1) in TYDIQA_NAMES and path.is_file():
            found.setdefault(TYDIQA_NAMES[match.group(1)], {})[match.group(2)] = path

    def pick(code: str) -> _Choice | None:
        have = found.get(code, {})
        if split == "train" and "train" in have:
            return _Choice(have["train"], "all")
        if "dev" not in have:
            return None
        if split == "dev":
            return _Choice(have["dev"], "all")
        if "train" in have:  # split "heldout"
            return _Choice(have["dev"], "all", have["train"])
        return _Choice(have["dev"], split)  # a dev-only language: its train or held-out part

    usable = {code: chosen for code in sorted(found) if (chosen := pick(code)) is not None}
    if langs is None:
        if not usable:
            file = "train" if split == "train" else "dev"
            raise ReprtoolsError(
                f"no *_tydiqa_{file}.json files in {root}; expected files such as english_tydiqa_{file}.json"
            )
        return usable
    result: dict[str, _Choice] = {}
    for code in parse_langs(langs):
        name = tydiqa_name(code)
        if code not in usable:
            wanted = f"{name}_tydiqa_train.json or {name}_tydiqa_dev.json" if split == "train" \
                else f"{name}_tydiqa_dev.json"
            present = ", ".join(usable) or "none"
            raise ReprtoolsError(
                f"no {code!r} examples in tydiqa:{root} (no {wanted}); languages present for split "
                f"{split!r}: {present}"
            )
        result[code] = usable[code]
    return result


def read_tydiqa_part(path: str | os.PathLike, lang: str, part: str = "all", holdout: float = HOLDOUT,
                     seed: int = SPLIT_SEED, unseen_in: str | os.PathLike | None = None) -> list[Example]:
    """The questions of one file in ``part``: ``"all"``, the ``"heldout"`` side of :func:`heldout_ids`, or the
    ``"train"`` side less any question with the content of a held-out one; first dropping those whose content is
    also in the file ``unseen_in``, if given.  A part left empty raises :class:`ReprtoolsError`."""
    examples = read_tydiqa_file(path, lang)
    if unseen_in is not None:
        examples = unseen(examples, read_tydiqa_file(unseen_in, lang))
    if part == "all":
        return examples
    held = heldout_ids([ex.id for ex in examples], holdout, seed)
    kept = [ex for ex in examples if ex.id in held]
    if part == "train":  # a question repeated under another id stays out of training too
        kept = unseen([ex for ex in examples if ex.id not in held], kept)
    if not kept:
        raise ReprtoolsError(
            f"{path}: holding out {holdout} of its {len(examples)} answered questions leaves none for split "
            f"{part!r}; use a holdout between 0 and 1 that keeps some on each side"
        )
    return kept


def unseen(examples: list[Example], train: list[Example]) -> list[Example]:
    """``examples`` less those with the :func:`~reprtools.data.overlap.content_sha256` of one in ``train``."""
    seen = {content_sha256(ex) for ex in train}
    return [ex for ex in examples if content_sha256(ex) not in seen]


def read_tydiqa_file(path: str | os.PathLike, lang: str) -> list[Example]:
    """Read one TyDiQA JSON file whose questions are all in ``lang``."""
    p = Path(path)
    try:
        doc = json.loads(read_text(p))
    except json.JSONDecodeError as exc:
        raise ReprtoolsError(
            f"{p}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); expected SQuAD-style "
            "TyDiQA JSON"
        ) from None
    examples: list[Example] = []
    for i, article in enumerate(_get(doc, "data", list, p, "top level")):
        for j, paragraph in enumerate(_get(article, "paragraphs", list, p, f"data[{i}]")):
            where = f"data[{i}].paragraphs[{j}]"
            context = _get(paragraph, "context", str, p, where)
            for k, qa in enumerate(_get(paragraph, "qas", list, p, where)):
                qwhere = f"{where}.qas[{k}]"
                qa_id = _get(qa, "id", str, p, qwhere)
                question = _get(qa, "question", str, p, qwhere)
                if not qa_id.strip():
                    raise ReprtoolsError(f"{p}: {qwhere}.id is empty; every question needs a unique id")
                answers = _get(qa, "answers", list, p, qwhere)
                if not answers:
                    continue
                answer = _get(answers[0], "text", str, p, f"{qwhere}.answers[0]")
                if not answer.strip():
                    continue
                examples.append(tydiqa_example(qa_id, lang, context, question.strip(), answer))
    if not examples:
        raise ReprtoolsError(f"{p} holds no answered questions; check that it is a TyDiQA-GoldP file")
    return examples


def read_tydiqa(directory: str | os.PathLike, langs=None, split: str = "train", holdout: float = HOLDOUT,
                seed: int = SPLIT_SEED) -> list[Example]:
    """Read TyDiQA examples of ``split`` (``"train"``, ``"heldout"`` or ``"dev"``) for ``langs`` (default: all
    present) from a directory; the module docstring says which questions each split holds, ``holdout`` and
    ``seed`` shape the split of dev-only languages.  Ids are the TyDiQA question ids and must be unique."""
    check_holdout(holdout)
    examples: list[Example] = []
    for code, chosen in _plan(directory, langs, split).items():
        examples.extend(read_tydiqa_part(chosen.path, code, chosen.part, holdout, seed, chosen.unseen_in))
    check_unique_ids(examples, f"tydiqa:{directory}")
    return examples


def check_unique_ids(examples: list[Example], source: str) -> None:
    """Raise :class:`ReprtoolsError` if two examples share an id."""
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise ReprtoolsError(f"{source}: example id {example.id!r} occurs twice; ids must be unique")
        seen.add(example.id)


def _get(obj: object, key: str, kind: type, path: Path, where: str):
    if not isinstance(obj, dict):
        raise ReprtoolsError(f"{path}: {where} is not an object; expected SQuAD-style TyDiQA JSON")
    if key not in obj:
        raise ReprtoolsError(f"{path}: {where} has no {key!r}; expected SQuAD-style TyDiQA JSON")
    value = obj[key]
    if not isinstance(value, kind):
        want = "a list" if kind is list else "a string"
        raise ReprtoolsError(f"{path}: {where}.{key} should be {want}; expected SQuAD-style TyDiQA JSON")
    return value


def load_tydiqa(spec: str, directory: str, langs: list[str] | None, split: str | None,
                holdout: float = HOLDOUT, seed: int = SPLIT_SEED) -> Dataset:
    """The :class:`Dataset` of a TyDiQA-GoldP folder: ``split`` ``"train"`` (the default), ``"heldout"`` or
    ``"dev"`` (see the module docstring); ``params`` records the holdout share and split seed."""
    split = "train" if split is None else split
    if not directory:
        raise ReprtoolsError("tydiqa: needs a directory, e.g. tydiqa:../shared/data/tydiqa")
    check_split(split)
    check_holdout(holdout)
    plan = _plan(directory, langs, split)
    examples = [ex for code, chosen in plan.items()
                for ex in read_tydiqa_part(chosen.path, code, chosen.part, holdout, seed, chosen.unseen_in)]
    check_unique_ids(examples, spec)
    sources = tuple(SourceFile.of(path, code) for code, chosen in plan.items()
                    for path in (chosen.path, chosen.unseen_in) if path is not None)
    return Dataset(spec, "tydiqa", tuple(examples), sources,
                   {"langs": list(plan), "split": split, "holdout": holdout, "seed": seed})


def load_hf_tydiqa(spec: str, langs: list[str] | None, split: str | None) -> Dataset:
    """TyDiQA-GoldP from the Hugging Face hub (needs ``datasets`` and network): ``train`` or ``dev``
    (the hub's ``validation``) rows of ``langs`` (default: all 11 languages).  The hub has a train split for
    every language, so ``heldout`` is its ``validation`` split less any question also in its ``train`` split, as
    for a local language with a train file."""
    check_hub(spec, _LOCAL)
    split = "train" if split is None else split
    check_split(split)
    for code in langs or []:
        tydiqa_name(code)  # TyDiQA has the language
    hub_split = "train" if split == "train" else "validation"
    examples = _hub_examples(hub_load(spec, _LOCAL, *HF_TYDIQA, hub_split), langs)
    sources = [SourceFile(path=f"hf://{HF_TYDIQA[0]}/{HF_TYDIQA[1]}/{hub_split}")]
    if split == "heldout":
        examples = unseen(examples, _hub_examples(hub_load(spec, _LOCAL, *HF_TYDIQA, "train"), langs))
        sources.append(SourceFile(path=f"hf://{HF_TYDIQA[0]}/{HF_TYDIQA[1]}/train"))
    check_present(examples, langs, f"{spec} split {split!r}")
    check_unique_ids(examples, spec)
    return Dataset(spec, "hf:tydiqa", tuple(examples), tuple(sources),
                   {"langs": sorted({ex.lang for ex in examples}), "split": split})


def _hub_examples(rows, langs: list[str] | None) -> list[Example]:
    """The answered questions of hub ``rows`` in ``langs`` (``None``: all), as examples."""
    examples = []
    for row in rows:
        code = TYDIQA_NAMES.get(str(row["id"]).split("-", 1)[0])
        answers = row["answers"]["text"]
        if code is None or (langs is not None and code not in langs) or not answers or not answers[0].strip():
            continue
        examples.append(tydiqa_example(row["id"], code, row["context"], row["question"].strip(), answers[0]))
    return examples
