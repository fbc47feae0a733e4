"""Following a job's log live, the one home: ``deployq logs -f``, the SSE endpoint and the
console all read new lines with :class:`LogFollower` (the console reads text only:
:meth:`LogFollower.text`, since it shows thousands of lines at once).

A follower reads the lines after the last one it has, in batches, then waits until it is
woken and reads again; it ends once the job is final and every line is read. The job is
read *before* its lines, so a final status seen means no line can follow the ones read.
What wakes it is up to the caller: :class:`LogWaker` holds one LISTEN connection
(CHANNEL_LOGS and CHANNEL_JOBS) and wakes the followers of the job a notification is about
(the CLI, the web service); the console, which listens to everything already, calls
:meth:`LogFollower.wake` itself. A follower also re-reads every ``fallback_s`` seconds, so
a lost notification costs at most that much.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

from deployq.models import Job, LogLine
from deployq.store import CHANNEL_JOBS, CHANNEL_LOGS, Listener, Notice, Store

#: lines read per query while catching up
READ_BATCH = 1000
#: re-read this often even without a notification (a lost NOTIFY costs at most this much)
FOLLOW_FALLBACK_S = 15.0
#: how long a new follower waits for the LISTEN connection before reading anyway
LISTEN_READY_S = 5.0

T = TypeVar("T")
#: reads a job's log: (job id, after seq, limit) -> (seq of the last line read, the lines)
Reader = Callable[[int, int, int], Awaitable[tuple[int, list[T]]]]


class LogFollower(Generic[T]):
    """The lines of one job's log, batch by batch, until the job is final.

    ``async for lines in follower`` yields non-empty lists of lines (:class:`LogLine` from
    :meth:`lines`, ``str`` from :meth:`text`); afterwards
    ``final`` is the job in its final state. With ``keep_last``, a follower told (by
    :meth:`wake` with a seq) that it is more than that many lines behind skips to the last
    ``keep_last`` lines instead of reading them all (a view that keeps no more).
    """

    def __init__(
        self,
        store: Store,
        job_id: int,
        read: Reader[T],
        *,
        after: int = 0,
        keep_last: int | None = None,
        batch: int = READ_BATCH,
        fallback_s: float = FOLLOW_FALLBACK_S,
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.after = after
        """Seq of the last line read."""
        self.final: Job | None = None
        self._read = read
        self._wake = asyncio.Event()
        self._keep_last = keep_last
        self._batch = batch
        self._fallback_s = fallback_s
        self._announced = after

    @staticmethod
    def lines(store: Store, job_id: int, **options: Any) -> LogFollower[LogLine]:
        """A follower that yields :class:`LogLine` (seq, time, stream and text)."""

        async def read(job_id: int, after: int, limit: int) -> tuple[int, list[LogLine]]:
            lines = await store.logs.read(job_id, after=after, limit=limit)
            return (lines[-1].seq if lines else after), lines

        return LogFollower(store, job_id, read, **options)

    @staticmethod
    def text(store: Store, job_id: int, **options: Any) -> LogFollower[str]:
        """A follower that yields the lines' text only."""

        async def read(job_id: int, after: int, limit: int) -> tuple[int, list[str]]:
            return await store.console.log_lines(job_id, after=after, limit=limit)

        return LogFollower(store, job_id, read, **options)

    def wake(self, seq: int | None = None) -> None:
        """Read again now; ``seq`` is the job's last log line when the caller knows it."""
        if seq is not None:
            self._announced = max(self._announced, seq)
        self._wake.set()

    async def __aiter__(self) -> AsyncIterator[list[T]]:
        while True:
            self._wake.clear()
            job = await self.store.jobs.get(self.job_id)
            async for lines in self._catch_up():
                yield lines
            if job.status.is_final:
                self.final = job
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._fallback_s):
                    await self._wake.wait()

    async def _catch_up(self) -> AsyncIterator[list[T]]:
        while True:
            if self._keep_last is not None and self._announced - self.after > self._keep_last:
                self.after = self._announced - self._keep_last
            last, lines = await self._read(self.job_id, self.after, self._batch)
            if lines:
                self.after = last
                yield lines
            if len(lines) < self._batch:
                return


class LogWaker:
    """One LISTEN connection that wakes the followers of the job each notification is
    about, and all of them after a reconnection (notifications sent meanwhile are lost).
    It connects with the first follower; :meth:`close` it when done."""

    def __init__(self, dsn: str, *, fallback_s: float = FOLLOW_FALLBACK_S) -> None:
        self.dsn = dsn
        self.fallback_s = fallback_s
        self._followers: dict[int, set[LogFollower[LogLine]]] = {}
        self._listener: Listener | None = None
        self._task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def follow(
        self, store: Store, job_id: int, *, after: int = 0
    ) -> AsyncIterator[LogFollower[LogLine]]:
        """A follower of ``job_id`` woken by this connection; LISTEN is ready on entry (or
        :data:`LISTEN_READY_S` passed: the follower's fallback re-read covers the gap)."""
        follower = LogFollower.lines(store, job_id, after=after, fallback_s=self.fallback_s)
        self._followers.setdefault(job_id, set()).add(follower)
        listener = self._start()
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LISTEN_READY_S):
                    await listener.connected.wait()
            yield follower
        finally:
            waiting = self._followers.get(job_id)
            if waiting is not None:
                waiting.discard(follower)
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
            job_id, seq = _about(notice)
            for follower in self._followers.get(job_id, ()) if job_id is not None else ():
                follower.wake(seq)

    async def _wake_all(self) -> None:
        for waiting in self._followers.values():
            for follower in waiting:
                follower.wake()

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _about(notice: Notice) -> tuple[int | None, int | None]:
    """(job id, last log seq) of a CHANNEL_LOGS or CHANNEL_JOBS notification."""
    if notice.channel == CHANNEL_LOGS:
        job_id, seq = notice.payload.get("job"), notice.payload.get("seq")
        return (job_id if isinstance(job_id, int) else None), (
            seq if isinstance(seq, int) else None
        )
    job_id = notice.payload.get("id")
    return (job_id if isinstance(job_id, int) else None), None
