"""FLORES-200 and other line-aligned sentence files: one sentence a line, line i parallel across languages.

FLORES-200 files are named by FLORES code and split: ``eng_Latn.devtest``, ``hin_Deva.dev``.  They may sit
directly in the directory or in ``devtest/`` and ``dev/`` subfolders (the layout of the official release).
"""

from __future__ import annotations

import os
from pathlib import Path

from reprtools.data.jsonl import read_text, text_lines
from reprtools.errors import ReprtoolsError
from reprtools.languages import flores_code, parse_langs

#: FLORES-200 splits, in order of preference.
FLORES_SPLITS = ("devtest", "dev")


def flores_files(directory: str | os.PathLike, langs) -> dict[str, Path]:
    """``{iso code: path}`` of the FLORES-200 file of each language.

    Uses ``.devtest`` when every language has one, else ``.dev`` when every language has one, so all languages
    always come from the same split.
    """
    root = _check_dir(directory, "flores200:", "{flores code}.devtest")
    codes = parse_langs(langs)
    for split in FLORES_SPLITS:
        files = {}
        for code in codes:
            name = f"{flores_code(code)}.{split}"
            path = next((p for p in (root / name, root / split / name) if p.is_file()), None)
            if path is None:
                break
            files[code] = path
        else:
            return files
    missing = next((code for code in codes if not any(
        (root / f"{flores_code(code)}.{s}").is_file() or (root / s / f"{flores_code(code)}.{s}").is_file()
        for s in FLORES_SPLITS)), None)
    if missing is None:
        raise ReprtoolsError(
            f"flores200:{root} has no split that covers all of {', '.join(codes)}; give every language a .devtest "
            "file (or a .dev file)"
        )
    present = sorted(p.name for folder in (root, root / "devtest", root / "dev") if folder.is_dir()
                     for p in folder.iterdir() if p.suffix in (".devtest", ".dev"))
    raise ReprtoolsError(
        f"no {missing!r} sentences in flores200:{root} (no {flores_code(missing)}.devtest or .dev); files present: "
        f"{', '.join(present) or 'none'}"
    )


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
    if max_sentences is not None:
        result = {code: sentences[:max_sentences] for code, sentences in result.items()}
    return result


def read_flores(directory: str | os.PathLike, langs, max_sentences: int | None = None) -> dict[str, list[str]]:
    """Parallel FLORES-200 sentences ``{iso code: sentences}`` for ``langs``."""
    return read_parallel_files(flores_files(directory, langs), max_sentences)


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


def _check_dir(directory: str | os.PathLike, prefix: str, expected: str) -> Path:
    root = Path(directory)
    if not root.exists():
        raise ReprtoolsError(f"no such directory: {root}; point {prefix} at the folder with {expected} files")
    if not root.is_dir():
        raise ReprtoolsError(f"{root} is not a directory; point {prefix} at the folder with {expected} files")
    return root
