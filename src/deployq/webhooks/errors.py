"""HTTP errors as JSON ``{"error": {"code", "message"}}``, and the middleware that makes sure
nothing else (an HTML error page, a traceback, a 500 for bad input) ever leaves the service."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from deployq.errors import (
    Conflict,
    DatabaseUnavailable,
    DeployqError,
    InvalidInput,
    NotFound,
    QueueFull,
)

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS_OF: list[tuple[type[DeployqError], int]] = [
    (NotFound, 404),
    (Conflict, 409),
    (InvalidInput, 400),
    (DatabaseUnavailable, 503),
    (QueueFull, 429),
]

_CODE_OF_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "queue_full",
    503: "unavailable",
}


class ApiError(Exception):
    """Raised by handlers: becomes a JSON error with this status."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


def status_of(exc: DeployqError) -> int:
    for cls, status in _STATUS_OF:
        if isinstance(exc, cls):
            return status
    return 500


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as JSON with the right status; unexpected ones are 500 and logged."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.content_type == "application/json":
            raise
        message = exc.reason
        if exc.status == 413:
            message = "the request body is larger than DEPLOYQ_WEBHOOK_MAX_BODY_BYTES allows"
        elif exc.status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        elif exc.status == 404:
            message = f"nothing at {request.path}; see /api/v1/openapi.json"
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return error_response(
            exc.status, _CODE_OF_STATUS.get(exc.status, "http_error"), message, headers
        )
    except DeployqError as exc:
        status = status_of(exc)
        if status == 500:
            log.exception("%s %s failed", request.method, request.path)
        elif status == 503:
            log.warning("%s %s: %s", request.method, request.path, exc.message)
        headers = None
        if isinstance(exc, QueueFull):
            headers = {"Retry-After": str(exc.retry_after_s)}
        return error_response(status, exc.code, exc.message, headers)
    except json.JSONDecodeError as exc:
        return error_response(400, "bad_json", f"the body is not valid JSON: {exc.msg}")
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal", "internal error; the service log has the details")
