"""``rerank-sidecar`` command line: parse flags, load config, run the server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from sidecar.app import create_app
from sidecar.config import SidecarConfig, load_config
from sidecar.errors import ConfigError

log = logging.getLogger("sidecar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rerank-sidecar",
        description="Elasticsearch proxy that reranks _search hits with a local model.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the sidecar")
    serve.add_argument("--config", type=Path, help="YAML config file (default: built-in)")
    serve.add_argument("--es-url", help="Elasticsearch base URL (es.url)")
    serve.add_argument("--host", help="address to listen on (server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (server.port)")
    serve.add_argument("--model", help="HF model id, local path or rerank URL (model.name)")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    check = sub.add_parser("check-config", help="validate the config and print it")
    for p in (check,):
        p.add_argument("--config", type=Path)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if getattr(args, "es_url", None):
        out.setdefault("es", {})["url"] = args.es_url
    if getattr(args, "host", None):
        out.setdefault("server", {})["host"] = args.host
    if getattr(args, "port", None) is not None:
        out.setdefault("server", {})["port"] = args.port
    if getattr(args, "model", None):
        out.setdefault("model", {})["name"] = args.model
    return out


async def serve(config: SidecarConfig) -> None:
    """Run until SIGTERM/SIGINT, then stop accepting and drain in-flight requests."""
    app = create_app(config)
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=config.server.shutdown_timeout_s,
    )
    await runner.setup()
    site = web.TCPSite(
        runner,
        config.server.host,
        config.server.port,
        shutdown_timeout=config.server.shutdown_timeout_s,
        backlog=1024,
    )
    await site.start()
    for sock_name in runner.addresses:
        log.info("listening on %s, forwarding to %s", sock_name, config.es.url)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info(
        "shutting down: draining in-flight requests (up to %ss)", config.server.shutdown_timeout_s
    )
    await runner.cleanup()
    log.info("stopped")


def _run(coro_factory: Any, use_uvloop: bool) -> None:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            asyncio.run(coro_factory())
            return
        uvloop.run(coro_factory())
    else:
        asyncio.run(coro_factory())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load_config(args.config, overrides=_overrides(args))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if args.command == "check-config":
        import yaml

        from sidecar.config import redacted

        print(yaml.safe_dump(redacted(config), sort_keys=False), end="")
        return 0
    _run(lambda: serve(config), config.server.uvloop)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
