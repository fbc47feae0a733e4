"""Group commit of webhook deliveries: deliveries that arrive together share one transaction,
yet each keeps the one-by-one semantics (dedupe, supersede order, failure isolation)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pg_proxy import PgProxy
from webhook_helpers import add_app, body_of, github_headers, payload

from deployq.config import Settings
from deployq.errors import NotFound
from deployq.models import JobStatus, Trigger, TriggerKind
from deployq.store import CHANNEL_JOBS, Listener, Store
from deployq.webhooks.app import create_app
from deployq.webhooks.providers import GITHUB, decode_body
from deployq.webhooks.receiver import Reply, deliver
from deployq.webhooks.state import DB_ERRORS, STATE_KEY, WebState

Client = TestClient[Any, Any]
REPO = "github.com/octo-org/octo-repo"


def push(index: int) -> bytes:
    """A push to main whose head commit is distinct per index (an all-zero sha means "no
    commit", hence the + 1)."""
    data = payload("github_push_branch")
    data["head_commit"]["id"] = data["after"] = f"{index + 1:040x}"
    return body_of(data)


async def deliver_push(
    state: WebState, body: bytes, delivery: str, *, only_apps: list[str] | None = None
) -> Reply:
    parsed = GITHUB.parse("push", decode_body(body, "application/json"))
    return await deliver(
        state,
        "github",
        parsed,
        delivery,
        headers={"X-GitHub-Delivery": delivery},
        body=body,
        repos=[REPO],
        only_apps=only_apps,
    )


def trigger(sha: int, delivery: str, *, app: str | None = None) -> Trigger:
    return Trigger(
        kind=TriggerKind.WEBHOOK,
        provider="github",
        repo=None if app else REPO,
        app=app,
        ref="refs/heads/main",
        commit_sha=f"{sha:040x}",
        delivery_id=delivery,
    )


async def commits_of(store: Store, job_ids: list[int]) -> int:
    """How many transactions wrote these jobs (their xmin)."""
    async with store.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(DISTINCT xmin::text) AS n FROM jobs WHERE id = ANY(%s)", (job_ids,)
            )
        ).fetchone()
    assert row is not None
    return int(row["n"])


@pytest.fixture
def state(store: Store) -> WebState:
    return create_app(store)[STATE_KEY]


async def test_enqueue_many_is_one_transaction_with_one_by_one_results(store: Store) -> None:
    await add_app(store)  # supersede policy: a newer push to main supersedes a queued one
    first, second, again = await store.queue.enqueue_many(
        [trigger(1, "d-1"), trigger(2, "d-2"), trigger(1, "d-1")]
    )
    assert first.created and second.created
    assert not again.created  # a redelivery in the same list: the job of its original
    assert again.jobs[0].id == first.jobs[0].id
    assert second.superseded == [first.jobs[0].id]  # arrival order
    old = await store.jobs.get(first.jobs[0].id)
    assert old.status is JobStatus.SUPERSEDED
    assert (await store.jobs.get(second.jobs[0].id)).status is JobStatus.QUEUED
    assert await commits_of(store, [first.jobs[0].id, second.jobs[0].id]) == 1


async def test_enqueue_many_rolls_everything_back_when_one_trigger_fails(store: Store) -> None:
    await add_app(store)
    with pytest.raises(NotFound, match="no app named 'gone'"):
        await store.queue.enqueue_many([trigger(1, "d-1"), trigger(2, "d-2", app="gone")])
    assert await store.jobs.recent() == []


async def test_deliveries_arriving_together_share_one_commit(store: Store, state: WebState) -> None:
    await add_app(store, supersede_policy="queue")
    replies = await asyncio.gather(
        *(deliver_push(state, push(i), f"d-{i}") for i in range(10)),
        deliver_push(state, push(0), "d-0"),  # a redelivery in the batch of its original
    )
    *fresh, redelivered = replies
    assert [r.result for r in fresh] == ["accepted"] * 10
    job_ids = [r.job_ids[0] for r in fresh]
    assert len(set(job_ids)) == 10
    assert (redelivered.status, redelivered.result) == (200, "duplicate")
    assert redelivered.job_ids == fresh[0].job_ids
    assert state.batcher.batches == 1
    assert await commits_of(store, job_ids) == 1
    assert len(await store.jobs.recent(limit=100)) == 10
    recorded = await store.deliveries.recent(limit=100)
    assert sorted(d.result for d in recorded) == ["accepted"] * 10 + ["duplicate"]
    assert {d.delivery_id: d.job_ids for d in recorded if d.result == "accepted"} == {
        f"d-{i}": [job_ids[i]] for i in range(10)
    }


