"""Extractive question answering scores: exact match and token F1, maximum over the gold answers.

Two normalisations, both reported because papers use both:

* **lm-evaluation-harness's TyDiQA-GoldP normalisation** (``lm_eval/tasks/tydiqa/utils.py``, after the MLQA
  evaluation script; Lewis et al., 2020): lower-case; remove every Unicode punctuation character (category
  ``P*``, so the Bengali/Hindi danda "।" and the Arabic comma go too); remove the articles *a/an/the* for
  English (and the Arabic prefix *al-*); split on whitespace.  We call lm-eval's own functions, so a score here is
  the score lm-eval reports for the same prediction (:func:`exact_match`, :func:`f1`).
* **SQuAD v1.1's normalisation** (Rajpurkar et al., 2016, the official ``evaluate-v1.1.py``; XTREME's TyDiQA
  numbers, Hu et al., 2020, use it): the same steps, but only ASCII punctuation (``string.punctuation``) is
  removed and English articles are removed in every language.  Written here because lm-eval has no SQuAD-v1.1 F1
  for generated answers and the ``evaluate`` library's metric needs the hub (:func:`squad_f1`).

Token F1 of a prediction p against one gold answer g, over the multisets of normalised tokens P and G:
``F1 = 2 * prec * rec / (prec + rec)`` with ``prec = |P ∩ G| / |P|``, ``rec = |P ∩ G| / |G|`` (0 when the
intersection is empty); exact match is 1 when the normalised strings are equal.  Both take the maximum over the
gold answers.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence


def _lm_eval_qa():
    from lm_eval.tasks.tydiqa import utils

    return utils


def normalize(text: str, lang: str) -> str:
    """lm-evaluation-harness's TyDiQA normalisation of ``text`` in language ``lang`` (ISO 639-1)."""
    return _lm_eval_qa().normalize_answer(text, lang)


def exact_match(prediction: str, answers: Sequence[str], lang: str) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer, else 0.0 (lm-eval's TyDiQA metric)."""
    qa = _lm_eval_qa()
    return float(qa.metric_max_over_ground_truths(qa.exact_match_score, prediction.strip(), list(answers), lang))


def f1(prediction: str, answers: Sequence[str], lang: str) -> float:
    """Token F1 with lm-eval's TyDiQA normalisation, maximum over the gold answers."""
    qa = _lm_eval_qa()
    return float(qa.metric_max_over_ground_truths(qa.f1_score, prediction.strip(), list(answers), lang))


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCT = frozenset(string.punctuation)


def squad_normalize(text: str) -> str:
    """SQuAD v1.1's answer normalisation: lower-case, drop ASCII punctuation and English articles, collapse
    whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _ASCII_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_f1(prediction: str, answers: Sequence[str]) -> float:
    """Token F1 with SQuAD v1.1's normalisation, maximum over the gold answers."""
    pred = squad_normalize(prediction).split()
    return max(_token_f1(pred, squad_normalize(gold).split()) for gold in answers)
