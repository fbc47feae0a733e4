"""The Notifier component against a real database, SMTP server and webhook receiver.

Jobs go through the real queue path (enqueue -> claim -> finish), so the outbox rows are the
ones the store writes in the job's own transactions.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from deployq.errors import NotifyError
from deployq.models import JobStatus, Notification
from deployq.notify.webhook import post_webhook
from deployq.store import Outcome, Store
from deployq.testing.services import free_port
from deployq.worker.notifier import Notifier
from fixtures.smtp import (
    SmtpFactory,
    StoreFactory,
    add_notifying_app,
    push,
    run_job,
)

SUCCESS = Outcome(JobStatus.SUCCEEDED, image_ref="127.0.0.1:5000/acme/myapp:main")


class Results:
    """What the notifier reports after each attempt, with a way to wait for a condition."""

    def __init__(self) -> None:
        self.attempts: list[tuple[Notification, NotifyError | None]] = []
        self._changed = asyncio.Event()

    def __call__(self, notification: Notification, error: NotifyError | None) -> None:
        self.attempts.append((notification, error))
        self._changed.set()

    async def wait(self, predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    @property
    def errors(self) -> list[NotifyError]:
        return [e for _, e in self.attempts if e is not None]

    @property
    def delivered(self) -> int:
        return sum(1 for _, e in self.attempts if e is None)


@asynccontextmanager
async def running_notifier(store: Store) -> AsyncIterator[Results]:
    results = Results()
    stop = asyncio.Event()
    task = asyncio.create_task(Notifier(store, on_result=results).run(stop))
    try:
        yield results
    finally:
        stop.set()
        await task


FAST_RETRY = {"notify_retry_base_delay": 0.2, "notify_retry_max_delay": 0.4}


async def test_smtp_down_then_up_is_delivered_exactly_once(
    notify_store: StoreFactory, smtp_server_factory: SmtpFactory
) -> None:
    port = free_port()  # nothing listens there yet: connection refused
    store = await notify_store(smtp_host="127.0.0.1", smtp_port=port, **FAST_RETRY)
    await add_notifying_app(store, notify_emails=["team@example.test"], notify_events=["succeeded"])

    async with running_notifier(store) as results:
        started = time.monotonic()
        job = await run_job(store, SUCCESS)
        finish_s = time.monotonic() - started
        await results.wait(lambda: len(results.errors) >= 2)
        server = await smtp_server_factory(port=port)
        [received] = await server.mailbox.wait_for(1)
        await results.wait(lambda: results.delivered == 1)

    assert "Connection refused" in results.errors[0].message
    assert finish_s < 2.0  # enqueue, claim and finish never waited on the dead SMTP server
    [row] = await store.notifications.recent(job_id=job.id)
    assert row.status == "sent" and row.attempts == len(results.attempts) >= 3
    assert received.message["Message-ID"] == f"<{row.idempotency_key}@deployq>"
    assert len(server.mailbox.messages) == 1


async def test_a_hung_smtp_server_does_not_delay_the_build(notify_store: StoreFactory) -> None:
    connected = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accepts and says nothing: the client waits for the greeting
        connected.set()

    blackhole = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = blackhole.sockets[0].getsockname()[1]
    store = await notify_store(
        smtp_host="127.0.0.1", smtp_port=port, smtp_timeout=1, notify_webhook_timeout=1
    )
    await add_notifying_app(store, notify_emails=["team@example.test"])
    try:
        async with running_notifier(store):
            await store.queue.enqueue(push())
            [lease] = await store.leases.claim("w", limit=1)  # writes the "started" e-mail
            async with asyncio.timeout(10):
                await connected.wait()  # ... which the notifier is now stuck sending
            started = time.monotonic()
            await store.leases.finish(lease, SUCCESS)
            finish_s = time.monotonic() - started
            rows = {n.event: n for n in await store.notifications.recent(job_id=lease.id)}
    finally:
        for writer in held:
            writer.close()
        blackhole.close()
        await blackhole.wait_closed()

    assert finish_s < 0.5
    assert rows["started"].status == "sending"  # still in flight when finish returned
    assert rows["succeeded"].status in ("pending", "sending")


async def test_given_up_after_max_attempts_and_the_password_never_logged(
    notify_store: StoreFactory, smtp_server_factory: SmtpFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await smtp_server_factory(tls="starttls", password="right-password")
    wrong = "Wr0ng-but-secret-pw"
    store = await notify_store(
        **server.settings(smtp_password=wrong), notify_max_attempts=2, **FAST_RETRY
    )
    await add_notifying_app(store, notify_emails=["team@example.test"], notify_events=["failed"])
    caplog.set_level(logging.DEBUG)

    async with running_notifier(store) as results:
        job = await run_job(store, Outcome(JobStatus.FAILED, error="boom", retryable=False))
        await results.wait(lambda: len(results.errors) == 2)

    [row] = await store.notifications.recent(job_id=job.id, failed_only=True)
    assert row.attempts == 2
    assert "refused the login of 'deployq-mailer'" in (row.last_error or "")
    assert server.mailbox.messages == []
    assert any("given up" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        if not record.name.startswith("mail.log"):  # the test server's own debug log
            assert wrong not in record.getMessage()
    assert wrong not in (row.last_error or "")


async def test_a_send_whose_sender_crashed_is_sent_again_with_the_same_message_id(
    notify_store: StoreFactory, smtp_server_factory: SmtpFactory
) -> None:
    server = await smtp_server_factory()
    store = await notify_store(**server.settings(smtp_timeout=0.25, notify_webhook_timeout=0.25))
    await add_notifying_app(store, notify_emails=["team@example.test"], notify_events=["succeeded"])
    job = await run_job(store, SUCCESS)
    # a notifier claimed it (attempt recorded) and died before marking it
    [crashed] = await store.notifications.claim_due(10, stale_after_s=0.5)

    async with running_notifier(store) as results:
        [received] = await server.mailbox.wait_for(1)
        await results.wait(lambda: results.delivered == 1)

    row = await store.notifications.get(crashed.id)
    assert row.job_id == job.id and row.status == "sent" and row.attempts == 2
    assert received.message["Message-ID"] == f"<{crashed.idempotency_key}@deployq>"


async def test_webhook_is_signed_and_retried_after_a_500_until_delivered_once(
    notify_store: StoreFactory,
) -> None:
    secret = "hook-secret"
    calls: list[tuple[dict[str, str], bytes, int]] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        status = 500 if not calls else 200
        calls.append((dict(request.headers), body, status))
        return web.Response(status=status, text="oops" if status == 500 else "ok")

    app = web.Application()
    app.router.add_post("/hook", receive)
    receiver = TestServer(app, host="127.0.0.1")
    await receiver.start_server()
    store = await notify_store(**FAST_RETRY)
    await add_notifying_app(
        store,
        notify_webhook_url=str(receiver.make_url("/hook")),
        notify_webhook_secret=secret,
        notify_events=["succeeded"],
    )
    try:
        async with running_notifier(store) as results:
            job = await run_job(store, SUCCESS)
            await results.wait(lambda: results.delivered == 1)
    finally:
        await receiver.close()

    assert [status for _, _, status in calls] == [500, 200]
    assert "answered 500: oops" in results.errors[0].message
    [row] = await store.notifications.recent(job_id=job.id)
    assert row.status == "sent" and row.attempts == 2
    for headers, body, _ in calls:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Deployq-Signature-256"], expected)
        assert headers["X-Deployq-Event"] == "succeeded"
        assert headers["X-Deployq-Delivery"] == row.idempotency_key
    document: dict[str, Any] = json.loads(calls[-1][1])
    assert document["event"] == "succeeded" and document["job"]["id"] == job.id
    assert document["text"].startswith("[deployq] myapp main@abc1234 succeeded in ")
    assert document["text"].endswith(f"/api/v1/jobs/{job.id}")
    assert secret not in calls[-1][1].decode()


async def test_webhook_errors_never_show_the_url_token() -> None:
    url = f"http://127.0.0.1:{free_port()}/services/T0001/B0002/SeCrEtToKeN"
    async with ClientSession() as session:
        with pytest.raises(NotifyError) as caught:
            await post_webhook(
                session, url, b"{}", event="failed", delivery="k", secret=None, timeout_s=5
            )

    assert caught.value.message.startswith("cannot connect to the webhook http://127.0.0.1:")
    assert "Connection refused" in caught.value.message
    assert "SeCrEtToKeN" not in caught.value.message


async def test_the_succeeded_email_has_the_scan_result_when_it_arrived_else_pending(
    notify_store: StoreFactory, smtp_server: Any
) -> None:
    store = await notify_store(**smtp_server.settings())
    await add_notifying_app(store, notify_emails=["team@example.test"], notify_events=["succeeded"])
    subjects: dict[int, bool] = {}
    for collected in (True, False):
        await store.queue.enqueue(push())
        [lease] = await store.leases.claim("w", limit=1)
        await store.scans.record(
            lease,
            project="acme",
            repository="myapp",
            digest="sha256:" + "ab" * 32,
            summary={"state": "requested"},
            first_poll_s=60,
            deadline_s=3600,
        )
        job = await store.leases.finish(lease, SUCCESS)
        if collected:  # the collector attached the result before the e-mail went out
            await store.scans.finish(job.id, {"state": "done", "critical": 1, "high": 2})
        subjects[job.id] = collected

    async with running_notifier(store):
        received = await smtp_server.mailbox.wait_for(2)

    texts: dict[bool, str] = {}
    for mail in received:
        body = mail.message.get_body(preferencelist=("plain",))
        texts[subjects[int(mail.message["X-Deployq-Job"])]] = body.get_content()
    assert "Scan:      critical 1, high 2" in texts[True]
    assert "Scan:      scan pending" in texts[False]
