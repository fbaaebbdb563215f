"""Application factory: ``create_app(config) -> web.Application``.

Shared resources are created and closed in ``cleanup_ctx`` and stored under typed
``web.AppKey``s (:mod:`sidecar.keys`):

* the ES client and its pooled ``ClientSession`` (:class:`~sidecar.upstream.EsClient`);
* the scorer slot (:class:`~sidecar.scoring.slot.ScorerSlot`). A model configuration that
  cannot work stops start-up (exit 2). Otherwise the model loads and warms up in the
  background, so ES traffic is served at once (in ES order until the model is warm) and
  ``/_sidecar/ready`` turns green after. A load that fails is retried with backoff
  (``model.on_load_failure: serve``), or stops the process (``exit``);
* the rerank engine (caches, breaker, language gate), the rollout rules and the shadow runner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from sidecar.config import SidecarConfig
from sidecar.errors import ModelConfigError, ModelLoadError
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
from sidecar.scoring.base import Scorer
from sidecar.scoring.detect import validate_model
from sidecar.scoring.factory import create_scorer
from sidecar.scoring.slot import ScorerSlot
from sidecar.upstream import EsClient

log = logging.getLogger("sidecar")


async def _upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    app[ES] = es = EsClient(config.es, EsClient.create_sessions(config.es), config.server)
    yield
    await es.close()


async def _load_model(app: web.Application, slot: ScorerSlot) -> None:
    """Build, start and warm the configured scorer, then put it in the slot. A failure is
    retried with a doubling wait (up to ``model.load_retry_max_s``) or, with
    ``model.on_load_failure: exit``, stops the process."""
    config, engine, metrics = app[CONFIG], app[ENGINE], app[METRICS]
    wait = min(1.0, config.model.load_retry_max_s)
    while True:
        scorer: Scorer | None = None
        try:
            scorer = await asyncio.to_thread(create_scorer, config.model, config.worker)
            await scorer.start()
            slot.put(scorer)
            await asyncio.to_thread(engine.start_language_gate)
            if slot.load_failures:
                log.info("model loaded after %d failed attempts", slot.load_failures)
            return
        except ModelConfigError as exc:
            # Cannot work whatever happens: say so and stop, as a config error would.
            app[LIFECYCLE].fail(str(exc), exit_code=2)
            return
        except Exception as exc:
            if scorer is not None:
                await scorer.close()
            reason = str(exc) if isinstance(exc, ModelLoadError) else "model start-up failed"
            if not isinstance(exc, ModelLoadError):
                log.exception("model start-up failed")
            slot.failed(reason)
            metrics.model_load_failures.inc()
            if config.model.on_load_failure == "exit":
                app[LIFECYCLE].fail(reason)
                return
            log.error("model not loaded (%s); serving ES order, retrying in %gs", reason, wait)
        await asyncio.sleep(wait)
        wait = min(wait * 2, config.model.load_retry_max_s)


async def _rerank_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    # A configuration that cannot work stops start-up here (exit 2), before the port opens;
    # anything else about the model is the background loader's to retry.
    await asyncio.to_thread(validate_model, config.model)
    app[SCORER] = scorer = ScorerSlot(config.model)
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
            queue_pairs=lambda: scorer.queued_pairs + engine.gate.waiting_pairs,
            in_flight_pairs=lambda: engine.gate.in_flight,
            seconds_per_pair=lambda: engine.cost.per_pair,
            shadow_tasks=lambda: len(shadow.tasks),
            model_ready=lambda: engine.ready,
        )
    )
    loading = asyncio.create_task(_load_model(app, scorer))
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
