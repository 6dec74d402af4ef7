"""Language codes: normalisation, validation, FLORES and TyDiQA names."""

import pytest

from reprtools.errors import ReprtoolsError
from reprtools.languages import LANGUAGES, TYDIQA_NAMES, check_lang, flores_code, lang_name, parse_langs, tydiqa_name


def test_study_languages_and_flores_codes():
    expected = {"en": "eng_Latn", "hi": "hin_Deva", "bn": "ben_Beng", "ur": "urd_Arab", "sw": "swh_Latn",
                "te": "tel_Telu"}
    for code, flores in expected.items():
        assert LANGUAGES[code].flores == flores
        assert flores_code(code) == flores
    assert lang_name("sw") == "Swahili"


@pytest.mark.parametrize("given", ["hi", "HI", " hi ", "hin_Deva", "Hindi"])
def test_check_lang_normalises(given):
    assert check_lang(given) == "hi"


@pytest.mark.parametrize("bad", ["xx", "", "english2", None, 3])
def test_check_lang_rejects_with_known_codes(bad):
    with pytest.raises(ReprtoolsError) as err:
        check_lang(bad)
    message = str(err.value)
    assert "\n" not in message
    if isinstance(bad, str):
        assert "en, hi, bn, ur, sw, te" in message


def test_parse_langs_dedupes_and_validates():
    assert parse_langs("en,hi,bn") == ["en", "hi", "bn"]
    assert parse_langs("en, HI ,en,,hin_Deva") == ["en", "hi"]
    assert parse_langs(["sw", "te"]) == ["sw", "te"]
    with pytest.raises(ReprtoolsError, match="no languages"):
        parse_langs("")
    with pytest.raises(ReprtoolsError, match="no languages"):
        parse_langs([])
    with pytest.raises(ReprtoolsError, match="unknown language 'klingon'"):
        parse_langs("en,klingon")


def test_tydiqa_names():
    assert tydiqa_name("bn") == "bengali"
    assert TYDIQA_NAMES["telugu"] == "te"
    for name in ("english", "bengali", "swahili", "telugu", "arabic", "finnish", "indonesian", "japanese",
                 "korean", "russian", "thai"):
        assert name in TYDIQA_NAMES
    with pytest.raises(ReprtoolsError, match="TyDiQA has no Hindi"):
        tydiqa_name("hi")
