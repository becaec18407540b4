"""Language identification for MT: py3langid restricted to the languages NLLB-200 has, mapped to NLLB codes."""

from __future__ import annotations

import functools
from typing import Any

from toolformer.errors import MissingExtraError

TARGET_LANG = "eng_Latn"

# py3langid's ISO codes → NLLB-200 codes. Languages NLLB lacks (la, br, fy, …) are left out, and detection is
# restricted to the languages listed here so that every answer has an NLLB code.
LANGID_TO_NLLB: dict[str, str] = {
    "ace": "ace_Latn", "af": "afr_Latn", "am": "amh_Ethi", "ar": "arb_Arab", "ary": "ary_Arab",
    "arz": "arz_Arab", "as": "asm_Beng", "az": "azj_Latn", "ba": "bak_Cyrl", "be": "bel_Cyrl",
    "bg": "bul_Cyrl", "bn": "ben_Beng", "bs": "bos_Latn", "ca": "cat_Latn", "crh": "crh_Latn",
    "cs": "ces_Latn", "cy": "cym_Latn", "da": "dan_Latn", "de": "deu_Latn", "dz": "dzo_Tibt",
    "el": "ell_Grek", "en": "eng_Latn", "eo": "epo_Latn", "es": "spa_Latn", "et": "est_Latn",
    "eu": "eus_Latn", "fa": "pes_Arab", "fi": "fin_Latn", "fo": "fao_Latn", "fr": "fra_Latn",
    "fuv": "fuv_Latn", "ga": "gle_Latn", "gd": "gla_Latn", "gl": "glg_Latn", "gu": "guj_Gujr",
    "gug": "grn_Latn", "ha": "hau_Latn", "he": "heb_Hebr", "hi": "hin_Deva", "hr": "hrv_Latn",
    "ht": "hat_Latn", "hu": "hun_Latn", "hy": "hye_Armn", "id": "ind_Latn", "ig": "ibo_Latn",
    "is": "isl_Latn", "it": "ita_Latn", "ja": "jpn_Jpan", "jv": "jav_Latn", "ka": "kat_Geor",
    "kab": "kab_Latn", "kik": "kik_Latn", "kk": "kaz_Cyrl", "km": "khm_Khmr", "kn": "kan_Knda",
    "ko": "kor_Hang", "ku": "kmr_Latn", "ky": "kir_Cyrl", "lb": "ltz_Latn", "lg": "lug_Latn",
    "lij": "lij_Latn", "ln": "lin_Latn", "lo": "lao_Laoo", "lt": "lit_Latn", "ltg": "ltg_Latn",
    "lv": "lvs_Latn", "mg": "plt_Latn", "mk": "mkd_Cyrl", "ml": "mal_Mlym", "mn": "khk_Cyrl",
    "mr": "mar_Deva", "ms": "zsm_Latn", "mt": "mlt_Latn", "my": "mya_Mymr", "ne": "npi_Deva",
    "nl": "nld_Latn", "nn": "nno_Latn", "no": "nob_Latn", "nso": "nso_Latn", "oc": "oci_Latn",
    "om": "gaz_Latn", "or": "ory_Orya", "pa": "pan_Guru", "pl": "pol_Latn", "ps": "pbt_Arab",
    "pt": "por_Latn", "qu": "quy_Latn", "ro": "ron_Latn", "ru": "rus_Cyrl", "rw": "kin_Latn",
    "sa": "san_Deva", "si": "sin_Sinh", "sk": "slk_Latn", "sl": "slv_Latn", "sn": "sna_Latn",
    "so": "som_Latn", "sq": "als_Latn", "sr": "srp_Cyrl", "st": "sot_Latn", "sv": "swe_Latn",
    "sw": "swh_Latn", "ta": "tam_Taml", "te": "tel_Telu", "tg": "tgk_Cyrl", "th": "tha_Thai",
    "tk": "tuk_Latn", "tl": "tgl_Latn", "tr": "tur_Latn", "tt": "tat_Cyrl", "ug": "uig_Arab",
    "uk": "ukr_Cyrl", "ur": "urd_Arab", "uz": "uzn_Latn", "vec": "vec_Latn", "vi": "vie_Latn",
    "xh": "xho_Latn", "yo": "yor_Latn", "yue": "yue_Hant", "zh": "zho_Hans", "zu": "zul_Latn",
}  # fmt: skip


def detect_language(text: str) -> str:
    """The NLLB code of `text`'s language (e.g. "deu_Latn"), by py3langid."""
    lang, _prob = _identifier().classify(text)
    return LANGID_TO_NLLB.get(lang, TARGET_LANG)


@functools.cache
def _identifier() -> Any:
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError as exc:
        raise MissingExtraError("py3langid is not installed: pip install 'py3langid>=0.4,<1'") from exc
    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    known = set(identifier.nb_classes)
    identifier.set_languages([code for code in LANGID_TO_NLLB if code in known])
    return identifier
