"""One claim of many jobs (sql/021_set_based_claim.sql reads the free servers once and chooses
each job's server over arrays; sql/022_claim_by_primary_key.sql writes each job as it is
chosen): the choice of each server, the rules across servers and apps in one claim, and a job
cancelled while the claim's write waits for it."""

from __future__ import annotations

import asyncio
from collections import Counter

import psycopg
import pytest

from deployq.models import JobStatus, SupersedePolicy
from deployq.store import Store
from integration.queue_helpers import add_app, add_server, enqueue

#: every push is built (the default policy keeps only a branch's newest queued job)
EVERY = SupersedePolicy.QUEUE


async def running_per_server(store: Store) -> dict[str, int]:
    async with store.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT s.name, count(*) AS n FROM jobs j JOIN build_servers s"
                " ON s.id = j.server_id WHERE j.status = 'running' GROUP BY s.name"
            )
        ).fetchall()
    return {row["name"]: row["n"] for row in rows}


async def test_a_sixteen_job_claim_fills_servers_of_capacity_1_2_3_most_free_first(
    store: Store,
) -> None:
    for name, capacity in (("one", 1), ("two", 2), ("three", 3)):
        await add_server(store, name, capacity=capacity)
    await add_app(store, "wide", concurrency=20, supersede_policy=EVERY)
    queued = [await enqueue(store, "wide") for _ in range(20)]

    leases = await store.leases.claim("w1", limit=16)

    # the first six in queue order, each on the server with the most free slots then
    # (the lowest id on a tie), every slot of the claim counted for the next job
    assert [lease.id for lease in leases] == queued[:6]
    assert [lease.job.server_name for lease in leases] == [
        "three", "two", "three", "one", "two", "three"
    ]  # fmt: skip
    assert await running_per_server(store) == {"one": 1, "two": 2, "three": 3}
    assert await store.leases.claim("w2", limit=16) == []
    async with store.connection() as conn:
        events = await (
            await conn.execute(
                "SELECT job_id, message FROM job_events WHERE kind = 'claimed' ORDER BY id"
            )
        ).fetchall()
    assert [e["job_id"] for e in events] == queued[:6]
    assert events[0]["message"] == "attempt 1/3 on three"


async def test_apps_needing_different_servers_share_one_claim_within_every_limit(
    store: Store,
) -> None:
    await add_server(store, "gpu", capacity=1, labels=["gpu"])
    await add_server(store, "arm", capacity=2, arch="arm64")
    await add_server(store, "plain", capacity=3)
    await add_app(store, "ml", concurrency=3, supersede_policy=EVERY, required_labels=["gpu"])
    await add_app(store, "mobile", concurrency=3, supersede_policy=EVERY, required_arch="arm64")
    await add_app(store, "web", concurrency=2, supersede_policy=EVERY)
    jobs: dict[str, list[int]] = {"ml": [], "mobile": [], "web": []}
    for _ in range(3):
        for app in jobs:
            jobs[app].append(await enqueue(store, app))

    leases = await store.leases.claim("w1", limit=16)

    taken = {lease.id: lease.job.server_name for lease in leases}
    # ml: one gpu slot; mobile: both arm slots; web: its concurrency of 2, on plain
    # (it has the most free slots each time); each app's first jobs in its order
    assert taken == {
        jobs["ml"][0]: "gpu",
        jobs["mobile"][0]: "arm",
        jobs["web"][0]: "plain",
        jobs["mobile"][1]: "arm",
        jobs["web"][1]: "plain",
    }
    assert [lease.id for lease in leases] == sorted(taken)
    assert await running_per_server(store) == {"gpu": 1, "arm": 2, "plain": 2}
    # plain has a slot left, but no job that may use it
    assert await store.leases.claim("w2", limit=16) == []


async def test_a_claim_uses_only_the_servers_it_is_given_and_not_the_excluded(
    store: Store,
) -> None:
    first = await add_server(store, "first", capacity=4)
    second = await add_server(store, "second", capacity=4)
    await add_app(store, "a", concurrency=8, supersede_policy=EVERY)
    for _ in range(8):
        await enqueue(store, "a")

    only = await store.leases.claim("w1", limit=3, server_ids=[second.id])
    assert {lease.job.server_name for lease in only} == {"second"}
    assert len(only) == 3
    rest = await store.leases.claim("w2", limit=8, excluded_server_ids=[first.id])
    assert [lease.job.server_name for lease in rest] == ["second"]
    assert await running_per_server(store) == {"second": 4}


@pytest.mark.parametrize("capacity", [4, 2])
async def test_a_job_cancelled_while_the_claim_waits_for_its_row_is_left_out(
    store: Store, database_url: str, capacity: int
) -> None:
    # with 2 slots the cancelled job's slot goes to the third job in the same claim
    await add_server(store, "local", capacity=capacity)
    await add_app(store, "a", concurrency=3, supersede_policy=EVERY)
    first, second, third = [await enqueue(store, "a") for _ in range(3)]

    async with (
        await psycopg.AsyncConnection.connect(database_url) as other,
        # its own connection: a transaction sees one snapshot of pg_stat_activity
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as watcher,
    ):
        # another transaction holds the second job's row: the claim chooses it, then its
        # UPDATE waits for that transaction, which cancels the job
        await other.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (second,))
        claim = asyncio.create_task(store.leases.claim("w1", limit=3))
        async with asyncio.timeout(30):
            while not await (
                await watcher.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE '%%deployq_claim%%' AND pid <> pg_backend_pid()"
                )
            ).fetchone():
                assert not claim.done(), claim.result()
                await asyncio.sleep(0.01)
        await other.execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = now() WHERE id = %s",
            (second,),
        )
        await other.commit()
        leases = await claim

    assert [lease.id for lease in leases] == [first, third]
    assert (await store.jobs.get(second)).status is JobStatus.CANCELLED
    async with store.connection() as conn:
        claimed = await (
            await conn.execute("SELECT job_id FROM job_events WHERE kind = 'claimed'")
        ).fetchall()
    assert Counter(row["job_id"] for row in claimed) == Counter({first: 1, third: 1})
