"""Read XNLI (tab-separated premise, hypothesis, label; no header) into :class:`Example` records.

Files per language: ``dev-{lang}.tsv`` (the labelled split shipped in ``shared/data/xnli``), optionally
``train-{lang}.tsv`` and ``test-{lang}.tsv``.  Which rows make up each ``part``:

* When every selected language has a ``train-{lang}.tsv``: ``"train"`` is that file, ``"heldout"`` is the
  whole dev file (or test file if there is no dev file), ``"all"`` is both.
* Otherwise the dev file (or test file) is split by row: the ``holdout`` share of rows, rounded half up, is
  held out.  The held-out rows are those whose ``sha256(f"{seed}:{row}")`` sorts first, so the split depends
  only on ``(seed, holdout, number of rows)``; the same row index lands in the same part in every language,
  because XNLI rows are parallel across languages.  ``"all"`` is every row.

Ids are ``xnli-{lang}-{row}`` for dev rows, ``xnli-{lang}-train-{row}`` / ``xnli-{lang}-test-{row}`` for
rows of the other files; ``row`` counts data rows from 0.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
from pathlib import Path

from reprtools.data.files import check_dir, read_text
from reprtools.data.hub import check_hub, hub_load
from reprtools.data.records import Dataset, Example, SourceFile
from reprtools.errors import ReprtoolsError
from reprtools.languages import normalize_lang, parse_langs

#: The instruction of every XNLI example (always English).
XNLI_INSTRUCTION = (
    "Does the premise entail the hypothesis? Answer with one word: entailment, neutral or contradiction."
)
#: Label words, in the order of the Hugging Face ``xnli`` class ids 0, 1, 2.
LABELS = ("entailment", "neutral", "contradiction")
PARTS = ("train", "heldout", "all")

_LABEL_ALIASES = {label: label for label in LABELS} | {"contradictory": "contradiction"}
_FILE_RE = re.compile(r"^(train|dev|test)-([A-Za-z]+(?:[_-][A-Za-z]+)*)\.tsv$")

#: The dataset on the Hugging Face hub for ``hf:xnli`` (one config per language) and its languages.
HF_XNLI = "facebook/xnli"
HF_XNLI_LANGS = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
_LOCAL = "download XNLI and use xnli:DIR"

Row = tuple[str, str, str]  # premise, hypothesis, label word


def xnli_example(lang: str, row_id: str, premise: str, hypothesis: str, label: str) -> Example:
    """The :class:`Example` for one XNLI row (``row_id`` becomes ``xnli-{lang}-{row_id}``)."""
    return Example(
        id=f"xnli-{lang}-{row_id}",
        lang=lang,
        instruction=XNLI_INSTRUCTION,
        input=f"Premise: {premise}\nHypothesis: {hypothesis}",
        output=label,
    )


def label_word(label: str, where: str) -> str:
    """Normalise a label word (``"Contradictory"`` -> ``"contradiction"``); :class:`ReprtoolsError` if unknown."""
    word = _LABEL_ALIASES.get(label.strip().lower())
    if word is None:
        raise ReprtoolsError(f"{where}: unknown label {label!r}; use entailment, neutral or contradiction")
    return word


def read_xnli_tsv(path: str | os.PathLike) -> list[Row]:
    """Read one XNLI TSV file into ``(premise, hypothesis, label)`` rows (blank lines and a
    ``premise/hypothesis/label`` header line are skipped).  A malformed row raises :class:`ReprtoolsError`
    naming the file and line."""
    p = Path(path)
    reader = csv.reader(io.StringIO(read_text(p), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    rows: list[Row] = []
    try:
        for fields in reader:
            where = f"{p} line {reader.line_num}"
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            if len(fields) != 3:
                raise ReprtoolsError(
                    f"{where}: expected 3 tab-separated columns (premise, hypothesis, label), found {len(fields)}"
                )
            premise, hypothesis, label = fields
            if not rows and label.strip().lower() in ("label", "gold_label"):
                continue  # header line
            if not premise.strip() or not hypothesis.strip():
                raise ReprtoolsError(f"{where}: empty premise or hypothesis; every row needs both")
            rows.append((premise.strip(), hypothesis.strip(), label_word(label, where)))
    except csv.Error as exc:
        raise ReprtoolsError(f"{p} line {reader.line_num}: cannot parse as TSV ({exc})") from None
    if not rows:
        raise ReprtoolsError(f"{p} holds no rows; expected premise<TAB>hypothesis<TAB>label lines")
    return rows


def heldout_rows(n_rows: int, holdout: float, seed: int = 0) -> set[int]:
    """Row indices held out of ``n_rows``: ``floor(holdout * n_rows + 0.5)`` rows chosen by a seeded hash."""
    check_holdout(holdout)
    k = int(math.floor(holdout * n_rows + 0.5))
    order = sorted(range(n_rows), key=lambda row: hashlib.sha256(f"{seed}:{row}".encode()).digest())
    return set(order[:k])


def check_holdout(holdout: float) -> None:
    """Raise :class:`ReprtoolsError` unless ``0 <= holdout <= 1``."""
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 <= holdout <= 1:
        raise ReprtoolsError(f"holdout must be a number between 0 and 1, got {holdout!r}")


def split_rows(lang: str, rows: list[Row], part: str, holdout: float, seed: int, prefix: str = "") -> list[Example]:
    """Examples of one part of a labelled file split by :func:`heldout_rows`; ids ``xnli-{lang}-{prefix}{row}``."""
    check_part(part)
    held = heldout_rows(len(rows), holdout, seed) if part != "all" else set()
    keep = {"all": lambda r: True, "heldout": lambda r: r in held, "train": lambda r: r not in held}[part]
    return [xnli_example(lang, f"{prefix}{i}", *row) for i, row in enumerate(rows) if keep(i)]


def check_part(part: str) -> None:
    """Raise :class:`ReprtoolsError` unless ``part`` is ``train``, ``heldout`` or ``all``."""
    if part not in PARTS:
        raise ReprtoolsError(f"unknown XNLI part {part!r}; use 'train', 'heldout' or 'all'")


def xnli_files(directory: str | os.PathLike, langs=None, part: str = "train") -> dict[str, dict[str, Path]]:
    """Which files each language is read from for ``part``: ``{iso code: {"train"|"dev"|"test": path}}``.

    ``langs=None`` means every language with a file, in ISO-code order.
    """
    return _plan(directory, langs, part)[0]


def _plan(directory, langs, part: str) -> tuple[dict[str, dict[str, Path]], bool]:
    """(files per language, whether real train files are used)."""
    check_part(part)
    root = check_dir(directory, "xnli:", "dev-{lang}.tsv")
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(root.iterdir()):
        match = _FILE_RE.match(path.name)
        code = normalize_lang(match.group(2)) if match and path.is_file() else None
        if code is None:
            continue
        have = found.setdefault(code, {})
        if match.group(1) in have:
            raise ReprtoolsError(f"xnli:{root} has two {match.group(1)} files for {code!r} "
                                 f"({have[match.group(1)].name}, {path.name}); keep one")
        have[match.group(1)] = path
    if langs is None:
        if not found:
            raise ReprtoolsError(f"no dev-{{lang}}.tsv files in {root}; expected files such as dev-en.tsv")
        selected = {code: found[code] for code in sorted(found)}
    else:
        selected = {}
        for code in parse_langs(langs):
            if code not in found:
                present = ", ".join(sorted(found)) or "none"
                raise ReprtoolsError(
                    f"no {code!r} examples in xnli:{root} (no dev-{code}.tsv); languages present: {present}"
                )
            selected[code] = found[code]
    use_train = all("train" in have for have in selected.values())
    result: dict[str, dict[str, Path]] = {}
    for code, have in selected.items():
        labelled = {name: have[name] for name in ("dev", "test") if name in have}
        source = dict(list(labelled.items())[:1])  # dev, else test
        if use_train:
            chosen = {"train": have["train"]} if part in ("train", "all") else {}
            if part in ("heldout", "all"):
                chosen.update(source)
        else:
            chosen = source
        if not chosen:
            raise ReprtoolsError(
                f"xnli:{root} has no labelled rows for {code!r} part {part!r}; add dev-{code}.tsv"
            )
        result[code] = chosen
    return result, use_train


def read_xnli(directory: str | os.PathLike, langs=None, part: str = "train", holdout: float = 0.2,
              seed: int = 0) -> list[Example]:
    """Read XNLI examples of ``part`` (``"train"``, ``"heldout"`` or ``"all"``) for ``langs`` (default: all
    present); the module docstring says how parts are formed.  Files that are split must have the same number
    of rows in every language."""
    check_part(part)
    check_holdout(holdout)
    files, use_train = _plan(directory, langs, part)
    splitting = not use_train and part != "all"
    tables = {code: {name: read_xnli_tsv(path) for name, path in chosen.items()} for code, chosen in files.items()}
    if splitting:
        check_parallel({code: next(iter(t.items())) for code, t in tables.items()}, files)
    examples: list[Example] = []
    for code, table in tables.items():
        for name, rows in table.items():
            prefix = "" if name == "dev" else f"{name}-"
            examples.extend(split_rows(code, rows, part if splitting else "all", holdout, seed, prefix))
    if not examples:
        raise ReprtoolsError(f"xnli:{directory} part {part!r} with holdout {holdout} is empty; "
                             "use a holdout between 0 and 1")
    return examples


def check_parallel(tables: dict[str, tuple[str, list[Row]]], files: dict[str, dict[str, object]]) -> None:
    """Raise :class:`ReprtoolsError` unless every language's split file has the same number of rows."""
    counts = {code: len(rows) for code, (_, rows) in tables.items()}
    if len(set(counts.values())) > 1:
        first, *rest = counts
        other = next(code for code in rest if counts[code] != counts[first])
        raise ReprtoolsError(
            f"{files[other][tables[other][0]]} has {counts[other]} rows but {files[first][tables[first][0]]} has "
            f"{counts[first]}; XNLI files must be parallel (row i the same item in every language)"
        )


