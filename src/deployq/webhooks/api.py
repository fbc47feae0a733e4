"""The REST API, /api/v1 (docs/ARCHITECTURE.md: how to add a route). Every route and its
scope is in ROUTES, from which the router and the OpenAPI document's security requirements
are built."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from deployq.attempts import job_times
from deployq.durations import parse_duration
from deployq.logfollow import LogWaker
from deployq.manual import manual_trigger
from deployq.models import App, Job, JobStatus, Priority
from deployq.redact import redact_urls
from deployq.validation import MAX_ID, MAX_LOG_SEQ, MAX_PAGE_SIZE
from deployq.webhooks.auth import actor_of, token_of
from deployq.webhooks.bodies import (
    RETRY_AFTER_S,
    BadJson,
    BodyBudgetSpent,
    BodyTooLarge,
    decode_json,
)
from deployq.webhooks.errors import ApiError
from deployq.webhooks.feed_api import stream_events
from deployq.webhooks.replay import replay_stored
from deployq.webhooks.sse import stream_logs
from deployq.webhooks.state import STATE_KEY

HUB_KEY = web.AppKey("deployq_log_waker", LogWaker)
MAX_STATS_WINDOW_S = 3650 * 86400.0
#: the stats window as the OpenAPI document states it (positive, at most MAX_STATS_WINDOW_S)
SINCE_PATTERN = r"^([1-9][0-9]{0,7}(s|ms)?|[1-9][0-9]{0,5}m|[1-9][0-9]{0,3}h|[1-9][0-9]{0,2}d)$"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- helpers -------------------------------------------------------------------------------


def _one(query: MultiMapping[str], name: str) -> str | None:
    """A query parameter given at most once (a repeated one is ambiguous: 400)."""
    values = query.getall(name, [])
    if len(values) > 1:
        raise ApiError(400, "invalid_input", f"{name} is given {len(values)} times; give it once")
    return values[0] if values else None


def _int_param(
    value: str | None, name: str, *, default: int | None = None, low: int = 1, high: int = MAX_ID
) -> int | None:
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()) or len(value) > 20:
        raise ApiError(400, "invalid_input", f"{name} must be an integer")
    number = int(value)
    if not low <= number <= high:
        raise ApiError(400, "invalid_input", f"{name} must be between {low} and {high}")
    return number


def _path_id(request: web.Request) -> int:
    """The {id} of the path; 404 (not 500) for ids no row can have."""
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_ID:
        raise ApiError(404, "not_found", f"no object with id {raw!r}")
    return int(raw)


async def _json_body(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body is {}."""
    state = request.app[STATE_KEY]
    try:
        async with state.bodies.reading(request, state.settings.webhook_max_body_bytes) as raw:
            data = decode_json(raw) if raw.strip() else {}
    except BodyTooLarge as exc:
        raise ApiError(413, "payload_too_large", str(exc)) from None
    except BodyBudgetSpent as exc:
        raise ApiError(503, "busy", str(exc), {"Retry-After": str(RETRY_AFTER_S)}) from None
    except BadJson as exc:
        raise ApiError(400, "bad_json", str(exc)) from exc
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_input", "the body must be a JSON object")
    return data


