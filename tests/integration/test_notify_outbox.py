"""The outbox rows: written by the queue's own transactions, claimed, retried, given up; CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deployq.errors import Conflict
from deployq.models import JobStatus, NotifyEvent
from deployq.store import Outcome, Store
from fixtures.smtp import StoreFactory, add_notifying_app, push, run_job


async def test_each_event_writes_rows_for_the_apps_choice_of_events(
    notify_store: StoreFactory,
) -> None:
    store = await notify_store()
    await add_notifying_app(
        store,
        notify_emails=["team@example.test"],
        notify_webhook_url="http://127.0.0.1:9/hook",
    )

    job = await run_job(store, Outcome(JobStatus.SUCCEEDED))

    rows = await store.notifications.recent(job_id=job.id)
    # queued is off by default; started (claim) and succeeded (finish), each to both targets
    assert sorted((n.event, n.channel, n.target) for n in rows) == [
        ("started", "email", "team@example.test"),
        ("started", "webhook", "http://127.0.0.1:9/hook"),
        ("succeeded", "email", "team@example.test"),
        ("succeeded", "webhook", "http://127.0.0.1:9/hook"),
    ]
    assert {n.status for n in rows} == {"pending"}
    assert {n.max_attempts for n in rows} == {store.settings.notify_max_attempts}


async def test_queued_and_cancelled_when_asked(notify_store: StoreFactory) -> None:
    store = await notify_store()
    await add_notifying_app(
        store, notify_emails=["team@example.test"], notify_events=["queued", "cancelled"]
    )
    [job] = (await store.queue.enqueue(push())).jobs
    await store.jobs.cancel(job.id, actor="ops")

    rows = await store.notifications.recent(job_id=job.id)

    assert sorted(n.event for n in rows) == ["cancelled", "queued"]


async def test_an_app_without_recipients_writes_nothing(notify_store: StoreFactory) -> None:
    store = await notify_store()
    await add_notifying_app(store)
    job = await run_job(store, Outcome(JobStatus.FAILED, error="boom", retryable=False))

    assert await store.notifications.recent(job_id=job.id) == []


async def test_a_second_call_for_the_same_event_creates_nothing(
    notify_store: StoreFactory,
) -> None:
    store = await notify_store()
    await add_notifying_app(store, notify_emails=["team@example.test"])
    job = await run_job(store, Outcome(JobStatus.SUCCEEDED))

    async with store.pool.connection() as conn, conn.transaction():
        again = await store.notifications.create_for_job(conn, job, NotifyEvent.SUCCEEDED)

    assert again == []
    assert len(await store.notifications.recent(job_id=job.id)) == 2  # started + succeeded


async def test_rows_roll_back_with_the_job_transaction(notify_store: StoreFactory) -> None:
    store = await notify_store()
    await add_notifying_app(store, notify_emails=["team@example.test"])
    job = await run_job(store, Outcome(JobStatus.SUCCEEDED))

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with store.pool.connection() as conn, conn.transaction():
            created = await store.notifications.create_for_job(
                conn, job.model_copy(update={"attempt": 7}), NotifyEvent.FAILED
            )
            assert len(created) == 1
            raise Abort

    assert sorted(n.event for n in await store.notifications.recent()) == ["started", "succeeded"]


async def test_failure_payload_has_the_log_tail_and_the_retry(notify_store: StoreFactory) -> None:
    store = await notify_store(public_url="https://ci.example.test/")
    await add_notifying_app(store, notify_emails=["team@example.test"], notify_events=["failed"])
    job = await run_job(
        store,
        Outcome(JobStatus.FAILED, error="exit 1"),
        log_lines=[f"step {n}" for n in range(25)],
    )

    [row] = await store.notifications.recent(job_id=job.id)

    assert row.payload["log_tail"] == [f"step {n}" for n in range(5, 25)]
    assert row.payload["job"]["retry_scheduled"] is True
    assert row.payload["job"]["status"] == "failed"
    assert row.payload["job"]["error"] == "exit 1"
    assert row.payload["job"]["url"] == f"https://ci.example.test/api/v1/jobs/{job.id}"


async def test_given_up_after_max_attempts_with_the_last_error(
    notify_store: StoreFactory,
) -> None:
    store = await notify_store(notify_max_attempts=2)
    await add_notifying_app(store, notify_emails=["team@example.test"], notify_events=["started"])
    await store.queue.enqueue(push())
    await store.leases.claim("w", limit=1)

    for attempt, error in ((1, "connection refused"), (2, "451 try later")):
        [row] = await store.notifications.claim_due(10, stale_after_s=60)
        assert (row.status, row.attempts) == ("sending", attempt)
        status = await store.notifications.mark_failed(row.id, row.attempts, error, retry_in_s=0)
        assert status == ("pending" if attempt == 1 else "failed")

    assert await store.notifications.claim_due(10, stale_after_s=60) == []
    [failed] = await store.notifications.recent(failed_only=True)
    assert failed.last_error == "451 try later" and failed.attempts == 2


async def test_a_crashed_send_is_due_again_and_a_crashed_last_one_gives_up(
    notify_store: StoreFactory,
) -> None:
    store = await notify_store(notify_max_attempts=2)
    await add_notifying_app(store, notify_emails=["team@example.test"], notify_events=["started"])
    await store.queue.enqueue(push())
    await store.leases.claim("w", limit=1)

    async def crash_long_ago(notification_id: int) -> None:
        """The sender died mid-send an hour ago (nothing was marked since)."""
        async with store.pool.connection() as conn:
            await conn.execute(
                "UPDATE notifications SET attempt_started_at = now() - interval '1 hour', "
                "next_attempt_at = now() - interval '1 hour' + interval '60 seconds' "
                "WHERE id = %s",
                (notification_id,),
            )

    [first] = await store.notifications.claim_due(10, stale_after_s=60)
    assert await store.notifications.claim_due(10, stale_after_s=60) == []  # not stale yet
    # its sender "crashed": nothing marked; once stale, the row is claimed again
    await crash_long_ago(first.id)
    [second] = await store.notifications.claim_due(10, stale_after_s=60)
    assert second.id == first.id and second.attempts == 2
    # that was the last attempt: when it goes stale too, it is given up, not sent a third time
    await crash_long_ago(first.id)
    assert await store.notifications.claim_due(10, stale_after_s=60) == []
    row = await store.notifications.get(first.id)
    assert row.status == "failed" and "may or may not have been delivered" in (row.last_error or "")


async def test_retry_resets_a_failed_one_only(notify_store: StoreFactory) -> None:
    store = await notify_store(notify_max_attempts=1)
    await add_notifying_app(store, notify_emails=["team@example.test"], notify_events=["started"])
    await store.queue.enqueue(push())
    await store.leases.claim("w", limit=1)
    [row] = await store.notifications.claim_due(10, stale_after_s=60)
    await store.notifications.mark_failed(row.id, 1, "refused", retry_in_s=0)

    retried = await store.notifications.retry(row.id)

    assert (retried.status, retried.attempts) == ("pending", 0)
    with pytest.raises(Conflict, match="is pending; only a failed one"):
        await store.notifications.retry(row.id)


def deployq(*args: str, database_url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """The real command, as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    env.update(DEPLOYQ_DATABASE_URL=database_url, DEPLOYQ_DATA_DIR=str(data_dir))
    return subprocess.run(
        [sys.executable, "-m", "deployq", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


async def _failed_notification(store: Store) -> int:
    await add_notifying_app(store, notify_emails=["team@example.test"], notify_events=["started"])
    await store.queue.enqueue(push())
    await store.leases.claim("w", limit=1)
    [row] = await store.notifications.claim_due(10, stale_after_s=60)
    await store.notifications.mark_failed(
        row.id, row.attempts, "550 no such user", retry_in_s=0, permanent=True
    )
    return row.id


async def test_cli_lists_failed_ones_and_retries(
    notify_store: StoreFactory, database_url: str, tmp_path: Path
) -> None:
    store = await notify_store()
    notification_id = await _failed_notification(store)

    def cli(*args: str) -> Any:
        result = deployq(*args, database_url=database_url, data_dir=tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout

    listed = cli("notifications", "--failed")
    assert "550 no such user" in listed and "team@example.test" in listed
    as_json = json.loads(cli("notifications", "--failed", "--json"))
    assert [n["id"] for n in as_json] == [notification_id]
    assert as_json[0]["status"] == "failed" and "payload" not in as_json[0]

    retried = json.loads(cli("notifications", "retry", str(notification_id), "--json"))

    assert retried["status"] == "pending"
    assert "no failed notifications" in cli("notifications", "--failed")
    again = deployq(
        "notifications", "retry", str(notification_id), database_url=database_url,
        data_dir=tmp_path,
    )  # fmt: skip
    assert again.returncode == 1
    assert again.stderr.strip() == (
        f"error: notification #{notification_id} is pending; only a failed one can be retried"
    )
