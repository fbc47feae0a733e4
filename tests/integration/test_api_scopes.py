"""Fail closed: every route of the router declares its scope in one table, and no route is
reachable without it (each is called with no token and with each too-small token)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web
from webhook_helpers import token

from deployq.errors import ConfigError
from deployq.models import TokenScope
from deployq.store import Store
from deployq.webhooks.app import create_app
from deployq.webhooks.openapi import openapi_document
from deployq.webhooks.scopes import PUBLIC, SCOPES, check_routes, scope_of

_RANK = [TokenScope.READ, TokenScope.DEPLOY, TokenScope.ADMIN]


def _concrete(path: str) -> str:
    """A path template with each {placeholder} filled with a value that exists nowhere."""
    return re.sub(r"\{(\w+)\}", lambda m: "1" if m.group(1) == "id" else "nosuch", path)


async def test_no_route_is_reachable_without_its_scope(store: Store, aiohttp_client: Any) -> None:
    app = create_app(store)
    routes = [
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    ]
    assert {(m, p) for m, p in routes} == set(SCOPES)
    client = await aiohttp_client(app)
    tokens = {scope: await token(store, scope) for scope in _RANK}

    for method, path in routes:
        needed = scope_of(method, path)
        if needed == PUBLIC:
            continue
        assert isinstance(needed, TokenScope)
        url = _concrete(path)
        resp = await client.request(method, url, json={})
        assert resp.status == 401, (method, path)
        for scope in _RANK[: _RANK.index(needed)]:
            resp = await client.request(method, url, json={}, headers=tokens[scope])
            assert resp.status == 403, (method, path, scope)
        resp = await client.request(method, url, json={}, headers=tokens[needed])
        assert resp.status not in (401, 403), (method, path, needed)


def test_the_openapi_document_reads_the_same_table() -> None:
    doc = openapi_document()["paths"]
    documented = {(m.upper(), p) for p, ops in doc.items() for m in ops}
    assert documented == set(SCOPES)
    for method, path in documented:
        op = doc[path][method.lower()]
        if SCOPES[(method, path)] == PUBLIC:
            assert op["security"] == []
        else:
            assert f"`{SCOPES[(method, path)]}`" in op["description"]


async def test_a_route_without_a_declared_scope_is_refused_at_start_up(store: Store) -> None:
    app = create_app(store)

    async def secret(request: web.Request) -> web.Response:
        return web.Response(text="no one should see this")

    app.router.add_get("/api/v1/backdoor", secret)
    with pytest.raises(ConfigError, match="GET /api/v1/backdoor"):
        check_routes(app.router)


async def test_a_matched_route_missing_from_the_table_is_refused(
    store: Store, aiohttp_client: Any
) -> None:
    app = create_app(store)

    async def secret(request: web.Request) -> web.Response:
        return web.Response(text="no one should see this")

    app.router.add_get("/backdoor", secret)  # added after the start-up check
    client = await aiohttp_client(app)
    resp = await client.get("/backdoor")
    assert resp.status == 403
