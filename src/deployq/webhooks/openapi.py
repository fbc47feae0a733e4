"""The OpenAPI 3.0 document of every route, served at /api/v1/openapi.json.

Written by hand; the security of each operation comes from the scope table
(deployq.webhooks.scopes.SCOPES), like the auth middleware's. A test checks that every route of
the router appears here.
"""

from __future__ import annotations

from typing import Any

from deployq import __version__
from deployq.models import JobStatus
from deployq.validation import COMMIT_SHA_PATTERN, MAX_ID, MAX_LOG_SEQ, MAX_PAGE_SIZE
from deployq.webhooks.api import SINCE_PATTERN
from deployq.webhooks.scopes import PUBLIC, scope_of

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}


def _list_pattern(values: list[str]) -> str:
    """A comma-separated list of these values, as the server accepts it."""
    one = "|".join(values)
    return f"^({one})(,({one}))*$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ref("Error"), "error") for s in statuses}


def _responses(
    *errors: int, ok: int = 200, body: dict[str, Any] | None = None, description: str = "OK"
) -> dict[str, Any]:
    """An operation's answers: ``ok`` with ``body`` (default: a JSON object), and an Error
    object for each of ``errors``."""
    return {str(ok): body or _json(_OBJECT, description), **_errors(*errors)}


#: the schema of each text media type an operation may answer with
_TEXT_SCHEMAS: dict[str, dict[str, Any]] = {
    "text/plain": {"type": "string"},
    "text/event-stream": {},
}


def _text(description: str, *media_types: str) -> dict[str, Any]:
    """A text answer (a log, metrics, a stream of server-sent events)."""
    return {
        "description": description,
        "content": {t: {"schema": _TEXT_SCHEMAS[t]} for t in media_types},
    }


def _optional_json_body(properties: dict[str, Any]) -> dict[str, Any]:
    """An optional JSON object request body with these properties and no others."""
    schema = {"type": "object", "additionalProperties": False, "properties": properties}
    return {"required": False, "content": {"application/json": {"schema": schema}}}


def _id_param(description: str) -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    }