async def test_a_later_push_in_the_same_batch_supersedes_the_earlier(
    store: Store, state: WebState
) -> None:
    await add_app(store)
    early, late = await asyncio.gather(
        deliver_push(state, push(1), "d-1"), deliver_push(state, push(2), "d-2")
    )
    assert state.batcher.batches == 1
    assert (await store.jobs.get(early.job_ids[0])).status is JobStatus.SUPERSEDED
    assert (await store.jobs.get(late.job_ids[0])).status is JobStatus.QUEUED


async def test_one_failing_delivery_does_not_fail_the_others_of_its_batch(
    store: Store, state: WebState
) -> None:
    await add_app(store, supersede_policy="queue")
    replies = await asyncio.gather(
        deliver_push(state, push(1), "d-1"),
        deliver_push(state, push(2), "d-2", only_apps=["gone"]),  # its app was removed
        deliver_push(state, push(3), "d-3"),
        return_exceptions=True,
    )
    good_1, bad, good_3 = replies
    assert isinstance(bad, NotFound)
    assert isinstance(good_1, Reply) and isinstance(good_3, Reply)
    assert (good_1.result, good_3.result) == ("accepted", "accepted")
    assert state.batcher.fallbacks == 1
    jobs = await store.jobs.recent()
    assert sorted(j.delivery_id or "" for j in jobs) == ["d-1", "d-3"]
    recorded = await store.deliveries.recent()
    assert sorted(d.delivery_id or "" for d in recorded) == ["d-1", "d-3"]


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[PgProxy]:
    running = PgProxy(database_url)
    await running.start()
    yield running
    if running._server is not None:
        await running.stop()


async def test_the_database_going_away_fails_every_delivery_of_the_batch(
    store: Store, settings_factory: Any, proxy: PgProxy
) -> None:
    await add_app(store, supersede_policy="queue")
    settings: Settings = settings_factory(database_url=proxy.dsn, db_connect_timeout=1)
    proxied = await Store.open(settings, proxy.dsn, min_size=1)
    try:
        state = create_app(proxied)[STATE_KEY]
        await proxy.stop()
        replies = await asyncio.gather(
            *(deliver_push(state, push(i), f"d-{i}") for i in range(3)),
            return_exceptions=True,
        )
        assert all(isinstance(r, DB_ERRORS) for r in replies), replies
    finally:
        await proxied.close()
    assert await store.jobs.recent() == []


async def test_concurrent_http_deliveries_each_get_their_job_and_notification(
    store: Store, aiohttp_client: Any
) -> None:
    await add_app(store, supersede_policy="queue")
    app: web.Application = create_app(store)
    client: Client = await aiohttp_client(app)
    listener = Listener(store.dsn, [CHANNEL_JOBS])
    notified: dict[int, dict[str, Any]] = {}

    async def collect(expected: int) -> None:
        async for notice in listener:
            notified[notice.payload["id"]] = notice.payload
            if len(notified) == expected:
                return

    collector = asyncio.create_task(collect(20))
    await listener.connected.wait()

    async def post(i: int) -> tuple[int, Any]:
        body = push(i)
        resp = await client.post(
            "/webhooks/github", data=body, headers=github_headers("push", body)
        )
        return resp.status, await resp.json()

    replies = await asyncio.gather(*(post(i) for i in range(20)))
    assert {status for status, _ in replies} == {202}
    job_ids = {reply["jobs"][0]["id"] for _, reply in replies}
    assert len(job_ids) == 20
    assert {j.id for j in await store.jobs.recent(limit=100)} == job_ids
    # workers and the TUI still get one notice per job, in the shape they read
    async with asyncio.timeout(30):
        await collector
    await listener.close()
    assert set(notified) == job_ids
    assert {(n["kind"], n["status"], n["app"]) for n in notified.values()} == {
        ("enqueued", "queued", "web")
    }
    assert app[STATE_KEY].batcher.written == 20
