"""``rerank-sidecar`` command line: parse flags, load config, run the server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

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
    # Imported here, not at the top: the app pulls in torch and transformers (seconds to
    # import), which check-config, report and a configuration error never need.
    from sidecar.app import create_app

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
    loop = asyncio.get_running_loop()
    # Before start-up, which takes seconds before the port opens (the language models): a
    # stop asked for meanwhile is honoured when it ends. Unhandled, SIGTERM would kill the
    # process with no "stopped" (or be ignored, as PID 1 of a container), and SIGINT would
    # raise KeyboardInterrupt.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lifecycle.stop.set)
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


class WorkerPool(ThreadPoolExecutor):
    """The event loop's default executor (``asyncio.to_thread``), which knows which calls
    are still running when the server has stopped.

    A model load runs in one of its threads, and blocks there in library code (the hub's
    retries, a read from a slow volume) that nothing can interrupt. ``asyncio.run`` and
    the interpreter's exit both wait for every such thread to finish: a SIGTERM during a
    load left the process running until the load ended, past any stop grace period. The
    CLI waits for none of them instead (:func:`_run`, :func:`main`).
    """

    def __init__(self) -> None:
        super().__init__(thread_name_prefix="sidecar-worker")
        self._running: dict[int, str] = {}
        self._guard = threading.Lock()
        self._seq = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._guard:
            self._seq += 1
            key = self._seq
        # asyncio.to_thread submits partial(Context.run, function, ...): name the function.
        target: object = fn
        if isinstance(fn, functools.partial) and fn.args and callable(fn.args[0]):
            target = fn.args[0]
        name = getattr(target, "__qualname__", None) or repr(target)
        return super().submit(self._call, key, name, functools.partial(fn, *args, **kwargs))

    def _call(self, key: int, name: str, call: Callable[[], Any]) -> Any:
        with self._guard:
            self._running[key] = name
        try:
            return call()
        finally:
            with self._guard:
                del self._running[key]

    def running(self) -> list[str]:
        with self._guard:
            return sorted(self._running.values())


def _new_loop(use_uvloop: bool) -> asyncio.AbstractEventLoop:
    if use_uvloop:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            return asyncio.new_event_loop()
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _run(
    coro_factory: Callable[[], Coroutine[Any, Any, int]], use_uvloop: bool, pool: WorkerPool
) -> int:
    """``asyncio.run``, except that calls still running in ``pool`` are not waited for."""
    loop = _new_loop(use_uvloop)
    loop.set_default_executor(pool)
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(coro_factory())
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
            pool.shutdown(wait=False, cancel_futures=True)


def _exit_without_waiting(code: int, pool: WorkerPool) -> None:
    """Exit now when calls are still running in the pool (a model load): the interpreter's
    exit would join their threads and wait for the load to end."""
    running = pool.running()
    if not running:
        return
    log.warning("exiting without waiting for %s (still running)", ", ".join(running))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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
    pool = WorkerPool()
    try:
        code = _run(lambda: serve(config), config.tuning.http.uvloop, pool)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        code = 2
    except (ModelLoadError, StartupError) as exc:
        print(f"start-up failed: {exc}", file=sys.stderr)
        code = 3
    _exit_without_waiting(code, pool)
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
