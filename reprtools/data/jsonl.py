"""Read instruction data from a JSON Lines file (one JSON object a line).

Each line holds ``instruction``, ``output`` and ``lang`` (any language :func:`reprtools.languages.check_lang`
accepts: ``sw``, ``swh``, ``Swahili``; stored as the canonical code), optionally ``input`` (default
``""``) and ``id`` (default ``"{file stem}-{line number}"``).  Other keys are ignored; blank lines are skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from reprtools.data.files import read_text, text_lines
from reprtools.data.records import Dataset, Example, SourceFile, check_present
from reprtools.errors import ReprtoolsError
from reprtools.languages import check_lang

_REQUIRED = ("instruction", "output", "lang")


def example_from_dict(obj: object, where: str, default_id: str, lang: str | None = None) -> Example:
    """Validate one JSON record and build an :class:`Example`.

    ``where`` (e.g. ``"data.jsonl line 7"``) starts every error message.  When ``lang`` is given the record's
    ``lang`` must equal it.
    """
    if not isinstance(obj, dict):
        raise ReprtoolsError(f"{where}: expected a JSON object, got {_json_type(obj)}; each line must be one object")
    for key in _REQUIRED:
        if key not in obj:
            raise ReprtoolsError(
                f"{where}: missing key {key!r}; each object needs 'instruction', 'output' and 'lang' "
                "(optional 'input', 'id')"
            )
    fields: dict[str, str] = {}
    for key in ("instruction", "input", "output", "lang", "id"):
        value = obj.get(key, "")
        if not isinstance(value, str):
            raise ReprtoolsError(f"{where}: {key!r} must be a string, got {_json_type(value)}")
        fields[key] = value
    for key in ("instruction", "output", "lang"):
        if not fields[key].strip():
            raise ReprtoolsError(f"{where}: {key!r} is empty; give it a non-empty string")
    try:
        code = check_lang(fields["lang"])
    except ReprtoolsError as exc:
        raise ReprtoolsError(f"{where}: {exc}") from None
    if lang is not None and code != lang:
        raise ReprtoolsError(f"{where}: lang is {code!r} but this file holds {lang!r} examples; fix the lang field")
    if "id" in obj and not fields["id"].strip():
        raise ReprtoolsError(f"{where}: 'id' is empty; give a unique id or leave the key out")
    ex_id = fields["id"].strip() if "id" in obj else default_id
    return Example(id=ex_id, lang=code, instruction=fields["instruction"], input=fields["input"],
                   output=fields["output"])


def read_jsonl(path: str | os.PathLike, *, lang: str | None = None) -> list[Example]:
    """Read one :class:`Example` per non-blank line of a JSON Lines file.

    Ids must be unique within the file.  With ``lang`` every line must carry that language.  Any malformed line
    raises :class:`ReprtoolsError` naming the file and line number.
    """
    p = Path(path)
    text = read_text(p)
    examples: list[Example] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text_lines(text), start=1):
        if not line.strip():
            continue
        where = f"{p} line {number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReprtoolsError(
                f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object"
            ) from None
        example = example_from_dict(obj, where, default_id=f"{p.stem}-{number}", lang=lang)
        if example.id in seen:
            raise ReprtoolsError(
                f"{where}: id {example.id!r} was already used on line {seen[example.id]}; ids must be unique"
            )
        seen[example.id] = number
        examples.append(example)
    if not examples:
        raise ReprtoolsError(f"{p} holds no examples; write one JSON object a line")
    return examples


def load_jsonl(spec: str, path: str, langs: list[str] | None) -> Dataset:
    """The :class:`Dataset` of a JSON Lines file, restricted to ``langs`` (each must be present) if given."""
    if not path:
        raise ReprtoolsError("jsonl: needs a path, e.g. jsonl:data/train.jsonl")
    examples = read_jsonl(path)
    check_present(examples, langs, path)
    if langs is not None:
        examples = [ex for ex in examples if ex.lang in langs]
    return Dataset(spec, "jsonl", tuple(examples), (SourceFile.of(path),),
                   {"langs": sorted({e.lang for e in examples})})


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)
