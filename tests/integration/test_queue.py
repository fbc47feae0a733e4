"""The queue's single-process behaviour: enqueue, claim order, fencing, retries, cancel,
supersede, delivery dedupe, wait reasons, positions, statistics and retention."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from deployq.config import Settings
from deployq.errors import Conflict, LostJob, NotFound
from deployq.models import JobStatus, Priority, Step, SupersedePolicy, TriggerKind
from deployq.store import CHANNEL_CANCEL, Listener, Outcome, Store
from integration.queue_helpers import (
    FAILURE,
    SUCCESS,
    add_app,
    add_server,
    claim_one,
    enqueue,
    push,
)


async def test_claim_takes_priority_first_then_oldest(store: Store) -> None:
    await add_server(store, "local", capacity=4)
    for name in ("a", "b", "c"):
        await add_app(store, name)
    low = await enqueue(store, "a", priority=Priority.LOW)
    first = await enqueue(store, "b")
    urgent = await enqueue(store, "c", priority=Priority.CRITICAL)

    leases = await store.leases.claim("w1", limit=3)

    assert [lease.id for lease in leases] == [urgent, first, low]
    assert {lease.job.status for lease in leases} == {JobStatus.RUNNING}
    assert {lease.attempt for lease in leases} == {1}
    assert leases[0].app is not None and leases[0].app.name == "c"
    assert leases[0].job.server_name == "local"


async def test_claim_never_exceeds_capacity_or_app_concurrency(store: Store) -> None:
    await add_server(store, "small", capacity=2)
    await add_app(store, "serial")
    await add_app(store, "wide", concurrency=3)
    for _ in range(3):
        await enqueue(store, "serial")
        await enqueue(store, "wide")

    leases = await store.leases.claim("w1", limit=10)

    assert len(leases) == 2
    assert sorted(lease.job.app_name for lease in leases) == ["serial", "wide"]
    assert await store.leases.claim("w2", limit=10) == []


async def test_claim_respects_arch_labels_draining_and_health(store: Store) -> None:
    await add_server(store, "x86", capacity=4)
    await add_server(store, "arm", capacity=4, arch="arm64", labels=["gpu"])
    await add_app(store, "armapp", required_arch="arm64", required_labels=["gpu"])
    job = await enqueue(store, "armapp")
    await store.servers.set_draining("arm", True)

    assert await store.leases.claim("w1", limit=1) == []
    assert await store.waits.reason(job) == "server arm draining"

    await store.servers.set_draining("arm", False)
    lease = await claim_one(store)
    assert lease.job.server_name == "arm"


async def test_finish_succeeded_records_the_image(store: Store) -> None:
    await add_server(store, "local")
    await add_app(store, "web")
    await enqueue(store, "web")
    lease = await claim_one(store)
    await store.leases.set_progress(lease, step=Step.BUILD, progress=40)

    done = await store.leases.finish(lease, SUCCESS)

    assert done.status is JobStatus.SUCCEEDED
    assert done.progress == 100
    assert done.image_digest == SUCCESS.image_digest
    assert done.finished_at is not None and done.lease_expires_at is None
    kinds = [e.kind for e in await store.jobs.events(done.id)]
    assert kinds == ["enqueued", "claimed", "succeeded"]


async def test_failure_with_attempts_left_is_queued_with_backoff(
    settings_factory: object, database_url: str
) -> None:
    settings: Settings = settings_factory(retry_base_delay=10, retry_max_delay=600)  # type: ignore[operator]
    store = await Store.open(settings, database_url, min_size=1)
    try:
        await add_server(store, "local")
        await add_app(store, "web")
        await enqueue(store, "web")
        lease = await claim_one(store)

        retried = await store.leases.finish(lease, FAILURE)

        assert retried.status is JobStatus.QUEUED
        assert retried.error == FAILURE.error
        assert retried.worker_id is None and retried.finished_at is None
        delay = (retried.run_after - retried.updated_at).total_seconds()
        assert 5 <= delay <= 10  # equal jitter: half to all of base·2^0
        assert await store.leases.claim("w1", limit=1) == []  # not due yet
        reason = await store.waits.reason(retried.id)
        assert reason is not None and reason.startswith("retry in ")
        events = await store.jobs.events(retried.id)
        assert events[-1].kind == "retry_scheduled"
    finally:
        await store.close()


async def test_failure_on_the_last_attempt_is_final(store: Store) -> None:
    await add_server(store, "local")
    await add_app(store, "web", max_attempts=1)
    await enqueue(store, "web")
    lease = await claim_one(store)

    done = await store.leases.finish(lease, FAILURE)

    assert done.status is JobStatus.FAILED
    assert done.attempt == done.max_attempts == 1


async def test_non_retryable_failure_is_final_at_once(store: Store) -> None:
    await add_server(store, "local")
    await add_app(store, "web")
    await enqueue(store, "web")
    lease = await claim_one(store)

    done = await store.leases.finish(
        lease, Outcome(JobStatus.FAILED, error="no Dockerfile", retryable=False)
    )

    assert done.status is JobStatus.FAILED and done.attempt == 1


async def test_writes_of_a_worker_that_lost_its_lease_are_rejected(store: Store) -> None:
    await add_server(store, "local")
    await add_app(store, "web")
    await enqueue(store, "web")
    lost = await claim_one(store, "dead")
    async with store.pool.connection() as conn:
        await conn.execute(
            "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
            (lost.id,),
        )
    assert await store.leases.rescue_expired() == [lost.id]
    again = await claim_one(store, "alive")
    assert again.id == lost.id and again.attempt == 2

    beat = await store.leases.heartbeat("dead", [(lost.id, lost.attempt)])
    assert beat.lost == {lost.id} and not beat.renewed
    with pytest.raises(LostJob):
        await store.leases.set_progress(lost, step=Step.BUILD, progress=50)
    with pytest.raises(LostJob):
        await store.leases.finish(lost, SUCCESS)
    done = await store.leases.finish(again, SUCCESS)
    assert done.status is JobStatus.SUCCEEDED
    rescued = [e for e in await store.jobs.events(done.id) if e.kind == "rescued"]
    assert len(rescued) == 1 and "lease of worker dead expired" in (rescued[0].message or "")


@pytest.mark.parametrize("how", ["rescued", "released"])
async def test_a_job_taken_back_keeps_its_place_in_its_apps_queue(store: Store, how: str) -> None:
    """Per-app order across a rescue or a release: the job taken back runs before the app's
    later jobs, not after them (run_after is left as it was)."""
    await add_server(store, "local", capacity=4)
    await add_app(store, "web", supersede_policy=SupersedePolicy.QUEUE)
    first = await enqueue(store, "web")
    lease = await claim_one(store, "dead")
    assert lease.id == first
    later = [await enqueue(store, "web") for _ in range(2)]
    if how == "rescued":
        async with store.pool.connection() as conn:
            await conn.execute(
                "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
                (first,),
            )
        assert await store.leases.rescue_expired() == [first]
    else:
        assert await store.leases.release("dead", [(first, lease.attempt)], "shutdown") == [first]
    again = await claim_one(store, "alive")
    assert (again.id, again.attempt) == (first, 2)
    await store.leases.finish(again, SUCCESS)
    assert [(await claim_one(store, "alive")).id] == later[:1]


async def test_an_expired_lease_on_the_last_attempt_fails_the_job(store: Store) -> None:
    await add_server(store, "local")
    await add_app(store, "web", max_attempts=1)
    await enqueue(store, "web")
    lease = await claim_one(store, "dead")
    async with store.pool.connection() as conn:
        await conn.execute(
            "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
            (lease.id,),
        )

    assert await store.leases.claim("alive", limit=1) == []  # the claim does not rescue
    assert await store.leases.rescue_expired() == [lease.id]

    job = await store.jobs.get(lease.id)
    assert job.status is JobStatus.FAILED
    assert job.error == "the worker dead stopped answering during attempt 1 (the last one)"


async def test_release_requeues_at_once_without_spending_an_attempt(store: Store) -> None:
    await add_server(store, "local")
    await add_app(store, "web")
    await enqueue(store, "web")
    lease = await claim_one(store, "stopping")

    assert await store.leases.release("stopping", [(lease.id, lease.attempt)], "shutdown") == [
        lease.id
    ]

    again = await claim_one(store, "other")
    assert again.id == lease.id
    # attempt 2 of one more: as many attempts are left as before the interrupted one
    assert again.attempt == 2
    assert again.job.max_attempts == store.settings.max_attempts + 1


async def test_heartbeat_renews_and_reports_cancel_requests(store: Store) -> None:
    await add_server(store, "local")
    await add_app(store, "web")
    await enqueue(store, "web")
    lease = await claim_one(store)
    await store.jobs.cancel(lease.id, actor="ops", force=True)

    beat = await store.leases.heartbeat("w1", [(lease.id, lease.attempt)])

    assert beat.renewed == {lease.id}
    assert beat.cancel == {lease.id: True}
    job = await store.jobs.get(lease.id)
    assert job.lease_expires_at is not None and lease.job.lease_expires_at is not None
    assert job.lease_expires_at > lease.job.lease_expires_at


async def test_cancel_queued_is_immediate(store: Store) -> None:
    await add_app(store, "web")
    job_id = await enqueue(store, "web")

    job = await store.jobs.cancel(job_id, actor="ops")

    assert job.status is JobStatus.CANCELLED and job.finished_at is not None
    with pytest.raises(Conflict):
        await store.jobs.cancel(job_id, actor="ops")
    with pytest.raises(NotFound):
        await store.jobs.cancel(999_999, actor="ops")


async def test_cancel_running_is_sent_to_the_worker_by_notify(
    store: Store, database_url: str
) -> None:
    await add_server(store, "local")
    await add_app(store, "web")
    await enqueue(store, "web")
    lease = await claim_one(store)
    listener = Listener(database_url, [CHANNEL_CANCEL])
    notices = aiter(listener)
    first = asyncio.ensure_future(anext(notices))
    await asyncio.wait_for(listener.connected.wait(), 10)

    job = await store.jobs.cancel(lease.id, actor="ops")

    notice = await asyncio.wait_for(first, 10)
    await listener.close()
    assert notice.payload == {"id": lease.id, "force": False}
    assert job.status is JobStatus.RUNNING and job.cancel_requested
    done = await store.leases.finish(lease, Outcome(JobStatus.CANCELLED, error="cancelled"))
    assert done.status is JobStatus.CANCELLED


async def test_retry_creates_a_new_job_linked_to_the_old_one(store: Store) -> None:
    await add_server(store, "local")
    await add_app(store, "web", max_attempts=1)
    await enqueue(store, "web")
    lease = await claim_one(store)
    failed = await store.leases.finish(lease, FAILURE)
    with pytest.raises(Conflict):
        await store.jobs.retry(await enqueue(store, "web", branch="other"), actor="ops")

    retry = await store.jobs.retry(failed.id, actor="ops")

    assert retry.id != failed.id and retry.retry_of == failed.id
    assert retry.status is JobStatus.QUEUED and retry.commit_sha == failed.commit_sha
    assert retry.trigger.value == "retry"


async def test_supersede_replaces_older_queued_jobs_of_the_branch(store: Store) -> None:
    await add_app(store, "web")
    older = await enqueue(store, "web")
    other_branch = await enqueue(store, "web", branch="dev")

    result = await store.queue.enqueue(push("web"))

    assert result.superseded == [older]
    old = await store.jobs.get(older)
    assert old.status is JobStatus.SUPERSEDED and old.finished_at is not None
    assert (await store.jobs.get(other_branch)).status is JobStatus.QUEUED


async def test_queue_policy_builds_every_push(store: Store) -> None:
    await add_app(store, "web", supersede_policy="queue")
    older = await enqueue(store, "web")
    result = await store.queue.enqueue(push("web"))
    assert result.superseded == []
    assert (await store.jobs.get(older)).status is JobStatus.QUEUED


async def test_cancel_running_policy_stops_an_interruptible_build(
    store: Store, database_url: str
) -> None:
    await add_server(store, "local", capacity=4)
    await add_app(store, "web", supersede_policy="cancel-running")
    await enqueue(store, "web")
    building = await claim_one(store)
    await store.leases.set_progress(building, step=Step.BUILD, progress=30)
    listener = Listener(database_url, [CHANNEL_CANCEL])
    notices = aiter(listener)
    first = asyncio.ensure_future(anext(notices))
    await asyncio.wait_for(listener.connected.wait(), 10)

    result = await store.queue.enqueue(push("web"))

    notice = await asyncio.wait_for(first, 10)
    await listener.close()
    assert result.cancel_requested == [building.id]
    assert notice.payload == {"id": building.id, "force": False}


async def test_cancel_running_policy_leaves_a_push_in_progress_alone(store: Store) -> None:
    await add_server(store, "local", capacity=4)
    await add_app(store, "web", supersede_policy="cancel-running")
    await enqueue(store, "web")
    pushing = await claim_one(store)
    await store.leases.set_progress(pushing, step=Step.PUSH, progress=85)

    result = await store.queue.enqueue(push("web"))

    assert result.cancel_requested == []
    assert not (await store.jobs.get(pushing.id)).cancel_requested


async def test_fifty_concurrent_deliveries_of_one_id_make_one_job(
    store: Store, settings: Settings, database_url: str
) -> None:
    await add_app(store, "web")
    trigger = push("web", delivery="d-1", kind=TriggerKind.WEBHOOK)
    many = await Store.open(settings, database_url, min_size=10)
    try:
        results = await asyncio.gather(*(many.queue.enqueue(trigger) for _ in range(50)))
    finally:
        await many.close()

    ids = {r.jobs[0].id for r in results}
    assert len(ids) == 1
    assert sum(r.created for r in results) == 1
    assert len(await store.jobs.recent(app="web")) == 1
    enqueued = [e for e in await store.jobs.events(ids.pop()) if e.kind == "enqueued"]
    assert len(enqueued) == 1


async def test_wait_reasons_say_why_each_job_waits(store: Store) -> None:
    await add_server(store, "local", capacity=1)
    await add_app(store, "web")
    await add_app(store, "api")
    await add_app(store, "arm", required_arch="arm64")
    running = await enqueue(store, "web")
    await claim_one(store)
    serial = await enqueue(store, "web", branch="b2")
    full = await enqueue(store, "api")
    arm = await enqueue(store, "arm")
    await store.waits.set_reason([full], "low disk on local (512 MB free)")

    reasons = await store.waits.reasons([running, serial, full, arm])

    assert reasons == {
        serial: f"app serialised behind #{running}",
        full: "all matching servers full",
        arm: "no healthy server with arch arm64",
    }
    await store.servers.set_capacity("local", 2)
    assert await store.waits.reason(full) == "low disk on local (512 MB free)"


async def test_queue_position_and_estimated_start(store: Store) -> None:
    await add_server(store, "local", capacity=1)
    for name in ("a", "b", "c"):
        await add_app(store, name)
    first = await enqueue(store, "a")
    second = await enqueue(store, "b")
    urgent = await enqueue(store, "c", priority=Priority.HIGH)

    positions = await store.jobs.queue_positions([first, second, urgent])

    assert {i: p.position for i, p in positions.items()} == {urgent: 1, first: 2, second: 3}
    assert positions[urgent].estimated_wait_s == 0
    assert positions[second].estimated_wait_s > positions[first].estimated_wait_s > 0
    lease = await claim_one(store)
    assert await store.jobs.queue_position(lease.id) is None


async def test_stats_count_the_queue_and_the_last_day(store: Store) -> None:
    await add_server(store, "local", capacity=2)
    await add_app(store, "web", concurrency=2, max_attempts=1)
    await add_app(store, "api")
    for _ in range(2):
        await enqueue(store, "web", branch=f"b{_}")
    lease_ok, lease_bad = await store.leases.claim("w1", limit=2)
    await store.leases.finish(lease_ok, SUCCESS)
    await store.leases.finish(lease_bad, FAILURE)
    await enqueue(store, "api", priority=Priority.HIGH)
    await enqueue(store, "web")

    stats = await store.jobs.stats()

    assert stats.queued == 2
    assert stats.queued_by_priority == {"low": 0, "normal": 1, "high": 1, "critical": 0}
    assert stats.running == 0
    assert stats.succeeded_24h == 1 and stats.failed_24h == 1
    assert stats.success_rate_24h == 0.5
    assert stats.mean_duration_s is not None and stats.p95_duration_s is not None
    assert stats.oldest_queued_age_s is not None and stats.oldest_queued_age_s >= 0
    assert stats.servers[0]["name"] == "local" and stats.servers[0]["capacity"] == 2


async def test_prune_deletes_logs_and_events_of_old_finished_jobs(store: Store) -> None:
    await add_server(store, "local")
    await add_app(store, "web")
    await enqueue(store, "web")
    old = await claim_one(store)
    await store.logs.append(old.id, ["step 1", "step 2"], attempt=old.attempt)
    await store.leases.finish(old, SUCCESS)
    recent_id = await enqueue(store, "web", branch="dev")
    async with store.pool.connection() as conn:
        await conn.execute(
            "UPDATE jobs SET finished_at = now() - %s WHERE id = %s", (timedelta(days=40), old.id)
        )

    counts = await store.retention.prune(30 * 86400, batch_size=1)

    assert counts == {"jobs": 1, "log_lines": 2, "events": 3, "notifications": 0, "scans": 0}
    assert await store.logs.read(old.id) == []
    assert await store.jobs.events(old.id) == []
    assert (await store.jobs.get(old.id)).status is JobStatus.SUCCEEDED  # the row stays
    assert await store.jobs.events(recent_id) != []
    assert (await store.retention.prune(30 * 86400))["jobs"] == 0


async def test_list_filters_and_pages(store: Store) -> None:
    await add_server(store, "local", capacity=4)
    await add_app(store, "web", supersede_policy="queue")
    await add_app(store, "api")
    ids = [await enqueue(store, "web") for _ in range(3)]
    api = await enqueue(store, "api")
    await store.leases.claim("w1", limit=1)  # takes ids[0]

    assert [j.id for j in await store.jobs.recent(app="web", limit=2)] == [ids[2], ids[1]]
    assert [j.id for j in await store.jobs.recent(app="web", before_id=ids[1])] == [ids[0]]
    assert [j.id for j in await store.jobs.recent(status=[JobStatus.RUNNING])] == [ids[0]]
    assert [j.id for j in await store.jobs.recent(server="local")] == [ids[0]]
    first = await store.jobs.get(ids[0])
    since = await store.jobs.recent(since=first.enqueued_at + timedelta(microseconds=1))
    assert ids[0] not in {j.id for j in since} and api in {j.id for j in since}
