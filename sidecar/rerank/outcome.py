"""What happened to one search: the ``X-Rerank`` header, the metric label, the log field."""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.reasons import FALLBACK, Reason

__all__ = ["APPLIED", "CACHED", "SHADOWED", "Outcome", "Reason", "overall", "skipped"]


@dataclass(frozen=True)
class Outcome:
    status: str
    reason: Reason | None = None
    #: Hits reranked when the budget allowed only the top ``window`` of the window.
    window: int | None = None

    @classmethod
    def kept(cls, reason: Reason) -> Outcome:
        """ES's order stands, for ``reason``: ``fallback`` or ``skipped`` as it says."""
        return cls("fallback" if reason in FALLBACK else "skipped", reason)

    @property
    def header(self) -> str:
        if self.window is not None:
            return f"{self.status}; window={self.window}"
        return self.status if self.reason is None else f"{self.status}; reason={self.reason}"

    @property
    def label(self) -> str:
        if self.window is not None:
            return f"{self.status}:partial"  # not the number: metric labels stay few
        return self.status if self.reason is None else f"{self.status}:{self.reason}"


APPLIED = Outcome("applied")
CACHED = Outcome("cached")
SHADOWED = Outcome("shadow")


def skipped(reason: Reason) -> Outcome:
    return Outcome("skipped", reason)


def overall(outcomes: list[Outcome]) -> Outcome:
    """One outcome for a request of several searches (``_msearch``): the most telling."""
    for status in ("applied", "cached", "shadow", "fallback"):
        for o in outcomes:
            if o.status == status:
                return o
    return outcomes[0] if outcomes else skipped(Reason.NO_SEARCHES)
