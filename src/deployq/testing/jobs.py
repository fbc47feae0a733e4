"""Jobs in tests and benchmarks: a worker pool in a task, and waiting for a job's state.

Both wait on events (the pool's ``claiming``, the job NOTIFY), never on a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from deployq.models import Job
from deployq.store import CHANNEL_JOBS, Listener, Store
from deployq.worker.pool import WorkerPool
from deployq.worker.rescue import pool_rescuer

#: how long :func:`wait_job` waits by default (a cold build on a busy machine)
WAIT_S = 120.0


@contextlib.asynccontextmanager
async def running_pool(
    store: Store, *, rescue: bool = False, **kwargs: Any
) -> AsyncIterator[WorkerPool]:
    """A WorkerPool running in a task until the block ends (then stopped gracefully).

    ``rescue``: its rescuer runs beside it, as in ``deployq worker``, taking back the jobs of
    workers that died (the claim does not)."""
    pool = WorkerPool(store, **kwargs)
    stop = asyncio.Event()
    task = asyncio.create_task(pool.run(stop))
    rescuer = asyncio.create_task(pool_rescuer(store, pool)(stop)) if rescue else None
    claiming = asyncio.create_task(pool.claiming.wait())
    done, _ = await asyncio.wait({task, claiming}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        claiming.cancel()
        stop.set()
        if rescuer is not None:
            await rescuer
        task.result()  # raises what went wrong
    try:
        yield pool
    finally:
        stop.set()
        await task
        if rescuer is not None:
            await rescuer


async def wait_job(
    store: Store,
    job_id: int,
    until: Callable[[Job], bool],
    *,
    timeout_s: float = WAIT_S,
    reads_on: Callable[[dict[str, Any]], bool] | None = None,
) -> Job:
    """The job as soon as ``until(job)`` holds, re-read on each NOTIFY about it (only those
    whose payload ``reads_on`` accepts, when given; and on each (re)connection).

    Raises AssertionError with the last state seen when ``timeout_s`` passes first."""
    changed = asyncio.Event()

    async def on_connect() -> None:
        changed.set()

    listener = Listener(store.dsn, [CHANNEL_JOBS], on_connect=on_connect)

    async def pump() -> None:
        async for notice in listener:
            if notice.payload.get("id") == job_id and (
                reads_on is None or reads_on(notice.payload)
            ):
                changed.set()

    task = asyncio.create_task(pump())
    job: Job | None = None
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                await changed.wait()
                changed.clear()
                job = await store.jobs.get(job_id)
                if until(job):
                    return job
    except TimeoutError:
        raise AssertionError(f"job #{job_id} never reached the state; last seen: {job}") from None
    finally:
        await listener.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
