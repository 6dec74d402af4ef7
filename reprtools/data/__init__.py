"""Data for reprtools: readers that turn every source into :class:`Example` records, mixing, the prompt
template, and parallel sentences for probing.

:func:`load_examples` takes a source spec:

* ``"demo"``: the built-in demo data (``reprtools/data/demo/{lang}.jsonl``);
* ``"tydiqa:DIR"``: TyDiQA-GoldP files ``{language}_tydiqa_{train,dev}.json``;
* ``"xnli:DIR"``: XNLI files ``dev-{lang}.tsv`` (and ``train-``/``test-`` if present);
* ``"jsonl:PATH"`` or a path ending ``.jsonl``: one JSON object a line;
* a plain directory: TyDiQA if it holds ``*_tydiqa_*.json``, XNLI if it holds ``dev-*.tsv``;
* ``"hf:tydiqa"`` / ``"hf:xnli"``: the same datasets from the Hugging Face hub (needs ``datasets`` and network).

It returns a :class:`Dataset`: the examples plus the files read (with sha256) and the parameters used, for a
run manifest.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from reprtools.data.demo import demo_files, demo_langs, read_demo
from reprtools.data.flores import read_flores
from reprtools.data.jsonl import read_jsonl
from reprtools.data.mixing import Mix, ids_sha256, mix
from reprtools.data.parallel import load_parallel, parallel_sha256
from reprtools.data.prompts import format_example, format_prompt, tokenize_example
from reprtools.data.records import Example
from reprtools.data.tydiqa import check_unique_ids, read_tydiqa, read_tydiqa_file, tydiqa_example, tydiqa_files
from reprtools.data.xnli import (LABELS, Row, check_holdout, check_parallel, check_part, read_xnli, split_rows,
                                 xnli_files)
from reprtools.errors import ReprtoolsError
from reprtools.languages import TYDIQA_NAMES, parse_langs

__all__ = [
    "Dataset", "Example", "Mix", "SourceFile", "demo_langs", "format_example", "format_prompt", "ids_sha256",
    "load_examples", "load_parallel", "mix", "parallel_sha256", "read_demo", "read_flores", "read_jsonl",
    "read_tydiqa", "read_xnli", "tokenize_example",
]

_USAGE = "use demo, tydiqa:DIR, xnli:DIR, jsonl:PATH, a .jsonl file, a data directory, hf:tydiqa or hf:xnli"
_HF_TYDIQA = ("google-research-datasets/tydiqa", "secondary_task")
_HF_XNLI = "facebook/xnli"
_HF_XNLI_LANGS = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")


@dataclass(frozen=True)
class SourceFile:
    """One file a dataset was read from: ``path``, its language (``None`` for a mixed file) and the sha256 of
    its bytes (``None`` for a hub dataset, whose ``path`` is ``hf://name/config/split``)."""

    path: str
    lang: str | None = None
    sha256: str | None = None

    def to_dict(self) -> dict:
        return {"path": self.path, "lang": self.lang, "sha256": self.sha256}


@dataclass(frozen=True, eq=False)
class Dataset:
    """Examples loaded from one source spec, with their provenance.

    Iterating, ``len`` and indexing go over ``examples``.  ``kind`` is ``demo``, ``tydiqa``, ``xnli``,
    ``jsonl``, ``hf:tydiqa`` or ``hf:xnli``; ``params`` holds the split, holdout and seed that were used.
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


def load_examples(spec: str | os.PathLike, *, langs=None, split: str | None = None, holdout: float = 0.2,
                  seed: int = 0) -> Dataset:
    """Load the examples of ``spec`` (see the module docstring) for ``langs`` (default: all present).

    ``split`` is ``"train"`` (default) or ``"dev"`` for TyDiQA, ``"train"`` (default), ``"heldout"`` or
    ``"all"`` for XNLI (``holdout`` and ``seed`` shape that split, see :mod:`reprtools.data.xnli`); demo and
    JSONL data are always used whole.  Bad input raises :class:`ReprtoolsError`.
    """
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ReprtoolsError(f"data source must be a non-empty string; {_USAGE}")
    spec = spec.strip()
    codes = parse_langs(langs) if langs is not None else None
    kind, sep, rest = spec.partition(":")
    if spec == "demo":
        return _load_demo(spec, codes, split)
    if sep and kind == "tydiqa":
        return _load_tydiqa(spec, rest, codes, split)
    if sep and kind == "xnli":
        return _load_xnli(spec, rest, codes, split, holdout, seed)
    if sep and kind == "jsonl":
        return _load_jsonl(spec, rest, codes, split)
    if sep and kind == "hf":
        if rest == "tydiqa":
            return _load_hf_tydiqa(spec, codes, split)
        if rest == "xnli":
            return _load_hf_xnli(spec, codes, split, holdout, seed)
        raise ReprtoolsError(f"unknown hub dataset {spec!r}; use hf:tydiqa or hf:xnli")
    if sep and kind in ("flores200", "flores", "text"):
        raise ReprtoolsError(
            f"{kind}: sources hold parallel sentences for probing, not training examples; use load_parallel for "
            f"them and {_USAGE}"
        )
    path = Path(spec)
    if path.is_dir():
        names = [p.name for p in path.iterdir()]
        is_tydiqa = any(n.endswith(".json") and "_tydiqa_" in n for n in names)
        is_xnli = any(n.endswith(".tsv") and n.startswith(("dev-", "train-", "test-")) for n in names)
        if is_tydiqa and is_xnli:
            raise ReprtoolsError(
                f"{path} holds both TyDiQA and XNLI files; say which with tydiqa:{path} or xnli:{path}"
            )
        if is_tydiqa:
            return _load_tydiqa(spec, spec, codes, split)
        if is_xnli:
            return _load_xnli(spec, spec, codes, split, holdout, seed)
        raise ReprtoolsError(
            f"{path} holds neither *_tydiqa_*.json nor dev-*.tsv files; {_USAGE}"
        )
    if spec.endswith(".jsonl"):
        return _load_jsonl(spec, spec, codes, split)
    if path.exists():
        raise ReprtoolsError(f"{path} is not a .jsonl file; give JSON Lines data as jsonl:PATH, or {_USAGE}")
    if sep and len(kind) > 1 and "/" not in kind and "\\" not in kind:
        raise ReprtoolsError(f"unknown data source type {kind + ':'!r}; {_USAGE}")
    raise ReprtoolsError(f"no such file or directory: {path}; {_USAGE}")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _source(path, lang: str | None) -> SourceFile:
    return SourceFile(path=str(path), lang=lang, sha256=_sha256_file(Path(path)))


def _whole(kind: str, split: str | None) -> None:
    if split not in (None, "train", "all"):
        raise ReprtoolsError(
            f"split {split!r} applies only to tydiqa and xnli data; {kind} data is used whole (leave split unset)"
        )


def _load_demo(spec: str, codes, split) -> Dataset:
    _whole("demo", split)
    examples = read_demo(codes)
    files = demo_files()
    sources = []
    for code in sorted({ex.lang for ex in examples}):
        with resources.as_file(files[code]) as path:
            sources.append(_source(path, code))
    return Dataset(spec, "demo", tuple(examples), tuple(sources), {"langs": sorted({e.lang for e in examples})})


def _load_jsonl(spec: str, path: str, codes, split) -> Dataset:
    _whole("jsonl", split)
    if not path:
        raise ReprtoolsError("jsonl: needs a path, e.g. jsonl:data/train.jsonl")
    examples = read_jsonl(path)
    if codes is not None:
        present = sorted({ex.lang for ex in examples})
        for code in codes:
            if code not in present:
                raise ReprtoolsError(f"no {code!r} examples in {path}; languages present: {', '.join(present)}")
        examples = [ex for ex in examples if ex.lang in codes]
    return Dataset(spec, "jsonl", tuple(examples), (_source(path, None),),
                   {"langs": sorted({e.lang for e in examples})})


def _load_tydiqa(spec: str, directory: str, codes, split) -> Dataset:
    split = "train" if split is None else split
    if not directory:
        raise ReprtoolsError("tydiqa: needs a directory, e.g. tydiqa:../shared/data/tydiqa")
    files = tydiqa_files(directory, codes, split)
    examples = []
    for code, path in files.items():
        examples.extend(read_tydiqa_file(path, code))
    check_unique_ids(examples, spec)
    sources = tuple(_source(path, code) for code, path in files.items())
    return Dataset(spec, "tydiqa", tuple(examples), sources, {"langs": list(files), "split": split})


def _load_xnli(spec: str, directory: str, codes, split, holdout, seed) -> Dataset:
    part = "train" if split is None else split
    if not directory:
        raise ReprtoolsError("xnli: needs a directory, e.g. xnli:../shared/data/xnli")
    check_part(part)
    examples = read_xnli(directory, codes, part, holdout, seed)
    files = xnli_files(directory, codes, part)
    sources = tuple(_source(path, code) for code, chosen in files.items() for path in chosen.values())
    return Dataset(spec, "xnli", tuple(examples), sources,
                   {"langs": list(files), "split": part, "holdout": holdout, "seed": seed})


# --- Hugging Face hub (optional) ---------------------------------------------------------------------------

def _offline() -> bool:
    return any(os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
               for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _hub_load(spec: str, local: str, name: str, config: str, split: str):
    try:
        import datasets
    except ImportError:
        raise ReprtoolsError(
            f"{spec} needs the optional 'datasets' package and network; pip install 'reprtools[hub]', or use "
            f"{local} with a local copy"
        ) from None
    if _offline():
        raise ReprtoolsError(f"{spec} needs network but HF_HUB_OFFLINE is set; use {local} with a local copy")
    try:
        return datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # the hub fails in many ways (no network, renamed dataset, ...)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ReprtoolsError(
            f"could not load {name} ({config}, {split}) from the Hugging Face hub ({type(exc).__name__}: {first}); "
            f"{spec} needs network; use {local} with a local copy"
        ) from None


def _load_hf_tydiqa(spec: str, codes, split) -> Dataset:
    split = "train" if split is None else split
    if split not in ("train", "dev"):
        raise ReprtoolsError(f"unknown TyDiQA split {split!r}; use 'train' or 'dev'")
    hub_split = "train" if split == "train" else "validation"
    rows = _hub_load(spec, "tydiqa:DIR", *_HF_TYDIQA, hub_split)
    examples = []
    for row in rows:
        code = TYDIQA_NAMES.get(str(row["id"]).split("-", 1)[0])
        answers = row["answers"]["text"]
        if code is None or (codes is not None and code not in codes) or not answers or not answers[0].strip():
            continue
        examples.append(tydiqa_example(row["id"], code, row["context"], row["question"].strip(), answers[0]))
    present = sorted({ex.lang for ex in examples})
    for code in codes or []:
        if code not in present:
            raise ReprtoolsError(f"no {code!r} examples in {spec} split {split!r}; languages present: "
                                 f"{', '.join(present) or 'none'}")
    check_unique_ids(examples, spec)
    source = SourceFile(path=f"hf://{_HF_TYDIQA[0]}/{_HF_TYDIQA[1]}/{hub_split}")
    return Dataset(spec, "hf:tydiqa", tuple(examples), (source,), {"langs": present, "split": split})


def _load_hf_xnli(spec: str, codes, split, holdout, seed) -> Dataset:
    part = "train" if split is None else split
    check_part(part)
    check_holdout(holdout)
    if codes is None:
        raise ReprtoolsError(f"{spec} needs langs, e.g. langs='en,sw' (XNLI has: {', '.join(_HF_XNLI_LANGS)})")
    for code in codes:
        if code not in _HF_XNLI_LANGS:
            raise ReprtoolsError(f"XNLI has no {code!r}; XNLI languages: {', '.join(_HF_XNLI_LANGS)}")
    tables: dict[str, list[Row]] = {}
    for code in codes:
        rows = _hub_load(spec, "xnli:DIR", _HF_XNLI, code, "validation")
        table = []
        for row in rows:
            label = row["label"]
            if isinstance(label, int) and 0 <= label < len(LABELS):
                table.append((row["premise"].strip(), row["hypothesis"].strip(), LABELS[label]))
        tables[code] = table
    files = {code: {"validation": f"hf://{_HF_XNLI}/{code}/validation"} for code in codes}
    if part != "all":
        check_parallel({code: ("validation", rows) for code, rows in tables.items()}, files)
    examples = [ex for code, rows in tables.items() for ex in split_rows(code, rows, part, holdout, seed)]
    if not examples:
        raise ReprtoolsError(f"{spec} part {part!r} with holdout {holdout} is empty; use a holdout between 0 and 1")
    sources = tuple(SourceFile(path=f"hf://{_HF_XNLI}/{code}/validation", lang=code) for code in codes)
    return Dataset(spec, "hf:xnli", tuple(examples), sources,
                   {"langs": list(codes), "split": part, "holdout": holdout, "seed": seed})

