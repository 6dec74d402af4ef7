"""Data sources: the one registry of what a data spec can name, for training examples and parallel sentences.

A spec is a source kind (``demo``), a kind and its argument (``tydiqa:DIR``, ``jsonl:PATH``, ``hf:xnli``), or a
plain path, whose kind is recognised from what it holds.  Each :class:`Source` in :data:`SOURCES` declares
what it provides -- training examples (:func:`load_examples`), parallel sentences for probing
(:func:`load_parallel`) or both -- the splits its examples have, how a plain path is recognised as it, and its
readers, which live beside their formats (:mod:`~reprtools.data.tydiqa`, :mod:`~reprtools.data.xnli`, ...).
Usage messages are generated from the registry, so they always list exactly the sources there are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

from reprtools.data.demo import demo_parallel, load_demo
from reprtools.data.flores import FLORES_SPLITS, read_flores
from reprtools.data.jsonl import load_jsonl
from reprtools.data.parallel import check_max_sentences, first_sentences, read_text_dir
from reprtools.data.records import Dataset
from reprtools.data.tydiqa import SPLITS as TYDIQA_SPLITS
from reprtools.data.tydiqa import load_hf_tydiqa, load_tydiqa
from reprtools.data.xnli import PARTS as XNLI_PARTS
from reprtools.data.xnli import load_hf_xnli, load_xnli
from reprtools.errors import ReprtoolsError
from reprtools.languages import parse_langs

EXAMPLES = "examples"
PARALLEL = "parallel"
_WHAT = {EXAMPLES: "training examples", PARALLEL: "parallel sentences for probing"}


class Query(NamedTuple):
    """What :func:`load_examples` was asked for: canonical languages (``None`` = all present), split, holdout
    share and seed."""

    langs: list[str] | None
    split: str | None
    holdout: float
    seed: int


@dataclass(frozen=True)
class Source:
    """One kind of data source.

    ``kind`` is written before the colon (``"tydiqa"``, or the whole spec for ``"hf:xnli"``); ``arg`` names
    what follows the colon (``"DIR"``, ``"PATH"``; ``""`` for a source without one); ``about`` says what it is.
    ``examples(spec, arg, query)`` returns a :class:`Dataset`; ``parallel(arg, langs)`` returns
    ``{lang: sentences}``; either is ``None`` if the source does not provide it.  ``splits`` are the splits its
    examples come in (empty: always used whole).  ``recognise(path)`` says whether a plain path is of this kind.
    """

    kind: str
    arg: str
    about: str
    examples: Callable[[str, str, Query], Dataset] | None = None
    parallel: Callable[[str, list[str]], dict[str, list[str]]] | None = None
    splits: tuple[str, ...] = ()
    recognise: Callable[[Path], bool] | None = None
    aliases: tuple[str, ...] = ()

    @property
    def usage(self) -> str:
        return f"{self.kind}:{self.arg}" if self.arg else self.kind

    def provides(self, purpose: str) -> bool:
        return (self.examples if purpose == EXAMPLES else self.parallel) is not None


def _holds(path: Path, *patterns: str) -> bool:
    return path.is_dir() and any(any(path.glob(pattern)) for pattern in patterns)


SOURCES: tuple[Source, ...] = (
    Source("demo", "", "the small built-in demo data (reprtools/data/demo/{lang}.jsonl)",
           examples=lambda spec, arg, q: load_demo(spec, q.langs),
           parallel=lambda arg, langs: demo_parallel(langs)),
    Source("tydiqa", "DIR", "TyDiQA-GoldP files {language}_tydiqa_{train,dev}.json",
           examples=lambda spec, arg, q: load_tydiqa(spec, arg, q.langs, q.split, q.holdout, q.seed),
           splits=TYDIQA_SPLITS,
           recognise=lambda p: _holds(p, "*_tydiqa_*.json")),
    Source("xnli", "DIR", "XNLI files dev-{lang}.tsv (and train-/test-{lang}.tsv)",
           examples=lambda spec, arg, q: load_xnli(spec, arg, q.langs, q.split, q.holdout, q.seed),
           splits=XNLI_PARTS, recognise=lambda p: _holds(p, "dev-*.tsv", "train-*.tsv", "test-*.tsv")),
    Source("jsonl", "PATH", "JSON Lines, one {id, lang, instruction, input, output} object a line",
           examples=lambda spec, arg, q: load_jsonl(spec, arg, q.langs),
           recognise=lambda p: p.suffix == ".jsonl" and not p.is_dir()),
    Source("flores200", "DIR", "FLORES-200 files {flores code}.devtest (or .dev)",
           parallel=read_flores, aliases=("flores",),
           recognise=lambda p: _holds(p, *(f"*.{s}" for s in FLORES_SPLITS), *(f"{s}/*.{s}" for s in FLORES_SPLITS))),
    Source("text", "DIR", "one file {lang}.txt per language, one sentence a line, line i parallel",
           parallel=read_text_dir, recognise=lambda p: _holds(p, "*.txt")),
    Source("hf:tydiqa", "", "TyDiQA-GoldP from the Hugging Face hub (needs network and pip install -e '.[hub]')",
           examples=lambda spec, arg, q: load_hf_tydiqa(spec, q.langs, q.split), splits=TYDIQA_SPLITS),
    Source("hf:xnli", "", "XNLI from the Hugging Face hub (needs network and pip install -e '.[hub]')",
           examples=lambda spec, arg, q: load_hf_xnli(spec, q.langs, q.split, q.holdout, q.seed),
           splits=XNLI_PARTS),
)

_BY_KIND = {name: source for source in SOURCES for name in (source.kind, *source.aliases)}


def usage(purpose: str) -> str:
    """``"use demo, tydiqa:DIR, ... or a directory/file of one of them"`` for ``EXAMPLES`` or ``PARALLEL``."""
    kinds = [s.usage for s in SOURCES if s.provides(purpose)]
    plain = "a .jsonl file or a data directory" if purpose == EXAMPLES else "a directory of such files"
    return f"use {', '.join(kinds[:-1])} or {kinds[-1]} (or {plain})"


def resolve(spec: str | os.PathLike, purpose: str) -> tuple[str, Source, str]:
    """``(spec as a string, source, argument)`` for ``spec``; :class:`ReprtoolsError` if it names no source
    that provides ``purpose``."""
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ReprtoolsError(f"data source must be a non-empty string; {usage(purpose)}")
    spec = spec.strip()
    kind, sep, arg = spec.partition(":")
    bare = _BY_KIND.get(spec)
    if bare is not None and not bare.arg:  # demo, hf:xnli
        source, arg = bare, ""
    elif sep and kind in _BY_KIND:
        source = _BY_KIND[kind]
        if source.arg and not arg:
            noun = {"DIR": "a directory", "PATH": "a path"}.get(source.arg, source.arg)
            raise ReprtoolsError(f"{kind}: needs {noun} after the colon, as in {source.usage}")
        if not source.arg and arg:
            raise ReprtoolsError(f"{source.kind} takes nothing after it; write just {source.kind}")
    elif sep and kind == "hf":
        hub = " or ".join(s.kind for s in SOURCES if s.kind.startswith("hf:") and s.provides(purpose))
        raise ReprtoolsError(f"unknown hub dataset {spec!r}; use {hub}" if hub else
                             f"{spec}: the hub gives no {_WHAT[purpose]}; {usage(purpose)}")
    else:
        source, arg = _recognise(spec, kind if sep else "", purpose), spec
    if not source.provides(purpose):
        other = EXAMPLES if purpose == PARALLEL else PARALLEL
        raise ReprtoolsError(f"{source.kind} gives {_WHAT[other]}, not {_WHAT[purpose]}; for {_WHAT[purpose]} "
                             f"{usage(purpose)}")
    return spec, source, arg


def _recognise(spec: str, kind: str, purpose: str) -> Source:
    path = Path(spec)
    found = [s for s in SOURCES if s.provides(purpose) and s.recognise is not None and s.recognise(path)]
    if len(found) > 1:
        raise ReprtoolsError(f"{path} holds {' and '.join(s.kind for s in found)} data; say which with "
                             f"{' or '.join(f'{s.kind}:{path}' for s in found)}")
    if found:
        return found[0]
    if path.is_dir():
        expected = "; ".join(s.about for s in SOURCES if s.provides(purpose) and s.arg == "DIR")
        raise ReprtoolsError(f"{path} holds no data files reprtools knows ({expected}); {usage(purpose)}")
    if path.exists():
        raise ReprtoolsError(f"{path} is not a data file or directory; {usage(purpose)}")
    if kind and len(kind) > 1 and "/" not in kind and "\\" not in kind:
        raise ReprtoolsError(f"unknown data source type {kind + ':'!r}; {usage(purpose)}")
    raise ReprtoolsError(f"no such file or directory: {path}; {usage(purpose)}")


def _check_split(source: Source, split: str | None) -> None:
    if not source.splits and split not in (None, "train", "all"):
        have = [s.kind for s in SOURCES if s.splits]
        raise ReprtoolsError(f"split {split!r} applies only to {', '.join(have[:-1])} and {have[-1]} data; "
                             f"{source.kind} data is used whole (leave split unset)")
    if source.splits and split is not None and split not in source.splits:
        raise ReprtoolsError(f"unknown {source.kind} split {split!r}; use {' or '.join(source.splits)}")


def load_examples(spec: str | os.PathLike, *, langs=None, split: str | None = None, holdout: float = 0.2,
                  seed: int = 0) -> Dataset:
    """Training examples of ``spec`` (see :data:`SOURCES`) for ``langs`` (default: all present; each given
    language must be present), as a :class:`Dataset` with the files read (with sha256) and the parameters used.

    ``split`` is ``"train"`` (default), ``"heldout"`` or ``"dev"`` for TyDiQA, ``"train"`` (default),
    ``"heldout"`` or ``"all"`` for XNLI; ``"heldout"`` never shares an item with ``"train"``.  ``holdout`` and
    ``seed`` shape the split of a file that is split (an XNLI dev file, a TyDiQA dev file of a language without a
    train file; see :mod:`reprtools.data.xnli`, :mod:`reprtools.data.tydiqa`); they are the split's own, not a
    run's ``--seed``.  Demo and JSONL data are always used whole.  Bad input raises :class:`ReprtoolsError`.
    """
    codes = parse_langs(langs) if langs is not None else None
    spec, source, arg = resolve(spec, EXAMPLES)
    _check_split(source, split)
    return source.examples(spec, arg, Query(codes, split, holdout, seed))


def load_parallel(spec: str | os.PathLike, langs, max_sentences: int | None = None) -> dict[str, list[str]]:
    """Parallel sentences ``{lang: sentences}`` for ``langs`` (``"en,hi"`` or a list) from ``spec`` (see
    :data:`SOURCES`); every list has the same length and ``max_sentences`` keeps the first k.  Bad input
    raises :class:`ReprtoolsError`."""
    codes = parse_langs(langs)
    check_max_sentences(max_sentences)
    spec, source, arg = resolve(spec, PARALLEL)
    return first_sentences(source.parallel(arg, codes), max_sentences)
