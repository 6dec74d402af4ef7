"""The record types of the data layer: one :class:`Example`, and a :class:`Dataset` of them with provenance."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from typing import Iterable

from reprtools.data.files import sha256_file
from reprtools.errors import ReprtoolsError


@dataclass(frozen=True)
class Example:
    """One instruction-tuning example.

    ``id`` is unique within its dataset and stable across runs (it is hashed into the run manifest);
    ``lang`` is a canonical language code (see :mod:`reprtools.languages`: ``en``, ``hi``, ``sw``, ``haw``, ...);
    ``input`` may be empty.
    """

    id: str
    lang: str
    instruction: str
    input: str
    output: str

    def to_dict(self) -> dict:
        return asdict(self)


def ids_sha256(examples: Iterable[Example]) -> str:
    """sha256 hex digest of the sorted example ids joined by ``"\\n"``."""
    return hashlib.sha256("\n".join(sorted(ex.id for ex in examples)).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SourceFile:
    """One file a dataset was read from: ``path``, its language (``None`` for a mixed file) and the sha256 of
    its bytes (``None`` for a hub dataset, whose ``path`` is ``hf://name/config/split``)."""

    path: str
    lang: str | None = None
    sha256: str | None = None

    @classmethod
    def of(cls, path: str | os.PathLike, lang: str | None = None) -> SourceFile:
        """The record of a local file, its sha256 computed."""
        return cls(path=str(path), lang=lang, sha256=sha256_file(path))

    def to_dict(self) -> dict:
        return {"path": self.path, "lang": self.lang, "sha256": self.sha256}


@dataclass(frozen=True, eq=False)
class Dataset:
    """Examples loaded from one source spec, with their provenance.

    Iterating, ``len`` and indexing go over ``examples``.  ``kind`` is the source kind (``demo``, ``tydiqa``,
    ``xnli``, ``jsonl``, ``hf:tydiqa``, ``hf:xnli``); ``params`` holds the languages, split, holdout and seed
    that were used.
    """

    spec: str
    kind: str
    examples: tuple[Example, ...]
    files: tuple[SourceFile, ...]
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self):
        return iter(self.examples)

    def __getitem__(self, index):
        return self.examples[index]

    @property
    def langs(self) -> list[str]:
        """Languages present, sorted."""
        return sorted({ex.lang for ex in self.examples})

    def counts(self) -> dict[str, int]:
        """Number of examples per language, sorted by language."""
        result: dict[str, int] = {}
        for ex in self.examples:
            result[ex.lang] = result.get(ex.lang, 0) + 1
        return dict(sorted(result.items()))

    def manifest(self) -> dict:
        """A JSON-ready description for a run manifest (everything but the examples themselves)."""
        return {
            "spec": self.spec,
            "kind": self.kind,
            "params": dict(self.params),
            "files": [f.to_dict() for f in self.files],
            "counts": self.counts(),
            "num_examples": len(self.examples),
            "ids_sha256": ids_sha256(self.examples),
        }


def check_present(examples: Iterable[Example], langs: list[str] | None, source: str) -> None:
    """Raise :class:`ReprtoolsError` naming the languages present unless every one of ``langs`` has examples."""
    present = sorted({ex.lang for ex in examples})
    for code in langs or []:
        if code not in present:
            raise ReprtoolsError(f"no {code!r} examples in {source}; languages present: {', '.join(present) or 'none'}")
