"""The one log follower (CLI `logs -f`, SSE, console) against a real database and NOTIFY."""

from __future__ import annotations

import asyncio

from deployq.logfollow import LogFollower, LogWaker
from deployq.models import LogLine
from deployq.store import Lease, Store
from integration.queue_helpers import SUCCESS, add_app, add_server, claim_one, enqueue

#: far longer than the test waits: only a notification can wake the follower in time
NO_FALLBACK_S = 3600.0


async def running_job(store: Store) -> Lease:
    await add_server(store, "builder")
    await add_app(store, "web")
    await enqueue(store, "web")
    return await claim_one(store)


async def collect(follower: LogFollower[LogLine], into: list[LogLine]) -> None:
    async for lines in follower:
        into.extend(lines)


async def test_a_finished_job_is_read_in_batches_and_the_follower_ends(store: Store) -> None:
    lease = await running_job(store)
    await store.logs.append(lease.id, [f"line {n}" for n in range(1, 8)])
    await store.leases.finish(lease, SUCCESS)
    follower = LogFollower.lines(store, lease.id, after=2, batch=2)

    batches = [[line.line for line in lines] async for lines in follower]

    assert batches == [["line 3", "line 4"], ["line 5", "line 6"], ["line 7"]]
    assert follower.final is not None and follower.final.status.value == "succeeded"


async def test_a_view_that_keeps_few_lines_skips_to_the_last_ones(store: Store) -> None:
    lease = await running_job(store)
    last = await store.logs.append(lease.id, [f"line {n}" for n in range(1, 101)])
    await store.leases.finish(lease, SUCCESS)
    follower = LogFollower.text(store, lease.id, keep_last=10)
    follower.wake(last)

    lines = [line async for batch in follower for line in batch]

    assert lines == [f"line {n}" for n in range(91, 101)]


async def test_the_waker_delivers_new_lines_and_the_end_without_polling(store: Store) -> None:
    lease = await running_job(store)
    waker = LogWaker(store.dsn, fallback_s=NO_FALLBACK_S)
    seen: list[LogLine] = []
    try:
        async with waker.follow(store, lease.id) as follower:
            task = asyncio.create_task(collect(follower, seen))
            await store.logs.append(lease.id, ["cloning", "building"])
            await store.logs.append(lease.id, ["pushed"])
            await store.leases.finish(lease, SUCCESS)
            async with asyncio.timeout(10):
                await task
    finally:
        await waker.close()

    assert [line.line for line in seen] == ["cloning", "building", "pushed"]
    assert follower.final is not None and follower.final.status.value == "succeeded"
