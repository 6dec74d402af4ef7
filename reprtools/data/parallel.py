"""Parallel sentences for probing: ``{lang: sentences}`` with sentence i the same meaning in every language.

Sources (``spec``):

* ``"demo"``: the ``output`` of each built-in demo item, aligned by id (sorted by id);
* ``"flores200:DIR"`` (or ``"flores:DIR"``): FLORES-200 files ``{flores code}.devtest`` (or ``.dev``);
* ``"text:DIR"``: one file per language ``{lang}.txt``, one sentence a line;
* a plain directory: ``text:`` if it holds ``*.txt`` files, ``flores200:`` if it holds FLORES files.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from reprtools.data.demo import read_demo_raw
from reprtools.data.flores import _check_dir, check_max_sentences, read_flores, read_parallel_files
from reprtools.errors import ReprtoolsError
from reprtools.languages import parse_langs

_USAGE = "use 'demo', 'flores200:DIR', 'text:DIR' or a directory of {lang}.txt files"


def load_parallel(spec: str | os.PathLike, langs, max_sentences: int | None = None) -> dict[str, list[str]]:
    """Parallel sentences for ``langs`` (``"en,hi"`` or a list) from ``spec``; every list has the same length
    and ``max_sentences`` keeps the first k.  Bad input raises :class:`ReprtoolsError`."""
    codes = parse_langs(langs)
    check_max_sentences(max_sentences)
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ReprtoolsError(f"parallel source must be a non-empty string; {_USAGE}")
    kind, sep, rest = spec.partition(":")
    if spec == "demo":
        return _demo(codes, max_sentences)
    if sep and kind in ("flores200", "flores"):
        return read_flores(rest, codes, max_sentences)
    if sep and kind == "text":
        return read_parallel_files(text_files(rest, codes), max_sentences)
    root = Path(spec)
    if root.is_dir():
        names = [p.name for p in root.iterdir()]
        if any(name.endswith(".txt") for name in names):
            return read_parallel_files(text_files(root, codes), max_sentences)
        if any(name.endswith((".devtest", ".dev")) or name in ("devtest", "dev") for name in names):
            return read_flores(root, codes, max_sentences)
        raise ReprtoolsError(f"{root} holds neither {{lang}}.txt nor FLORES-200 files; {_USAGE}")
    if root.exists():
        raise ReprtoolsError(f"{root} is a file; {_USAGE}")
    if sep and len(kind) > 1:
        raise ReprtoolsError(f"unknown parallel source type {kind + ':'!r}; {_USAGE}")
    raise ReprtoolsError(f"no such directory: {root}; {_USAGE}")


def text_files(directory: str | os.PathLike, langs) -> dict[str, Path]:
    """``{iso code: DIR/{code}.txt}`` for ``langs``; :class:`ReprtoolsError` naming the files present if one
    is missing."""
    root = _check_dir(directory, "text:", "{lang}.txt")
    files = {}
    for code in parse_langs(langs):
        path = root / f"{code}.txt"
        if not path.is_file():
            present = sorted(p.name for p in root.iterdir() if p.suffix == ".txt")
            raise ReprtoolsError(
                f"no {code!r} sentences in text:{root} (no {code}.txt); files present: {', '.join(present) or 'none'}"
            )
        files[code] = path
    return files


def parallel_sha256(sentences: dict[str, list[str]]) -> str:
    """Content hash of parallel sentences (independent of the order of languages), e.g. for a cache key."""
    blob = json.dumps({code: list(items) for code, items in sentences.items()}, sort_keys=True,
                      ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _demo(codes: list[str], max_sentences: int | None) -> dict[str, list[str]]:
    raw = read_demo_raw(codes)
    by_id = {code: {ex.id: ex.output.strip() for ex in examples} for code, examples in raw.items()}
    first = codes[0]
    for code in codes[1:]:
        only_first = sorted(set(by_id[first]) - set(by_id[code]))
        only_other = sorted(set(by_id[code]) - set(by_id[first]))
        if only_first or only_other:
            lacking, extra = (code, only_first) if only_first else (first, only_other)
            raise ReprtoolsError(
                f"demo data is not parallel: {lacking!r} lacks {len(extra)} id(s) the other has (e.g. {extra[0]!r}); "
                "every demo language must have the same ids"
            )
    ids = sorted(by_id[first])
    if max_sentences is not None:
        ids = ids[:max_sentences]
    return {code: [by_id[code][i] for i in ids] for code in codes}
