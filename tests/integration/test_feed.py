"""The live feed, GET /api/v1/events: every job state, step and progress change in order, a
resume with Last-Event-ID that misses nothing, rows committed late never skipped, and a
client that stops reading dropped with a clear last event while the others go on."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from deployq.feed import FeedHub
from deployq.models import JobStatus, Step, TokenScope
from deployq.store import Store
from deployq.testing.jobs import running_pool, wait_job
from deployq.webhooks.app import create_app
from fixtures.cli import AsyncCli
from integration.queue_helpers import SUCCESS, add_app, add_server, claim_one, enqueue, push
from integration.webhook_helpers import token
from worker_support import add_app as add_built_app
from worker_support import deploy, log_text, registry_settings

Client = TestClient[Any, Any]
Event = dict[str, Any]
READ_TIMEOUT_S = 60.0


async def sse(resp: ClientResponse) -> AsyncIterator[Event]:
    """The events of a text/event-stream response: {"event", "id", "data"}."""
    fields: dict[str, str] = {}
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith(":"):
            continue
        if line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
            continue
        if "data" in fields:
            yield {
                "event": fields.get("event", "message"),
                "id": int(fields["id"]) if "id" in fields else None,
                "data": json.loads(fields["data"]),
            }
        fields = {}


def parse_raw(raw: bytes) -> list[Event]:
    """The events in the raw bytes of a chunked HTTP response (headers included)."""
    _, _, body = raw.partition(b"\r\n\r\n")
    text, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        text, rest = text + rest[:size], rest[size + 2 :]
    events = []
    for block in text.decode().split("\n\n"):
        fields = dict(
            (line.partition(":")[0], line.partition(":")[2].removeprefix(" "))
            for line in block.splitlines()
            if line and not line.startswith(":")
        )
        if "data" in fields:
            events.append(
                {
                    "event": fields.get("event", "message"),
                    "id": int(fields["id"]) if fields.get("id") else None,
                    "data": json.loads(fields["data"]),
                }
            )
    return events


async def read_until(stream: AsyncIterator[Event], done: Callable[[Event], bool]) -> list[Event]:
    seen: list[Event] = []
    async with asyncio.timeout(READ_TIMEOUT_S):
        async for event in stream:
            seen.append(event)
            if done(event):
                return seen
    raise AssertionError(f"the stream ended after {len(seen)} events")


def is_job(job_id: int, kind: str) -> Callable[[Event], bool]:
    return lambda e: e["data"].get("job") == job_id and e["data"]["kind"] == kind


@pytest.fixture
async def client(store: Store, aiohttp_client: Any) -> Client:
    result: Client = await aiohttp_client(create_app(store))
    return result


async def open_feed(client: Client, headers: dict[str, str], query: str = "") -> ClientResponse:
    """A connected feed: once the response has begun, its subscription is in place."""
    resp = await client.get(f"/api/v1/events{query}", headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "text/event-stream"
    return resp


async def test_a_client_sees_a_job_go_through_its_states_steps_and_progress_in_order(
    store: Store, client: Client
) -> None:
    await add_server(store, "local")
    await add_app(store, "web")
    await add_app(store, "other")
    headers = await token(store, TokenScope.READ)
    resp = await open_feed(client, headers, "?app=web")

    await enqueue(store, "other")  # filtered out
    job_id = await enqueue(store, "web")
    lease = await claim_one(store)
    if lease.id != job_id:  # "other" came first: finish it, take ours
        await store.leases.finish(lease, SUCCESS)
        lease = await claim_one(store)
    await store.leases.set_progress(lease, step=Step.CHECKOUT, progress=0)
    await store.leases.set_progress(lease, step=Step.BUILD, progress=15)
    await store.leases.set_progress(lease, step=Step.BUILD, progress=50)
    await store.leases.finish(lease, SUCCESS)
    events = await read_until(sse(resp), is_job(job_id, "succeeded"))

    shown = [(e["data"]["kind"], e["data"]["status"], e["data"].get("step")) for e in events]
    assert shown == [
        ("enqueued", "queued", None),
        ("claimed", "running", None),
        ("step", "running", "checkout"),
        ("step", "running", "build"),
        ("progress", "running", "build"),
        ("succeeded", "succeeded", None),
    ]
    assert {e["data"]["app"] for e in events} == {"web"}
    assert events[4]["data"]["progress"] == 50
    assert all(e["id"] == e["data"]["id"] for e in events)


async def test_reconnecting_with_last_event_id_misses_nothing(store: Store, client: Client) -> None:
    await add_server(store, "local")
    await add_app(store, "web", branches=["*"], supersede_policy="queue")
    headers = await token(store, TokenScope.READ)
    always = sse(await open_feed(client, headers))
    first = await open_feed(client, headers)

    one = await enqueue(store, "web", branch="one")
    lease = await claim_one(store)
    await store.leases.set_progress(lease, step=Step.BUILD, progress=15)
    await store.leases.finish(lease, SUCCESS)
    before = await read_until(sse(first), is_job(one, "succeeded"))
    first.close()
    # while the client is away
    two = await enqueue(store, "web", branch="two")
    await store.jobs.cancel(two, actor="tester")
    three = await enqueue(store, "web", branch="three")
    again = await open_feed(client, {**headers, "Last-Event-ID": str(before[-1]["id"])})
    after = await read_until(sse(again), is_job(three, "enqueued"))
    everything = await read_until(always, is_job(three, "enqueued"))

    assert [e["id"] for e in before + after] == [e["id"] for e in everything]
    assert [e["data"]["kind"] for e in after] == ["enqueued", "cancelled", "enqueued"]


async def test_a_row_committed_late_is_sent_in_its_place_never_skipped(store: Store) -> None:
    await add_app(store, "web", branches=["*"], supersede_policy="queue")
    early = await enqueue(store, "web", branch="early")
    late = await enqueue(store, "web", branch="late")
    hub = FeedHub(store)
    try:
        async with hub.subscribe() as sub:
            start = await store.feed.head()
            async with store.pool.connection() as open_tx, open_tx.transaction():
                # this transaction writes first (lower transaction and event ids) ...
                await open_tx.execute(
                    "INSERT INTO job_events (job_id, kind, message) VALUES (%s, 'note', 'first')",
                    (early,),
                )
                # ... another commits while it is still open
                await store.jobs.add_event(late, "note", actor="t", message="committed first")
                page = await store.feed.after(start)
                assert page.events == [] and page.held_back
            events = sub.events(store)
            got = [await anext(events), await anext(events)]
    finally:
        await hub.close()

    assert [(e.job_id, e.message) for e in got] == [(early, "first"), (late, "committed first")]


async def test_a_transaction_open_in_another_database_does_not_hold_the_feed_back(
    store: Store, pg_server_dsn: str
) -> None:
    """Another database of the same server (another deployq, any other application) may keep
    a transaction open for hours: it can never write this database's events. Until sql/019 it
    held every reader back (a full test run's `deployq watch` printed nothing)."""
    await add_app(store, "web")
    start = await store.feed.head()
    async with await psycopg.AsyncConnection.connect(pg_server_dsn) as elsewhere:
        await elsewhere.execute("SELECT pg_current_xact_id()")  # an open transaction with an id
        job_id = await enqueue(store, "web")
        page = await store.feed.after(start)
        head = await store.feed.head()
        async with store.pool.connection() as here, here.transaction():
            await here.execute("SELECT pg_current_xact_id()")  # one in this database does
            await enqueue(store, "web")
            held = await store.feed.after(page.cursor)

    assert [(e.job_id, e.kind) for e in page.events] == [(job_id, "enqueued")]
    assert not page.held_back
    assert head > page.cursor  # a reader starting now would not get it again
    assert held.events == [] and held.held_back


async def test_a_client_that_stops_reading_is_dropped_while_another_keeps_receiving(
    store_factory: Any, aiohttp_client: Any
) -> None:
    store: Store = await store_factory(feed_buffer=50)
    client: Client = await aiohttp_client(create_app(store))
    await add_app(store, "web", branches=["*"], supersede_policy="queue")
    headers = await token(store, TokenScope.READ)
    fast = sse(await open_feed(client, headers))
    # the slow client: a tiny receive buffer; it reads the response's head, then stops
    loop = asyncio.get_running_loop()
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.setblocking(False)
    await loop.sock_connect(slow, (client.host, client.port))
    request = (
        f"GET /api/v1/events HTTP/1.1\r\nHost: {client.host}\r\n"
        f"Authorization: {headers['Authorization']}\r\nAccept: text/event-stream\r\n\r\n"
    )
    await loop.sock_sendall(slow, request.encode())
    raw = b""
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            while b"\r\n\r\n" not in raw:  # once the head is here, it is subscribed
                raw += await loop.sock_recv(slow, 1024)
        jobs = 4000  # about 1.5 MB of events: far more than the slow client's buffers hold
        enqueued = 0

        def all_enqueued(event: Event) -> bool:
            nonlocal enqueued
            enqueued += event["data"]["kind"] == "enqueued"
            return enqueued == jobs

        reading = asyncio.create_task(read_until(fast, all_enqueued))
        ids: list[int] = []
        for batch in range(jobs // 200):
            results = await store.queue.enqueue_many(
                [push("web", branch=f"b{batch}-{n}") for n in range(200)]
            )
            ids += [r.jobs[0].id for r in results]
        received = await reading
        # the slow client reads at last: what was sent to it, then why it was dropped
        async with asyncio.timeout(READ_TIMEOUT_S):
            while chunk := await loop.sock_recv(slow, 65536):
                raw += chunk
    finally:
        slow.close()

    assert [e["data"]["job"] for e in received] == ids
    events = parse_raw(raw)
    *sent, last = events
    assert last["event"] == "dropped"
    assert "fell more than 50 events behind" in last["data"]["reason"]
    assert sent and last["data"]["resume_after"] == sent[-1]["id"] == last["id"]
    assert [e["id"] for e in sent] == [e["id"] for e in received[: len(sent)]]
    assert len(sent) < len(received)


@pytest.mark.docker
@pytest.mark.slow
async def test_a_real_build_is_seen_queued_running_through_each_step_and_succeeded(
    store_factory: Any,
    aiohttp_client: Any,
    registry: Any,
    docker_host: str,
    git_repo_factory: Any,
    base_image: str,
) -> None:
    store: Store = await store_factory(**registry_settings(registry, docker_host))
    repo = git_repo_factory({"Dockerfile": f"FROM {base_image}\nRUN echo {uuid.uuid4().hex}\n"})
    app = await add_built_app(store, repo.url)
    client: Client = await aiohttp_client(create_app(store))
    resp = await open_feed(client, await token(store, TokenScope.READ), f"?app={app}")

    job_id = await deploy(store, app)
    async with running_pool(store):
        job = await wait_job(store, job_id, lambda j: j.status.is_final, timeout_s=120)
        events = await read_until(sse(resp), is_job(job_id, "succeeded"))

    # what the feed showed, and the job's log: the message of any assertion below
    seen = [(e["data"]["kind"], e["data"]["status"], e["data"]["message"]) for e in events]
    why = f"feed: {seen}\nlog:\n{await log_text(store, job_id)}"
    assert job.status is JobStatus.SUCCEEDED, why
    assert seen[0][:2] == ("enqueued", "queued") and seen[-1][:2] == ("succeeded", "succeeded")
    # each attempt is seen from its claim to its end; one that failed on the way (a registry
    # that answered late on a loaded machine) is seen ending with its retry and the reason
    attempts = _split_by_claim(events[1:])
    for attempt in attempts[:-1]:
        *_, end = attempt
        assert end["data"]["kind"] == "retry_scheduled" and end["data"]["message"], why
    last = attempts[-1]
    steps = [e["data"]["step"] for e in last if e["data"]["kind"] == "step"]
    assert steps == ["checkout", "detect", "build", "push", "verify"], why
    assert {e["data"]["status"] for e in last[:-1]} == {"running"}, why


def _split_by_claim(events: list[Event]) -> list[list[Event]]:
    """The events of each attempt, each list beginning with its ``claimed`` event."""
    attempts: list[list[Event]] = []
    for event in events:
        if event["data"]["kind"] == "claimed":
            attempts.append([])
        assert attempts, f"an event before the first claim: {event}"
        attempts[-1].append(event)
    return attempts


async def test_deployq_watch_prints_the_feed_of_an_app(
    store: Store, database_url: str, tmp_path: Any
) -> None:
    await add_server(store, "local")
    await add_app(store, "web")
    await add_app(store, "other")
    cli = AsyncCli(database_url, tmp_path)
    text = await cli.start("watch", "--app", "web")
    as_json = await cli.start("watch", "--json")
    try:
        for proc in (text, as_json):  # subscribed once this line is out
            assert proc.stderr is not None
            async with asyncio.timeout(READ_TIMEOUT_S):
                assert b"watching the live feed" in await proc.stderr.readline()
        await enqueue(store, "other")
        job_id = await enqueue(store, "web")
        lease = await claim_one(store)
        while lease.id != job_id:
            await store.leases.finish(lease, SUCCESS)
            lease = await claim_one(store)
        await store.leases.set_progress(lease, step=Step.BUILD, progress=15)
        await store.leases.finish(lease, SUCCESS)
        lines: list[str] = []
        assert text.stdout is not None
        async with asyncio.timeout(READ_TIMEOUT_S):
            while not lines or f"#{job_id} " not in lines[-1] or "succeeded" not in lines[-1]:
                lines.append((await text.stdout.readline()).decode())
        assert as_json.stdout is not None
        objects = []
        async with asyncio.timeout(READ_TIMEOUT_S):
            while not objects or objects[-1]["kind"] != "succeeded" or objects[-1]["app"] != "web":
                objects.append(json.loads(await as_json.stdout.readline()))
    finally:
        for proc in (text, as_json):
            proc.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(READ_TIMEOUT_S):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise AssertionError("deployq watch did not end on SIGINT") from None

    mine = [ln for ln in lines if f"#{job_id} " in ln]
    assert [ln.split()[4] for ln in mine] == ["queued", "running", "running", "succeeded"]
    assert "build 15%" in mine[2] and " web " in mine[0]
    assert not any(" other " in ln for ln in lines)
    assert {o["app"] for o in objects} == {"web", "other"}


async def test_server_changes_are_in_the_feed_and_pruned_by_age(
    store: Store, client: Client
) -> None:
    server = await add_server(store, "local")
    resp = await open_feed(client, await token(store, TokenScope.READ), "?after=0")

    await store.servers.observe(server.id, host_id="h1", ok=False, error="engine does not answer")
    await store.servers.set_draining("local", True)
    events = await read_until(sse(resp), lambda e: e["data"].get("message") == "local draining")
    async with store.pool.connection() as conn:
        await conn.execute("UPDATE job_events SET at = now() - interval '40 days'")
    pruned = await store.retention.prune(30 * 86400)

    assert [e["data"]["message"] for e in events] == [
        "local added",
        "local unhealthy: engine does not answer",
        "local draining",
    ]
    assert {e["data"]["server"] for e in events} == {"local"}
    assert {e["data"]["job"] for e in events} == {None}
    assert pruned["events"] == 3
