"""Retention of webhook delivery bodies on a real database: old bodies go, their rows stay
(result, jobs, headers, size, when the body went); the API and replay say so; --dry-run and
the periodic pruner."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from webhook_helpers import add_app, body_of, payload, post_github, token

from deployq.models import TokenScope
from deployq.sizes import format_bytes
from deployq.store import Store, prune_component
from deployq.webhooks.app import create_app

Client = TestClient[Any, Any]
DAY = 86400.0


@pytest.fixture
async def client(store: Store, aiohttp_client: Any) -> Client:
    result: Client = await aiohttp_client(create_app(store))
    return result


async def received_days_ago(store: Store, delivery_row_id: int, days: int) -> None:
    async with store.pool.connection() as conn:
        await conn.execute(
            "UPDATE webhook_deliveries SET received_at = now() - %s WHERE id = %s",
            (timedelta(days=days), delivery_row_id),
        )


async def two_deliveries(store: Store, client: Client) -> tuple[int, int, int]:
    """(old row id, recent row id, the old body's size): both verified pushes of app web."""
    await add_app(store, "web")
    push = payload("github_push_branch")
    assert (await post_github(client, "push", push, delivery="old-1"))[0] == 202
    assert (await post_github(client, "push", push, delivery="new-1"))[0] == 202
    recent, old = await store.deliveries.recent()
    await received_days_ago(store, old.id, 20)
    return old.id, recent.id, len(body_of(push))


async def test_old_bodies_go_and_their_rows_stay(store: Store, client: Client) -> None:
    old_id, recent_id, size = await two_deliveries(store, client)
    before = await store.deliveries.get(old_id)
    assert before.body is not None and before.delivery.body_bytes == size

    dry = await store.retention.prune_bodies(14 * DAY, dry_run=True)
    assert dry == {"deliveries": 1, "bytes": size}
    assert (await store.deliveries.get(old_id)).body == before.body  # nothing changed

    assert await store.retention.prune_bodies(14 * DAY, batch_size=1) == dry
    after = await store.deliveries.get(old_id)
    assert after.body is None
    pruned_at = after.delivery.body_pruned_at
    assert pruned_at is not None and abs(datetime.now(UTC) - pruned_at) < timedelta(minutes=1)
    # the metadata stays: result, jobs, headers (signature check's input), size
    assert after.delivery.result == "accepted" and after.delivery.job_ids
    assert after.delivery.job_ids == before.delivery.job_ids
    assert after.headers == before.headers and after.delivery.body_bytes == size
    assert after.delivery.body_state == f"body pruned {pruned_at:%Y-%m-%d}"
    assert (await store.deliveries.get(recent_id)).body is not None
    assert await store.retention.prune_bodies(14 * DAY) == {"deliveries": 0, "bytes": 0}


async def test_the_api_shows_a_pruned_body_and_refuses_its_replay(
    store: Store, client: Client
) -> None:
    old_id, recent_id, _ = await two_deliveries(store, client)
    await store.retention.prune_bodies(14 * DAY)
    admin = await token(store, TokenScope.ADMIN)

    resp = await client.get(f"/api/v1/deliveries/{old_id}", headers=admin)
    data = await resp.json()
    day = f"{datetime.now(UTC):%Y-%m-%d}"
    assert resp.status == 200
    assert data["body"] == f"body pruned {day}" and data["replayable"] is False
    assert data["result"] == "accepted" and data["headers"]["X-GitHub-Delivery"] == "old-1"
    listed = (await (await client.get("/api/v1/deliveries", headers=admin)).json())["deliveries"]
    assert [d["body_pruned_at"] is not None for d in listed] == [False, True]

    resp = await client.post(f"/api/v1/deliveries/{old_id}/replay", headers=admin)
    message = (await resp.json())["error"]["message"]
    assert resp.status == 409
    assert message.startswith(f"delivery #{old_id}'s body was pruned {day}")
    assert "DEPLOYQ_DELIVERY_BODY_RETENTION" in message
    kept = await client.post(f"/api/v1/deliveries/{recent_id}/replay", headers=admin)
    assert kept.status == 200 and (await kept.json())["result"] == "duplicate"


async def test_the_periodic_pruner_drops_old_bodies(store: Store, client: Client) -> None:
    old_id, recent_id, _ = await two_deliveries(store, client)
    pruned = asyncio.Event()

    class Heard(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("pruned the bodies of 1 webhook deliveries"):
                pruned.set()

    heard, logger = Heard(), logging.getLogger("deployq.store._retention")
    level = logger.level
    logger.addHandler(heard)
    logger.setLevel(logging.INFO)
    stop = asyncio.Event()
    run = asyncio.create_task(prune_component(store, first_delay_s=0, interval_s=3600)(stop))
    try:
        await asyncio.wait_for(pruned.wait(), 30)
    finally:
        stop.set()
        await run
        logger.removeHandler(heard)
        logger.setLevel(level)
    assert (await store.deliveries.get(old_id)).body is None
    assert (await store.deliveries.get(recent_id)).body is not None


async def test_the_cli_lists_a_pruned_body_and_prunes_with_dry_run(
    store: Store, client: Client, database_url: str
) -> None:
    old_id, _, size = await two_deliveries(store, client)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    # the store's data dir: its key unseals the app's webhook secret
    env.update(DEPLOYQ_DATABASE_URL=database_url, DEPLOYQ_DATA_DIR=str(store.settings.data_dir))

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "deployq", *args], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    dry = json.loads(cli("prune", "--bodies-older-than", "14d", "--dry-run", "--json"))
    assert dry["bodies"] == {"deliveries": 1, "bytes": size} and dry["dry_run"] is True
    assert (await store.deliveries.get(old_id)).body is not None
    out = cli("prune", "--bodies-older-than", "14d")
    assert f"of 1 webhook deliveries received over 14d ago ({format_bytes(size)})" in out
    listed = cli("deliveries")
    assert f"(body pruned {datetime.now(UTC):%Y-%m-%d})" in listed
