"""The report for a person: a table, and the cohorts over time drawn as an SVG (no plotting
library: the sidecar ships without one)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any
from xml.sax.saxutils import escape

COLUMNS = (
    ("queries", "queries", "{:d}"),
    ("queries_with_click", "with a click", "{:d}"),
    ("first_click_rate", "first click on #1", "{:.1%}"),
    ("mrr", "MRR", "{:.3f}"),
    ("abandonment_rate", "abandoned", "{:.1%}"),
    ("zero_result_rate", "no results", "{:.1%}"),
)
COLOURS = {"on": "#1f77b4", "off": "#7f7f7f", "shadow": "#9467bd", "interleave": "#ff7f0e"}


def table(figures: dict[str, Any]) -> str:
    """The cohorts and the interleaving, as text."""
    head = ["cohort", *(title for _, title, _ in COLUMNS)]
    rows = [head]
    for mode, cohort in figures["cohorts"].items():
        rows.append([mode, *(fmt.format(cohort[key]) for key, _, fmt in COLUMNS)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    inter = figures["interleaving"]
    clicks = figures["clicks"]
    lines += [
        "",
        f"interleaving: {inter['queries']} queries, reranker wins {inter['rerank_wins']}, "
        f"ES wins {inter['es_wins']}, ties {inter['ties']}, p = {inter['p_value']:.3g}",
        f"verdict: {inter['verdict']}",
        f"clicks: {clicks['matched']} on logged hits, {clicks['on_other_objects']} on other "
        f"objects, {clicks['on_unknown_queries']} on queries not logged in the period",
    ]
    return "\n".join(lines)


def svg(days: Sequence[tuple[date, dict[str, Any]]], metric: str = "first_click_rate") -> str:
    """Each cohort's ``metric`` per day, as lines on one chart."""
    width, height, pad = 720, 360, 48
    series: dict[str, list[tuple[int, float]]] = {}
    for x, (_, figures) in enumerate(days):
        for mode, cohort in figures["cohorts"].items():
            if cohort["queries"]:
                series.setdefault(mode, []).append((x, float(cohort[metric])))
    top = max((v for points in series.values() for _, v in points), default=1.0) or 1.0
    span = max(1, len(days) - 1)

    def at(x: int, v: float) -> str:
        across = pad + x * (width - 2 * pad) / span
        up = height - pad - v / top * (height - 2 * pad)
        return f"{across:.1f},{up:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{pad}" y="24" font-family="sans-serif" font-size="14">'
        f"{escape(metric)} per day, by cohort</text>",
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="black"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>',
        f'<text x="4" y="{pad + 4}" font-family="sans-serif" font-size="11">{top:.2f}</text>',
    ]
    if days:
        parts.append(
            f'<text x="{pad}" y="{height - pad + 16}" font-family="sans-serif" font-size="11">'
            f"{days[0][0].isoformat()}</text>"
        )
        parts.append(
            f'<text x="{width - pad - 70}" y="{height - pad + 16}" font-family="sans-serif" '
            f'font-size="11">{days[-1][0].isoformat()}</text>'
        )
    for n, (mode, points) in enumerate(sorted(series.items())):
        colour = COLOURS.get(mode, "#2ca02c")
        line = " ".join(at(x, v) for x, v in points)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{line}"/>')
        parts.append(
            f'<text x="{width - pad - 90}" y="{pad + 16 * n}" fill="{colour}" '
            f'font-family="sans-serif" font-size="12">{escape(mode)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
