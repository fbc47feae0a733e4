"""Bearer tokens: 401 without a valid token, 403 when its scope is too small.

The scope each route needs comes from deployq.webhooks.scopes; a matched route that is not
there is refused (fail closed).
"""

from __future__ import annotations

from aiohttp import web

from deployq.models import ApiToken, TokenScope
from deployq.webhooks.errors import Handler, error_response
from deployq.webhooks.scopes import PUBLIC, scope_of
from deployq.webhooks.state import STATE_KEY

TOKEN_KEY = web.RequestKey("deployq_token", ApiToken)


def token_of(request: web.Request) -> ApiToken:
    return request[TOKEN_KEY]


def actor_of(request: web.Request) -> str:
    return f"token:{token_of(request).name}"


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    match = request.match_info
    if match.http_exception is not None:  # no such route: the router answers 404/405
        return await handler(request)
    resource = match.route.resource
    needed = scope_of(request.method, resource.canonical) if resource is not None else None
    if needed == PUBLIC:
        return await handler(request)
    if not isinstance(needed, TokenScope):
        return error_response(403, "forbidden", "this route declares no scope: refused")
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
