"""Parallel sentences for probing: ``{lang: sentences}`` with sentence i the same meaning in every language.

They come from line-aligned files, one sentence a line and line i parallel across the files: FLORES-200 (see
:mod:`reprtools.data.flores`) or a ``text:DIR`` folder of ``{lang}.txt`` files, where ``lang`` is any
language :func:`reprtools.languages.check_lang` accepts (``yo.txt``, ``swh.txt``, ``nepali.txt``).
:func:`reprtools.data.load_parallel` picks the source from a spec.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from reprtools.data.files import check_dir, read_text, text_lines
from reprtools.errors import ReprtoolsError
from reprtools.languages import normalize_lang, parse_langs


def text_files(directory: str | os.PathLike, langs) -> dict[str, Path]:
    """``{code: DIR/{name}.txt}`` for ``langs``, where ``name`` is any spelling of the language (``sw.txt``,
    ``swh.txt``); :class:`ReprtoolsError` naming the files present if one is missing or spelled twice."""
    root = check_dir(directory, "text:", "{lang}.txt")
    found: dict[str, list[Path]] = {}
    for path in sorted(root.glob("*.txt")):
        code = normalize_lang(path.stem)
        if code is not None and path.is_file():
            found.setdefault(code, []).append(path)
    files = {}
    for code in parse_langs(langs):
        paths = found.get(code, [])
        if not paths:
            present = sorted(p.name for p in root.glob("*.txt"))
            raise ReprtoolsError(
                f"no {code!r} sentences in text:{root} (no {code}.txt); files present: {', '.join(present) or 'none'}"
            )
        if len(paths) > 1:
            raise ReprtoolsError(
                f"text:{root} has {len(paths)} files for {code!r} ({', '.join(p.name for p in paths)}); keep one"
            )
        files[code] = paths[0]
    return files


def read_text_dir(directory: str | os.PathLike, langs) -> dict[str, list[str]]:
    """Parallel sentences ``{code: sentences}`` of a ``text:DIR`` folder."""
    return read_parallel_files(text_files(directory, langs))


def read_sentences(path: str | os.PathLike) -> list[str]:
    """Sentences of a one-sentence-a-line file, stripped; an empty line or file raises :class:`ReprtoolsError`."""
    p = Path(path)
    sentences = []
    for number, line in enumerate(text_lines(read_text(p)), start=1):
        line = line.strip()
        if not line:
            raise ReprtoolsError(f"{p} line {number}: empty line; every line must hold one sentence")
        sentences.append(line)
    if not sentences:
        raise ReprtoolsError(f"{p} is empty; write one sentence a line")
    return sentences


def read_parallel_files(files: dict[str, Path], max_sentences: int | None = None) -> dict[str, list[str]]:
    """Read one sentence file per language; all must have the same number of lines.  ``max_sentences`` keeps
    the first k."""
    check_max_sentences(max_sentences)
    result = {code: read_sentences(path) for code, path in files.items()}
    check_same_length(result, {code: str(path) for code, path in files.items()})
    return first_sentences(result, max_sentences)


def first_sentences(sentences: dict[str, list[str]], max_sentences: int | None) -> dict[str, list[str]]:
    """The first ``max_sentences`` sentences of every language (all of them for ``None``)."""
    if max_sentences is None:
        return sentences
    return {code: items[:max_sentences] for code, items in sentences.items()}


def check_max_sentences(max_sentences: int | None) -> None:
    """Raise :class:`ReprtoolsError` unless ``max_sentences`` is ``None`` or a positive integer."""
    if max_sentences is not None and (
        isinstance(max_sentences, bool) or not isinstance(max_sentences, int) or max_sentences < 1
    ):
        raise ReprtoolsError(f"max_sentences must be a positive integer or None, got {max_sentences!r}")


def check_same_length(sentences: dict[str, list[str]], names: dict[str, str]) -> None:
    """Raise :class:`ReprtoolsError` unless every language has the same number of sentences."""
    counts = {code: len(items) for code, items in sentences.items()}
    if len(set(counts.values())) > 1:
        first = next(iter(counts))
        other = next(code for code in counts if counts[code] != counts[first])
        raise ReprtoolsError(
            f"{names[other]} has {counts[other]} sentences but {names[first]} has {counts[first]}; parallel "
            "files must have the same number of lines (line i the same sentence in every language)"
        )


def parallel_sha256(sentences: dict[str, list[str]]) -> str:
    """Content hash of parallel sentences (independent of the order of languages), e.g. for a cache key."""
    blob = json.dumps({code: list(items) for code, items in sentences.items()}, sort_keys=True,
                      ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
