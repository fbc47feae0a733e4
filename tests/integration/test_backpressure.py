"""Back-pressure: a full queue refuses new jobs clearly (API 429 + Retry-After, CLI one line,
webhook 503 recorded as refused), never silently; once it drains it accepts again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from deployq.errors import QueueFull
from deployq.models import JobStatus, TokenScope
from deployq.store import Store
from deployq.webhooks.app import create_app
from integration.queue_helpers import SUCCESS, add_server, claim_one, enqueue
from integration.test_cli_jobs import Cli
from integration.webhook_helpers import add_app, payload, post_github, token

Client = TestClient[Any, Any]


@pytest.fixture
async def client(store: Store, aiohttp_client: Any) -> Client:
    result: Client = await aiohttp_client(create_app(store))
    return result


def _push(branch: str) -> dict[str, Any]:
    data = payload("github_push_branch")
    data["ref"] = f"refs/heads/{branch}"
    return data


async def test_an_app_at_its_limit_refuses_with_429_and_retry_after(
    store: Store, client: Client
) -> None:
    await add_app(store, branches=["*"], max_queued=2)
    await enqueue(store, "web", branch="a")
    await enqueue(store, "web", branch="b")
    headers = await token(store, TokenScope.DEPLOY)

    resp = await client.post("/api/v1/apps/web/deployments", json={"ref": "c"}, headers=headers)
    body = await resp.json()

    assert resp.status == 429
    assert 5 <= int(resp.headers["Retry-After"]) <= 600
    assert body["error"]["code"] == "queue_full"
    assert body["error"]["message"].startswith(
        "queue full: app web has 2 queued jobs (its limit, max_queued, is 2); try again in "
    )
    assert len(await store.jobs.recent(status=[JobStatus.QUEUED])) == 2


async def test_a_refused_webhook_is_503_recorded_and_accepted_once_the_queue_drains(
    store: Store, client: Client
) -> None:
    await add_server(store, "local")
    await add_app(store, branches=["*"], max_queued=1)
    await enqueue(store, "web", branch="busy")

    status, reply = await post_github(client, "push", _push("main"), delivery="d-full")
    [record] = await store.deliveries.recent()

    assert status == 503 and reply["error"]["code"] == "queue_full"
    assert record.result == "refused" and record.status_code == 503
    assert record.reason is not None and record.reason.startswith("queue full: app web has 1")
    assert (await store.deliveries.get(record.id)).body is not None  # kept: replayable

    await store.leases.finish(await claim_one(store), SUCCESS)  # the queue drains
    status, reply = await post_github(client, "push", _push("main"), delivery="d-full")

    assert status == 202 and reply["result"] == "accepted"
    [job] = await store.jobs.recent(status=[JobStatus.QUEUED])
    assert job.delivery_id == "d-full" and job.branch == "main"


async def test_a_newer_push_replaces_the_queued_one_of_its_branch_even_when_full(
    store: Store,
) -> None:
    await add_app(store, max_queued=1)
    older = await enqueue(store, "web", branch="main")

    newer = await enqueue(store, "web", branch="main")

    assert (await store.jobs.get(older)).status is JobStatus.SUPERSEDED
    assert (await store.jobs.get(newer)).status is JobStatus.QUEUED


async def test_the_overall_limit_counts_every_app_and_concurrent_enqueues_never_overshoot(
    store_factory: Any,
) -> None:
    store: Store = await store_factory(max_queued=3)
    for name in ("web", "api"):
        await add_app(store, name, branches=["*"], supersede_policy="queue")

    results = await asyncio.gather(
        *(enqueue(store, ("web", "api")[n % 2], branch=f"b{n}") for n in range(10)),
        return_exceptions=True,
    )

    refused = [r for r in results if isinstance(r, QueueFull)]
    assert len(refused) == 7 and all(isinstance(r, int) or r in refused for r in results)
    assert "3 jobs are queued (the limit, DEPLOYQ_MAX_QUEUED, is 3)" in refused[0].message
    assert len(await store.jobs.recent(status=[JobStatus.QUEUED])) == 3


async def test_the_cli_says_the_queue_is_full_in_one_line(
    store: Store, database_url: str, tmp_path: Any
) -> None:
    await add_app(store, branches=["*"], max_queued=1)
    await enqueue(store, "web", branch="a")

    # the data directory of the test's settings: its key opens the app's webhook secret
    code, out, err = await Cli(database_url, tmp_path / "data")("deploy", "web", "--ref", "b")

    assert code == 1 and out == ""
    assert err.startswith("error: queue full: app web has 1 queued jobs")
    assert len(err.strip().splitlines()) == 1
