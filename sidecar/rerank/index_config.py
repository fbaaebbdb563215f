"""Per-index rerank settings, resolved from ``rerank.indices`` (first matching pattern wins).

A search resolves its target once, into its plan (:class:`IndexSettings`): window,
instruction, budget, how scores are combined, how documents become text. Hits of a
multi-index search may come from indices with their own text fields, so their document
text is resolved by the hit's ``_index`` (:meth:`IndexRules.doc_text`), memoized.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cached_property, lru_cache

from sidecar.config import (
    FusionConfig,
    IndexRerankConfig,
    RerankConfig,
    ScoreMode,
    TypeAhead,
)
from sidecar.rerank.doc_text import PLACEHOLDER, DocTextSpec

#: Index names come from clients: the memo of resolved names is bounded.
_MEMO = 4096
_MEMO_KEY_CHARS = 256


@dataclass(frozen=True)
class ScoreOptions:
    mode: ScoreMode = "replace"
    fusion: FusionConfig = field(default_factory=FusionConfig)
    boost_fields: tuple[tuple[str, float], ...] = ()
    min_score: float | None = None


@dataclass(frozen=True)
class IndexSettings:
    window: int
    instruction: str | None
    budget_s: float
    score: ScoreOptions
    doc_text: DocTextSpec
    type_ahead: TypeAhead = "skip"


class IndexRules:
    def __init__(self, config: RerankConfig, max_chars_per_field: int = 4000) -> None:
        self._config = config
        #: ``tuning.limits.max_chars_per_field``: for ``default_fields``.
        self._max_chars = max_chars_per_field
        self._memo = lru_cache(maxsize=_MEMO)(self._resolve)

    def resolve(self, index: str) -> IndexSettings:
        # The memo is bounded in entries; a long name (clients write them) is not kept.
        return self._memo(index) if len(index) <= _MEMO_KEY_CHARS else self._resolve(index)

    def _entry(self, index: str) -> IndexRerankConfig | None:
        if not index:
            return None
        for entry in self._config.indices:
            if fnmatchcase(index, entry.pattern):
                return entry
        return None

    def _resolve(self, index: str) -> IndexSettings:
        rc = self._config
        entry = self._entry(index)
        if entry is None:
            return IndexSettings(
                window=rc.window,
                instruction=None,
                budget_s=rc.budget_ms / 1000.0,
                score=ScoreOptions(rc.score_mode, rc.fusion, (), rc.min_score),
                doc_text=DocTextSpec(rc.default_fields, None, self._max_chars),
                type_ahead=rc.type_ahead,
            )
        return IndexSettings(
            window=entry.window or rc.window,
            instruction=entry.instruction,
            budget_s=(entry.budget_ms or rc.budget_ms) / 1000.0,
            score=ScoreOptions(
                entry.score_mode or rc.score_mode,
                rc.fusion,
                tuple(entry.boost_fields.items()),
                rc.min_score,
            ),
            doc_text=DocTextSpec(entry.fields, entry.template, entry.max_chars_per_field),
            type_ahead=entry.type_ahead or rc.type_ahead,
        )

    def source_fields(self, fields: tuple[str, ...] | None = None) -> tuple[str, ...]:
        """The ``_source`` fields a rerank may read: the request's own ``rerank.fields``, or
        every configured text field (defaults, every entry's fields and template
        placeholders), and the fusion boost fields. The union, not the fields of the path's
        index: hits of a wildcard, an alias or a multi-index search are read with the
        settings of their own ``_index``."""
        boosts = self._boost_fields
        if fields:
            return tuple(dict.fromkeys(fields + boosts))
        return self._all_fields

    @cached_property
    def _boost_fields(self) -> tuple[str, ...]:
        return tuple(name for entry in self._config.indices for name in entry.boost_fields)

    @cached_property
    def _all_fields(self) -> tuple[str, ...]:
        names = list(self._config.default_fields)
        for entry in self._config.indices:
            names += entry.fields
            if entry.template:
                names += [m.group(1).strip() for m in PLACEHOLDER.finditer(entry.template)]
        return tuple(dict.fromkeys(names + list(self._boost_fields)))

    def text_fields(self, index: str) -> tuple[str, ...]:
        """The fields the model reads for ``index`` (its ``fields``, or its template's
        placeholders): text a user's words are matched against."""
        spec = self.resolve(index).doc_text
        if spec.template is not None:
            return tuple(m.group(1).strip() for m in PLACEHOLDER.finditer(spec.template))
        return spec.fields

    def doc_text(self, index: str, fields: tuple[str, ...] | None) -> DocTextSpec:
        """How a hit of ``index`` becomes text; a request's own ``rerank.fields`` win."""
        spec = self.resolve(index).doc_text
        return DocTextSpec(fields, None, spec.max_chars) if fields else spec
