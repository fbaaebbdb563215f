"""Application factory: ``create_app(config) -> web.Application``.

Shared resources are created and closed in ``cleanup_ctx`` and stored under typed
``web.AppKey``s (:mod:`sidecar.keys`):

* the ES client and its pooled ``ClientSession`` (:class:`~sidecar.upstream.EsClient`);
* the scorer (model + batching worker). The backend is detected before the server binds
  (a model that cannot be found stops start-up); weights load and warm up in the background
  so pass-through traffic is served at once, and ``/_sidecar/ready`` turns green after;
* the rerank engine (caches, breaker, language gate), the rollout rules and the shadow runner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from sidecar.config import SidecarConfig
from sidecar.errors import ModelLoadError
from sidecar.http.errors import error_middleware
from sidecar.http.observe import observe_middleware, on_prepare
from sidecar.http.protocol import handler_args
from sidecar.keys import CONFIG, ENGINE, ES, LIFECYCLE, METRICS, ROLLOUT, SCORER, SHADOW, STEP
from sidecar.lifecycle import Lifecycle
from sidecar.metrics import LiveFigures, Metrics
from sidecar.rerank.engine import RerankEngine
from sidecar.rerank.rollout import Rollout
from sidecar.rerank.shadow import ShadowRunner
from sidecar.rerank.step import RerankStep
from sidecar.routes import setup_routes
from sidecar.scoring.factory import create_scorer
from sidecar.upstream import EsClient

log = logging.getLogger("sidecar")


async def _upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG].es
    session = EsClient.create_session(config)
    app[ES] = EsClient(config, session)
    yield
    await session.close()


async def _load_model(app: web.Application) -> None:
    scorer, engine = app[SCORER], app[ENGINE]
    try:
        await scorer.start()
        await asyncio.to_thread(engine.start_language_gate)
    except ModelLoadError as exc:
        app[LIFECYCLE].fail(str(exc))
    except Exception:
        log.exception("model start-up failed")
        app[LIFECYCLE].fail("model start-up failed (see the log above)")


async def _rerank_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    scorer = await asyncio.to_thread(create_scorer, config.model, config.worker)
    app[SCORER] = scorer
    app[ENGINE] = RerankEngine(config, scorer)
    app[SHADOW] = shadow = ShadowRunner(config.rerank.max_shadow_tasks)
    app[STEP] = RerankStep(config, app[ENGINE], shadow)
    engine, metrics = app[ENGINE], app[METRICS]
    scorer.add_batch_observer(metrics.observe_batch)
    shadow.observers.append(metrics.observe_displacement)
    metrics.attach(
        LiveFigures(
            score_cache=lambda: (
                engine.scores.stats.hits,
                engine.scores.stats.misses,
                len(engine.scores),
                engine.scores.maxsize,
            ),
            response_cache=lambda: (
                engine.responses.stats.hits,
                engine.responses.stats.misses,
                len(engine.responses),
            ),
            breaker_state=lambda: engine.breaker.state,
            queue_pairs=lambda: scorer.queued_pairs,
            shadow_tasks=lambda: len(shadow.tasks),
        )
    )
    loading = asyncio.create_task(_load_model(app))
    yield
    loading.cancel()
    await asyncio.gather(loading, return_exceptions=True)
    await app[SHADOW].close()
    await scorer.close()


def create_app(config: SidecarConfig, lifecycle: Lifecycle | None = None) -> web.Application:
    app = web.Application(
        middlewares=[observe_middleware, error_middleware],
        client_max_size=config.server.max_body_bytes,
        # Pass-through bodies keep their Content-Encoding; the search handlers decode.
        # Header limits and the keep-alive/header timeout: sidecar.http.protocol.
        handler_args={"auto_decompress": False, **handler_args(config.server)},
    )
    app[CONFIG] = config
    app[LIFECYCLE] = lifecycle or Lifecycle()
    app[ROLLOUT] = Rollout(config.rollout)
    app[METRICS] = Metrics()
    app.on_response_prepare.append(on_prepare)
    app.cleanup_ctx.append(_upstream_ctx)
    app.cleanup_ctx.append(_rerank_ctx)
    setup_routes(app)
    return app