def _reject_unknown(data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ApiError(
            400,
            "invalid_input",
            f"unknown field(s) {', '.join(unknown)}; allowed: " + ", ".join(sorted(allowed)),
        )


def job_json(job: Job) -> dict[str, Any]:
    data = job.model_dump(mode="json")
    data["repo_url"] = redact_urls(job.repo_url)
    data["priority"] = job.priority.name.lower()  # as asked for: "high", not 2
    data["duration_s"] = job.duration_s
    return data


def app_json(app: App) -> dict[str, Any]:
    """An app without its secrets: only whether they are set, and the names of build secrets."""
    data = app.model_dump(mode="json")
    data["priority"] = app.priority.name.lower()
    data.pop("webhook_secret", None)
    data.pop("notify_webhook_secret", None)
    data.pop("forge_token", None)
    data.pop("registry_password", None)
    data.pop("git_token", None)
    data.pop("git_ssh_key", None)
    data["has_webhook_secret"] = app.webhook_secret is not None
    data["has_git_token"] = app.git_token is not None
    data["has_git_ssh_key"] = app.git_ssh_key is not None
    data["build_secrets"] = sorted(app.build_secrets)
    data["repo_url"] = redact_urls(app.repo_url)
    if app.notify_webhook_url:
        data["notify_webhook_url"] = redact_urls(app.notify_webhook_url)
    if app.deploy is not None:
        # the container's environment holds secrets: its names only
        data["deploy"]["env"] = sorted(app.deploy.env)
        data["deploy"].pop("webhook_secret", None)
        data["deploy"]["has_webhook_secret"] = app.deploy.webhook_secret is not None
    return data


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


# -- apps and deployments -------------------------------------------------------------------


async def list_apps(request: web.Request) -> web.Response:
    apps = await request.app[STATE_KEY].store.apps.all()
    return _json({"apps": [app_json(a) for a in apps]})


async def get_app(request: web.Request) -> web.Response:
    app = await request.app[STATE_KEY].store.apps.get(request.match_info["app"])
    return _json(app_json(app))


async def create_deployment(request: web.Request) -> web.Response:
    """Manual trigger: {"ref"?, "commit"?, "priority"?} -> 202 {"jobs": [...]}."""
    store = request.app[STATE_KEY].store
    data = await _json_body(request)
    _reject_unknown(data, {"ref", "commit", "priority"})
    app = await store.apps.get(request.match_info["app"])
    ref, commit, priority = data.get("ref"), data.get("commit"), data.get("priority")
    if ref is not None and not isinstance(ref, str):
        raise ApiError(400, "invalid_input", "ref must be a branch, tag or full ref name")
    if commit is not None and not isinstance(commit, str):
        raise ApiError(400, "invalid_input", "commit must be 7 to 64 hexadecimal characters")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, str | int)):
        raise ApiError(400, "invalid_input", "priority is low, normal, high or critical")
    trigger = manual_trigger(
        app,
        actor=actor_of(request),
        pusher=token_of(request).name,
        ref=ref,
        commit=commit,
        priority=priority,
    )
    result = await store.queue.enqueue(trigger)
    return _json({"jobs": [job_json(j) for j in result.jobs]}, status=202)


# -- jobs -------------------------------------------------------------------------------------


async def list_jobs(request: web.Request) -> web.Response:
    store = request.app[STATE_KEY].store
    query = request.query
    statuses: list[JobStatus] | None = None
    status = _one(query, "status")
    if status is not None:
        try:
            statuses = [JobStatus(s) for s in status.split(",")]
        except ValueError:
            raise ApiError(
                400,
                "invalid_input",
                "status is a comma-separated list of " + ", ".join(s.value for s in JobStatus),
            ) from None
    limit = _int_param(_one(query, "limit"), "limit", default=50, high=MAX_PAGE_SIZE)
    before = _int_param(_one(query, "before"), "before")
    jobs = await store.jobs.recent(
        status=statuses, app=_one(query, "app") or None, before_id=before, limit=limit or 50
    )
    return _json({"jobs": [job_json(j) for j in jobs]})


async def get_job(request: web.Request) -> web.Response:
    store = request.app[STATE_KEY].store
    job = await store.jobs.get(_path_id(request))
    data = job_json(job)
    if job.status is JobStatus.QUEUED:
        data["wait_reason"] = await store.waits.reason(job.id) or job.wait_reason
        position = await store.jobs.queue_position(job.id)
        data["queue_position"] = position.model_dump(mode="json") if position else None
    if not job.status.is_final:
        estimate = (await store.estimates.for_jobs([job.id])).get(job.id)
        data["estimate"] = estimate.model_dump(mode="json") if estimate else None
    events = await store.jobs.events(job.id)
    data["events"] = [e.model_dump(mode="json") for e in events]
    times = job_times(job, events)
    data["total_s"] = times.total_s
    data["attempts"] = [
        {"attempt": a.attempt, "seconds": a.seconds, "outcome": a.outcome} for a in times.attempts
    ]
    return _json(data)


