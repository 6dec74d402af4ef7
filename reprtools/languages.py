"""Languages: one canonical code per language, normalised by ``langcodes``; FLORES-200 and TyDiQA file names.

Everywhere in reprtools a language is its shortest ISO 639 code: the 639-1 code where one exists (``hi``,
``sw``), else the 639-3 code (``haw``, ``yue``).  :func:`check_lang` turns user input into that code and
:func:`parse_langs` does it for a list.  Normalisation is `langcodes`_' (IANA and CLDR data), so every
language with an ISO 639 code is accepted:

* 639-2/639-3 codes become 639-1 (``hin`` -> ``hi``); deprecated codes become current (``iw`` -> ``he``);
* an individual language becomes its macrolanguage (``swh`` -> ``sw``, ``arb`` -> ``ar``, ``cmn`` -> ``zh``,
  ``npi`` -> ``ne``), so FLORES-200 codes work too (``swh_Latn`` -> ``sw``);
* script, region and other subtags are dropped (``zh-Hant`` -> ``zh``, ``en-US`` -> ``en``);
* a language name in English or another language (``"Hindi"``, ``"Kiswahili"``) is looked up with
  :func:`langcodes.find` (data from the ``language_data`` package).

What no library knows is kept here: the FLORES-200 file name of the languages whose name is not
``{ISO 639-3}_{likely script}`` (:data:`FLORES_EXCEPTIONS`) and the TyDiQA file names (:data:`TYDIQA_NAMES`).

.. _langcodes: https://github.com/georgkrause/langcodes
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

import langcodes

from reprtools.errors import ReprtoolsError

#: What to give, for error messages.
EXPECTED = "give an ISO 639 code (e.g. 'hi', 'sw', 'yo'), a FLORES-200 code ('hin_Deva') or a name ('Hindi')"

#: FLORES-200 file names (``{code}.devtest``) that :func:`flores_code` cannot derive as ISO 639-3 code plus the
#: script ``langcodes`` thinks likely.  Checked against the 204 FLORES-200 codes in tests/test_data_languages.py.
FLORES_EXCEPTIONS: dict[str, str] = {
    # FLORES-200 names the individual language where ISO 639 has a macrolanguage.
    "ar": "arb_Arab", "ay": "ayr_Latn", "az": "azj_Latn", "din": "dik_Latn", "et": "est_Latn",
    "fa": "pes_Arab", "kr": "knc_Latn", "ku": "kmr_Latn", "lv": "lvs_Latn", "mg": "plt_Latn", "mn": "khk_Cyrl",
    "ms": "zsm_Latn", "ne": "npi_Deva", "om": "gaz_Latn", "or": "ory_Orya", "sq": "als_Latn", "sw": "swh_Latn",
    "uz": "uzn_Latn", "yi": "ydd_Hebr",
    # CLDR normalises Tagalog (tl) to Filipino (fil); FLORES-200 has Tagalog.
    "fil": "tgl_Latn",
    # Scripts langcodes has no (or another) likely script for.
    "acm": "acm_Arab", "acq": "acq_Arab", "ajp": "ajp_Arab", "azb": "azb_Arab", "crh": "crh_Latn",
    "ko": "kor_Hang", "pbt": "pbt_Arab", "tzm": "tzm_Tfng",
}

#: TyDiQA file-name language (``"bengali"`` in ``bengali_tydiqa_dev.json``) -> canonical code.
TYDIQA_NAMES: dict[str, str] = {
    "arabic": "ar", "bengali": "bn", "english": "en", "finnish": "fi", "indonesian": "id", "japanese": "ja",
    "korean": "ko", "russian": "ru", "swahili": "sw", "telugu": "te", "thai": "th",
}

_CODE = re.compile(r"^[a-z]{2,3}$")
# langcodes.find is lenient ("english2" finds English, "e" the language E), so only text that may be a name is
# looked up: three characters or more, no digits and none of the characters of paths and lists.
_NOT_IN_NAMES = set("0123456789_:/\\.,;=")
# Valid ISO 639 codes that name no language: undetermined, multiple, uncoded, no linguistic content.
_NOT_A_LANGUAGE = {"und", "mul", "mis", "zxx"}


def _canonical(tag: str) -> str | None:
    """The canonical code of a language tag, or ``None`` if ``tag`` is not a valid tag of one language."""
    try:
        language = langcodes.Language.get(langcodes.standardize_tag(tag, macro=True))
    except (langcodes.LanguageTagError, ValueError):
        return None
    code = language.language
    if not language.is_valid() or code is None or not _CODE.match(code) or code in _NOT_A_LANGUAGE:
        return None
    if "qaa" <= code <= "qtz":  # reserved for local use
        return None
    return code


@lru_cache(maxsize=4096)
def _lookup(text: str) -> str | None:
    code = _canonical(text)
    if code is not None or len(text) < 3 or not _NOT_IN_NAMES.isdisjoint(text):
        return code
    try:
        found = langcodes.find(text)
    except (LookupError, ImportError):  # ImportError: names need the language_data package
        return None
    return _canonical(found.to_tag())


def normalize_lang(code: str) -> str | None:
    """The canonical code of ``code`` (see the module docstring), or ``None`` if it names no language.

    For scanning file names, where a name that is not a language is skipped rather than an error.
    """
    if not isinstance(code, str) or not code.strip():
        return None
    return _lookup(code.strip())


def check_lang(code: str) -> str:
    """Return the canonical code of ``code`` (an ISO 639 code in any case, a FLORES-200 code, a BCP 47 tag or
    a language name); raises :class:`ReprtoolsError` saying what to give otherwise."""
    if not isinstance(code, str):
        raise ReprtoolsError(f"language must be a string such as 'hi', got {type(code).__name__} {code!r}")
    found = normalize_lang(code)
    if found is None:
        raise ReprtoolsError(f"unknown language {code!r}; {EXPECTED}")
    return found


def parse_langs(langs: str | Iterable[str]) -> list[str]:
    """Parse ``"en,hi,bn"`` (or a list) into canonical codes, duplicates dropped, order kept.

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
        raise ReprtoolsError("no languages given; list at least one, e.g. 'en,hi'")
    return result


