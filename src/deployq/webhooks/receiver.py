"""The webhook receivers: ``POST /webhooks/github`` and ``POST /webhooks/gitlab``.

Order of business: size and content type, parse, find the candidate apps by repository
identity, verify the signature against their secrets and the global one (401 when none
verifies), then act. Verified deliveries keep their body, so they can be replayed; when the
database is unreachable they go to the spool and are answered 202.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from deployq.errors import QueueFull
from deployq.models import Job
from deployq.store import DeliveryRecord, EnqueueResult
from deployq.webhooks.bodies import BodyBudgetSpent, BodyTooLarge, budget_response
from deployq.webhooks.errors import error_response
from deployq.webhooks.events import BadPayload, Parsed
from deployq.webhooks.providers import Provider, decode_body
from deployq.webhooks.spool import SpoolRecord, generated_delivery_id
from deployq.webhooks.state import DB_ERRORS, STATE_KEY, KnownApp, WebState

log = logging.getLogger(__name__)

#: how long one delivery may wait for the database before it is spooled instead
DB_DEADLINE_S = 5.0
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: kept with a delivery that builds only some apps of its repository (see _verify)
APPS_HEADER = "X-Deployq-Apps"
#: headers kept with a delivery (never the signature or the GitLab token)
KEPT_HEADERS = (
    "Content-Type",
    "User-Agent",
    "X-GitHub-Event",
    "X-GitHub-Delivery",
    "X-GitHub-Hook-ID",
    "X-Gitlab-Event",
    "X-Gitlab-Event-UUID",
    "X-Gitlab-Instance",
    IDEMPOTENCY_HEADER,
)


@dataclass
class Reply:
    """What a delivery came to: the HTTP answer and the row in webhook_deliveries."""

    status: int
    body: dict[str, Any]
    result: str
    reason: str | None = None
    job_ids: tuple[int, ...] = ()

    def response(self) -> web.Response:
        return web.json_response(self.body, status=self.status)


def kept_headers(headers: Any) -> dict[str, str]:
    return {name: headers[name] for name in KEPT_HEADERS if name in headers}


def job_summary(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "app": job.app_name,
        "status": job.status.value,
        "ref": job.ref,
        "commit": job.commit_sha,
    }


def handler(provider: Provider) -> Callable[[web.Request], Any]:
    async def receive(request: web.Request) -> web.Response:
        return await _receive(request, provider)

    receive.__doc__ = f"Receive a {provider.name} webhook delivery."
    return receive


async def _receive(request: web.Request, provider: Provider) -> web.Response:
    state = request.app[STATE_KEY]
    event = request.headers.get(provider.event_header)
    delivery_id = request.headers.get(provider.delivery_header) or request.headers.get(
        IDEMPOTENCY_HEADER
    )
    base = DeliveryRecord(provider.name, event, delivery_id, "refused", 400)

    if request.content_type not in provider.content_types:
        return await _refuse(
            state,
            base,
            415,
            "unsupported_media_type",
            f"content type {request.content_type!r} is not accepted; "
            f"configure the webhook to send {' or '.join(provider.content_types)}",
        )
    try:
        async with state.bodies.reading(request, state.settings.webhook_max_body_bytes) as body:
            return await _handle(request, provider, state, base, event, delivery_id, body)
    except BodyTooLarge as exc:
        return await _refuse(state, base, 413, "payload_too_large", str(exc))
    except BodyBudgetSpent as exc:
        state.metrics.webhooks.labels(provider.name, "busy").inc()
        return budget_response(exc)


async def _handle(
    request: web.Request,
    provider: Provider,
    state: WebState,
    base: DeliveryRecord,
    event: str | None,
    delivery_id: str | None,
    body: bytes,
) -> web.Response:
    if not event:
        return await _refuse(
            state, base, 400, "missing_event", f"the {provider.event_header} header is missing"
        )
    try:
        parsed = provider.parse(event, decode_body(body, request.content_type))
    except BadPayload as exc:
        return await _refuse(state, base, 400, "bad_payload", str(exc))
    base.repo, base.ref = parsed.repo, parsed.ref

    headers = {k.lower(): v for k, v in request.headers.items()}
    global_secret = provider.global_secret(state)
    known, db_ok, cached = await _candidates(state, parsed.identities)
    verified, building = _verify(provider, headers, body, known, global_secret)
    if cached and len(building) < len(known):  # a secret may have changed since it was cached
        known, db_ok, _ = await _candidates(state, parsed.identities, use_cache=False)
        verified, building = _verify(provider, headers, body, known, global_secret)
    # a repository with several hooks (one per app, each with its own secret) sends one
    # delivery per hook: each builds only the apps whose secret signed it
    only_apps = [a.name for a in building] if len(building) < len(known) else None
    if not verified and (known or global_secret):
        return await _refuse(
            state,
            base,
            401,
            "bad_signature",
            "the delivery is not signed with the secret of any matching app nor the global "
            "one; check the webhook secret",
        )
    if parsed.ping:
        pong = Reply(200, {"pong": True}, "accepted", "ping")
        return await _finish(state, base, pong, body if verified else None, request)
    if not known and not db_ok and not verified:
        return await _refuse(
            state,
            base,
            503,
            "database_unavailable",
            "the database is unreachable and no app is known for this repository; "
            "the forge should redeliver later",
        )
    if not known and db_ok:
        reason = f"no app is configured for repository {parsed.repo or '(none named)'}"
        if state.settings.unknown_repo_status == 404:
            return await _refuse(state, base, 404, "unknown_repository", reason)
        reply = Reply(202, {"ignored": reason}, "ignored", reason)
        return await _finish(state, base, reply, body if verified else None, request)
    if parsed.ignored is not None:
        reply = Reply(202, {"ignored": parsed.ignored}, "ignored", parsed.ignored)
        return await _finish(state, base, reply, body, request)

    record = SpoolRecord(
        provider.name,
        event,
        delivery_id or generated_delivery_id(),
        kept_headers(request.headers),
        body,
        apps=only_apps,
    )
    if db_ok:
        try:
            async with asyncio.timeout(DB_DEADLINE_S):
                reply = await deliver(
                    state,
                    provider.name,
                    parsed,
                    delivery_id,
                    headers=record.headers,
                    body=body,
                    repos=list(dict.fromkeys(a.identity for a in building)),
                    only_apps=only_apps,
                )
            state.metrics.webhooks.labels(provider.name, reply.result).inc()
            return reply.response()
        except QueueFull as exc:
            # kept with its body: the forge redelivers it, or an admin replays it
            base.body, base.headers = body, record.headers
            return await _refuse(
                state,
                base,
                503,
                "queue_full",
                f"{exc.message}; the forge should redeliver it later",
                retry_after_s=exc.retry_after_s,
            )
        except DB_ERRORS as exc:
            log.warning(
                "database unavailable during a %s delivery (%s); spooling it",
                provider.name,
                type(exc).__name__,
            )
            state.db_down = True
    await state.spool.append(record)
    state.metrics.webhooks.labels(provider.name, "spooled").inc()
    return web.json_response({"spooled": True, "delivery_id": record.delivery_id}, status=202)


def _verify(
    provider: Provider,
    headers: dict[str, str],
    body: bytes,
    known: list[KnownApp],
    global_secret: str | None,
) -> tuple[bool, list[KnownApp]]:
    """(verified at all, the apps it verified for): an app's own secret, or the global one
    for apps without a secret of their own."""
    global_ok = bool(global_secret) and provider.verify(headers, body, [global_secret or ""])
    apps = [
        app
        for app in known
        if (provider.verify(headers, body, [app.secret]) if app.secret else global_ok)
    ]
    return bool(apps) or global_ok, apps


async def _candidates(
    state: WebState, identities: list[str], *, use_cache: bool = True
) -> tuple[list[KnownApp], bool, bool]:
    """(apps for these identities, database reachable, answered from the cache).

    A fresh cache entry naming apps spares the query; an unknown repository is always looked
    up (deliveries of the same repository share a lookup under way, see AppCache.read);
    while the database is down the last known apps are used, however old.
    """
    if not identities:
        return [], not state.db_down, False
    if not state.db_down and state.store.health.up:
        if use_cache:
            cached = state.apps.fresh(identities)
            if cached:
                return cached, True, True
        try:
            apps = await state.apps.read(identities, state.store.apps.by_repos, DB_DEADLINE_S)
            return apps, True, False
        except DB_ERRORS:
            state.db_down = True
    return state.apps.lookup(identities), False, False


async def deliver(
    state: WebState,
    provider: str,
    parsed: Parsed,
    delivery_id: str | None,
    *,
    headers: dict[str, str],
    body: bytes,
    replay_of: int | None = None,
    spooled: bool = False,
    received_at: Any = None,
    repos: list[str] | None = None,
    only_apps: list[str] | None = None,
) -> Reply:
    """Enqueue a verified delivery and record it, in a group commit with the deliveries
    that arrive with it (deployq.webhooks.batcher); answers once committed. Errors of the
    enqueue propagate (the receiver spools the delivery).

    ``repos``: the identities of the matching apps, when the caller knows them already;
    ``only_apps``: build only these apps (those whose secret signed the delivery).
    """
    assert parsed.trigger is not None
    if repos is None:
        apps = await state.store.apps.by_repos(parsed.identities)
        repos = list(dict.fromkeys(a.repo_identity for a in apps))
    targets: list[dict[str, Any]] = (
        [{"app": name, "repo": None} for name in only_apps]
        if only_apps is not None
        else [{"repo": identity} for identity in repos]
    )
    trigger = parsed.trigger
    triggers = [
        trigger.model_copy(update={**target, "delivery_id": delivery_id}) for target in targets
    ]
    known_repos = repos

    def build(results: list[EnqueueResult]) -> tuple[Reply, DeliveryRecord]:
        reply = _reply(parsed, delivery_id, known_repos, results)
        record = DeliveryRecord(
            provider,
            parsed.event,
            delivery_id,
            reply.result,
            reply.status,
            repo=parsed.repo,
            ref=parsed.ref,
            job_ids=list(reply.job_ids),
            reason=reply.reason,
            headers={**headers, APPS_HEADER: ",".join(only_apps)}
            if only_apps is not None
            else headers,
            body=body,
            replay_of=replay_of,
            spooled=spooled,
            received_at=received_at,
        )
        return reply, record

    return await state.batcher.submit_delivery(triggers, build)


def _reply(
    parsed: Parsed, delivery_id: str | None, repos: list[str], results: list[EnqueueResult]
) -> Reply:
    """The answer to a delivery whose triggers gave these results."""
    jobs: list[Job] = [job for result in results for job in result.jobs]
    skipped: dict[str, str] = {}
    for result in results:
        skipped.update(result.skipped)
    created = all(result.created for result in results)
    if not repos:
        reason = f"no app is configured for repository {parsed.repo}"
        return Reply(202, {"ignored": reason}, "ignored", reason)
    if not jobs:
        reason = "; ".join(why for _, why in sorted(skipped.items()))  # each names its app
        return Reply(202, {"ignored": reason, "skipped": skipped}, "ignored", reason)
    if not created:
        return Reply(
            200,
            {"result": "duplicate", "jobs": [job_summary(j) for j in jobs]},
            "duplicate",
            f"delivery {delivery_id} was received before",
            tuple(j.id for j in jobs),
        )
    return Reply(
        202,
        {"result": "accepted", "jobs": [job_summary(j) for j in jobs], "skipped": skipped},
        "accepted",
        None,
        tuple(j.id for j in jobs),
    )


async def _refuse(
    state: WebState,
    base: DeliveryRecord,
    status: int,
    code: str,
    message: str,
    *,
    retry_after_s: int | None = None,
) -> web.Response:
    base.result, base.status_code, base.reason = "refused", status, message
    await _record_quietly(state, base)
    state.metrics.webhooks.labels(base.provider, "refused").inc()
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return error_response(status, code, message, headers)


async def _finish(
    state: WebState, base: DeliveryRecord, reply: Reply, body: bytes | None, request: web.Request
) -> web.Response:
    base.result, base.status_code, base.reason = reply.result, reply.status, reply.reason
    base.body = body
    base.headers = kept_headers(request.headers) if body is not None else None
    await _record_quietly(state, base)
    state.metrics.webhooks.labels(base.provider, reply.result).inc()
    return reply.response()


async def _record_quietly(
    state: WebState, record: DeliveryRecord, *, even_if_down: bool = False
) -> None:
    """Record a delivery; losing the record beats failing the answer (its jobs, if any, are
    committed already). While the database is known to be down, only ``even_if_down``
    records (those of a replay, which just reached it) are tried."""
    if state.db_down and not even_if_down:
        return
    try:
        async with asyncio.timeout(DB_DEADLINE_S):
            await state.recorder.record(record)
    except DB_ERRORS as exc:
        log.warning("could not record a %s delivery: %s", record.provider, type(exc).__name__)
