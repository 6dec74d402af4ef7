"""Keeping evaluation items out of a run's training data: content hashes and the check that uses them.

Ids cannot detect overlap on their own (XNLI rows have none of their own, and the same question may come from two
files), so a run records what it trained on by content: :func:`content_sha256` of every chosen example, in
``run.json``'s ``data.content_sha256`` (see :mod:`reprtools.run_manifest`).  :func:`check_heldout` refuses to
score a run on an item whose content it trained on.

The hash covers the prompt -- instruction and input -- and *not* the output: an item the model saw with another
label (a relabelled duplicate) is still contaminated, since the model has seen the question.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Iterable

from reprtools.data.records import Example
from reprtools.errors import ReprtoolsError


def content_sha256(example: Example) -> str:
    """First 16 hex digits of the sha256 (UTF-8) of ``norm(instruction) + "\\n" + norm(input)``, where ``norm``
    NFC-normalises a text, collapses every run of whitespace to one space and strips the ends, so the same text
    typed differently hashes equal.  Each part is normalised on its own so that the newline between them still
    separates them (``("a b", "c")`` and ``("a", "b c")`` differ)."""
    text = "\n".join(" ".join(unicodedata.normalize("NFC", part).split())
                     for part in (example.instruction, example.input))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def trained_content(manifest: dict) -> set[str] | None:
    """The content hashes of the examples a run trained on, from its ``run.json`` (a dict); ``None`` for a run
    written before runs recorded them."""
    data = manifest.get("data") if isinstance(manifest, dict) else None
    hashes = data.get("content_sha256") if isinstance(data, dict) else None
    if hashes is None:
        return None
    if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
        raise ReprtoolsError("run.json data.content_sha256 is not a list of hashes; the run file is damaged, "
                             "train the run again")
    return set(hashes)


def check_heldout(examples: Iterable[Example], manifest: dict, run_name: str) -> int:
    """Raise :class:`ReprtoolsError` if any of ``examples`` has the content of an example the run described by
    ``manifest`` (its ``run.json``) trained on; return how many were checked (0 when the run records no
    content hashes, see :func:`trained_content`)."""
    trained = trained_content(manifest)
    examples = list(examples)
    if trained is None:
        return 0
    seen = [ex for ex in examples if content_sha256(ex) in trained]
    if seen:
        langs = list(dict.fromkeys(ex.lang for ex in seen))
        in_langs = sum(ex.lang in langs for ex in examples)
        raise ReprtoolsError(
            f"{len(seen)} of the {in_langs} evaluation items in {', '.join(langs)} were in {run_name}'s training "
            f"data (first: {seen[0].id}); evaluate on held-out items (split 'heldout', with the holdout and seed "
            "the run's data was split with) or on data the run never saw"
        )
    return len(examples)
