"""The rescue's bounds: an engine that cannot say whether the dead attempt's build still runs.

(The rescue that finds the build on the engine and stops it: tests/integration/
test_worker_kill.py; the engine's answers themselves: test_builders.py.)
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from deployq.models import JobStatus
from deployq.store import Store, rescuer_component
from deployq.testing.jobs import wait_job
from deployq.worker.rescue import BLIND_GRACE_S, EngineStopper
from deployq.worker.servers import ServerMonitor
from integration.queue_helpers import add_app, claim_one, enqueue

TIMEOUT_S = 2.0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def _rescuer(store: Store) -> AsyncIterator[None]:
    """The workers' rescuer (engine-aware), in a task until the block ends."""
    stopper = EngineStopper(store, ServerMonitor(store), host_id=None)
    stop = asyncio.Event()
    task = asyncio.create_task(rescuer_component(store, stop_build=stopper, interval_s=0.25)(stop))
    try:
        yield
    finally:
        stop.set()
        await task


async def _open(settings_factory: Callable[..., Any], database_url: str, **values: Any) -> Store:
    settings = settings_factory(lease_ttl=1, rescue_stop_timeout=TIMEOUT_S, **values)
    return await Store.open(settings, database_url, min_size=1)


async def test_an_engine_that_does_not_answer_keeps_the_slot_then_its_server_is_drained(
    settings_factory: Any, database_url: str
) -> None:
    store = await _open(settings_factory, database_url)
    try:
        host = f"tcp://127.0.0.1:{_closed_port()}"
        await store.servers.add("gone", host, capacity=1)
        await add_app(store, "web")
        await add_app(store, "api")
        await enqueue(store, "web")
        dead = await claim_one(store, "dead")  # and never heard of again
        other = await enqueue(store, "api")
        async with _rescuer(store):
            await wait_job(store, dead.id, lambda j: j.worker_id != "dead", timeout_s=30)
            # taken over, not queued: the dead attempt's slot is still counted
            assert await store.leases.claim("alive", limit=1) == []
            job = await wait_job(store, dead.id, lambda j: j.status is JobStatus.QUEUED)
        server = await store.servers.get("gone")
        events = await store.jobs.events(dead.id)
        assert (await store.jobs.get(other)).status is JobStatus.QUEUED
    finally:
        await store.close()

    assert server.draining
    assert job.attempt == 1  # queued again for the other servers
    rescuing = [e for e in events if e.kind == "rescuing"]
    messages = [e.message or "" for e in rescuing]
    assert any(
        m.startswith(f"waiting for engine {host} to stop the build of job #{dead.id} attempt 1")
        for m in messages
    ), messages
    assert any(
        m.startswith(
            "build server gone drained: its engine did not stop the build of job "
            f"#{dead.id} attempt 1 within 2s"
        )
        and m.endswith("`deployq server undrain gone`")
        for m in messages
    ), messages
    [rescued] = [e for e in events if e.kind == "rescued"]
    assert (rescued.at - rescuing[0].at).total_seconds() >= TIMEOUT_S
    assert "(build server gone drained)" in (rescued.message or "")


@pytest.mark.docker
async def test_an_engine_without_the_image_to_look_with_gets_a_grace_then_the_job_runs_again(
    settings_factory: Any, database_url: str, docker_host: str
) -> None:
    store = await _open(settings_factory, database_url, base_image_static="deployq-test/absent:x")
    try:
        await store.servers.add("here", docker_host, capacity=1)
        await add_app(store, "web")
        await enqueue(store, "web")
        dead = await claim_one(store, "dead")
        async with _rescuer(store):
            job = await wait_job(store, dead.id, lambda j: j.status is JobStatus.QUEUED)
        server = await store.servers.get("here")
        events = await store.jobs.events(dead.id)
    finally:
        await store.close()

    assert not server.draining
    notes = [
        e for e in events if e.kind == "rescuing" and "cannot be looked into" in (e.message or "")
    ]
    assert len(notes) == 1
    assert "load deployq-test/absent:x there" in (notes[0].message or "")
    [rescued] = [e for e in events if e.kind == "rescued"]
    assert (rescued.at - notes[0].at).total_seconds() >= BLIND_GRACE_S
    assert job.status is JobStatus.QUEUED
