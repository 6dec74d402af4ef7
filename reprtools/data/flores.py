"""FLORES-200: the same sentences in 200 languages, one sentence a line, line i parallel across files.

Files are named by FLORES code and split: ``eng_Latn.devtest``, ``hin_Deva.dev``.  They may sit directly in
the directory or in ``devtest/`` and ``dev/`` subfolders (the layout of the official release).  A language's
file is ``{flores_code(lang)}.{split}`` (:func:`reprtools.languages.flores_code`); failing that, the one file
of that split whose name normalises to the language (e.g. FLORES+'s ``ekk_Latn`` for Estonian, or
``cmn_Hans`` for Chinese).
"""

from __future__ import annotations

import os
from pathlib import Path

from reprtools.data.files import check_dir
from reprtools.data.parallel import read_parallel_files
from reprtools.errors import ReprtoolsError
from reprtools.languages import flores_code, normalize_lang, parse_langs

#: FLORES-200 splits, in order of preference.
FLORES_SPLITS = ("devtest", "dev")


def flores_files(directory: str | os.PathLike, langs) -> dict[str, Path]:
    """``{code: path}`` of the FLORES-200 file of each language.

    Uses ``.devtest`` when every language has one, else ``.dev`` when every language has one, so all languages
    always come from the same split.
    """
    root = check_dir(directory, "flores200:", "{flores code}.devtest")
    codes = parse_langs(langs)
    found = {split: {code: _find(root, code, split) for code in codes} for split in FLORES_SPLITS}
    for split in FLORES_SPLITS:
        if all(path is not None for path in found[split].values()):
            return found[split]
    missing = next((code for code in codes if all(found[s][code] is None for s in FLORES_SPLITS)), None)
    if missing is None:
        raise ReprtoolsError(
            f"flores200:{root} has no split that covers all of {', '.join(codes)}; give every language a .devtest "
            "file (or a .dev file)"
        )
    present = sorted(p.name for split in FLORES_SPLITS for p in _split_files(root, split))
    raise ReprtoolsError(
        f"no {missing!r} sentences in flores200:{root} (no {flores_code(missing)}.devtest or .dev); files present: "
        f"{', '.join(present) or 'none'}"
    )


def read_flores(directory: str | os.PathLike, langs, max_sentences: int | None = None) -> dict[str, list[str]]:
    """Parallel FLORES-200 sentences ``{code: sentences}`` for ``langs``."""
    return read_parallel_files(flores_files(directory, langs), max_sentences)


def _split_files(root: Path, split: str) -> list[Path]:
    return [p for folder in (root, root / split) if folder.is_dir()
            for p in sorted(folder.glob(f"*.{split}")) if p.is_file()]


def _find(root: Path, code: str, split: str) -> Path | None:
    name = f"{flores_code(code)}.{split}"
    exact = next((p for p in (root / name, root / split / name) if p.is_file()), None)
    if exact is not None:
        return exact
    same = [p for p in _split_files(root, split) if normalize_lang(p.stem) == code]
    if len(same) > 1:
        raise ReprtoolsError(
            f"flores200:{root} has {len(same)} {split} files for {code!r} ({', '.join(p.name for p in same)}) and "
            f"none named {name}; keep one"
        )
    return same[0] if same else None
