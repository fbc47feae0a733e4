"""The pool's heartbeat: a job another worker took is stopped with a warning; one whose own
outcome committed while the heartbeat ran is not (it used to log "no longer ours")."""

from __future__ import annotations

import logging

import pytest

from deployq.store import Store
from deployq.worker.pool import WorkerPool
from deployq.worker.runner import RunningJob
from integration.queue_helpers import SUCCESS, add_app, add_server, enqueue


async def test_a_finished_job_is_not_lost_and_a_taken_one_is(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    server = await add_server(store, "local")
    await add_app(store, "web", concurrency=2, branches=["*"], supersede_policy="queue")
    for branch in ("one", "two"):
        await enqueue(store, "web", branch=branch)
    pool = WorkerPool(store, worker_id="w-heartbeat")
    written, taken = await store.leases.claim(pool.worker_id, limit=2)
    pool.finishing[written.id] = RunningJob(written, server)  # its outcome is being written
    pool.jobs[taken.id] = RunningJob(taken, server)  # still building
    await store.leases.finish(written, SUCCESS)  # ... and commits before the heartbeat
    async with store.pool.connection() as conn:  # another worker took this one
        await conn.execute(
            "UPDATE jobs SET worker_id = 'someone-else', attempt = attempt + 1 WHERE id = %s",
            (taken.id,),
        )

    with caplog.at_level(logging.WARNING, logger="deployq.worker.pool"):
        await pool.heartbeat()

    assert not pool.finishing[written.id].lost
    assert pool.jobs[taken.id].lost
    assert [r.getMessage() for r in caplog.records] == [
        f"job #{taken.id} attempt {taken.attempt} is no longer ours: stopping it"
    ]
