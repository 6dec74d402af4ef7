"""The built-in demo data: ``reprtools/data/demo/{lang}.jsonl``, shipped with the package.

Each file holds one JSON object a line (``id``, ``lang``, ``instruction``, ``input``, ``output``); the ids
(``demo-001``, ...) are the same in every language and line up parallel items.  :func:`read_demo` makes them
unique across languages by appending the language: ``demo-001`` in ``hi.jsonl`` becomes ``demo-001-hi``.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from reprtools.data.jsonl import read_jsonl
from reprtools.data.records import Dataset, Example, SourceFile
from reprtools.errors import ReprtoolsError
from reprtools.languages import normalize_lang, parse_langs

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


def demo_dir() -> Traversable:
    """The packaged ``demo`` folder."""
    return resources.files("reprtools.data").joinpath("demo")


def demo_files() -> dict[str, Traversable]:
    """``{iso code: file}`` for every packaged demo file, in ISO-code order."""
    folder = demo_dir()
    if not folder.is_dir():
        return {}
    found = {}
    for entry in folder.iterdir():
        stem, dot, ext = entry.name.partition(".")
        code = normalize_lang(stem) if dot and ext == "jsonl" and entry.is_file() else None
        if code is not None:
            found[code] = entry
    return dict(sorted(found.items()))


def demo_langs() -> list[str]:
    """Languages that have built-in demo data."""
    return list(demo_files())


def _files_for(langs) -> dict[str, Traversable]:
    files = demo_files()
    if not files:
        raise ReprtoolsError(f"no built-in demo data found in {demo_dir()}; reinstall reprtools")
    if langs is None:
        return files
    result = {}
    for code in parse_langs(langs):
        if code not in files:
            raise ReprtoolsError(f"no {code!r} examples in the demo data; languages present: {', '.join(files)}")
        result[code] = files[code]
    return result


def read_demo_raw(langs=None) -> dict[str, list[Example]]:
    """Demo examples per language with the ids as written in the files (``demo-001``, parallel across
    languages)."""
    result = {}
    for code, entry in _files_for(langs).items():
        with resources.as_file(entry) as path:
            result[code] = read_jsonl(path, lang=code)
    return result


def read_demo(langs=None) -> list[Example]:
    """All demo examples of ``langs`` (default: every demo language), ids made unique as ``{id}-{lang}``."""
    return [
        Example(id=f"{ex.id}-{code}", lang=ex.lang, instruction=ex.instruction, input=ex.input, output=ex.output)
        for code, examples in read_demo_raw(langs).items()
        for ex in examples
    ]


def load_demo(spec: str, langs: list[str] | None) -> Dataset:
    """The demo examples of ``langs`` (default: all) as a :class:`Dataset`."""
    examples = read_demo(langs)
    files = demo_files()
    present = sorted({ex.lang for ex in examples})
    sources = []
    for code in present:
        with resources.as_file(files[code]) as path:
            sources.append(SourceFile.of(path, code))
    return Dataset(spec, "demo", tuple(examples), tuple(sources), {"langs": present})


def demo_parallel(langs: list[str]) -> dict[str, list[str]]:
    """Parallel sentences from the demo data: each item's ``output``, aligned by id and sorted by id.

    Raises :class:`ReprtoolsError` unless every language has the same ids.
    """
    raw = read_demo_raw(langs)
    by_id = {code: {ex.id: ex.output.strip() for ex in examples} for code, examples in raw.items()}
    first, *others = list(by_id)
    for code in others:
        only_first = sorted(set(by_id[first]) - set(by_id[code]))
        only_other = sorted(set(by_id[code]) - set(by_id[first]))
        if only_first or only_other:
            lacking, extra = (code, only_first) if only_first else (first, only_other)
            raise ReprtoolsError(
                f"demo data is not parallel: {lacking!r} lacks {len(extra)} id(s) the other has (e.g. {extra[0]!r}); "
                "every demo language must have the same ids"
            )
    ids = sorted(by_id[first])
    return {code: [items[i] for i in ids] for code, items in by_id.items()}
