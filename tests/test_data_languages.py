"""Language codes: normalisation by langcodes, names, FLORES-200 and TyDiQA file names."""

import string

import langcodes
import pytest

from reprtools.errors import ReprtoolsError
from reprtools.languages import (FLORES_EXCEPTIONS, TYDIQA_NAMES, check_lang, flores_code, language_name,
                                 normalize_lang, parse_langs, tydiqa_name)

# The 204 FLORES-200 codes, as the dataset's files are named (facebookresearch/flores, flores200/README.md).
FLORES200 = """
ace_Arab ace_Latn acm_Arab acq_Arab aeb_Arab afr_Latn ajp_Arab aka_Latn amh_Ethi apc_Arab arb_Arab arb_Latn
ars_Arab ary_Arab arz_Arab asm_Beng ast_Latn awa_Deva ayr_Latn azb_Arab azj_Latn bak_Cyrl bam_Latn ban_Latn
bel_Cyrl bem_Latn ben_Beng bho_Deva bjn_Arab bjn_Latn bod_Tibt bos_Latn bug_Latn bul_Cyrl cat_Latn ceb_Latn
ces_Latn cjk_Latn ckb_Arab crh_Latn cym_Latn dan_Latn deu_Latn dik_Latn dyu_Latn dzo_Tibt ell_Grek eng_Latn
epo_Latn est_Latn eus_Latn ewe_Latn fao_Latn fij_Latn fin_Latn fon_Latn fra_Latn fur_Latn fuv_Latn gla_Latn
gle_Latn glg_Latn grn_Latn guj_Gujr hat_Latn hau_Latn heb_Hebr hin_Deva hne_Deva hrv_Latn hun_Latn hye_Armn
ibo_Latn ilo_Latn ind_Latn isl_Latn ita_Latn jav_Latn jpn_Jpan kab_Latn kac_Latn kam_Latn kan_Knda kas_Arab
kas_Deva kat_Geor knc_Arab knc_Latn kaz_Cyrl kbp_Latn kea_Latn khm_Khmr kik_Latn kin_Latn kir_Cyrl kmb_Latn
kmr_Latn kon_Latn kor_Hang lao_Laoo lij_Latn lim_Latn lin_Latn lit_Latn lmo_Latn ltg_Latn ltz_Latn lua_Latn
lug_Latn luo_Latn lus_Latn lvs_Latn mag_Deva mai_Deva mal_Mlym mar_Deva min_Arab min_Latn mkd_Cyrl plt_Latn
mlt_Latn mni_Beng khk_Cyrl mos_Latn mri_Latn mya_Mymr nld_Latn nno_Latn nob_Latn npi_Deva nso_Latn nus_Latn
nya_Latn oci_Latn gaz_Latn ory_Orya pag_Latn pan_Guru pap_Latn pes_Arab pol_Latn por_Latn prs_Arab pbt_Arab
quy_Latn ron_Latn run_Latn rus_Cyrl sag_Latn san_Deva sat_Olck scn_Latn shn_Mymr sin_Sinh slk_Latn slv_Latn
smo_Latn sna_Latn snd_Arab som_Latn sot_Latn spa_Latn als_Latn srd_Latn srp_Cyrl ssw_Latn sun_Latn swe_Latn
swh_Latn szl_Latn tam_Taml tat_Cyrl tel_Telu tgk_Cyrl tgl_Latn tha_Thai tir_Ethi taq_Latn taq_Tfng tpi_Latn
tsn_Latn tso_Latn tuk_Latn tum_Latn tur_Latn twi_Latn tzm_Tfng uig_Arab ukr_Cyrl umb_Latn urd_Arab uzn_Latn
vec_Latn vie_Latn war_Latn wol_Latn xho_Latn ydd_Hebr yor_Latn yue_Hant zho_Hans zho_Hant zsm_Latn zul_Latn
""".split()

# FLORES-200 files a canonical code cannot pick: a second script of a language, or a variety that langcodes
# merges into another language (Dari into Persian, Twi into Akan).
NOT_DEFAULT = {"ace_Arab", "arb_Latn", "bjn_Arab", "kas_Deva", "knc_Arab", "min_Arab", "prs_Arab", "taq_Tfng",
               "twi_Latn", "zho_Hant"}


