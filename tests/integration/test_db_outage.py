"""Losing PostgreSQL is a state: the pool says so at once while it lasts, notices the return
within a probe interval, and runs the reconnect hooks; a component that fails is restarted
alone (deployq.supervisor) while the others keep running."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pg_proxy import PgProxy

from deployq.errors import DatabaseUnavailable
from deployq.store import Store
from deployq.supervisor import run_supervised


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[PgProxy]:
    running = PgProxy(database_url)
    await running.start()
    yield running
    if running._server is not None:
        await running.stop()


@pytest.fixture
async def proxied_store(settings_factory: Any, proxy: PgProxy) -> AsyncIterator[Store]:
    settings = settings_factory(database_url=proxy.dsn, db_connect_timeout=5)
    opened = await Store.open(settings, proxy.dsn, min_size=2)
    yield opened
    await opened.close()


async def test_an_outage_fails_fast_while_it_lasts_and_ends_with_the_reconnect_hooks(
    proxied_store: Store, proxy: PgProxy
) -> None:
    store = proxied_store
    health = store.health
    reconnected = asyncio.Event()
    health.on_reconnect(lambda: _set(reconnected))
    await store.ping()

    await proxy.stop()
    with pytest.raises(DatabaseUnavailable):
        await store.ping()  # the connection in hand breaks: the probe starts
    async with asyncio.timeout(5):
        await health.wait_down()
    started = time.monotonic()
    for _ in range(20):
        with pytest.raises(DatabaseUnavailable):
            await store.jobs.recent()
    assert time.monotonic() - started < 1.0, "requests while down must not wait for the pool"
    assert not await health.wait_up(0.1)

    await proxy.start()
    back = time.monotonic()
    async with asyncio.timeout(10):
        await reconnected.wait()
    assert time.monotonic() - back < 2.0
    assert health.up and health.outages == 1
    assert await store.jobs.recent() == []


async def _set(event: asyncio.Event) -> None:
    event.set()


async def test_a_failing_component_is_restarted_and_the_others_keep_running() -> None:
    stop = asyncio.Event()
    runs = {"flaky": 0, "steady": 0}
    restarted = asyncio.Event()

    async def flaky(stop: asyncio.Event) -> None:
        runs["flaky"] += 1
        if runs["flaky"] == 1:
            raise RuntimeError("a bug")
        restarted.set()
        await stop.wait()

    async def steady(stop: asyncio.Event) -> None:
        runs["steady"] += 1
        await stop.wait()

    supervised = asyncio.create_task(run_supervised([flaky, steady], stop))
    async with asyncio.timeout(10):
        await restarted.wait()
    assert not supervised.done()
    stop.set()
    await supervised
    assert runs == {"flaky": 2, "steady": 1}