async def job_logs(request: web.Request) -> web.StreamResponse:
    """text/plain; with Accept: text/event-stream, follow live (resume with Last-Event-ID)."""
    state = request.app[STATE_KEY]
    job_id = _path_id(request)
    after = _int_param(_one(request.query, "after"), "after", default=0, low=0, high=MAX_LOG_SEQ)
    if "text/event-stream" in request.headers.get("Accept", ""):
        last = request.headers.get("Last-Event-ID", "").strip()
        if last:
            after = _int_param(last, "Last-Event-ID", low=0, high=MAX_LOG_SEQ)
        return await stream_logs(request, state.store, request.app[HUB_KEY], job_id, after or 0)
    await state.store.jobs.get(job_id)
    lines = await state.store.logs.read(job_id, after=after or 0, limit=100_000)
    text = "".join(line.line + "\n" for line in lines)
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def cancel_job(request: web.Request) -> web.Response:
    data = await _json_body(request)
    _reject_unknown(data, {"force"})
    force = data.get("force", False)
    if not isinstance(force, bool):
        raise ApiError(400, "invalid_input", "force must be true or false")
    job = await request.app[STATE_KEY].store.jobs.cancel(
        _path_id(request), actor=actor_of(request), force=force
    )
    return _json(job_json(job))


async def retry_job(request: web.Request) -> web.Response:
    job = await request.app[STATE_KEY].store.jobs.retry(_path_id(request), actor=actor_of(request))
    return _json(job_json(job), status=202)


# -- queue, servers, deliveries ----------------------------------------------------------------


async def queue_stats(request: web.Request) -> web.Response:
    stats = await request.app[STATE_KEY].store.jobs.stats()
    return _json(stats.model_dump(mode="json"))


async def build_stats(request: web.Request) -> web.Response:
    """?app=&since=7d: wait and build times, success rate, the queue now, per app and day."""
    store = request.app[STATE_KEY].store
    app = _one(request.query, "app") or None
    since = _one(request.query, "since")
    since = "7d" if since is None else since
    if not re.match(SINCE_PATTERN, since):
        raise ApiError(400, "invalid_input", "since is a duration like 24h, 7d or 3600")
    window = parse_duration(since)
    if not 0 < window <= MAX_STATS_WINDOW_S:
        raise ApiError(400, "invalid_input", "since must be above zero and at most 3650d")
    if app is not None:
        await store.apps.get(app)
    stats = await store.stats.summary(app=app, window=timedelta(seconds=window))
    return _json(stats.model_dump(mode="json"))


async def list_servers(request: web.Request) -> web.Response:
    servers = await request.app[STATE_KEY].store.servers.all()
    return _json({"servers": [s.model_dump(mode="json") for s in servers]})


async def list_deliveries(request: web.Request) -> web.Response:
    query = request.query
    limit = _int_param(_one(query, "limit"), "limit", default=50, high=MAX_PAGE_SIZE)
    before = _int_param(_one(query, "before"), "before")
    provider = _one(query, "provider") or None
    deliveries = await request.app[STATE_KEY].store.deliveries.recent(
        limit=limit or 50, before_id=before, provider=provider
    )
    return _json({"deliveries": [d.model_dump(mode="json") for d in deliveries]})


async def get_delivery(request: web.Request) -> web.Response:
    stored = await request.app[STATE_KEY].store.deliveries.get(_path_id(request))
    data = stored.delivery.model_dump(mode="json")
    data["headers"] = stored.headers
    data["replayable"] = stored.body is not None
    data["body"] = stored.delivery.body_state  # e.g. "body pruned 2026-12-01"
    return _json(data)


async def replay_delivery(request: web.Request) -> web.Response:
    reply = await replay_stored(request.app[STATE_KEY], _path_id(request))
    return _json({**reply.body, "result": reply.result}, status=reply.status)


