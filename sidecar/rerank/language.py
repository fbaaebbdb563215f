"""Language gate: do not rerank queries in languages the model does not serve.

An English-only model reranking Arabic queries does real harm (on one Arabic set MiniLM
reranking took nDCG@10 from 0.74 to 0.31), so such queries keep the BM25 order. Detection
uses lingua (a maintained library); only a confident detection of an unsupported language
skips the rerank: when detection is not confident, the query is reranked. Short queries are
where detection guesses: lingua calls ``password`` Italian (0.64), ``pizza`` Italian,
``helpdesk`` Dutch, ``kindergarten`` German, all with more than 0.5, so a one-word query
must be detected with at least ``MIN_CONFIDENCE_ONE_WORD`` (``contraseña`` is Spanish at
1.0) and a longer one with ``MIN_CONFIDENCE`` (``Passwort zurücksetzen`` is German at 0.998,
``Wie kann ich mein Passwort ändern`` at 0.87; ``printer not working`` is English at 0.64).

Measured on this project's sample queries and the 50 MS MARCO queries: lingua's
low-accuracy mode over all 75 languages calls a third of the short English queries Latin,
Tagalog or Esperanto with confidence over 0.5; high-accuracy mode over a candidate set of
widely used languages makes no such mistake and keeps Chinese, Arabic, German and French at
confidence >= 0.9. Its language models cost about 300 MB and 3 s of CPU, with the GIL
held, to load; lingua loads them once per process. So they are loaded only when the model
declares its languages, and before the port opens (``sidecar.app``).

Before detection, the gate asks the question that needs no guess: could this be a language
the model reads? A query none of whose letters is in a script one of the model's languages
is written in (Arabic, Cyrillic, Han, Devanagari... for an English model) is not one of
them, however short: lingua is unsure of three- and four-word Arabic questions, and let 8
of 50 through to an English model, which ranked them worse than ES. A query with a letter
in a script the model's languages use goes on to detection; a model language whose scripts
this module does not know turns the script check off (it cannot say what the model reads).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

#: Below this confidence a detection is treated as "unknown" and does not block.
MIN_CONFIDENCE = 0.8
#: The same for a query of one word, which lingua judges least reliably.
MIN_CONFIDENCE_ONE_WORD = 0.95
#: Candidates besides the served languages: the languages search traffic most often comes
#: in. A query in a language outside them is detected as its nearest candidate, which is
#: as good as "not served".
CANDIDATES = (
    "en",
    "de",
    "fr",
    "es",
    "it",
    "pt",
    "nl",
    "ru",
    "ar",
    "zh",
    "ja",
    "ko",
    "hi",
    "tr",
    "pl",
    "fa",
)


#: The scripts each language is written in (ISO 639-1 codes; script names as Unicode's
#: character names begin, ``HAN`` for CJK ideographs).
_LATIN = (
    "en de fr es it pt nl pl tr sv da no nb nn fi is et lv lt cs sk sl hr bs ro hu sq ca eu "
    "gl ga cy mt id ms tl vi af sw so yo ha ig zu xh st tn ts eo la uz lb fo br co fy gd ht "
    "haw mg mi ny sm sn su jv ceb ku rw qu ay gn"
)
SCRIPTS: dict[str, frozenset[str]] = {
    **{code: frozenset({"LATIN"}) for code in _LATIN.split()},
    **{
        code: frozenset({"CYRILLIC"})
        for code in ["ru", "uk", "be", "bg", "mk", "kk", "ky", "tg", "mn"]
    },
    **{code: frozenset({"ARABIC"}) for code in ["ar", "fa", "ur", "ps", "sd", "ug"]},
    **{code: frozenset({"DEVANAGARI"}) for code in ["hi", "mr", "ne", "sa"]},
    **{code: frozenset({"BENGALI"}) for code in ("bn", "as")},
    "sr": frozenset({"CYRILLIC", "LATIN"}),
    "az": frozenset({"LATIN", "CYRILLIC"}),
    "he": frozenset({"HEBREW"}),
    "yi": frozenset({"HEBREW"}),
    "el": frozenset({"GREEK"}),
    "pa": frozenset({"GURMUKHI"}),
    "gu": frozenset({"GUJARATI"}),
    "or": frozenset({"ORIYA"}),
    "ta": frozenset({"TAMIL"}),
    "te": frozenset({"TELUGU"}),
    "kn": frozenset({"KANNADA"}),
    "ml": frozenset({"MALAYALAM"}),
    "si": frozenset({"SINHALA"}),
    "th": frozenset({"THAI"}),
    "lo": frozenset({"LAO"}),
    "km": frozenset({"KHMER"}),
    "my": frozenset({"MYANMAR"}),
    "ka": frozenset({"GEORGIAN"}),
    "hy": frozenset({"ARMENIAN"}),
    "am": frozenset({"ETHIOPIC"}),
    "ti": frozenset({"ETHIOPIC"}),
    "bo": frozenset({"TIBETAN"}),
    "zh": frozenset({"HAN"}),
    "ja": frozenset({"HAN", "HIRAGANA", "KATAKANA"}),
    "ko": frozenset({"HANGUL", "HAN"}),
}
_KNOWN_SCRIPTS = frozenset().union(*SCRIPTS.values())


def script_of(char: str) -> str | None:
    """The script of a letter (None for anything else, or a script not in ``SCRIPTS``)."""
    if not unicodedata.category(char).startswith("L"):
        return None
    name = unicodedata.name(char, "")
    if name.startswith(("CJK ", "KANGXI ")):
        return "HAN"
    if name.startswith("FULLWIDTH LATIN"):
        return "LATIN"
    first = name.split(" ", 1)[0]
    if first == "KATAKANA-HIRAGANA":
        return "KATAKANA"
    return first if first in _KNOWN_SCRIPTS else None


def could_be(text: str, languages: frozenset[str]) -> bool:
    """Whether ``text`` could be in one of ``languages``: it has no letter of a known
    script, or one in a script they use. True when any of them has scripts this module
    does not know."""
    if any(code not in SCRIPTS for code in languages):
        return True
    read = frozenset().union(*(SCRIPTS[code] for code in languages))
    scripts = {script for script in map(script_of, text) if script is not None}
    return not scripts or bool(scripts & read)


def _languages(codes: frozenset[str]) -> list[Language]:
    out = []
    for code in sorted(codes | set(CANDIDATES)):
        iso = getattr(IsoCode639_1, code.upper(), None)
        if iso is not None:
            out.append(Language.from_iso_code_639_1(iso))
    return out


class LanguageGate:
    def __init__(self, languages: tuple[str, ...]) -> None:
        self.languages = frozenset(code.lower() for code in languages)
        self._detector: LanguageDetector | None = None
        self._detect = lru_cache(maxsize=8192)(self._detect_uncached)

    @property
    def active(self) -> bool:
        return bool(self.languages)

    def load(self) -> None:
        """Build the detector (its language models, the first time in a process: seconds
        with the GIL held); call off the event loop."""
        if not self.active or self._detector is not None:
            return
        self._detector = (
            LanguageDetectorBuilder.from_languages(*_languages(self.languages))
            .with_preloaded_language_models()
            .build()
        )
        # The first detection per script is slow (lazy tables); pay for it at start-up.
        for sample in ("a short english sentence", "ein kurzer Satz", "一个句子", "جملة قصيرة"):
            self._detector.compute_language_confidence_values(sample)

    def _detect_uncached(self, text: str) -> str | None:
        if self._detector is None:
            return None
        values = self._detector.compute_language_confidence_values(text)
        needed = MIN_CONFIDENCE if len(text.split()) > 1 else MIN_CONFIDENCE_ONE_WORD
        if not values or values[0].value < needed:
            return None
        return values[0].language.iso_code_639_1.name.lower()

    def detect(self, text: str) -> str | None:
        return self._detect(text[:500])

    def allows(self, text: str) -> bool:
        if not self.active:
            return True
        if not could_be(text[:500], self.languages):
            return False  # no letter in a script the model reads: not its language
        lang = self.detect(text)
        return lang is None or lang in self.languages