def load_xnli(spec: str, directory: str, langs: list[str] | None, part: str | None, holdout: float,
              seed: int) -> Dataset:
    """The :class:`Dataset` of an XNLI folder: ``part`` ``"train"`` (the default), ``"heldout"`` or ``"all"``."""
    part = "train" if part is None else part
    if not directory:
        raise ReprtoolsError("xnli: needs a directory, e.g. xnli:../shared/data/xnli")
    check_part(part)
    examples = read_xnli(directory, langs, part, holdout, seed)
    files = xnli_files(directory, langs, part)
    sources = tuple(SourceFile.of(path, code) for code, chosen in files.items() for path in chosen.values())
    return Dataset(spec, "xnli", tuple(examples), sources,
                   {"langs": list(files), "split": part, "holdout": holdout, "seed": seed})


def load_hf_xnli(spec: str, langs: list[str] | None, part: str | None, holdout: float, seed: int) -> Dataset:
    """XNLI from the Hugging Face hub (needs ``datasets`` and network): the labelled ``validation`` split of
    each of ``langs``, split into parts like a local dev file.  The hub has one dataset per language, so the
    languages must be named."""
    check_hub(spec, _LOCAL)
    part = "train" if part is None else part
    check_part(part)
    check_holdout(holdout)
    for code in langs or []:
        if code not in HF_XNLI_LANGS:
            raise ReprtoolsError(f"XNLI has no {code!r}; XNLI languages: {', '.join(HF_XNLI_LANGS)}")
    if not langs:
        raise ReprtoolsError(f"{spec} loads one XNLI language at a time, so name the languages to load (XNLI has: "
                             f"{', '.join(HF_XNLI_LANGS)})")
    tables: dict[str, list[Row]] = {}
    for code in langs:
        rows = hub_load(spec, _LOCAL, HF_XNLI, code, "validation")
        tables[code] = [(row["premise"].strip(), row["hypothesis"].strip(), LABELS[row["label"]]) for row in rows
                        if isinstance(row["label"], int) and 0 <= row["label"] < len(LABELS)]
    files = {code: {"validation": f"hf://{HF_XNLI}/{code}/validation"} for code in langs}
    if part != "all":
        check_parallel({code: ("validation", rows) for code, rows in tables.items()}, files)
    examples = [ex for code, rows in tables.items() for ex in split_rows(code, rows, part, holdout, seed)]
    if not examples:
        raise ReprtoolsError(f"{spec} part {part!r} with holdout {holdout} is empty; use a holdout between 0 and 1")
    sources = tuple(SourceFile(path=files[code]["validation"], lang=code) for code in langs)
    return Dataset(spec, "hf:xnli", tuple(examples), sources,
                   {"langs": list(langs), "split": part, "holdout": holdout, "seed": seed})
