"""Extractive-QA scores: lm-eval's TyDiQA normalisation on Bengali, Telugu and Swahili answers, SQuAD v1.1 F1
against hand-computed values, and the maximum over gold answers."""

import pytest

from reprtools.measures.qa import exact_match, f1, normalize, squad_f1, squad_normalize


@pytest.mark.parametrize("text, lang, expected", [
    ("ঢাকা।", "bn", "ঢাকা"),                          # the danda is Unicode punctuation (Po)
    ("  রবীন্দ্রনাথ   ঠাকুর, ", "bn", "রবীন্দ্রনাথ ঠাকুর"),
    ("హైదరాబాద్.", "te", "హైదరాబాద్"),                 # Telugu vowel signs (Mn/Mc) are kept
    ("Dar es Salaam!", "sw", "dar es salaam"),
    ("The Nile", "en", "nile"),                         # English articles go
    ("The Nile", "sw", "the nile"),                     # ... only in English
])
def test_lm_eval_normalisation(text, lang, expected):
    assert normalize(text, lang) == expected


def test_danda_counts_in_lm_eval_but_not_in_squad():
    assert exact_match("ঢাকা।", ["ঢাকা"], "bn") == 1.0
    assert f1("ঢাকা।", ["ঢাকা"], "bn") == 1.0
    assert squad_normalize("ঢাকা।") == "ঢাকা।"          # SQuAD drops ASCII punctuation only
    assert squad_f1("ঢাকা।", ["ঢাকা"]) == 0.0


def test_token_f1_by_hand():
    # prediction "mji wa dar", gold "dar es salaam": one common token; P = 1/3, R = 1/3, F1 = 1/3
    assert f1("mji wa Dar", ["Dar es Salaam"], "sw") == pytest.approx(1 / 3)
    assert squad_f1("mji wa Dar", ["Dar es Salaam"]) == pytest.approx(1 / 3)
    # repeated tokens count as a multiset: "a a b" vs "a b": common 2, P = 2/3, R = 1, F1 = 0.8
    assert squad_f1("x x y", ["x y"]) == pytest.approx(0.8)
    assert f1("", ["Nairobi"], "sw") == 0.0


def test_maximum_over_gold_answers():
    answers = ["Mto Nile", "Nile"]
    assert exact_match("Nile", answers, "sw") == 1.0
    assert f1("Mto", answers, "sw") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert squad_f1("Nile river", answers) == pytest.approx(max(2 * 0.5 * 0.5 / 1.0, 2 * 0.5 * 1 / 1.5))
