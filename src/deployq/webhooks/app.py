"""The aiohttp application factory."""

from __future__ import annotations

from aiohttp import web

from deployq.db.migrate import pending_migrations
from deployq.errors import DeployqError
from deployq.store import Store

STORE_KEY = web.AppKey("store", Store)


def create_app(store: Store) -> web.Application:
    """The web service: receivers, API, health. Takes the store it serves."""
    app = web.Application(client_max_size=store.settings.webhook_max_body_bytes)
    app[STORE_KEY] = store
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def healthz(request: web.Request) -> web.Response:
    """The process is up."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """The database answers and its migrations are current."""
    store = request.app[STORE_KEY]
    try:
        await store.ping()
        pending = await pending_migrations(store.dsn)
    except DeployqError as exc:
        return web.json_response(
            {"status": "unavailable", "error": {"code": exc.code, "message": exc.message}},
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
