"""What a scenario reports: its markdown body and its goals, each met, missed or n/a."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Goal:
    scenario: str
    goal: str
    measured: str
    met: bool | None
    #: Where missed: the figures of this run that bear on it.
    why: str = ""

    @property
    def verdict(self) -> str:
        return "n/a" if self.met is None else "met" if self.met else "**missed**"


@dataclass
class Section:
    number: int
    title: str
    body: list[str] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    seconds: float = 0.0

    def baseline(self, tree: object) -> None:
        """This section measured the baseline tree's sidecar: say so in its title and goals."""
        self.title += f" — baseline ({tree})"
        for goal in self.goals:
            goal.scenario = f"{goal.scenario} (baseline)"

    def markdown(self) -> str:
        return "\n".join([f"### {self.number}. {self.title}", "", *self.body, ""])


def summary_table(sections: list[Section]) -> str:
    lines = [
        "| scenario | goal | measured | verdict | figures (where missed) |",
        "|---|---|---|---|---|",
    ]
    for sec in sections:
        for g in sec.goals:
            lines.append(f"| {g.scenario} | {g.goal} | {g.measured} | {g.verdict} | {g.why} |")
    return "\n".join(lines)