_APP_PARAM = {"name": "app", "in": "path", "required": True, "schema": {"type": "string"}}
_LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
}
_BEFORE = {
    "name": "before",
    "in": "query",
    "description": "page: ids below this one",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": responses, **extra}


def _with_scopes(paths: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each operation's security from the scope table (deployq.webhooks.scopes)."""
    for path, operations in paths.items():
        for method, op in operations.items():
            scope = scope_of(method.upper(), path)
            if scope is None:
                raise AssertionError(f"{method.upper()} {path} has no declared scope")
            if scope == PUBLIC:
                op["security"] = []
            else:
                op["description"] = f"Needs a token with scope `{scope}` or higher."
                op["responses"].update(_errors(401, 403))
    return paths


def _webhook(
    provider: str, headers: list[tuple[str, bool]], types: list[str], note: str = ""
) -> dict[str, Any]:
    return _op(
        f"Receive a {provider} webhook delivery",
        {
            "200": _json(_OBJECT, "ping answered or a redelivery (its first jobs)"),
            "202": _json(_OBJECT, "accepted, ignored with a reason, or spooled"),
            **_errors(400, 401, 404, 413, 415, 503),
        },
        parameters=[
            {
                "name": name,
                "in": "header",
                "required": required,
                "schema": {"type": "string", "minLength": 1} if required else {"type": "string"},
            }
            for name, required in headers
        ],
        requestBody={
            "required": True,
            "content": {t: {"schema": _OBJECT} for t in types},
        },
    )


def openapi_document() -> dict[str, Any]:
    """The document (a fresh dict each call)."""
    statuses = [s.value for s in JobStatus]
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "deployq",
            "version": __version__,
            "description": "Webhook receivers, REST API, health and metrics of deployq. "
            "/api/v1 routes need `Authorization: Bearer <token>` "
            "(`deployq token create --scope read|deploy|admin`).",
        },
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": _ERROR},
        },
        "paths": _with_scopes(
            {
                "/healthz": {"get": _op("The process is up", _responses())},
                "/readyz": {
                    "get": _op(
                        "The database answers and migrations are current",
                        {"200": _json(_OBJECT), "503": _json(_OBJECT, "not ready")},
                    )
                },
                "/metrics": {
                    "get": _op(
                        "Prometheus metrics",
                        _responses(503, body=_text("text exposition format", "text/plain")),
                    )
                },
                "/webhooks/github": {
                    "post": _webhook(
                        "GitHub",
                        [
                            ("X-GitHub-Event", True),
                            ("X-GitHub-Delivery", False),
                            ("X-Hub-Signature-256", False),
                        ],
                        ["application/json"],
                        " (GitHub's form encoding, payload=<json>, is accepted too)",
                    )
                },
                "/webhooks/gitlab": {
                    "post": _webhook(
                        "GitLab",
                        [
                            ("X-Gitlab-Event", True),
                            ("X-Gitlab-Event-UUID", False),
                            ("X-Gitlab-Token", False),
                        ],
                        ["application/json"],
                    )
                },
                "/api/v1/openapi.json": {"get": _op("This document", _responses())},
                "/api/v1/apps": {"get": _op("List apps (secrets hidden)", _responses())},
                "/api/v1/apps/{app}": {
                    "get": _op(
                        "One app (secrets hidden)",
                        _responses(404),
                        parameters=[_APP_PARAM],
                    )
                },
                "/api/v1/apps/{app}/deployments": {
                    "post": _op(
                        "Deploy an app now (manual trigger)",
                        _responses(400, 404, ok=202, description="the jobs"),
                        parameters=[_APP_PARAM],
                        requestBody=_optional_json_body(
                            {
                                "ref": {"type": "string", "description": "branch, tag or ref"},
                                "commit": {"type": "string", "pattern": COMMIT_SHA_PATTERN},
                                "priority": {
                                    "type": "string",
                                    "enum": ["low", "normal", "high", "critical"],
                                },
                            }
                        ),
                    )
                },
                "/api/v1/jobs": {
                    "get": _op(
                        "List jobs, newest first",
                        _responses(400),
                        parameters=[
                            {
                                "name": "status",
                                "in": "query",
                                "description": "comma-separated: " + ", ".join(statuses),
                                "schema": {"type": "string", "pattern": _list_pattern(statuses)},
                            },
                            {"name": "app", "in": "query", "schema": {"type": "string"}},
                            _LIMIT,
                            _BEFORE,
                        ],
                    )
                },
                "/api/v1/jobs/{id}": {
                    "get": _op(
                        "One job with its events",
                        _responses(404),
                        parameters=[_id_param("job id")],
                    )
                },
                "/api/v1/jobs/{id}/logs": {
                    "get": _op(
                        "The job's log: text/plain, or live with Accept: text/event-stream "
                        "(id: is the line number; resume with Last-Event-ID; ends with event: end)",
                        _responses(
                            400, 404, body=_text("the log", "text/plain", "text/event-stream")
                        ),
                        parameters=[
                            _id_param("job id"),
                            {
                                "name": "after",
                                "in": "query",
                                "description": "lines after this seq",
                                "schema": {"type": "integer", "minimum": 0, "maximum": MAX_LOG_SEQ},
                            },
                        ],
                    )
                },
                "/api/v1/jobs/{id}/cancel": {
                    "post": _op(
                        "Cancel a queued job, or ask the worker to stop a running one",
                        _responses(400, 404, 409),
                        parameters=[_id_param("job id")],
                        requestBody=_optional_json_body({"force": {"type": "boolean"}}),
                    )
                },
                "/api/v1/jobs/{id}/retry": {
                    "post": _op(
                        "A new job for the same commit as a finished one",
                        _responses(404, 409, ok=202),
                        parameters=[_id_param("job id")],
                    )
                },
                "/api/v1/queue/stats": {
                    "get": _op(
                        "Queue depth, running jobs, server load, the last 24 h",
                        _responses(),
                    )
                },
                "/api/v1/stats": {
                    "get": _op(
                        "Wait and build times (avg, p95), success rate, the queue now, "
                        "per app and day",
                        _responses(400, 404),
                        parameters=[
                            {"name": "app", "in": "query", "schema": {"type": "string"}},
                            {
                                "name": "since",
                                "in": "query",
                                "schema": {
                                    "type": "string",
                                    "default": "7d",
                                    "pattern": SINCE_PATTERN,
                                },
                                "description": "window: 24h, 7d, 30d or seconds",
                            },
                        ],
                    )
                },
                "/api/v1/events": {
                    "get": _op(
                        "The live feed (text/event-stream): job states, steps, progress, servers",
                        _responses(
                            400,
                            body=_text(
                                "server-sent events, each data a JSON object", "text/event-stream"
                            ),
                        ),
                        parameters=[
                            {"name": "app", "in": "query", "schema": {"type": "string"}},
                            {"name": "status", "in": "query", "schema": {"type": "string"}},
                            {"name": "after", "in": "query", "schema": {"type": "integer"}},
                            {
                                "name": "Last-Event-ID",
                                "in": "header",
                                "schema": {"type": "integer"},
                            },
                        ],
                    )
                },
                "/api/v1/servers": {"get": _op("Build servers", _responses())},
                "/api/v1/targets": {"get": _op("Deploy targets and their health", _responses())},
                "/api/v1/apps/{app}/releases": {
                    "get": _op(
                        "An app's releases, newest first, and what runs now on each target",
                        _responses(404),
                        parameters=[_APP_PARAM],
                    )
                },
                "/api/v1/apps/{app}/rollbacks": {
                    "post": _op(
                        "Queue a deploy-only job of an earlier image "
                        "(default: the previous release)",
                        _responses(400, 404, 409, ok=202),
                        parameters=[_APP_PARAM],
                        requestBody=_optional_json_body(
                            {
                                "to": {"type": "integer", "minimum": 1},
                                "digest": {"type": "string"},
                                "priority": {"type": "string"},
                            }
                        ),
                    )
                },
                "/api/v1/deliveries": {
                    "get": _op(
                        "Webhook deliveries, newest first",
                        _responses(400),
                        parameters=[
                            _LIMIT,
                            _BEFORE,
                            {"name": "provider", "in": "query", "schema": {"type": "string"}},
                        ],
                    )
                },
                "/api/v1/deliveries/{id}": {
                    "get": _op(
                        "One delivery with its kept headers; `body` says whether its body "
                        "is kept for replay or was pruned (and when)",
                        _responses(404),
                        parameters=[_id_param("delivery id (the row id)")],
                    )
                },
                "/api/v1/deliveries/{id}/replay": {
                    "post": _op(
                        "Process a recorded, verified delivery again "
                        "(jobs dedupe on its delivery id); 409 once its body was pruned",
                        {**_responses(404, 409), "202": _json(_OBJECT)},
                        parameters=[_id_param("delivery id (the row id)")],
                    )
                },
            }
        ),
    }