#: Names the multilingual-NLP literature (TyDiQA, FLORES-200, XNLI papers) uses where CLDR's differs.
_LITERATURE_NAMES = {"bn": "Bengali"}


def language_name(code: str) -> str:
    """English name of a language (``"hi"`` -> ``"Hindi"``), from CLDR via ``langcodes``, except where the
    datasets and papers of the field use another (CLDR's "Bangla" is "Bengali" there)."""
    code = check_lang(code)
    return _LITERATURE_NAMES.get(code) or langcodes.Language.get(code).display_name()


def flores_code(code: str) -> str:
    """FLORES-200 code of a language (``"hi"`` -> ``"hin_Deva"``, ``"sw"`` -> ``"swh_Latn"``).

    ``{ISO 639-3 code}_{likely script}`` from ``langcodes``, or the name in :data:`FLORES_EXCEPTIONS`.  A
    language with several FLORES-200 scripts gets its usual one (``zh`` -> ``zho_Hans``).
    """
    code = check_lang(code)
    if code in FLORES_EXCEPTIONS:
        return FLORES_EXCEPTIONS[code]
    language = langcodes.Language.get(code)
    return f"{language.to_alpha3()}_{language.maximize().script}"


def tydiqa_name(code: str) -> str:
    """TyDiQA file-name language (``"bn"`` -> ``"bengali"``); :class:`ReprtoolsError` if TyDiQA lacks it."""
    code = check_lang(code)
    for name, have in TYDIQA_NAMES.items():
        if have == code:
            return name
    have = ", ".join(f"{c} ({n})" for n, c in TYDIQA_NAMES.items())
    raise ReprtoolsError(f"TyDiQA has no {language_name(code)} ({code}); TyDiQA languages: {have}")
