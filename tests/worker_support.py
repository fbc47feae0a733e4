"""Helpers shared by the worker tests: run a pool, wait for a job by LISTEN, make apps."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from deployq.models import AppSpec, Job, Trigger, TriggerKind
from deployq.store import Store
from deployq.store.base import CHANNEL_JOBS
from deployq.store.listen import Listener
from deployq.worker.pool import WorkerPool

WAIT_S = 120.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def registry_settings(registry: Any, docker_host: str, **overrides: Any) -> dict[str, Any]:
    """Settings overrides for a worker that pushes to the test registry."""
    values: dict[str, Any] = {
        "registry_url": registry.url,
        "registry_username": registry.username,
        "registry_password": registry.password,
        "registry_insecure": True,
        "docker_host": docker_host,
        "lease_ttl": 6,
        "shutdown_grace": 30,
    }
    values.update(overrides)
    return values


@contextlib.asynccontextmanager
async def running_pool(store: Store, **kwargs: Any) -> AsyncIterator[WorkerPool]:
    """A WorkerPool running in a task until the block ends (then stopped gracefully)."""
    pool = WorkerPool(store, **kwargs)
    stop = asyncio.Event()
    task = asyncio.create_task(pool.run(stop))
    claiming = asyncio.create_task(pool.claiming.wait())
    done, _ = await asyncio.wait({task, claiming}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        claiming.cancel()
        task.result()  # raises what went wrong
    try:
        yield pool
    finally:
        stop.set()
        await task


async def wait_job(
    store: Store, job_id: int, until: Callable[[Job], bool], *, timeout_s: float = WAIT_S
) -> Job:
    """The job as soon as ``until(job)`` holds, re-read on each NOTIFY about it."""
    changed = asyncio.Event()

    async def on_connect() -> None:
        changed.set()

    listener = Listener(store.dsn, [CHANNEL_JOBS], on_connect=on_connect)

    async def pump() -> None:
        async for notice in listener:
            if notice.payload.get("id") == job_id:
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


async def add_app(store: Store, repo_url: str, **spec: Any) -> str:
    name = spec.pop("name", None) or unique("app")
    await store.apps.add(AppSpec(name=name, repo_url=repo_url, **spec))
    return name


async def deploy(store: Store, app: str, ref: str = "refs/heads/main") -> int:
    result = await store.jobs.enqueue(Trigger(kind=TriggerKind.MANUAL, app=app, ref=ref))
    return result.jobs[0].id


async def log_text(store: Store, job_id: int) -> str:
    return "\n".join(line.line for line in await store.logs.read(job_id))
