"""Read TyDiQA-GoldP (SQuAD-style JSON, one file per language and split) into :class:`Example` records.

Files are named ``{language}_tydiqa_{split}.json`` (``english_tydiqa_train.json``, ``bengali_tydiqa_dev.json``);
each holds ``data[].paragraphs[].{context, qas[].{id, question, answers[].{text, answer_start}}}``.
One example per question: the passage and question as input, the first answer as output, the TyDiQA question
id as id.  Questions without an answer are skipped.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from reprtools.data.files import check_dir, read_text
from reprtools.data.hub import check_hub, hub_load
from reprtools.data.records import Dataset, Example, SourceFile, check_present
from reprtools.errors import ReprtoolsError
from reprtools.languages import TYDIQA_NAMES, parse_langs, tydiqa_name

#: The dataset on the Hugging Face hub (name, config) for ``hf:tydiqa``.
HF_TYDIQA = ("google-research-datasets/tydiqa", "secondary_task")
_LOCAL = "download TyDiQA-GoldP and use tydiqa:DIR"

#: The instruction of every TyDiQA example (always English, whatever the passage language).
TYDIQA_INSTRUCTION = "Answer the question using a short span copied from the passage."

SPLITS = ("train", "dev")
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


def tydiqa_files(directory: str | os.PathLike, langs=None, split: str = "train") -> dict[str, Path]:
    """Which file each language is read from: ``{iso code: path}``.

    ``split="train"`` uses ``{name}_tydiqa_train.json`` and falls back to ``{name}_tydiqa_dev.json`` for a
    language without a train file (the returned path shows which was used).  ``split="dev"`` uses only dev
    files.  ``langs=None`` means every TyDiQA language with a usable file, in ISO-code order.
    """
    if split not in SPLITS:
        raise ReprtoolsError(f"unknown TyDiQA split {split!r}; use 'train' or 'dev'")
    root = check_dir(directory, "tydiqa:", "*_tydiqa_*.json")
    found: dict[str, dict[str, Path]] = {}  # iso code -> {split: path}
    for path in sorted(root.iterdir()):
        match = _FILE_RE.match(path.name)
        if match and match.group(1) in TYDIQA_NAMES and path.is_file():
            found.setdefault(TYDIQA_NAMES[match.group(1)], {})[match.group(2)] = path

    def pick(code: str) -> Path | None:
        have = found.get(code, {})
        return have.get(split) or (have.get("dev") if split == "train" else None)

    usable = {code: path for code in sorted(found) if (path := pick(code)) is not None}
    if langs is None:
        if not usable:
            raise ReprtoolsError(
                f"no *_tydiqa_{split}.json files in {root}; expected files such as english_tydiqa_{split}.json"
            )
        return usable
    result: dict[str, Path] = {}
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


def read_tydiqa(directory: str | os.PathLike, langs=None, split: str = "train") -> list[Example]:
    """Read TyDiQA examples for ``langs`` (default: all present) from a directory; see :func:`tydiqa_files`
    for which file each language comes from.  Ids are the TyDiQA question ids and must be unique."""
    examples: list[Example] = []
    for code, path in tydiqa_files(directory, langs, split).items():
        examples.extend(read_tydiqa_file(path, code))
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


def load_tydiqa(spec: str, directory: str, langs: list[str] | None, split: str | None) -> Dataset:
    """The :class:`Dataset` of a TyDiQA-GoldP folder (``split`` ``"train"``, the default, or ``"dev"``)."""
    split = "train" if split is None else split
    if not directory:
        raise ReprtoolsError("tydiqa: needs a directory, e.g. tydiqa:../shared/data/tydiqa")
    files = tydiqa_files(directory, langs, split)
    examples = [ex for code, path in files.items() for ex in read_tydiqa_file(path, code)]
    check_unique_ids(examples, spec)
    sources = tuple(SourceFile.of(path, code) for code, path in files.items())
    return Dataset(spec, "tydiqa", tuple(examples), sources, {"langs": list(files), "split": split})


def load_hf_tydiqa(spec: str, langs: list[str] | None, split: str | None) -> Dataset:
    """TyDiQA-GoldP from the Hugging Face hub (needs ``datasets`` and network): ``train`` or ``dev``
    (the hub's ``validation``) rows of ``langs`` (default: all 11 languages)."""
    check_hub(spec, _LOCAL)
    split = "train" if split is None else split
    if split not in SPLITS:
        raise ReprtoolsError(f"unknown TyDiQA split {split!r}; use 'train' or 'dev'")
    for code in langs or []:
        tydiqa_name(code)  # TyDiQA has the language
    hub_split = "train" if split == "train" else "validation"
    rows = hub_load(spec, _LOCAL, *HF_TYDIQA, hub_split)
    examples = []
    for row in rows:
        code = TYDIQA_NAMES.get(str(row["id"]).split("-", 1)[0])
        answers = row["answers"]["text"]
        if code is None or (langs is not None and code not in langs) or not answers or not answers[0].strip():
            continue
        examples.append(tydiqa_example(row["id"], code, row["context"], row["question"].strip(), answers[0]))
    check_present(examples, langs, f"{spec} split {split!r}")
    check_unique_ids(examples, spec)
    source = SourceFile(path=f"hf://{HF_TYDIQA[0]}/{HF_TYDIQA[1]}/{hub_split}")
    return Dataset(spec, "hf:tydiqa", tuple(examples), (source,),
                   {"langs": sorted({ex.lang for ex in examples}), "split": split})
