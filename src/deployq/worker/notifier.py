"""The outbox loop: sends the notifications the queue wrote, with retries, off the build path.

Woken by NOTIFY on the notifications channel (a LISTEN connection of its own), with a timer
for the next row due (a retry's backoff, a crashed send). Sends run concurrently, at most
``notify_concurrency`` at once; a row is claimed only when a slot is free, so nothing sits
in ``sending`` waiting for one. Builds never wait on any of this: the queue only writes
rows, and this component runs beside the worker pool.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiohttp

from deployq.backoff import backoff_s
from deployq.errors import DeployqError, NotFound, NotifyError
from deployq.forge_status import Forge, commit_status, post_status
from deployq.models import App, Notification
from deployq.notify.email import build_email, send_email
from deployq.notify.webhook import post_webhook, webhook_body
from deployq.scans import scan_text
from deployq.store import CHANNEL_NOTIFICATIONS, Listener, Store

log = logging.getLogger(__name__)

#: longest sleep between looks at the outbox when no NOTIFY arrives (a safety net)
IDLE_RECHECK_S = 60.0
#: pause after the database failed, before looking again
DB_RETRY_S = 5.0
BACKOFF_FACTOR = 2.0

ResultHook = Callable[[Notification, NotifyError | None], None]


class Notifier:
    """``await Notifier(store).run(stop)``: deliver the outbox until ``stop`` is set.

    ``on_result(notification, error)`` is called after each attempt (error None when it
    was delivered); metrics and tests hook in there.
    """

    def __init__(self, store: Store, *, on_result: ResultHook | None = None) -> None:
        self.store = store
        self.settings = store.settings
        self.on_result = on_result
        self.concurrency = self.settings.notify_concurrency
        #: a send outlives its timeouts by this much only if its sender died
        self.stale_after_s = 2 * max(
            self.settings.smtp_timeout, self.settings.notify_webhook_timeout
        )
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """The component: runs until ``stop``, then lets in-flight sends finish briefly."""
        listener = Listener(self.store.dsn, [CHANNEL_NOTIFICATIONS], on_connect=self._on_connect)
        listening = asyncio.create_task(self._listen(listener))
        stopping = asyncio.create_task(stop.wait())
        self._session = aiohttp.ClientSession()
        log.info("notifier started (%d at once)", self.concurrency)
        try:
            while not stop.is_set():
                self._wake.clear()
                timeout = await self._round()
                waking = asyncio.create_task(self._wake.wait())
                await asyncio.wait(
                    {waking, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                waking.cancel()
        finally:
            stopping.cancel()
            await listener.close()
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
            await self._finish_inflight()
            await self._session.close()
            self._session = None
            log.info("notifier stopped")

    async def _round(self) -> float:
        """Start what is due and there is room for; return how long to wait at most."""
        try:
            free = self.concurrency - len(self._inflight)
            if free <= 0:
                return IDLE_RECHECK_S  # a finishing send wakes the loop
            claimed = await self.store.notifications.claim_due(
                free, stale_after_s=self.stale_after_s
            )
            for notification in claimed:
                task = asyncio.create_task(self._deliver(notification))
                self._inflight.add(task)
                task.add_done_callback(self._sent)
            if len(claimed) == free:
                return IDLE_RECHECK_S
            wait = await self.store.notifications.seconds_until_due()
        except (DeployqError, OSError) as exc:
            log.warning("notifier cannot read the outbox: %s; again in %.0fs", exc, DB_RETRY_S)
            return DB_RETRY_S
        return IDLE_RECHECK_S if wait is None else min(wait, IDLE_RECHECK_S)

    async def _deliver(self, notification: Notification) -> None:
        error: NotifyError | None = None
        try:
            await self._send(notification)
        except NotifyError as exc:
            error = exc
        except Exception as exc:  # a bug must cost one notification, not the notifier
            log.exception("notification #%d could not be prepared", notification.id)
            error = NotifyError(f"deployq could not prepare the message: {exc!r}")
        try:
            await self._record(notification, error)
        except (DeployqError, OSError) as exc:
            # the row stays 'sending' and is due again after stale_after_s
            log.warning("notification #%d: cannot record the result: %s", notification.id, exc)
        if self.on_result is not None:
            self.on_result(notification, error)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()

    async def _send(self, notification: Notification) -> None:
        payload = notification.payload
        if notification.channel == "email":
            payload = await self._with_scan(payload)
            message = build_email(
                payload,
                sender=self.settings.smtp_from,
                recipient=notification.target,
                key=notification.idempotency_key,
            )
            await send_email(self.settings, message)
            return
        assert self._session is not None
        if notification.channel == "forge":
            await self._send_status(notification)
            return
        await post_webhook(
            self._session,
            notification.target,
            webhook_body(payload),
            event=notification.event,
            delivery=notification.idempotency_key,
            secret=await self._webhook_secret(payload),
            timeout_s=self.settings.notify_webhook_timeout,
        )

    async def _with_scan(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The payload with the job's vulnerability scan as it is now (docs/harbor.md): the
        result when the collector attached it before this send, else ``scan pending``."""
        job = payload.get("job")
        job_id = job.get("id") if isinstance(job, dict) else None
        if not isinstance(job_id, int):
            return payload
        try:
            summary = (await self.store.jobs.get(job_id)).scan_summary
        except NotFound:
            return payload
        text = scan_text(summary)
        return {**payload, "scan": text} if text else payload

    async def _send_status(self, notification: Notification) -> None:
        assert self._session is not None
        status = commit_status(notification.target, notification.event, notification.payload)
        app = await self._app(notification.payload, "the forge token")
        if app.forge_token is None:
            raise NotifyError("the app has no forge token any more", permanent=True)
        if status.forge is Forge.GITHUB:
            base = self.settings.github_api_url
        else:
            base = (
                self.settings.gitlab_url
                or f"https://{notification.target.split(':', 1)[1].split('/', 1)[0]}"
            )
        await post_status(
            self._session,
            status,
            api_base=base,
            token=app.forge_token,
            timeout_s=self.settings.notify_webhook_timeout,
        )

    async def _app(self, payload: dict[str, object], what: str) -> App:
        app = payload.get("app")
        app_id = app.get("id") if isinstance(app, dict) else None
        if not isinstance(app_id, int):
            raise NotifyError(
                f"the notification names no app, whose {what} it needs", permanent=True
            )
        try:
            return await self.store.apps.get_by_id(app_id)
        except NotFound as exc:
            raise NotifyError(f"the app was removed, and with it {what}", permanent=True) from exc

    async def _webhook_secret(self, payload: dict[str, object]) -> str | None:
        app = payload.get("app")
        app_id = app.get("id") if isinstance(app, dict) else None
        if not isinstance(app_id, int):
            return None
        try:
            return (await self.store.apps.get_by_id(app_id)).notify_webhook_secret
        except NotFound as exc:
            raise NotifyError(
                "the app was removed, and with it the webhook's signing secret", permanent=True
            ) from exc

    async def _record(self, notification: Notification, error: NotifyError | None) -> None:
        label = f"notification #{notification.id} ({notification.event}, {notification.channel})"
        if error is None:
            await self.store.notifications.mark_sent(notification.id)
            log.info("%s sent (attempt %d)", label, notification.attempts)
            return
        delay = error.retry_after_s or backoff_s(  # a rate limit says when
            notification.attempts,
            self.settings.notify_retry_base_delay,
            BACKOFF_FACTOR,
            self.settings.notify_retry_max_delay,
        )
        status = await self.store.notifications.mark_failed(
            notification.id,
            notification.attempts,
            error.message,
            retry_in_s=delay,
            permanent=error.permanent,
        )
        attempt = f"attempt {notification.attempts}/{notification.max_attempts}"
        if status == "pending":
            log.warning("%s %s failed: %s; retry in %.1fs", label, attempt, error.message, delay)
        else:
            log.error("%s %s failed: %s; given up", label, attempt, error.message)

    async def _finish_inflight(self) -> None:
        if not self._inflight:
            return
        grace = min(self.settings.shutdown_grace, self.stale_after_s / 2)
        _, pending = await asyncio.wait(set(self._inflight), timeout=grace)
        for task in pending:  # their rows are sent again after stale_after_s
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _listen(self, listener: Listener) -> None:
        async for _notice in listener:
            self._wake.set()

    async def _on_connect(self) -> None:
        # NOTIFYs sent while disconnected are lost: look at the outbox again
        self._wake.set()
