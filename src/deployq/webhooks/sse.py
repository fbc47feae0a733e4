"""Live job logs over server-sent events.

One :class:`LogHub` per web process holds the only LISTEN connection (CHANNEL_LOGS and
CHANNEL_JOBS) and wakes the followers of the job a notification is about; each follower
then reads the lines after the last one it sent. Events: one per log line (``id:`` is the
line's seq, so a client resumes with ``Last-Event-ID``), then ``event: end`` with the job's
final status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp_sse import sse_response

from deployq.models import Job
from deployq.store import CHANNEL_JOBS, CHANNEL_LOGS, Listener, Store

log = logging.getLogger(__name__)

#: lines read per query while catching up
READ_BATCH = 1000
#: re-read this often even without a notification (a lost NOTIFY costs at most this much)
FOLLOW_FALLBACK_S = 15.0
#: how long a new follower waits for the LISTEN connection before reading anyway
LISTEN_READY_S = 5.0


class LogHub:
    """Fans notifications out to followers; the listener starts with the first follower."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._followers: dict[int, set[asyncio.Event]] = {}
        self._listener: Listener | None = None
        self._task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def follow(self, job_id: int) -> AsyncIterator[asyncio.Event]:
        """An event set whenever the job logs or changes; LISTEN is ready on entry (or late)."""
        wake = asyncio.Event()
        self._followers.setdefault(job_id, set()).add(wake)
        listener = self._start()
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LISTEN_READY_S):
                    await listener.connected.wait()
            yield wake
        finally:
            waiting = self._followers.get(job_id)
            if waiting is not None:
                waiting.discard(wake)
                if not waiting:
                    del self._followers[job_id]

    def _start(self) -> Listener:
        if self._listener is None:
            self._listener = Listener(
                self.dsn, (CHANNEL_LOGS, CHANNEL_JOBS), on_connect=self._wake_all
            )
            self._task = asyncio.create_task(self._run(self._listener))
        return self._listener

    async def _run(self, listener: Listener) -> None:
        async for notice in listener:
            key = "job" if notice.channel == CHANNEL_LOGS else "id"
            job_id = notice.payload.get(key)
            if isinstance(job_id, int):
                for wake in self._followers.get(job_id, ()):
                    wake.set()

    async def _wake_all(self) -> None:
        # notifications sent while disconnected are lost: everyone re-reads
        for waiting in self._followers.values():
            for wake in waiting:
                wake.set()

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _end_event(job: Job) -> str:
    return json.dumps({"id": job.id, "status": job.status.value, "error": job.error})


async def stream_logs(
    request: web.Request, store: Store, hub: LogHub, job_id: int, after: int
) -> web.StreamResponse:
    """Send the lines after ``after``, then follow until the job is final."""
    await store.jobs.get(job_id)  # 404 before the stream starts
    async with hub.follow(job_id) as wake, sse_response(request) as resp:
        try:
            while True:
                wake.clear()
                lines = await store.logs.read(job_id, after=after, limit=READ_BATCH)
                for line in lines:
                    await resp.send(line.line, id=str(line.seq))
                    after = line.seq
                if len(lines) == READ_BATCH:
                    continue
                job = await store.jobs.get(job_id)
                if job.status.is_final:
                    # lines written just before the job ended may have landed after our read
                    for line in await store.logs.read(job_id, after=after):
                        await resp.send(line.line, id=str(line.seq))
                    await resp.send(_end_event(job), event="end")
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FOLLOW_FALLBACK_S):
                        await wake.wait()
        except ConnectionResetError:
            log.debug("log follower of job #%d went away", job_id)
    return resp
