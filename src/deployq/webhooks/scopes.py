"""Who may call what: the one table of every route's scope, read by the auth middleware and
by the OpenAPI document. Fails closed: a route that is not in this table is refused when the
application is built, and the middleware refuses a matched route it cannot find here.

``PUBLIC`` routes need no token (health, metrics, the document itself, and the webhook
receivers, which verify signatures instead).
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from deployq.errors import ConfigError
from deployq.models import TokenScope

PUBLIC: Final = "public"

READ, DEPLOY, ADMIN = TokenScope.READ, TokenScope.DEPLOY, TokenScope.ADMIN

#: (method, path template) -> the token scope it needs, or PUBLIC
SCOPES: dict[tuple[str, str], TokenScope | str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/api/v1/openapi.json"): PUBLIC,
    ("POST", "/webhooks/github"): PUBLIC,
    ("POST", "/webhooks/gitlab"): PUBLIC,
    ("GET", "/api/v1/apps"): READ,
    ("GET", "/api/v1/apps/{app}"): READ,
    ("POST", "/api/v1/apps/{app}/deployments"): DEPLOY,
    ("GET", "/api/v1/jobs"): READ,
    ("GET", "/api/v1/jobs/{id}"): READ,
    ("GET", "/api/v1/jobs/{id}/logs"): READ,
    ("POST", "/api/v1/jobs/{id}/cancel"): DEPLOY,
    ("POST", "/api/v1/jobs/{id}/retry"): DEPLOY,
    ("GET", "/api/v1/queue/stats"): READ,
    ("GET", "/api/v1/events"): READ,
    ("GET", "/api/v1/targets"): READ,
    ("GET", "/api/v1/apps/{app}/releases"): READ,
    ("POST", "/api/v1/apps/{app}/rollbacks"): DEPLOY,
    ("GET", "/api/v1/stats"): READ,
    ("GET", "/api/v1/servers"): READ,
    ("GET", "/api/v1/deliveries"): READ,
    ("GET", "/api/v1/deliveries/{id}"): READ,
    ("POST", "/api/v1/deliveries/{id}/replay"): ADMIN,
}


def scope_of(method: str, path: str) -> TokenScope | str | None:
    """The declared scope of a route (HEAD is GET's), or None when it declares none."""
    return SCOPES.get(("GET" if method == "HEAD" else method, path))


def check_routes(router: web.UrlDispatcher) -> None:
    """Refuse to start when a route has no declared scope."""
    missing = sorted(
        f"{route.method} {route.resource.canonical}"
        for route in router.routes()
        if route.resource is not None and scope_of(route.method, route.resource.canonical) is None
    )
    if missing:
        raise ConfigError(
            f"route(s) without a declared scope: {', '.join(missing)}; add each to "
            "deployq.webhooks.scopes.SCOPES"
        )
