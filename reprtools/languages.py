"""Supported languages: ISO 639-1 codes, English names, FLORES-200 codes and TyDiQA file names.

Everywhere in reprtools a language is its two-letter ISO 639-1 code (``en``, ``hi``, ...).
:func:`check_lang` turns user input into such a code; :func:`parse_langs` does it for a list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from reprtools.errors import ReprtoolsError


@dataclass(frozen=True)
class Language:
    """One supported language: ISO 639-1 ``code``, English ``name``, FLORES-200 ``flores`` code, and the
    language name TyDiQA uses in its file names (``tydiqa``; ``None`` for languages TyDiQA lacks)."""

    code: str
    name: str
    flores: str
    tydiqa: str | None = None


_TABLE = [
    # The six languages of the reference study.
    Language("en", "English", "eng_Latn", "english"),
    Language("hi", "Hindi", "hin_Deva"),
    Language("bn", "Bengali", "ben_Beng", "bengali"),
    Language("ur", "Urdu", "urd_Arab"),
    Language("sw", "Swahili", "swh_Latn", "swahili"),
    Language("te", "Telugu", "tel_Telu", "telugu"),
    # The other TyDiQA languages.
    Language("ar", "Arabic", "arb_Arab", "arabic"),
    Language("fi", "Finnish", "fin_Latn", "finnish"),
    Language("id", "Indonesian", "ind_Latn", "indonesian"),
    Language("ja", "Japanese", "jpn_Jpan", "japanese"),
    Language("ko", "Korean", "kor_Hang", "korean"),
    Language("ru", "Russian", "rus_Cyrl", "russian"),
    Language("th", "Thai", "tha_Thai", "thai"),
    # Other common languages (most are XNLI languages too).
    Language("fr", "French", "fra_Latn"),
    Language("de", "German", "deu_Latn"),
    Language("es", "Spanish", "spa_Latn"),
    Language("zh", "Chinese", "zho_Hans"),
    Language("ta", "Tamil", "tam_Taml"),
    Language("mr", "Marathi", "mar_Deva"),
    Language("bg", "Bulgarian", "bul_Cyrl"),
    Language("el", "Greek", "ell_Grek"),
    Language("tr", "Turkish", "tur_Latn"),
    Language("vi", "Vietnamese", "vie_Latn"),
]

#: Every supported language, by ISO 639-1 code.
LANGUAGES: dict[str, Language] = {lang.code: lang for lang in _TABLE}

#: TyDiQA file-name language (``"bengali"``) -> ISO 639-1 code (``"bn"``).
TYDIQA_NAMES: dict[str, str] = {lang.tydiqa: lang.code for lang in _TABLE if lang.tydiqa}

# Accepted spellings (lower-cased): ISO code, FLORES-200 code, English name.
_ALIASES: dict[str, str] = {}
for _lang in _TABLE:
    _ALIASES[_lang.code] = _lang.code
    _ALIASES[_lang.flores.lower()] = _lang.code
    _ALIASES[_lang.name.lower()] = _lang.code


def known_codes() -> str:
    """The supported ISO codes as one comma-separated string (for error messages)."""
    return ", ".join(LANGUAGES)


def check_lang(code: str) -> str:
    """Return the ISO 639-1 code for ``code``.

    Accepts an ISO code in any case (``"HI"``), a FLORES-200 code (``"hin_Deva"``) or an English name
    (``"Hindi"``); raises :class:`ReprtoolsError` listing the known codes otherwise.
    """
    if not isinstance(code, str):
        raise ReprtoolsError(f"language must be a string such as 'hi', got {type(code).__name__} {code!r}")
    found = _ALIASES.get(code.strip().lower())
    if found is None:
        raise ReprtoolsError(f"unknown language {code!r}; use an ISO 639-1 code, one of: {known_codes()}")
    return found


def parse_langs(langs: str | Iterable[str]) -> list[str]:
    """Parse ``"en,hi,bn"`` (or a list of codes) into validated ISO codes, duplicates dropped, order kept.

    Raises :class:`ReprtoolsError` for an unknown language or an empty list.
    """
    if isinstance(langs, str):
        items = [part for part in langs.split(",") if part.strip()]
    elif langs is None:
        items = []
    else:
        items = list(langs)
    result: list[str] = []
    for item in items:
        code = check_lang(item)
        if code not in result:
            result.append(code)
    if not result:
        raise ReprtoolsError(f"no languages given; list at least one, e.g. 'en,hi' (known: {known_codes()})")
    return result


def lang_name(code: str) -> str:
    """English name of a language (``"hi"`` -> ``"Hindi"``)."""
    return LANGUAGES[check_lang(code)].name


def flores_code(code: str) -> str:
    """FLORES-200 code of a language (``"hi"`` -> ``"hin_Deva"``)."""
    return LANGUAGES[check_lang(code)].flores


def tydiqa_name(code: str) -> str:
    """TyDiQA file-name language (``"bn"`` -> ``"bengali"``); :class:`ReprtoolsError` if TyDiQA lacks it."""
    lang = LANGUAGES[check_lang(code)]
    if lang.tydiqa is None:
        have = ", ".join(f"{c} ({n})" for n, c in TYDIQA_NAMES.items())
        raise ReprtoolsError(f"TyDiQA has no {lang.name} ({lang.code}); TyDiQA languages: {have}")
    return lang.tydiqa
