"""The built-in demo data: ``reprtools/data/demo/{lang}.jsonl``, shipped with the package.

Each file holds one JSON object a line (``id``, ``lang``, ``instruction``, ``input``, ``output``); the ids
(``demo-001``, ...) are the same in every language and line up parallel items.  :func:`read_demo` makes them
unique across languages by appending the language: ``demo-001`` in ``hi.jsonl`` becomes ``demo-001-hi``.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

from reprtools.data.jsonl import read_jsonl
from reprtools.data.records import Example
from reprtools.errors import ReprtoolsError
from reprtools.languages import LANGUAGES, parse_langs

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
        if dot and ext == "jsonl" and stem in LANGUAGES and entry.is_file():
            found[stem] = entry
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
