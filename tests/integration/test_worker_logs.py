"""The job log writer: batched, redacted, progress bars collapsed, fenced on the attempt."""

from __future__ import annotations

import asyncio

import pytest

from deployq.models import JobStatus
from deployq.redact import MASK, Redactor
from deployq.store import CHANNEL_LOGS, Lease, Listener, Outcome, Store
from deployq.worker.logbuffer import LogBuffer
from worker_support import add_app, deploy


async def claimed(store: Store) -> Lease:
    await store.servers.add("builder", "unix:///var/run/docker.sock", capacity=1)
    app = await add_app(store, "https://git.example.com/team/app.git")
    await deploy(store, app)
    (lease,) = await store.leases.claim("test-worker", limit=1)
    return lease


async def test_lines_are_stored_in_order_redacted_and_collapsed(store: Store) -> None:
    lease = await claimed(store)
    logs = LogBuffer(store, lease.id, lease.attempt, redact=Redactor(["s3cret-value"]))
    logs.write("step one")
    logs.write("download 10%\r")
    logs.write("download 60%\r")
    logs.write("download 100%\n")
    logs.write("token is s3cret-value\nlast line")
    await logs.close()
    lines = [line.line for line in await store.logs.read(lease.id)]
    assert lines == ["step one", "download 100%", f"token is {MASK}", "last line"]
    assert [line.seq for line in await store.logs.read(lease.id)] == [1, 2, 3, 4]


async def test_a_burst_from_a_thread_is_flushed_in_batches_without_waiting_for_close(
    store: Store,
) -> None:
    lease = await claimed(store)
    seqs: list[int] = []
    done = asyncio.Event()
    listener = Listener(store.dsn, [CHANNEL_LOGS])

    async def follow() -> None:
        async for notice in listener:
            seqs.append(int(notice.payload["seq"]))
            if seqs[-1] >= 200:
                done.set()

    follower = asyncio.create_task(follow())
    await listener.connected.wait()
    logs = LogBuffer(store, lease.id, lease.attempt, flush_interval_s=30)

    def burst() -> None:
        for n in range(450):
            logs.write(f"line {n}")

    await asyncio.to_thread(burst)
    async with asyncio.timeout(10):
        await done.wait()  # the 200-line threshold flushed, not the 30 s timer
    await logs.close()  # and close stores the rest
    await listener.close()
    follower.cancel()
    await asyncio.gather(follower, return_exceptions=True)
    assert len(seqs) < 50  # batched: far fewer INSERTs than lines
    assert (await store.logs.read(lease.id))[-1].line == "line 449"


async def test_lines_of_an_attempt_that_is_no_longer_ours_are_dropped(store: Store) -> None:
    lease = await claimed(store)
    lost = asyncio.Event()
    logs = LogBuffer(store, lease.id, lease.attempt, on_lost=lost.set)
    logs.write("before")
    await logs.flush()
    finished = await store.leases.finish(lease, Outcome(JobStatus.SUCCEEDED))
    assert finished.status is JobStatus.SUCCEEDED
    logs.write("after the job ended")
    await logs.flush()
    assert lost.is_set() and logs.lost
    await logs.close()
    assert [line.line for line in await store.logs.read(lease.id)] == ["before"]


@pytest.mark.parametrize("text", ["", "\n"])
async def test_empty_writes_store_nothing_surprising(store: Store, text: str) -> None:
    lease = await claimed(store)
    logs = LogBuffer(store, lease.id, lease.attempt)
    logs.write(text)
    await logs.close()
    assert [line.line for line in await store.logs.read(lease.id)] == ([""] if text else [])
