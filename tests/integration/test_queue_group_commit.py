"""Group commits of the queue's hot path: finish_many and the Finisher; the one-round-trip
enqueue of a trigger naming its app."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from deployq.errors import InvalidInput, LostJob, NotFound
from deployq.models import Job, JobStatus, Priority
from deployq.store import CHANNEL_JOBS, Finisher, Lease, Listener, Outcome, Store
from fixtures.smtp import StoreFactory, add_notifying_app
from fixtures.smtp import push as notify_push
from integration.queue_helpers import (
    FAILURE,
    SUCCESS,
    add_app,
    claim_one,
    claimed,
    push,
)


async def _xmins(store: Store, ids: list[int]) -> set[str]:
    """The transactions that last wrote these jobs."""
    async with store.pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT xmin::text AS x FROM jobs WHERE id = ANY(%s)", (ids,))
        ).fetchall()
    return {r["x"] for r in rows}


async def _lose(store: Store, lease: Lease) -> Lease:
    """Expire the lease, rescue the job and claim it again: ``lease`` is stale now."""
    async with store.pool.connection() as conn:
        await conn.execute(
            "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
            (lease.id,),
        )
    assert await store.leases.rescue_expired() == [lease.id]
    again = await claim_one(store, "w2")
    assert again.id == lease.id and again.attempt == lease.attempt + 1
    return again


async def test_concurrent_finishes_commit_in_one_transaction_with_a_notice_each(
    store: Store,
) -> None:
    leases = await claimed(store, 6)
    listener = Listener(store.dsn, [CHANNEL_JOBS])
    notices: list[dict[str, Any]] = []
    all_in = asyncio.Event()

    async def listen() -> None:
        async for notice in listener:
            if notice.payload.get("kind") == "finished":
                notices.append(notice.payload)
                if len(notices) == len(leases):
                    all_in.set()

    listening = asyncio.create_task(listen())
    try:
        await asyncio.wait_for(listener.connected.wait(), 30)
        finisher = Finisher(store)

        done = await asyncio.gather(*(finisher.finish(lease, SUCCESS) for lease in leases))

        await asyncio.wait_for(all_in.wait(), 10)
    finally:
        await listener.close()
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
    assert [job.id for job in done] == [lease.id for lease in leases]
    assert {job.status for job in done} == {JobStatus.SUCCEEDED}
    assert {job.image_digest for job in done} == {SUCCESS.image_digest}
    assert (finisher.transactions, finisher.finished, finisher.fallbacks) == (1, 6, 0)
    assert len(await _xmins(store, [job.id for job in done])) == 1
    assert sorted(n["id"] for n in notices) == sorted(lease.id for lease in leases)
    assert {(n["app"], n["status"]) for n in notices} == {("web", "succeeded")}
    for job in done:
        events = await store.jobs.events(job.id)
        assert events[-1].kind == "succeeded" and (events[-1].data or {})["attempt"] == 1


async def test_a_lone_finish_goes_out_at_once(store: Store) -> None:
    [lease] = await claimed(store, 1)
    finisher = Finisher(store)

    job = await finisher.finish(lease, FAILURE)

    assert job.status is JobStatus.QUEUED  # attempts left: back in the queue
    assert (finisher.transactions, finisher.finished) == (1, 1)


async def test_a_lost_job_in_a_batch_fails_only_itself(store: Store) -> None:
    leases = await claimed(store, 3)
    stale = leases[1]
    await _lose(store, stale)
    finisher = Finisher(store)

    answers = await asyncio.gather(
        *(finisher.finish(lease, SUCCESS) for lease in leases), return_exceptions=True
    )

    assert isinstance(answers[1], LostJob)
    assert str(stale.id) in str(answers[1])
    for answer in (answers[0], answers[2]):
        assert isinstance(answer, Job) and answer.status is JobStatus.SUCCEEDED
    assert (finisher.transactions, finisher.fallbacks) == (1, 0)
    retaken = await store.jobs.get(stale.id)
    assert retaken.status is JobStatus.RUNNING and retaken.worker_id == "w2"


async def test_finish_many_retries_with_backoff_and_writes_outbox_rows(
    notify_store: StoreFactory,
) -> None:
    store = await notify_store(retry_base_delay=10, retry_max_delay=600)
    await add_notifying_app(
        store,
        notify_emails=["team@example.test"],
        notify_events=["failed", "succeeded"],
        concurrency=2,
        supersede_policy="queue",
    )
    for _ in range(2):
        await store.queue.enqueue(notify_push())
    failing, passing = await store.leases.claim("w1", limit=2)

    retried, done = await store.leases.finish_many(
        [(failing, Outcome(JobStatus.FAILED, error="exit 1")), (passing, SUCCESS)]
    )

    assert isinstance(retried, Job) and isinstance(done, Job)
    assert retried.status is JobStatus.QUEUED and retried.worker_id is None
    assert 5 <= (retried.run_after - retried.updated_at).total_seconds() <= 10
    assert done.status is JobStatus.SUCCEEDED and done.progress == 100
    [failed_row] = await store.notifications.recent(job_id=retried.id)
    assert failed_row.event == "failed" and failed_row.payload["job"]["retry_scheduled"] is True
    [done_row] = await store.notifications.recent(job_id=done.id)
    assert done_row.event == "succeeded"
    events = await store.jobs.events(retried.id)
    assert events[-1].kind == "retry_scheduled"
    assert (events[-1].message or "").startswith("attempt 1 failed: exit 1; retry in ")


async def test_the_same_lease_twice_in_a_batch_finishes_once(store: Store) -> None:
    [lease] = await claimed(store, 1)

    first, second = await store.leases.finish_many([(lease, SUCCESS), (lease, FAILURE)])

    assert isinstance(first, Job) and first.status is JobStatus.SUCCEEDED
    assert isinstance(second, LostJob)


async def test_a_stale_and_a_current_lease_of_one_job_in_a_batch(store: Store) -> None:
    [stale] = await claimed(store, 1)
    current = await _lose(store, stale)

    lost, done = await store.leases.finish_many([(stale, SUCCESS), (current, SUCCESS)])

    assert isinstance(lost, LostJob)
    assert isinstance(done, Job) and done.status is JobStatus.SUCCEEDED and done.attempt == 2


async def test_a_failing_batch_is_written_one_by_one(store: Store) -> None:
    leases = await claimed(store, 3)
    bad = Outcome(JobStatus.FAILED, error="a NUL \x00 byte PostgreSQL refuses", retryable=False)
    finisher = Finisher(store)

    answers = await asyncio.gather(
        finisher.finish(leases[0], SUCCESS),
        finisher.finish(leases[1], bad),
        finisher.finish(leases[2], SUCCESS),
        return_exceptions=True,
    )

    assert isinstance(answers[1], InvalidInput)
    for answer in (answers[0], answers[2]):
        assert isinstance(answer, Job) and answer.status is JobStatus.SUCCEEDED
    assert finisher.fallbacks == 1
    assert (await store.jobs.get(leases[1].id)).status is JobStatus.RUNNING


async def test_named_enqueue_takes_the_apps_defaults_in_one_statement(store: Store) -> None:
    await add_app(store, "tuned", priority=Priority.HIGH, max_attempts=5, timeout_s=60)
    await add_app(store, "plain")

    [tuned] = (await store.queue.enqueue(push("tuned"))).jobs
    [urgent] = (await store.queue.enqueue(push("tuned", priority=Priority.CRITICAL))).jobs
    [plain] = (await store.queue.enqueue(push("plain"))).jobs

    assert (tuned.priority, tuned.max_attempts, tuned.timeout_s) == (Priority.HIGH, 5, 60)
    assert urgent.priority is Priority.CRITICAL
    assert plain.max_attempts == store.settings.max_attempts
    assert plain.timeout_s == store.settings.build_timeout
    assert plain.repo_url == "https://example.invalid/team/plain.git"
    with pytest.raises(NotFound, match="no app named 'ghost'"):
        await store.queue.enqueue(push("ghost"))


async def test_named_enqueue_of_a_delivery_seen_before_returns_its_job(store: Store) -> None:
    await add_app(store, "web")

    first = await store.queue.enqueue(push("web", delivery="d-1"))
    again = await store.queue.enqueue(push("web", delivery="d-1"))

    assert first.created and not again.created
    assert [j.id for j in again.jobs] == [j.id for j in first.jobs]
