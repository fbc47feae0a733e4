"""The notification outbox: rows written in the job's own transaction, sent by the notifier.

Delivery is at-least-once with the attempt recorded before sending: ``claim_due`` marks a
row ``sending`` and counts the attempt in its own short transaction, the notifier sends,
then ``mark_sent`` or ``mark_failed``. A ``sending`` row whose sender vanished (crash between
send and mark) becomes due again once its attempt is older than ``stale_after_s``; the
idempotency key travels with every send (Message-ID, X-Deployq-Delivery) so receivers can
recognise the rare resend.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from deployq.db import Connection
from deployq.errors import Conflict, NotFound
from deployq.imageref import pull_reference
from deployq.models import App, Job, JobStatus, Notification, NotifyEvent
from deployq.redact import redact_urls
from deployq.store._channels import CHANNEL_NOTIFICATIONS, dumps
from deployq.store._queries import sql

if TYPE_CHECKING:
    from deployq.store._store import Store

#: a commit status waits out a forge outage (the backoff caps each wait at
#: notify_retry_max_delay); only a refusal (401, 404, 422) ends it
FORGE_MAX_ATTEMPTS = 1000
#: log lines kept in the payload of a failure notification
LOG_TAIL_LINES = 20
#: events whose notification carries the end of the build log
_LOG_TAIL_EVENTS = frozenset({NotifyEvent.FAILED, NotifyEvent.TIMED_OUT})


def idempotency_key(job: Job, event: NotifyEvent, channel: str, target: str) -> str:
    """Deterministic per job attempt, event and recipient; also the e-mail Message-ID's left
    part, so the target (an address or URL) is hashed to stay within its allowed characters."""
    digest = hashlib.sha256(target.strip().lower().encode()).hexdigest()[:16]
    return f"job{job.id}.a{job.attempt}.{event.value}.{channel}.{digest}"


def recipients(app: App, job: Job) -> list[str]:
    """The app's addresses, plus the pusher's when the app asks for it; each once."""
    seen: set[str] = set()
    out: list[str] = []
    extra = [job.pusher_email] if app.notify_pusher and job.pusher_email else []
    for address in [*app.notify_emails, *extra]:
        address = address.strip()
        if address and address.lower() not in seen:
            seen.add(address.lower())
            out.append(address)
    return out


def forge_target(app: App, job: Job) -> str | None:
    """``github:HOST/OWNER/NAME`` or ``gitlab:HOST/GROUP/NAME`` for an app that reports commit
    statuses, when the job has a commit and the forge is known (by the webhook that made the
    job, else by the host: github.com, or a host with "gitlab" in its name)."""
    if not app.forge_status or not job.commit_sha:
        return None
    host = app.repo_identity.split("/", 1)[0]
    kind = job.provider if job.provider in ("github", "gitlab") else None
    if kind is None:
        kind = "github" if host == "github.com" else "gitlab" if "gitlab" in host else None
    return None if kind is None else f"{kind}:{app.repo_identity}"


class NotificationStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- written by the queue --------------------------------------------------------------

    async def create_for_job(
        self,
        conn: Connection,
        job: Job,
        event: NotifyEvent,
        *,
        retry_scheduled: bool = False,
        app: App | None = None,
    ) -> list[int]:
        """Write the outbox rows for this event of this job (inside the caller's transaction).

        One row per e-mail recipient and one for the app's outgoing webhook, if the app
        wants this event. Calling twice for the same attempt and event creates nothing new.
        Pass the job's ``app`` when at hand: an app that wants no notification then costs
        no query at all. Returns the new notification ids.
        """
        if job.app_id is None:
            return []
        if app is None or app.id != job.app_id:
            row = await (await conn.execute(sql("app_get_by_id"), {"id": job.app_id})).fetchone()
            if row is None:
                return []
            app = App.model_validate(row)
        targets: list[tuple[str, str]] = []
        if event in app.notify_events:
            targets += [("email", address) for address in recipients(app, job)]
            if app.notify_webhook_url:
                targets.append(("webhook", app.notify_webhook_url))
        forge = forge_target(app, job)
        if forge is not None:
            targets.append(("forge", forge))
        if not targets:
            return []
        payload = await self._payload(conn, app, job, event, retry_scheduled)
        ids: list[int] = []
        for channel, target in targets:
            params = {
                "job_id": job.id,
                "event": event.value,
                "channel": channel,
                "target": target,
                "payload": Jsonb(payload),
                "max_attempts": (
                    FORGE_MAX_ATTEMPTS
                    if channel == "forge"
                    else self.store.settings.notify_max_attempts
                ),
                "key": idempotency_key(job, event, channel, target),
            }
            created = await (await conn.execute(sql("notification_add"), params)).fetchone()
            if created is not None:
                ids.append(int(created["id"]))
        if ids:
            payload_ids = dumps({"ids": ids})
            await conn.execute(
                sql("notify"), {"channel": CHANNEL_NOTIFICATIONS, "payload": payload_ids}
            )
        return ids

    async def _payload(
        self, conn: Connection, app: App, job: Job, event: NotifyEvent, retry_scheduled: bool
    ) -> dict[str, Any]:
        base_url = self.store.settings.base_url
        log_tail: list[str] = []
        if event in _LOG_TAIL_EVENTS:
            rows = await (
                await conn.execute(sql("log_tail"), {"job": job.id, "limit": LOG_TAIL_LINES})
            ).fetchall()
            log_tail = [str(r["line"]) for r in rows]
        status = JobStatus.FAILED.value if retry_scheduled else job.status.value
        expected: dict[str, Any] = {}
        if event is NotifyEvent.STARTED:
            usual = (await self.store.estimates.usual_durations([app.id], conn=conn))[app.id]
            expected = {
                "expected_duration_s": usual.duration_s,
                "expected_based_on": usual.builds,
            }
        return {
            "event": event.value,
            "app": {
                "id": app.id,
                "name": app.name,
                "repo_url": redact_urls(app.repo_url),
                "image": app.image,
            },
            "job": {
                "id": job.id,
                "status": status,
                "provider": job.provider,
                "trigger": job.trigger.value,
                "ref": job.ref,
                "ref_type": job.ref_type.value,
                "branch": job.branch,
                "commit_sha": job.commit_sha,
                "short_sha": job.short_sha or None,
                "commit_message": job.commit_message,
                "commit_author": job.commit_author,
                "pusher": job.pusher,
                "attempt": job.attempt,
                "max_attempts": job.max_attempts,
                "retry_scheduled": retry_scheduled,
                "next_attempt_at": job.run_after.isoformat() if retry_scheduled else None,
                "server": job.server_name,
                "image_ref": job.image_ref,
                "image_digest": job.image_digest,
                "pull": pull_reference(job.image_ref, job.image_digest),
                "error": job.error,
                "enqueued_at": job.enqueued_at.isoformat(),
                "started_at": job.started_at.isoformat() if job.started_at else None,
                "finished_at": job.finished_at.isoformat() if job.finished_at else None,
                "duration_s": job.duration_s if event is not NotifyEvent.STARTED else None,
                "url": f"{base_url}/api/v1/jobs/{job.id}",
                "logs_url": f"{base_url}/api/v1/jobs/{job.id}/logs",
                **expected,
            },
            "log_tail": log_tail,
        }

    # -- the sender's side -----------------------------------------------------------------

    async def claim_due(self, limit: int, *, stale_after_s: float) -> list[Notification]:
        """Take up to ``limit`` due rows: mark them ``sending`` and count the attempt.

        Committed before anything is sent. A claimed row is due again ``stale_after_s``
        later unless marked sent or failed first (its sender crashed); a crashed last
        attempt is given up instead, since whether it arrived is unknown.
        """
        if limit <= 0:
            return []
        stale = timedelta(seconds=stale_after_s)
        async with self.store.connection() as conn, conn.transaction():
            await conn.execute(sql("notification_give_up_crashed"))
            rows = await (
                await conn.execute(sql("notifications_claim_due"), {"limit": limit, "stale": stale})
            ).fetchall()
        return sorted((Notification.model_validate(r) for r in rows), key=lambda n: n.id)

    async def seconds_until_due(self) -> float | None:
        """How long until the next row is due (0 if one is), None when nothing waits."""
        async with self.store.connection() as conn:
            row = await (await conn.execute(sql("notifications_next_due_in"))).fetchone()
        if row is None or row["wait"] is None:
            return None
        return max(0.0, float(row["wait"]))

    async def mark_sent(self, notification_id: int) -> None:
        """Delivered (also when a resend of a row thought crashed got there first)."""
        async with self.store.connection() as conn:
            await conn.execute(sql("notification_sent"), {"id": notification_id})

    async def mark_failed(
        self,
        notification_id: int,
        attempt: int,
        error: str,
        *,
        retry_in_s: float,
        permanent: bool = False,
    ) -> str:
        """Record a failed attempt: ``pending`` again after ``retry_in_s``, or ``failed``
        for good once max_attempts is reached (or the error is permanent). The error is
        kept. Only the attempt that is current counts. Returns the new status."""
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(
                    sql("notification_failed"),
                    {
                        "id": notification_id,
                        "attempt": attempt,
                        "error": error,
                        "permanent": permanent,
                        "retry_in": timedelta(seconds=retry_in_s),
                    },
                )
            ).fetchone()
        return str(row["status"]) if row else "unchanged"

    # -- operators -------------------------------------------------------------------------

    async def get(self, notification_id: int) -> Notification:
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(sql("notification_get"), {"id": notification_id})
            ).fetchone()
        if row is None:
            raise NotFound(
                f"no notification #{notification_id}; `deployq notifications` lists them"
            )
        return Notification.model_validate(row)

    async def recent(
        self, *, failed_only: bool = False, job_id: int | None = None, limit: int = 100
    ) -> list[Notification]:
        """Newest first."""
        params = {"failed_only": failed_only, "job_id": job_id, "limit": limit}
        async with self.store.connection() as conn:
            rows = await (await conn.execute(sql("notifications_recent"), params)).fetchall()
        return [Notification.model_validate(r) for r in rows]

    async def retry(self, notification_id: int) -> Notification:
        """Send a failed notification again, with a fresh count of attempts."""
        async with self.store.connection() as conn, conn.transaction():
            row = await (
                await conn.execute(sql("notification_retry"), {"id": notification_id})
            ).fetchone()
            if row is None:
                current = await self.get(notification_id)
                raise Conflict(
                    f"notification #{notification_id} is {current.status}; "
                    "only a failed one can be retried"
                )
            await conn.execute(
                sql("notify"),
                {"channel": CHANNEL_NOTIFICATIONS, "payload": dumps({"ids": [notification_id]})},
            )
        return Notification.model_validate(row)