@pytest.mark.parametrize("spellings, code", [
    (["sw", "swa", "swh", "swh_Latn", "SW", " sw ", "Swahili", "kiswahili", "sw-KE"], "sw"),
    (["hi", "hin", "HI", "hin_Deva", "Hindi", "hi-IN"], "hi"),
    (["en", "eng", "eng_Latn", "English", "en-US"], "en"),
    (["zh", "zho", "chi", "cmn", "zho_Hans", "zh-Hant", "Chinese"], "zh"),
    (["ar", "ara", "arb", "arb_Arab"], "ar"),
    (["yo", "yor", "yor_Latn", "Yoruba"], "yo"),
    (["ne", "nep", "npi", "npi_Deva", "Nepali"], "ne"),
    (["haw", "Hawaiian"], "haw"),
    (["he", "iw", "heb"], "he"),
])
def test_every_spelling_names_one_canonical_code(spellings, code):
    assert {check_lang(s) for s in spellings} == {code}


@pytest.mark.parametrize("bad", ["xx", "", "  ", "english2", "elvish", "und", "zxx", "qaa", "x-foo", "e", "a/b"])
def test_unknown_language_is_one_line_saying_what_to_give(bad):
    assert normalize_lang(bad) is None
    with pytest.raises(ReprtoolsError) as err:
        check_lang(bad)
    message = str(err.value)
    assert "\n" not in message and f"unknown language {bad!r}" in message
    assert "ISO 639 code" in message and "FLORES-200 code" in message


@pytest.mark.parametrize("bad", [None, 3, ["en"]])
def test_non_string_language(bad):
    with pytest.raises(ReprtoolsError, match="language must be a string"):
        check_lang(bad)


def test_canonical_code_is_the_shortest_iso_code():
    two_letter = {a + b: normalize_lang(a + b) for a in string.ascii_lowercase for b in string.ascii_lowercase}
    # ISO 639-1 codes stay two letters, except where CLDR merges one into a three-letter language
    assert {x: c for x, c in two_letter.items() if c is not None and c != x and len(c) != 2} == {
        "tl": "fil", "bh": "bho"}
    # a three-letter canonical code is one whose ISO 639-3 code has no ISO 639-1 code
    alpha3_of_639_1 = {langcodes.Language.get(x).to_alpha3() for x, c in two_letter.items() if c == x}
    for flores in FLORES200:
        code = check_lang(flores)
        assert check_lang(code) == code, flores  # canonical codes are fixed points
        assert len(code) == 2 or (len(code) == 3 and code not in alpha3_of_639_1), flores


def test_parse_langs_dedupes_and_validates():
    assert parse_langs("en,hi,bn") == ["en", "hi", "bn"]
    assert parse_langs("en, HI ,eng,,hin_Deva,Hindi") == ["en", "hi"]
    assert parse_langs(["swh", "yo", "sw"]) == ["sw", "yo"]
    for empty in ("", " , ", [], None):
        with pytest.raises(ReprtoolsError, match="no languages"):
            parse_langs(empty)
    with pytest.raises(ReprtoolsError, match="unknown language 'xx'"):
        parse_langs("en,xx")


def test_language_name():
    assert language_name("hi") == "Hindi"
    assert language_name("swh_Latn") == "Swahili"
    assert language_name("yo") == "Yoruba"
    assert language_name("ne") == "Nepali"
    with pytest.raises(ReprtoolsError, match="unknown language"):
        language_name("xx")


def test_flores_codes_round_trip_for_all_of_flores200():
    wrong = {f: flores_code(check_lang(f)) for f in FLORES200 if f not in NOT_DEFAULT
             and flores_code(check_lang(f)) != f}
    assert wrong == {}
    # the languages behind the files a code cannot pick still have a FLORES file of their own
    assert {flores_code(check_lang(f)) for f in NOT_DEFAULT} <= set(FLORES200)
    # every exception names a FLORES-200 file, and is needed
    assert set(FLORES_EXCEPTIONS.values()) <= set(FLORES200)
    assert flores_code("yo") == "yor_Latn" and flores_code("haw") == "haw_Latn"  # derived, not listed


def test_tydiqa_names_are_the_english_names():
    for name, code in TYDIQA_NAMES.items():
        assert check_lang(name) == code  # the file-name language is the language's English name
        assert tydiqa_name(code) == name
    assert tydiqa_name("swh") == "swahili"
    with pytest.raises(ReprtoolsError, match=r"TyDiQA has no Hindi \(hi\); TyDiQA languages: ar \(arabic\)"):
        tydiqa_name("hi")
