"""Bearer tokens for /api/v1: 401 without a valid token, 403 when its scope is too small."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from deployq.models import ApiToken, TokenScope
from deployq.webhooks.errors import Handler, error_response
from deployq.webhooks.state import STATE_KEY

SCOPE_ATTR = "deployq_scope"
TOKEN_KEY = web.RequestKey("deployq_token", ApiToken)
API_PREFIX = "/api/v1/"
#: routes under API_PREFIX that need no token
PUBLIC_PATHS = frozenset({"/api/v1/openapi.json"})

H = TypeVar("H", bound=Callable[[web.Request], Awaitable[web.StreamResponse]])


def requires(scope: TokenScope) -> Callable[[H], H]:
    """Mark a handler with the scope it needs (read < deploy < admin)."""

    def mark(handler: H) -> H:
        setattr(handler, SCOPE_ATTR, scope)
        return handler

    return mark


def token_of(request: web.Request) -> ApiToken:
    return request[TOKEN_KEY]


def actor_of(request: web.Request) -> str:
    return f"token:{token_of(request).name}"


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(API_PREFIX) or request.path in PUBLIC_PATHS:
        return await handler(request)
    needed = getattr(handler, SCOPE_ATTR, None)
    if needed is None:  # no such route: let the router answer 404/405
        return await handler(request)
    challenge = {"WWW-Authenticate": 'Bearer realm="deployq"'}
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return error_response(
            401,
            "unauthorized",
            "send Authorization: Bearer <token>; create one with `deployq token create`",
            challenge,
        )
    token = await request.app[STATE_KEY].store.tokens.verify(value.strip())
    if token is None:
        return error_response(401, "unauthorized", "the token is unknown or revoked", challenge)
    if not token.scope.allows(needed):
        return error_response(
            403,
            "forbidden",
            f"this needs a token with scope {needed.value} (or higher); "
            f"token {token.name!r} has scope {token.scope.value}",
        )
    request[TOKEN_KEY] = token
    return await handler(request)
