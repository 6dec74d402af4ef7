"""Mix base-language (English) and target-language examples at a fixed ratio.

``n_target = floor(ratio * total + 0.5)`` (halves rounded up; see :func:`target_count`) and
``n_base = total - n_target``.  Each language's pool is sorted by id, shuffled with its own seeded
``random.Random`` and cut to the first n, so the result does not depend on input order, and for one seed the
target examples at a smaller ratio are a subset of those at a larger ratio (and the base examples the other
way round).  The chosen examples are then shuffled together with a seeded ``random.Random``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Iterable

from reprtools.data.overlap import content_sha256
from reprtools.data.records import Example, ids_sha256
from reprtools.errors import ReprtoolsError
from reprtools.languages import check_lang


@dataclass(frozen=True)
class Mix:
    """A mixed training set and what describes it in a run manifest.

    ``examples`` are shuffled; ``counts`` is ``{base_lang: n_base, target_lang: n_target}``; ``ids_sha256`` is
    the sha256 of the sorted chosen ids joined by ``"\\n"``; ``content_sha256`` is the sorted
    :func:`~reprtools.data.overlap.content_sha256` of every chosen example (one per example, repeats kept), so
    evaluation can refuse items the run trained on (:func:`~reprtools.data.overlap.check_heldout`).
    """

    examples: list[Example] = field(repr=False)
    counts: dict[str, int]
    ids_sha256: str
    ratio: float
    total: int
    seed: int
    base_lang: str
    target_lang: str
    content_sha256: tuple[str, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict:
        """Everything but the examples, for a manifest."""
        return {
            "base_lang": self.base_lang,
            "target_lang": self.target_lang,
            "ratio": self.ratio,
            "total": self.total,
            "seed": self.seed,
            "counts": dict(self.counts),
            "ids_sha256": self.ids_sha256,
            "content_sha256": list(self.content_sha256),
        }


def mix_langs(target_lang: str, ratio: float, base_lang: str = "en") -> list[str]:
    """The languages :func:`mix` draws from at ``ratio``: the base unless ``ratio == 1``, the target unless
    ``ratio == 0`` (so data need not hold a language the mix does not use)."""
    base, target = check_lang(base_lang), check_lang(target_lang)
    _check_ratio(ratio)
    return list(dict.fromkeys(lang for lang, used in ((base, ratio < 1), (target, ratio > 0)) if used))


def _check_ratio(ratio: float) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
        raise ReprtoolsError(f"ratio must be a number between 0 and 1, got {ratio!r}")


def target_count(ratio: float, total: int) -> int:
    """Number of target-language examples: ``floor(ratio * total + 0.5)``, halves rounded up.

    The product is first rounded to 9 decimals so that float noise (``0.145 * 100 == 14.499999999999998``)
    does not move a half either way.
    """
    return int(math.floor(round(ratio * total, 9) + 0.5))


def mix(examples: Iterable[Example], target_lang: str, ratio: float, total: int, seed: int = 0,
        base_lang: str = "en") -> Mix:
    """Choose ``total`` examples, ``ratio`` of them in ``target_lang`` and the rest in ``base_lang``, sampled
    without replacement (see the module docstring).  Examples in other languages are ignored.

    The target language must be present unless ``ratio == 0``, the base language unless ``ratio == 1``.
    Bad arguments, duplicate ids or too small a pool raise :class:`ReprtoolsError`.
    """
    target = check_lang(target_lang)
    base = check_lang(base_lang)
    if target == base:
        raise ReprtoolsError(f"target language and base language are both {base!r}; pick a target other than {base!r}")
    _check_ratio(ratio)
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise ReprtoolsError(f"total number of examples must be a positive integer, got {total!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ReprtoolsError(f"seed must be an integer, got {seed!r}")

    pools: dict[str, list[Example]] = {}
    seen: set[str] = set()
    for example in examples:
        if example.id in seen:
            raise ReprtoolsError(f"example id {example.id!r} occurs twice; ids must be unique before mixing")
        seen.add(example.id)
        pools.setdefault(example.lang, []).append(example)

    n_target = target_count(ratio, total)
    counts = {base: total - n_target, target: n_target}
    present = ", ".join(sorted(pools)) or "none"
    chosen: list[Example] = []
    for lang, n in counts.items():
        pool = sorted(pools.get(lang, []), key=lambda ex: ex.id)
        needed = ratio > 0 if lang == target else ratio < 1
        if needed and not pool:
            raise ReprtoolsError(f"no {lang!r} examples in the data; languages present: {present}")
        if n == 0:
            continue
        if len(pool) < n:
            raise ReprtoolsError(
                f"only {len(pool)} {lang!r} examples available but ratio {ratio} of {total} needs {n}; "
                "use a smaller --num-examples or ratio"
            )
        random.Random(f"reprtools-mix:{seed}:{lang}").shuffle(pool)
        chosen.extend(pool[:n])
    random.Random(f"reprtools-mix:{seed}:order").shuffle(chosen)
    return Mix(examples=chosen, counts=counts, ids_sha256=ids_sha256(chosen), ratio=ratio, total=total,
               seed=seed, base_lang=base, target_lang=target,
               content_sha256=tuple(sorted(content_sha256(ex) for ex in chosen)))
