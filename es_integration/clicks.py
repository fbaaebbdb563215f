"""A cascade click model (Craswell, Zoeter, Taylor and Ramsey, "An experimental comparison
of click position-bias models", WSDM 2008), for simulated users.

The user reads the results from the top. At each one she clicks with a probability that
depends on how relevant it is (its judged grade), and after a click she stops with a
probability that also depends on the grade (a good result ends the search). She never reads
past ``depth``. Judged sets drive it: the grade of a hit is its judgment (0 when unjudged).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CascadeClicks:
    #: P(click | grade), by grade 0, 1, 2...; grades past the end use the last value.
    click: tuple[float, ...]
    #: P(stop after a click | grade), likewise.
    stop: tuple[float, ...]
    #: Results read at most.
    depth: int = 10

    def clicks(self, grades: Sequence[int], rng: random.Random) -> list[int]:
        """The positions (0-based) clicked on a page whose hits have ``grades``."""
        out: list[int] = []
        for position, grade in enumerate(grades[: self.depth]):
            if rng.random() < _at(self.click, grade):
                out.append(position)
                if rng.random() < _at(self.stop, grade):
                    break
        return out


def _at(values: tuple[float, ...], grade: int) -> float:
    return values[min(max(grade, 0), len(values) - 1)]


#: Users who mostly click what is relevant and stop once they found it: the demo's, for a
#: judged set with one grade of relevance.
DEMO_USERS = CascadeClicks(click=(0.08, 0.85), stop=(0.3, 0.8))
