"""PostgreSQL unreachable: verified deliveries are spooled to disk, answered 202, and become
their jobs exactly once when the database is back (and at start-up)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pg_proxy import PgProxy
from webhook_helpers import add_app, body_of, github_headers, payload

from deployq.config import Settings
from deployq.store import Store
from deployq.webhooks.app import create_app
from deployq.webhooks.spool import CURRENT, Spool, SpoolRecord
from deployq.webhooks.state import STATE_KEY

Client = TestClient[Any, Any]


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[PgProxy]:
    running = PgProxy(database_url)
    await running.start()
    yield running
    if running._server is not None:
        await running.stop()


@pytest.fixture
async def proxied_store(settings_factory: Any, proxy: PgProxy) -> AsyncIterator[Store]:
    settings: Settings = settings_factory(database_url=proxy.dsn, db_connect_timeout=1)
    opened = await Store.open(settings, proxy.dsn, min_size=1)
    yield opened
    await opened.close()


def push_body(commit_index: int) -> bytes:
    data = payload("github_push_branch")
    data["head_commit"]["id"] = f"{commit_index:040x}"
    return body_of(data)


async def test_deliveries_while_the_database_is_down_become_jobs_once_it_is_back(
    store: Store, proxied_store: Store, proxy: PgProxy, aiohttp_client: Any
) -> None:
    await add_app(store, supersede_policy="queue")
    app = create_app(proxied_store)
    state = app[STATE_KEY]
    client: Client = await aiohttp_client(app)
    resp = await client.post(
        "/webhooks/github", data=push_body(1), headers=github_headers("push", push_body(1))
    )
    assert resp.status == 202

    await proxy.stop()
    ids = [f"down-{i}" for i in range(5)]
    for i, delivery in enumerate(ids, start=2):
        body = push_body(i)
        resp = await client.post(
            "/webhooks/github", data=body, headers=github_headers("push", body, delivery=delivery)
        )
        assert resp.status == 202
        assert await resp.json() == {"spooled": True, "delivery_id": delivery}
    # a redelivery while down, and a delivery without an id
    resp = await client.post(
        "/webhooks/github",
        data=push_body(2),
        headers=github_headers("push", push_body(2), delivery=ids[0]),
    )
    assert resp.status == 202
    headers = github_headers("push", push_body(9))
    del headers["X-GitHub-Delivery"]
    resp = await client.post("/webhooks/github", data=push_body(9), headers=headers)
    generated = (await resp.json())["delivery_id"]
    assert generated.startswith("spool-")
    # forged deliveries are refused even now (the app's secret is known from the cache)
    resp = await client.post(
        "/webhooks/github",
        data=push_body(3),
        headers=github_headers("push", push_body(3), secret="forged"),
    )
    assert resp.status == 401
    assert len(await store.jobs.recent()) == 1  # the one delivered before the outage
    lines = (proxied_store.settings.spool_dir / CURRENT).read_bytes().splitlines()
    assert len(lines) == 7

    state.replayed.clear()
    await proxy.start()
    async with asyncio.timeout(60):
        while state.spool.pending() or state.db_down:
            await state.replayed.wait()
            state.replayed.clear()
    jobs = await store.jobs.recent(limit=100)
    assert len(jobs) == 7  # the first delivery, 5 while down, the one without an id
    spooled_ids = sorted(j.delivery_id or "" for j in jobs[:6])
    assert spooled_ids == sorted([*ids, generated])
    spooled = [d for d in await store.deliveries.recent(limit=100) if d.spooled]
    assert len(spooled) == 7  # every spooled line recorded, the redelivery as a duplicate
    assert sum(d.result == "duplicate" for d in spooled) == 1
    assert not list(proxied_store.settings.spool_dir.glob("*.jsonl"))


async def test_the_spool_left_by_a_previous_process_is_replayed_at_start_up_once(
    store: Store, aiohttp_client: Any
) -> None:
    await add_app(store)
    spool_dir: Path = store.settings.spool_dir
    record = SpoolRecord(
        "github", "push", "left-behind", {"Content-Type": "application/json"}, push_body(1)
    )
    await Spool(spool_dir).append(record)
    # a crash after processing a batch but before deleting it: the same record twice
    os.makedirs(spool_dir, exist_ok=True)
    (spool_dir / "replay-00000000000000000001.jsonl").write_bytes(record.to_line())
    app = create_app(store)
    state = app[STATE_KEY]
    await aiohttp_client(app)
    async with asyncio.timeout(30):
        while state.spool.pending():
            await state.replayed.wait()
            state.replayed.clear()
    [job] = await store.jobs.recent()
    assert job.delivery_id == "left-behind"
