"""The aiohttp application factory: receivers, REST API, health, metrics.

Background work of the web process (started on start-up, stopped on clean-up): the spool
replayer (deployq.webhooks.replay) and, lazily with their first client, the LISTEN
connections of the SSE log hub and of the live feed (deployq.feed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from deployq.errors import DeployqError
from deployq.feed import FeedHub
from deployq.logfollow import LogWaker
from deployq.store import Store
from deployq.webhooks.api import HUB_KEY, add_routes
from deployq.webhooks.auth import auth_middleware
from deployq.webhooks.errors import error_middleware, error_response
from deployq.webhooks.feed_api import FEED_KEY
from deployq.webhooks.metrics import Metrics
from deployq.webhooks.openapi import openapi_document
from deployq.webhooks.providers import GITHUB, GITLAB
from deployq.webhooks.receiver import handler
from deployq.webhooks.recorder import DeliveryRecorder
from deployq.webhooks.replay import load_app_cache, spool_replayer
from deployq.webhooks.scopes import check_routes
from deployq.webhooks.spool import Spool
from deployq.webhooks.state import DB_ERRORS, STATE_KEY, WebState

STORE_KEY = web.AppKey("store", Store)
#: /readyz and /metrics answer within this even while the database hangs
PROBE_ANSWER_S = 0.9

__all__ = ["STATE_KEY", "STORE_KEY", "create_app"]


def create_app(store: Store) -> web.Application:
    """The web service: receivers, API, health. Takes the store it serves."""
    app = web.Application(
        client_max_size=store.settings.webhook_max_body_bytes,
        middlewares=[error_middleware, auth_middleware],
    )
    app[STORE_KEY] = store
    app[STATE_KEY] = WebState(
        store, Spool(store.settings.spool_dir), Metrics(), DeliveryRecorder(store)
    )
    app[HUB_KEY] = LogWaker(store.dsn)
    app[FEED_KEY] = FeedHub(store)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_post("/webhooks/github", handler(GITHUB))
    app.router.add_post("/webhooks/gitlab", handler(GITLAB))
    add_routes(app)
    check_routes(app.router)  # fail closed: every route declares its scope
    app.cleanup_ctx.append(_background)
    return app


async def _background(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE_KEY]
    await load_app_cache(state)
    replayer = asyncio.create_task(spool_replayer(state), name="deployq-spool-replayer")
    yield
    replayer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await replayer
    await app[HUB_KEY].close()
    await app[FEED_KEY].close()
    await state.batcher.close()  # requests in flight were answered before cleanup runs
    await state.recorder.close()


async def healthz(request: web.Request) -> web.Response:
    """The process is up."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """The database answers and its migrations are current."""
    store = request.app[STORE_KEY]
    try:
        async with asyncio.timeout(PROBE_ANSWER_S):
            pending = await store.pending_migrations()
    except DeployqError as exc:
        return web.json_response(
            {"status": "unavailable", "error": {"code": exc.code, "message": exc.message}},
            status=503,
        )
    except TimeoutError:
        return web.json_response(
            {
                "status": "unavailable",
                "error": {
                    "code": "database_unavailable",
                    "message": f"the database did not answer within {PROBE_ANSWER_S:g}s",
                },
            },
            status=503,
        )
    if pending:
        return web.json_response(
            {
                "status": "unavailable",
                "error": {
                    "code": "migrations",
                    "message": f"migrations not applied: {', '.join(pending)}; "
                    "run `deployq migrate`",
                },
            },
            status=503,
        )
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format; job figures are read from the database at each scrape."""
    state = request.app[STATE_KEY]
    try:
        async with asyncio.timeout(PROBE_ANSWER_S):
            state.metrics.jobs.snapshot = await state.store.metrics.jobs()
            state.metrics.jobs.timings = await state.store.stats.timings()
    except DB_ERRORS:  # TimeoutError included
        return error_response(503, "database_unavailable", "the database does not answer")
    body = generate_latest(state.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.0 document of every route."""
    return web.json_response(openapi_document())
