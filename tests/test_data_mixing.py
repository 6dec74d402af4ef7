"""Mixing English with a target language at a fixed ratio."""

import hashlib

import pytest

from reprtools.data import Example, mix
from reprtools.data.mixing import mix_langs, target_count
from reprtools.errors import ReprtoolsError


def pool(lang, n):
    return [Example(f"{lang}-{i:05d}", lang, "i", "", "o") for i in range(n)]


DATA = pool("en", 3000) + pool("sw", 1600) + pool("hi", 50)


@pytest.mark.parametrize("total, expected", [
    (3000, {0: 0, 0.01: 30, 0.1: 300, 0.5: 1500}),
    (200, {0: 0, 0.01: 2, 0.1: 20, 0.5: 100}),
])
def test_study_ratios_exact_counts(total, expected):
    for ratio, n_target in expected.items():
        m = mix(DATA, "sw", ratio, total, seed=0)
        assert m.counts == {"en": total - n_target, "sw": n_target}
        assert len(m.examples) == total
        assert sum(ex.lang == "sw" for ex in m.examples) == n_target
        assert len({ex.id for ex in m.examples}) == total
        assert {ex.lang for ex in m.examples} <= {"en", "sw"}


def test_rounding_half_up():
    assert target_count(0.5, 5) == 3
    assert target_count(0.01, 250) == 3  # 2.5 -> 3
    assert target_count(0.01, 249) == 2
    assert target_count(1, 7) == 7
    assert target_count(0.145, 100) == 15  # 0.145 * 100 is 14.499999999999998 in floats


def test_deterministic_and_independent_of_input_order():
    a = mix(DATA, "sw", 0.1, 500, seed=7)
    b = mix(list(reversed(DATA)), "sw", 0.1, 500, seed=7)
    assert a.examples == b.examples and a.ids_sha256 == b.ids_sha256
    c = mix(DATA, "sw", 0.1, 500, seed=8)
    assert {ex.id for ex in c.examples} != {ex.id for ex in a.examples}
    assert c.ids_sha256 != a.ids_sha256


def test_ids_hash_and_manifest():
    m = mix(DATA, "sw", 0.01, 200, seed=3)
    expected = hashlib.sha256("\n".join(sorted(ex.id for ex in m.examples)).encode()).hexdigest()
    assert m.ids_sha256 == expected
    assert m.to_dict() == {"base_lang": "en", "target_lang": "sw", "ratio": 0.01, "total": 200, "seed": 3,
                           "counts": {"en": 198, "sw": 2}, "ids_sha256": expected,
                           "content_sha256": m.to_dict()["content_sha256"]}
    assert mix(DATA, "sw", 0.1, 200, seed=3).ids_sha256 != expected


def test_smaller_ratio_target_set_is_a_subset():
    small = {ex.id for ex in mix(DATA, "sw", 0.01, 3000).examples if ex.lang == "sw"}
    large = {ex.id for ex in mix(DATA, "sw", 0.1, 3000).examples if ex.lang == "sw"}
    assert small < large


def test_ratio_zero_needs_no_target_and_one_needs_no_base():
    assert mix(pool("en", 10), "te", 0, 10).counts == {"en": 10, "te": 0}
    assert mix(pool("sw", 10), "sw", 1, 10).counts == {"en": 0, "sw": 10}


@pytest.mark.parametrize("kwargs, fragment", [
    ({"ratio": 1.5}, "ratio must be a number between 0 and 1"),
    ({"ratio": -0.1}, "ratio must be a number between 0 and 1"),
    ({"total": 0}, "positive integer"),
    ({"total": 2.5}, "positive integer"),
    ({"target_lang": "en"}, "pick a target other than 'en'"),
    ({"target_lang": "xx"}, "unknown language 'xx'"),
    ({"target_lang": "te"}, "no 'te' examples in the data; languages present: en, hi, sw"),
    ({"target_lang": "hi", "ratio": 0.5, "total": 200},
     "only 50 'hi' examples available but ratio 0.5 of 200 needs 100"),
    ({"total": 5000, "ratio": 0.1}, "only 3000 'en' examples available"),
    ({"seed": "x"}, "seed must be an integer"),
])
def test_bad_arguments(kwargs, fragment):
    args = {"target_lang": "sw", "ratio": 0.1, "total": 100, **kwargs}
    with pytest.raises(ReprtoolsError) as err:
        mix(DATA, **args)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_duplicate_ids_rejected():
    with pytest.raises(ReprtoolsError, match="occurs twice"):
        mix(pool("en", 5) + pool("en", 5), "sw", 0, 3)


def test_mix_langs_are_the_languages_a_mix_draws_from():
    """What `reprtools train` loads: only the languages the ratio uses."""
    assert mix_langs("hi", 0.1) == ["en", "hi"]
    assert mix_langs("Hindi", 0) == ["en"]
    assert mix_langs("hin", 1) == ["hi"]
    with pytest.raises(ReprtoolsError, match="ratio must be a number between 0 and 1"):
        mix_langs("hi", 2)


@pytest.mark.parametrize("ratio", [0, 0.01, 0.5, 1])
def test_loading_only_mix_langs_gives_the_same_mix(ratio):
    langs = mix_langs("swh", ratio)
    only = [ex for ex in DATA if ex.lang in langs]
    assert len(only) < len(DATA)
    assert mix(only, "sw", ratio, 200, seed=1).examples == mix(DATA, "sw", ratio, 200, seed=1).examples
