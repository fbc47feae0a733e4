"""The queue under concurrency: many claimers in separate connections, and a dead one."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, defaultdict
from typing import Any

import psycopg
import pytest

from deployq.config import Settings
from deployq.errors import LostJob
from deployq.models import JobStatus
from deployq.store import CHANNEL_JOBS, Listener, Store, rescuer_component
from integration.queue_helpers import SUCCESS, add_app, add_server, claim_one, enqueue

JOBS = 2_000
CLAIMERS = 8
CAPACITY = {"alpha": 2, "beta": 3, "gamma": 1}
APPS = [f"app{i}" for i in range(10)]
#: a fallback poll only: claimers are woken by NOTIFY
POLL_S = 1.0


class Tracker:
    """What the claimers see: a job counts as running from the claim's return until just
    before its finish, so it is never counted longer than the database holds it running."""

    def __init__(self, app_concurrency: dict[str, int]) -> None:
        self.app_concurrency = app_concurrency
        self.server_running: Counter[str] = Counter()
        self.app_running: Counter[str] = Counter()
        self.executed: list[int] = []
        self.order: dict[str, list[int]] = defaultdict(list)
        self.violations: list[str] = []
        self.done = asyncio.Event()

    def start(self, job_id: int, app: str, server: str) -> None:
        self.server_running[server] += 1
        self.app_running[app] += 1
        self.executed.append(job_id)
        self.order[app].append(job_id)
        if self.server_running[server] > CAPACITY[server]:
            self.violations.append(f"{server} over capacity at #{job_id}")
        if self.app_running[app] > self.app_concurrency[app]:
            self.violations.append(f"{app} over concurrency at #{job_id}")

    def stop(self, app: str, server: str) -> None:
        self.server_running[server] -= 1
        self.app_running[app] -= 1
        if len(self.executed) >= JOBS:
            self.done.set()


async def claimer(
    name: str, settings: Settings, dsn: str, tracker: Tracker, stop: asyncio.Event
) -> None:
    store = await Store.open(settings, dsn, min_size=1)
    wake = asyncio.Event()
    listener = Listener(dsn, [CHANNEL_JOBS])

    async def listen() -> None:
        async for _ in listener:
            wake.set()

    listening = asyncio.create_task(listen())
    try:
        while not stop.is_set():
            wake.clear()
            leases = await store.leases.claim(name, limit=2)
            for lease in leases:
                assert lease.job.server_name is not None
                tracker.start(lease.id, lease.job.app_name, lease.job.server_name)
            for lease in leases:
                await asyncio.sleep(random.random() / 1000)  # the "build"
                assert lease.job.server_name is not None
                tracker.stop(lease.job.app_name, lease.job.server_name)
                await store.leases.finish(lease, SUCCESS)
            if not leases:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), POLL_S)
    finally:
        await listener.close()
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
        await store.close()


@pytest.mark.timeout(300)
async def test_eight_claimers_run_every_job_once_within_capacity_and_in_app_order(
    store: Store, settings: Settings, database_url: str
) -> None:
    for server, capacity in CAPACITY.items():
        await add_server(store, server, capacity=capacity)
    concurrency = {name: 2 if name == "app9" else 1 for name in APPS}
    for name in APPS:
        await add_app(store, name, supersede_policy="queue", concurrency=concurrency[name])
    rng = random.Random(7)
    enqueued: dict[str, list[int]] = defaultdict(list)
    for _ in range(JOBS):
        app = rng.choice(APPS)
        enqueued[app].append(await enqueue(store, app))
    tracker = Tracker(concurrency)
    stop = asyncio.Event()

    tasks = [
        asyncio.create_task(claimer(f"w{i}", settings, database_url, tracker, stop))
        for i in range(CLAIMERS)
    ]
    try:
        await asyncio.wait_for(tracker.done.wait(), 240)
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    assert tracker.violations == []
    assert sorted(tracker.executed) == sorted(i for ids in enqueued.values() for i in ids)
    for app in APPS:
        if concurrency[app] == 1:
            assert tracker.order[app] == enqueued[app], f"{app} ran out of order"
    async with store.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'succeeded' AND attempt = 1) AS ok, "
                "count(*) AS n FROM jobs"
            )
        ).fetchone()
        claims = await (
            await conn.execute("SELECT count(*) AS n FROM job_events WHERE kind = 'claimed'")
        ).fetchone()
    assert row == {"ok": JOBS, "n": JOBS}
    assert claims == {"n": JOBS}


async def _backend_pid(store: Store) -> int:
    async with store.pool.connection() as conn:
        row = await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone()
    assert row is not None
    return int(row["pid"])


async def test_a_killed_claimers_job_is_rescued_once_and_its_late_finish_rejected(
    store: Store, settings_factory: Any, database_url: str
) -> None:
    ttl = 1.0
    settings: Settings = settings_factory(lease_ttl=ttl)
    await add_server(store, "local")
    await add_app(store, "web")
    job_id = await enqueue(store, "web")
    dead = await Store.open(settings, database_url, min_size=1)
    lease = await claim_one(dead, "dead")
    pid = await _backend_pid(dead)
    async with store.pool.connection() as conn:
        await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    killed_at = time.monotonic()
    with contextlib.suppress(psycopg.Error):
        await dead.close()

    alive = await Store.open(settings, database_url, min_size=1)
    listener = Listener(database_url, [CHANNEL_JOBS])
    notices = aiter(listener)
    stop = asyncio.Event()
    rescuer = asyncio.create_task(rescuer_component(alive, interval_s=ttl / 4)(stop))
    try:
        # nothing is enqueued meanwhile: the periodic rescuer alone brings the job back
        while (await anext(notices)).payload != {
            "id": job_id,
            "app": "web",
            "status": "queued",
            "kind": "rescued",
        }:
            pass
        rescued_after = time.monotonic() - killed_at
        [again] = await alive.leases.claim("alive", limit=1)
        done = await alive.leases.finish(again, SUCCESS)

        late = await Store.open(settings, database_url, min_size=1)
        try:
            with pytest.raises(LostJob):
                await late.leases.finish(lease, SUCCESS)
        finally:
            await late.close()
    finally:
        stop.set()
        await rescuer
        await listener.close()
        await alive.close()

    assert again.id == job_id and again.attempt == 2
    assert rescued_after <= 2 * ttl + 0.5
    assert done.status is JobStatus.SUCCEEDED
    kinds = [e.kind for e in await store.jobs.events(job_id)]
    assert kinds == ["enqueued", "claimed", "rescuing", "rescued", "claimed", "succeeded"]