# -- deploy ---------------------------------------------------------------------------------


async def list_targets(request: web.Request) -> web.Response:
    targets = await request.app[STATE_KEY].store.deploy.targets()
    return _json({"targets": [t.model_dump(mode="json") for t in targets]})


async def list_releases(request: web.Request) -> web.Response:
    """{"app", "current": [release per target], "releases": [newest first]}."""
    store = request.app[STATE_KEY].store
    app = await store.apps.get(request.match_info["app"])
    releases = await store.deploy.releases(app.name)
    current = await store.deploy.current_releases(app.name)
    return _json(
        {
            "app": app.name,
            "current": [r.model_dump(mode="json") for r in current],
            "releases": [r.model_dump(mode="json") for r in releases],
        }
    )


async def create_rollback(request: web.Request) -> web.Response:
    """{"to"?: job id, "digest"?: sha256:..., "priority"?} -> 202 {"job": {...}}: a
    deploy-only job of an earlier image (default: the release before the current one)."""
    store = request.app[STATE_KEY].store
    data: dict[str, Any] = await _json_body(request)
    _reject_unknown(data, {"to", "digest", "priority"})
    app = await store.apps.get(request.match_info["app"])
    to, digest, priority_raw = data.get("to"), data.get("digest"), data.get("priority")
    if to is not None and (
        isinstance(to, bool) or not isinstance(to, int) or not 1 <= to <= MAX_ID
    ):
        raise ApiError(400, "invalid_input", "to must be the id of a succeeded job")
    if digest is not None and (not isinstance(digest, str) or not digest.strip()):
        raise ApiError(400, "invalid_input", "digest must be an image digest (sha256:...)")
    if to is not None and digest is not None:
        raise ApiError(400, "invalid_input", "give to or digest, not both")
    priority: Priority | None = None
    if priority_raw is not None:
        if isinstance(priority_raw, bool) or not isinstance(priority_raw, str | int):
            raise ApiError(400, "invalid_input", "priority is low, normal, high or critical")
        try:
            priority = Priority.parse(priority_raw)
        except ValueError as exc:
            raise ApiError(400, "invalid_input", str(exc)) from exc
    if app.deploy is None or not app.deploy.enabled:
        raise ApiError(409, "conflict", f"{app.name} has no deploy target")
    source = await store.deploy.rollback_source(app.name, job_id=to, digest=digest)
    job = await store.deploy.enqueue_rollback(
        app.name, source, actor=actor_of(request), priority=priority
    )
    return _json({"job": job_json(job)}, status=202)


ROUTES: list[Route] = [
    Route("GET", "/api/v1/apps", list_apps),
    Route("GET", "/api/v1/apps/{app}", get_app),
    Route("POST", "/api/v1/apps/{app}/deployments", create_deployment),
    Route("GET", "/api/v1/jobs", list_jobs),
    Route("GET", "/api/v1/jobs/{id}", get_job),
    Route("GET", "/api/v1/jobs/{id}/logs", job_logs),
    Route("POST", "/api/v1/jobs/{id}/cancel", cancel_job),
    Route("POST", "/api/v1/jobs/{id}/retry", retry_job),
    Route("GET", "/api/v1/queue/stats", queue_stats),
    Route("GET", "/api/v1/stats", build_stats),
    Route("GET", "/api/v1/events", stream_events),
    Route("GET", "/api/v1/servers", list_servers),
    Route("GET", "/api/v1/deliveries", list_deliveries),
    Route("GET", "/api/v1/deliveries/{id}", get_delivery),
    Route("POST", "/api/v1/deliveries/{id}/replay", replay_delivery),
    Route("GET", "/api/v1/targets", list_targets),
    Route("GET", "/api/v1/apps/{app}/releases", list_releases),
    Route("POST", "/api/v1/apps/{app}/rollbacks", create_rollback),
]


def add_routes(app: web.Application) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
