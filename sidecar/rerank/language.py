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
confidence >= 0.9. It costs about 300 MB and a second to build, so it is built only when
the model declares its languages.
"""

from __future__ import annotations

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
        """Build the detector (about 80 MB, under a second); call off the event loop."""
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
        lang = self.detect(text)
        return lang is None or lang in self.languages
