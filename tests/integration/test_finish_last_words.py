"""The end of a job is one round trip: the finish stores the attempt's last log lines and its
last step (a success's, at 100 %) with the outcome, as the log flush and the progress write
before it would have (store.leases.finish, finish_many; worker.runner)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from deployq.errors import LostJob
from deployq.models import JobStatus, Step
from deployq.store import CHANNEL_LOGS, Lease, Listener, Outcome, Store
from integration.queue_helpers import (
    FAILURE,
    SUCCESS,
    add_app,
    add_server,
    claim_one,
    claimed,
    push,
)

LAST_LINES = ("==> verified: the registry serves sha256:…", "==> succeeded (push 0.1s)")
DURATIONS = {"checkout": 0.02, "build": 0.1, "push": 0.08, "verify": 0.0}
DONE = dataclasses.replace(
    SUCCESS, step=Step.VERIFY, step_durations=DURATIONS, log_lines=LAST_LINES
)


async def _running(store: Store, n: int) -> list[Lease]:
    """``n`` claimed jobs, each with two log lines stored and its push step recorded."""
    leases = await claimed(store, n)
    for lease in leases:
        await store.logs.append(lease.id, ["==> build", "==> push"], attempt=lease.attempt)
        await store.leases.set_progress(lease, step=Step.PUSH, progress=70)
    return leases


async def _events(store: Store, job_id: int) -> list[tuple[str, str | None]]:
    async with store.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT kind, message FROM job_events WHERE job_id = %s ORDER BY id", (job_id,)
            )
        ).fetchall()
    return [(r["kind"], r["message"]) for r in rows]


async def _finish(store: Store, leases: list[Lease], outcome: Outcome) -> None:
    if len(leases) == 1:
        await store.leases.finish(leases[0], outcome)
    else:
        answers = await store.leases.finish_many([(lease, outcome) for lease in leases])
        assert all(not isinstance(a, LostJob) for a in answers)


@pytest.mark.parametrize("jobs", [1, 3], ids=["finish", "finish_many"])
async def test_the_finish_stores_the_last_lines_and_the_last_step(store: Store, jobs: int) -> None:
    leases = await _running(store, jobs)
    listener = Listener(store.dsn, [CHANNEL_LOGS])
    last_seq: dict[int, int] = {}
    all_in = asyncio.Event()

    async def listen() -> None:
        async for notice in listener:
            last_seq[int(notice.payload["job"])] = int(notice.payload["seq"])
            if all(last_seq.get(lease.id) == 4 for lease in leases):
                all_in.set()

    listening = asyncio.create_task(listen())
    try:
        await asyncio.wait_for(listener.connected.wait(), 30)
        await _finish(store, leases, DONE)
        await asyncio.wait_for(all_in.wait(), 10)  # a NOTIFY for the lines, as a flush gives
    finally:
        await listener.close()
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)

    for lease in leases:
        job = await store.jobs.get(lease.id)
        assert (job.status, job.step, job.progress) == (JobStatus.SUCCEEDED, "verify", 100)
        assert job.step_durations == DURATIONS
        lines = await store.logs.read(lease.id)
        assert [(line.seq, line.line) for line in lines] == list(
            enumerate(["==> build", "==> push", *LAST_LINES], start=1)
        )
        # the timeline reads as if the progress write had gone out before the finish
        assert (await _events(store, lease.id))[-3:] == [
            ("step", "push 70%"),
            ("step", "verify 100%"),
            ("succeeded", None),
        ]


async def test_a_failure_stores_its_last_lines_and_keeps_its_step(store: Store) -> None:
    (lease,) = await _running(store, 1)
    failed = dataclasses.replace(FAILURE, retryable=False, log_lines=("ERROR: build failed",))

    await store.leases.finish(lease, failed)

    job = await store.jobs.get(lease.id)
    assert (job.status, job.step, job.progress) == (JobStatus.FAILED, "push", 70)
    assert [line.line for line in await store.logs.read(lease.id)][-1] == "ERROR: build failed"
    assert [kind for kind, _ in await _events(store, lease.id)][-2:] == ["step", "failed"]


@pytest.mark.parametrize("jobs", [1, 2], ids=["finish", "finish_many"])
async def test_a_finish_that_is_no_longer_ours_stores_nothing(store: Store, jobs: int) -> None:
    leases = await _running(store, jobs)
    stale = leases[0]
    async with store.pool.connection() as conn:  # another worker's attempt now
        await conn.execute("UPDATE jobs SET attempt = attempt + 1 WHERE id = %s", (stale.id,))
    events_before = await _events(store, stale.id)

    if jobs == 1:
        with pytest.raises(LostJob):
            await store.leases.finish(stale, DONE)
    else:
        answers: list[Any] = await store.leases.finish_many([(lease, DONE) for lease in leases])
        assert isinstance(answers[0], LostJob)
        assert (await store.jobs.get(leases[1].id)).status is JobStatus.SUCCEEDED

    assert [line.line for line in await store.logs.read(stale.id)] == ["==> build", "==> push"]
    assert await _events(store, stale.id) == events_before
    assert (await store.jobs.get(stale.id)).step == "push"


async def test_a_claimed_job_finishing_without_last_words_keeps_its_log(store: Store) -> None:
    """Finishes from elsewhere (a cancel, the rescuer's paths) carry no lines or step."""
    await add_server(store, "local")
    await add_app(store, "web")
    await store.queue.enqueue(push("web"))
    lease = await claim_one(store)
    await store.logs.append(lease.id, ["only line"], attempt=lease.attempt)

    await store.leases.finish(lease, SUCCESS)

    assert [line.line for line in await store.logs.read(lease.id)] == ["only line"]
    assert [kind for kind, _ in await _events(store, lease.id)][-1] == "succeeded"
