"""Application factory: ``create_app(config) -> web.Application``.

Shared resources are created and closed in ``cleanup_ctx`` and stored under typed
``web.AppKey``s (:mod:`sidecar.keys`):

* the ES client and its pooled ``ClientSession`` (:class:`~sidecar.upstream.EsClient`);
* the scorer slot (:class:`~sidecar.scoring.slot.ScorerSlot`). A model configuration that
  cannot work stops start-up (exit 2). Otherwise the model loads and warms up in the
  background, so ES traffic is served at once (in ES order until the model is warm) and
  ``/_sidecar/ready`` turns green after. A load that fails is retried with backoff
  (``model.on_load_failure: serve``), or stops the process (``exit``);
* the admission machinery (:mod:`sidecar.admission`: one client ledger, one model meter,
  the fair queue and the breaker, the loop's CPU share), the rerank engine (caches,
  language gate), the rollout rules, the shadow runner, and the search service the
  handlers call;
* with ``shared.url``, the shared store (:class:`~sidecar.shared.SharedStore`) under the
  caches and the pages' orders. Start-up never waits for Redis beyond one call's timeout,
  and never fails for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from sidecar.admission.breaker import AsyncBreaker
from sidecar.admission.controller import AdmissionController
from sidecar.admission.ledger import ClientLedger
from sidecar.admission.loop import LoopShare
from sidecar.admission.meter import ModelMeter
from sidecar.config import SidecarConfig
from sidecar.errors import ModelConfigError, ModelLoadError
from sidecar.http.errors import error_middleware
from sidecar.http.observe import observe_middleware, on_prepare
from sidecar.http.protocol import handler_args
from sidecar.keys import (
    ADMISSION,
    BREAKER_CLOCK,
    CONFIG,
    ENGINE,
    ES,
    LIFECYCLE,
    METRICS,
    ROLLOUT,
    SCORER,
    SEARCH,
    SHADOW,
    UBI,
)
from sidecar.lifecycle import Lifecycle
from sidecar.metrics import LiveFigures, Metrics
from sidecar.procstat import LoopClock
from sidecar.rerank.engine import RerankEngine
from sidecar.rerank.identity import IdentityRule
from sidecar.rerank.language import LanguageGate
from sidecar.rerank.rollout import Rollout
from sidecar.rerank.shadow import ShadowRunner
from sidecar.rerank.step import RerankStep
from sidecar.routes import setup_routes
from sidecar.scoring.base import Scorer
from sidecar.scoring.bundled import declared_languages
from sidecar.scoring.detect import validate_model
from sidecar.scoring.factory import create_scorer
from sidecar.scoring.slot import ScorerSlot
from sidecar.search.responses import ResponseStore
from sidecar.search.service import SearchService
from sidecar.shared import SharedStore
from sidecar.ubi.service import UbiService
from sidecar.upstream import EsClient

log = logging.getLogger("sidecar")


async def _upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    sessions = EsClient.create_sessions(config.es, config.tuning)
    app[ES] = es = EsClient(config.es, sessions, config.tuning)
    yield
    await es.close()


async def _load_model(app: web.Application, slot: ScorerSlot) -> None:
    """Build, start and warm the configured scorer, then put it in the slot. A failure is
    retried with a doubling wait (up to ``tuning.model.load_retry_max_s``) or, with
    ``model.on_load_failure: exit``, stops the process."""
    config, engine, metrics = app[CONFIG], app[ENGINE], app[METRICS]
    longest = config.tuning.model.load_retry_max_s
    wait = min(1.0, longest)
    while True:
        scorer: Scorer | None = None
        try:
            scorer = await asyncio.to_thread(create_scorer, config.model, config.tuning)
            slot.attach(scorer)
            await scorer.start()
            slot.put(scorer)
            await asyncio.to_thread(engine.start_language_gate)
            engine.warmed.set()
            if slot.load_failures:
                log.info("model loaded after %d failed attempts", slot.load_failures)
            _report_capacity(app)
            return
        except asyncio.CancelledError:
            # The app is closing mid-load: a scorer that started its worker must not outlive
            # it (the worker thread would hold the process, or abort it at exit).
            if scorer is not None and not slot.holds(scorer):
                await scorer.close()
            raise
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
        wait = min(wait * 2, longest)


def _report_capacity(app: web.Application) -> None:
    """What the warm-up measured, in the words of searches: the log line at start, and a
    warning when the default window cannot be reranked within the default budget."""
    rerank = app[CONFIG].rerank
    capacity = app[ADMISSION].meter.capacity(
        rerank.budget_ms / 1000, rerank.window, rerank.min_window
    )
    if capacity is None:
        return
    log.info(
        "model capacity: %.1f pairs/s; %d of a %d-hit window fit the %.0f ms budget; "
        "%.2f searches/s at that window",
        capacity.pairs_per_s,
        capacity.k,
        capacity.window,
        capacity.budget_s * 1000,
        capacity.searches_per_s,
    )
    warning = capacity.warning()
    if warning is not None:
        log.warning("%s", warning)


async def _load_language_models(languages: tuple[str, ...]) -> None:
    """lingua loads its language models once per process, and holds the GIL while it does
    (3 s for the bundled model's on a 2-core CPU): the event loop would stand still. Loaded
    here, before the port opens, no request waits behind them; the language gate built
    when the model is warm finds them loaded."""
    if not languages:
        return
    named = ", ".join(languages)
    log.info("loading language detection for %s", named)
    started = time.monotonic()
    try:
        await asyncio.to_thread(LanguageGate(languages).load)
    except Exception:
        # Not a reason to serve nothing: the gate is built again once the model is warm,
        # where a failure is retried with the model's load.
        log.warning("language detection for %s not loaded before start", named, exc_info=True)
        return
    log.info("language detection for %s loaded in %.1fs", named, time.monotonic() - started)


def _admission(
    config: SidecarConfig, slot: ScorerSlot, breaker_clock: Callable[[], float]
) -> AdmissionController:
    breaker = config.rerank.breaker
    return AdmissionController(
        breaker=AsyncBreaker(breaker.fail_max, breaker.reset_timeout_s, clock=breaker_clock),
        meter=ModelMeter(),
        ledger=ClientLedger(),
        remote=lambda: slot.info.backend == "remote",
        held_elsewhere=lambda: slot.queued_pairs,
    )


async def _rerank_ctx(app: web.Application) -> AsyncIterator[None]:
    config, metrics = app[CONFIG], app[METRICS]
    # A configuration that cannot work stops start-up here (exit 2), before the port opens;
    # anything else about the model is the background loader's to retry.
    await asyncio.to_thread(validate_model, config.model)
    await _load_language_models(declared_languages(config.model))
    app[SCORER] = slot = ScorerSlot(config.model)
    app[ADMISSION] = admission = _admission(config, slot, app[BREAKER_CLOCK])
    slot.add_batch_observer(admission.meter.observe)
    slot.add_batch_observer(metrics.observe_batch)
    shared = SharedStore.from_config(config.shared, config.tuning.shared)
    if shared is not None:
        await shared.start()
    app[ENGINE] = engine = RerankEngine(config, slot, admission, shared)
    app[SHADOW] = shadow = ShadowRunner(config.tuning.limits.max_shadow_tasks)
    # Made on the loop's thread: the loop's CPU clock.
    loop = LoopShare(admission.ledger, LoopClock())
    step = RerankStep(config, engine, shadow, loop)
    responses = ResponseStore(
        engine.responses, config.rerank.response_cache, app[ES], config.rerank.annotate_field
    )
    ubi = _ubi(app)
    search = ubi.search if ubi is not None else None
    app[SEARCH] = SearchService(config, app[ES], app[ROLLOUT], step, responses, loop, search)
    shadow.observers.append(metrics.observe_displacement)
    metrics.attach(_live_figures(app))
    loading = asyncio.create_task(_load_model(app, slot))
    yield
    loading.cancel()
    await asyncio.gather(loading, return_exceptions=True)
    if ubi is not None:
        await ubi.close()
    await admission.close()
    await shadow.close()
    await slot.close()
    if shared is not None:
        await shared.close()


def _ubi(app: web.Application) -> UbiService | None:
    """The UBI service (started), with ``ubi.enabled``."""
    config = app[CONFIG]
    if not config.ubi.enabled:
        return None
    identity = IdentityRule(config.rerank.extra_identity_headers)
    app[UBI] = ubi = UbiService(
        config.ubi,
        app[ES].own,
        app[ROLLOUT],
        identity,
        max_bytes=config.tuning.limits.ubi_queue_bytes,
    )
    ubi.start()
    return ubi


def _live_figures(app: web.Application) -> LiveFigures:
    engine, admission, shadow = app[ENGINE], app[ADMISSION], app[SHADOW]
    rerank = app[CONFIG].rerank
    queue = admission.queue
    return LiveFigures(
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
        breaker_state=lambda: admission.breaker.state,
        queue_pairs=lambda: app[SCORER].queued_pairs + queue.waiting_pairs,
        in_flight_pairs=lambda: queue.in_flight,
        seconds_per_pair=lambda: admission.meter.per_pair,
        capacity=lambda: admission.meter.capacity(
            rerank.budget_ms / 1000, rerank.window, rerank.min_window
        ),
        shadow_tasks=lambda: len(shadow.tasks),
        model_ready=lambda: engine.ready,
        ubi=lambda: app[UBI].state() if UBI in app else None,
        model_state=lambda: engine.model_state,
        queue_wait_s=lambda: admission.meter.seconds_for(queue.with_model + queue.waiting_pairs),
        shared=lambda: engine.shared.state() if engine.shared is not None else None,
    )


def create_app(
    config: SidecarConfig,
    lifecycle: Lifecycle | None = None,
    *,
    breaker_clock: Callable[[], float] = time.monotonic,
) -> web.Application:
    """The application; ``breaker_clock`` is the circuit breaker's clock (a test turns
    its own instead of waiting out the reset timeout)."""
    app = web.Application(
        middlewares=[observe_middleware, error_middleware],
        client_max_size=config.tuning.http.max_body_bytes,
        # Pass-through bodies keep their Content-Encoding; the search handlers decode.
        # Header limits and the keep-alive/header timeout: sidecar.http.protocol.
        handler_args={"auto_decompress": False, **handler_args(config.tuning.http)},
    )
    app[CONFIG] = config
    app[BREAKER_CLOCK] = breaker_clock
    app[LIFECYCLE] = lifecycle or Lifecycle()
    app[ROLLOUT] = Rollout(config.rollout)
    app[METRICS] = Metrics()
    app.on_response_prepare.append(on_prepare)
    app.cleanup_ctx.append(_upstream_ctx)
    app.cleanup_ctx.append(_rerank_ctx)
    setup_routes(app)
    return app
