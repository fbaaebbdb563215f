"""``rerank-sidecar report``: the UBI report from the indices, as a table (or JSON), with
the cohorts over time drawn to an SVG file (``--plot FILE``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sidecar.config import SidecarConfig
from sidecar.errors import SidecarError
from sidecar.rerank.identity import IdentityRule
from sidecar.rerank.rollout import Rollout
from sidecar.ubi.present import svg, table
from sidecar.ubi.schema import utc
from sidecar.ubi.service import UbiService
from sidecar.upstream import EsClient

#: Days drawn at most (one report per day).
MAX_DAYS = 92


def add_parser(sub: Any) -> None:
    report = sub.add_parser(
        "report", help="does reranking help? the UBI report (needs ubi.enabled's indices)"
    )
    report.add_argument("--config", type=Path)
    report.add_argument("--es-url", help="Elasticsearch base URL (es.url)")
    report.add_argument("--since", help="ISO-8601 date-time, or date math (now-7d)")
    report.add_argument("--until", help="ISO-8601 date-time, or date math")
    report.add_argument("--json", action="store_true", help="the JSON the API answers")
    report.add_argument("--plot", type=Path, metavar="FILE", help="draw the cohorts per day (SVG)")


async def _service(config: SidecarConfig) -> tuple[EsClient, UbiService]:
    es = EsClient(config.es, EsClient.create_sessions(config.es, config.tuning), config.tuning)
    identity = IdentityRule(config.rerank.extra_identity_headers)
    ubi = UbiService(config.ubi, es.own, Rollout(config.rollout), identity, max_bytes=1 << 20)
    return es, ubi


async def _report(config: SidecarConfig, args: argparse.Namespace) -> dict[str, Any]:
    es, ubi = await _service(config)
    try:
        figures = await ubi.report(args.since, args.until)
        if args.plot is not None:
            figures["days"] = await _days(ubi, args.since)
        return figures
    finally:
        await es.close()


async def _days(ubi: UbiService, since: str | None) -> list[tuple[date, dict[str, Any]]]:
    today = datetime.now(UTC).date()
    first = today - timedelta(days=29)
    if since:
        try:
            first = datetime.fromisoformat(since).astimezone(UTC).date()
        except ValueError:
            first = today - timedelta(days=29)
    first = max(first, today - timedelta(days=MAX_DAYS - 1))
    out = []
    day = first
    while day <= today:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        figures = await ubi.report(utc(start), utc(start + timedelta(days=1)))
        out.append((day, figures))
        day += timedelta(days=1)
    return out


def run(config: SidecarConfig, args: argparse.Namespace) -> int:
    try:
        figures = asyncio.run(_report(config, args))
    except SidecarError as exc:  # ES unreachable or answering errors: one line, no trace
        print(f"report: {exc.reason}", file=sys.stderr)
        return 3
    days = figures.pop("days", None)
    if args.plot is not None and days is not None:
        args.plot.write_text(svg(days), encoding="utf-8")
    print(json.dumps(figures, indent=2) if args.json else table(figures))
    if args.plot is not None:
        print(f"wrote {args.plot}")
    return 0
