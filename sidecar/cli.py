"""``rerank-sidecar`` command line: parse flags, load config, run the server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from sidecar.app import create_app
from sidecar.config import SidecarConfig, load_config, public_url
from sidecar.errors import ConfigError, ModelLoadError
from sidecar.keys import ROLLOUT
from sidecar.lifecycle import Lifecycle
from sidecar.logs import setup_logging
from sidecar.ubi import cli as ubi_cli

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
    serve.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="(logging.level)"
    )
    check = sub.add_parser("check-config", help="validate the config and print it")
    for p in (check,):
        p.add_argument("--config", type=Path)
    ubi_cli.add_parser(sub)
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
    if getattr(args, "log_level", None):
        out.setdefault("logging", {})["level"] = args.log_level
    return out


async def serve(config: SidecarConfig) -> int:
    """Run until SIGTERM/SIGINT, then stop accepting and drain in-flight requests.

    Returns the process exit code: 0 after a requested stop, 3 when the model could not be
    loaded and ``model.on_load_failure`` is ``exit``, 2 for a configuration that cannot work.
    """
    lifecycle = Lifecycle()
    app = create_app(config, lifecycle)
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=config.server.shutdown_timeout_s,
        # A client that goes away cancels its handler: its ES request, its place in the
        # model's queue and its pending parts of a window are dropped (aiohttp's default
        # since 3.9 is to let the handler run on).
        handler_cancellation=True,
    )
    await runner.setup()
    site = web.TCPSite(
        runner,
        config.server.host,
        config.server.port,
        shutdown_timeout=config.server.shutdown_timeout_s,
        backlog=1024,
    )
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(
            f"cannot listen on {config.server.host}:{config.server.port}: {exc.strerror}"
        ) from exc
    for sock_name in runner.addresses:
        log.info("listening on %s, forwarding to %s", sock_name, public_url(config.es.url))

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lifecycle.stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload_rules, app)
    await lifecycle.stop.wait()
    log.info(
        "shutting down: draining in-flight requests (up to %ss)", config.server.shutdown_timeout_s
    )
    await runner.cleanup()
    log.info("stopped")
    return lifecycle.exit_code if lifecycle.fatal else 0


def _reload_rules(app: web.Application) -> None:
    # A bad file is logged by reload() and the rules in force stay.
    with contextlib.suppress(ConfigError):
        app[ROLLOUT].reload()


class StartupError(Exception):
    pass


def _run(coro_factory: Callable[[], Coroutine[Any, Any, int]], use_uvloop: bool) -> int:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            return asyncio.run(coro_factory())
        return uvloop.run(coro_factory())
    return asyncio.run(coro_factory())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config, overrides=_overrides(args))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    setup_logging(config.logging)
    if args.command == "check-config":
        import yaml

        from sidecar.config import redacted

        print(yaml.safe_dump(redacted(config), sort_keys=False), end="")
        return 0
    if args.command == "report":
        return ubi_cli.run(config, args)
    try:
        return _run(lambda: serve(config), config.tuning.http.uvloop)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except (ModelLoadError, StartupError) as exc:
        print(f"start-up failed: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
