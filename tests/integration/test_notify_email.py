"""E-mail notifications against a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import pytest

from deployq.config import Settings
from deployq.errors import NotifyError
from deployq.models import JobStatus
from deployq.notify.email import build_email, send_email
from deployq.store import Outcome
from deployq.worker.notifier import Notifier
from fixtures.smtp import SmtpFactory, SmtpServer, StoreFactory, add_notifying_app, run_job

DIGEST = "sha256:" + "ab" * 32
SUCCESS = Outcome(
    JobStatus.SUCCEEDED, image_ref="127.0.0.1:5000/acme/myapp:main-abc1234", image_digest=DIGEST
)


async def deliver_all(store: Any, expected: int) -> list[Any]:
    """Run the notifier until ``expected`` attempts were made; return (notification, error)."""
    results: list[Any] = []
    done = asyncio.Event()
    stop = asyncio.Event()

    def on_result(notification: Any, error: Any) -> None:
        results.append((notification, error))
        if len(results) >= expected:
            done.set()

    notifier = Notifier(store, on_result=on_result)
    task = asyncio.create_task(notifier.run(stop))
    try:
        async with asyncio.timeout(30):
            await done.wait()
    finally:
        stop.set()
        await task
    return results


async def test_success_email_has_both_parts_subject_and_recipients(
    notify_store: StoreFactory, smtp_server: SmtpServer
) -> None:
    store = await notify_store(**smtp_server.settings(public_url="https://deployq.example.test"))
    await add_notifying_app(
        store,
        notify_emails=["team@example.test", "ANN@example.test"],
        notify_pusher=True,
        notify_events=["succeeded"],
    )
    job = await run_job(store, SUCCESS)

    results = await deliver_all(store, expected=2)
    received = await smtp_server.mailbox.wait_for(2)

    assert [error for _, error in results] == [None, None]
    # the pusher's address is one of the app's (case aside): Ann gets one e-mail, not two
    assert sorted(r.rcpt_tos[0] for r in received) == ["ANN@example.test", "team@example.test"]
    assert all(len(r.rcpt_tos) == 1 for r in received)
    message = next(r for r in received if r.rcpt_tos == ["team@example.test"]).message
    assert message["Subject"].startswith("[deployq] myapp main@abc1234 succeeded in ")
    assert message["From"] == "deployq@example.test"
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    text, markup = plain.get_content(), html.get_content()
    for body in (text, markup):
        assert "abc1234def5678abc1234def5678abc1234def56" in body
        assert "Ann Author" in body and "ann" in body
        assert f"docker pull 127.0.0.1:5000/acme/myapp@{DIGEST}" in body
        assert f"https://deployq.example.test/api/v1/jobs/{job.id}/logs" in body
    assert "Fix the <login> page" in text
    assert "Fix the &lt;login&gt; page" in markup
    rows = {n.target: n for n in await store.notifications.recent()}
    row = rows["team@example.test"]
    assert message["Message-ID"] == f"<{row.idempotency_key}@deployq>"
    assert {(n.status, n.attempts) for n in rows.values()} == {("sent", 1)}


async def test_pusher_gets_a_copy_when_the_app_asks(
    notify_store: StoreFactory, smtp_server: SmtpServer
) -> None:
    store = await notify_store(**smtp_server.settings())
    await add_notifying_app(
        store, notify_emails=["team@example.test"], notify_pusher=True, notify_events=["failed"]
    )
    await run_job(
        store,
        Outcome(JobStatus.FAILED, error="RUN make: exit status 2", retryable=False),
        log_lines=[f"line {n}" for n in range(1, 31)],
    )

    await deliver_all(store, expected=2)
    received = await smtp_server.mailbox.wait_for(2)

    assert sorted(r.rcpt_tos[0] for r in received) == ["ann@example.test", "team@example.test"]
    message = received[0].message
    assert message["Subject"].startswith("[deployq] myapp main@abc1234 failed after ")
    assert message["Subject"].endswith("(attempt 1/3)")
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "RUN make: exit status 2" in text
    assert "No attempts are left." in text
    # the last 20 lines only
    assert "line 30" in text and "line 11" in text and "    line 10\n" not in text


async def test_failure_with_retry_says_so_in_the_subject(
    notify_store: StoreFactory, smtp_server: SmtpServer
) -> None:
    store = await notify_store(**smtp_server.settings())
    await add_notifying_app(store, notify_emails=["team@example.test"], notify_events=["failed"])
    await run_job(store, Outcome(JobStatus.FAILED, error="registry answered 503"))

    await deliver_all(store, expected=1)
    [received] = await smtp_server.mailbox.wait_for(1)

    assert received.message["Subject"].endswith("(attempt 1/3, retry scheduled)")
    text = received.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Another attempt is scheduled" in text


async def test_starttls_with_authentication(
    smtp_server_factory: SmtpFactory, settings_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    password = "s3cret-Pa55word"
    server = await smtp_server_factory(tls="starttls", password=password)
    settings: Settings = settings_factory(**server.settings())
    caplog.set_level(logging.DEBUG)

    await send_email(settings, _message())
    [received] = await server.mailbox.wait_for(1)

    assert received.tls and received.login == "deployq-mailer"
    assert received.rcpt_tos == ["team@example.test"]
    _assert_secret_not_logged(caplog, password)


async def test_implicit_tls(smtp_server_factory: SmtpFactory, settings_factory: Any) -> None:
    server = await smtp_server_factory(tls="tls", password="pw")
    settings: Settings = settings_factory(**server.settings())

    await send_email(settings, _message())
    [received] = await server.mailbox.wait_for(1)

    assert received.tls and received.login == "deployq-mailer"


@pytest.mark.parametrize("tls", ["starttls", "tls"])
async def test_an_untrusted_certificate_is_refused(
    smtp_server_factory: SmtpFactory, settings_factory: Any, tls: str
) -> None:
    server = await smtp_server_factory(tls=tls)
    settings: Settings = settings_factory(**server.settings(smtp_ca_file=None))

    with pytest.raises(NotifyError) as caught:
        await send_email(settings, _message())
    assert caught.value.message.startswith(f"TLS with the SMTP server 127.0.0.1:{server.port}")
    assert "self-signed certificate" in caught.value.message
    assert "DEPLOYQ_SMTP_CA_FILE" in caught.value.message
    assert server.mailbox.messages == []


async def test_wrong_password_is_reported_without_the_password(
    smtp_server_factory: SmtpFactory, settings_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = await smtp_server_factory(tls="starttls", password="the-right-one")
    wrong = "Wr0ng-pa55word-xyz"
    settings: Settings = settings_factory(**server.settings(smtp_password=wrong))
    caplog.set_level(logging.DEBUG)

    with pytest.raises(NotifyError) as caught:
        await send_email(settings, _message())

    assert "refused the login of 'deployq-mailer'" in caught.value.message
    assert "DEPLOYQ_SMTP_PASSWORD" in caught.value.message
    assert wrong not in caught.value.message and wrong not in repr(settings)
    _assert_secret_not_logged(caplog, wrong)


async def test_no_smtp_server_configured_is_a_permanent_error(settings: Settings) -> None:
    with pytest.raises(NotifyError, match="set DEPLOYQ_SMTP_HOST") as caught:
        await send_email(settings, _message())
    assert caught.value.permanent


def _message() -> Any:
    payload = {
        "event": "cancelled",
        "app": {"id": 1, "name": "web", "repo_url": "x", "image": None},
        "job": {
            "id": 9, "status": "cancelled", "provider": "manual", "trigger": "manual",
            "ref": "refs/heads/main", "ref_type": "branch", "branch": "main",
            "commit_sha": None, "short_sha": None, "commit_message": None,
            "commit_author": None, "pusher": None, "attempt": 0, "max_attempts": 3,
            "retry_scheduled": False, "next_attempt_at": None, "server": None,
            "image_ref": None, "image_digest": None, "pull": None,
            "error": "cancelled by ops while queued", "enqueued_at": "2026-01-01T00:00:00",
            "started_at": None, "finished_at": None, "duration_s": None,
            "url": "http://x/api/v1/jobs/9", "logs_url": "http://x/api/v1/jobs/9/logs",
        },
        "log_tail": [],
    }  # fmt: skip
    return build_email(
        payload, sender="deployq@example.test", recipient="team@example.test", key="job9.a0.k"
    )


def _assert_secret_not_logged(caplog: pytest.LogCaptureFixture, secret: str) -> None:
    encoded = base64.b64encode(secret.encode()).decode()
    for record in caplog.records:
        if record.name.startswith("mail.log"):  # the test server's own debug log
            continue
        text = record.getMessage()
        assert secret not in text and encoded not in text, record.name
