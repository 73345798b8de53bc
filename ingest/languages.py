"""Languages of text: offline detection, their names, and the answer messages translated.

Detection is py3langid's (97 languages, its model inside the package, no network).
Codes are ISO 639-1 (``"en"``, ``"ru"``, ``"zh"``); ``""`` means no language could be
told (no letters, or too little text).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

DETECT_CHARS = 600  # a chunk's language is told from its first characters; more costs time, not accuracy
CONFIDENT = 0.9  # a detection less probable than this gives way to the document's language

_LETTER = re.compile(r"[^\W\d_]")
# Codes the detector gives that stand for a language under another code here: Wu is read
# and answered as Chinese, Bokmål and Nynorsk as Norwegian.
_SAME = {"wuu": "zh", "yue": "zh", "nb": "no", "nn": "no"}
_identifier: Any = None
_lock = threading.Lock()

NAMES = {
    "ar": "Arabic",
    "cs": "Czech",
    "da": "Danish",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "fi": "Finnish",
    "fr": "French",
    "he": "Hebrew",
    "hi": "Hindi",
    "hu": "Hungarian",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "nl": "Dutch",
    "no": "Norwegian",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "sv": "Swedish",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "vi": "Vietnamese",
    "zh": "Chinese",
}

# "The documents do not say.": what an answer says when its sources hold no answer.
DOCUMENTS_DO_NOT_SAY = {
    "en": "The documents do not say.",
    "de": "Die Dokumente sagen dazu nichts.",
    "es": "Los documentos no lo dicen.",
    "fr": "Les documents ne le disent pas.",
    "it": "I documenti non lo dicono.",
    "ja": "文書には書かれていません。",
    "ko": "문서에는 나와 있지 않습니다.",
    "nl": "De documenten zeggen hier niets over.",
    "pl": "Dokumenty tego nie mówią.",
    "pt": "Os documentos não dizem.",
    "ro": "Documentele nu spun acest lucru.",
    "ru": "В документах об этом не сказано.",
    "uk": "У документах про це не сказано.",
    "zh": "文档中没有提到这一点。",
}

# What an answer says when retrieval found nothing relevant to the question.
NOTHING_RELEVANT = {
    "en": "I don't know: the documents contain nothing relevant to this question.",
    "de": "Ich weiß es nicht: Die Dokumente enthalten nichts, was für diese Frage relevant ist.",
    "es": "No lo sé: los documentos no contienen nada relevante para esta pregunta.",
    "fr": "Je ne sais pas : les documents ne contiennent rien de pertinent pour cette question.",
    "it": "Non lo so: i documenti non contengono nulla di pertinente a questa domanda.",
    "ja": "わかりません。文書にはこの質問に関係する内容がありません。",
    "ko": "모르겠습니다. 문서에 이 질문과 관련된 내용이 없습니다.",
    "nl": "Ik weet het niet: de documenten bevatten niets wat relevant is voor deze vraag.",
    "pl": "Nie wiem: dokumenty nie zawierają nic istotnego dla tego pytania.",
    "pt": "Não sei: os documentos não contêm nada relevante para esta pergunta.",
    "ro": "Nu știu: documentele nu conțin nimic relevant pentru această întrebare.",
    "ru": "Не знаю: в документах нет ничего, что относится к этому вопросу.",
    "uk": "Не знаю: у документах немає нічого, що стосується цього питання.",
    "zh": "我不知道：文档中没有与这个问题相关的内容。",
}


def _model() -> Any:
    global _identifier
    with _lock:
        if _identifier is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _identifier


def warm_up() -> threading.Thread:
    """Load the detector's model in a background thread (it takes about a second)."""
    thread = threading.Thread(target=_model, daemon=True)
    thread.start()
    return thread


def _detect(text: str) -> tuple[str, float, int]:
    """The language of ``text``, the detector's probability for it, and the letters it was told from."""
    sample = text[:DETECT_CHARS]
    letters = len(_LETTER.findall(sample))
    if letters < 2:
        return "", 0.0, letters
    language, probability = _model().classify(sample)
    return _SAME.get(str(language), str(language)), float(probability), letters


def detect_language(text: str) -> str:
    """The ISO 639-1 code of the language ``text`` is written in, or ``""`` when it has no letters.

    Args:
        text: Any text; only its first ``DETECT_CHARS`` characters are read.
    """
    return _detect(text)[0]


def sure_language(text: str) -> str:
    """The language of ``text`` when the detector is sure of it (probability at least ``CONFIDENT``), else ``""``."""
    language, probability, _ = _detect(text)
    return language if probability >= CONFIDENT else ""


def document_languages(texts: Sequence[str]) -> list[str]:
    """The language of each chunk of one document: the detector's where it is sure, else the document's.

    Headings, names and table rows ("EXHIBIT 23", "| Federal | (612) | (219) |") give the
    detector too little to go on: it reads them as Latin, Hausa or Polish with a probability
    of a few percent, and their words would be indexed under that language's rules (English
    stop words kept as rare terms). A chunk detected with a probability under ``CONFIDENT``
    takes the document's language: the one most of its surely detected letters are in (of
    all its letters when none is sure). Chunks without letters stay ``""``.

    Args:
        texts: The chunk texts of one document, in any order.
    """
    found = [_detect(text) for text in texts]
    sure: Counter[str] = Counter()
    every: Counter[str] = Counter()
    for language, probability, letters in found:
        if language:
            every[language] += letters
            if probability >= CONFIDENT:
                sure[language] += letters
    main = (sure or every).most_common(1)[0][0] if every else ""
    return [language if not language or probability >= CONFIDENT else main for language, probability, _ in found]


def language_shares(texts: Iterable[str], windows: int = 4) -> dict[str, float]:
    """The share of letters written in each language, largest first, from up to ``windows`` samples of each text."""
    letters: Counter[str] = Counter()
    for text in texts:
        step = max(DETECT_CHARS, len(text) // windows)
        for at in range(0, min(len(text), step * windows), step):
            sample = text[at : at + DETECT_CHARS]
            language = detect_language(sample)
            if language:
                letters[language] += len(_LETTER.findall(sample))
    total = sum(letters.values())
    return {lang: n / total for lang, n in letters.most_common()} if total else {}


def language_name(code: str) -> str:
    """The English name of a language code (the code itself when unknown)."""
    return NAMES.get(code, code or "unknown")


def documents_do_not_say(language: str) -> str:
    """The sentence "The documents do not say." in ``language`` (ISO 639-1); English when untranslated."""
    return DOCUMENTS_DO_NOT_SAY.get(_base(language), DOCUMENTS_DO_NOT_SAY["en"])


def nothing_relevant(language: str) -> str:
    """The answer when retrieval found nothing relevant, in ``language``; English when there is no translation."""
    return NOTHING_RELEVANT.get(_base(language), NOTHING_RELEVANT["en"])


def _base(language: str) -> str:
    return language.lower().replace("_", "-").split("-")[0]
