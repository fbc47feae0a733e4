"""The live feed of one process: one LISTEN, one reader, any number of subscribers.

A :class:`FeedHub` listens on the job and server channels; each notification (or, failing
one, every FALLBACK_S) makes it read the new rows of ``job_events`` once, in feed order
(``store.feed``), and hand each event to every subscriber. Handing over never waits: a
subscriber more than its buffer behind (a client that stopped reading) is dropped, with the
id it can resume from, and the others go on. A subscriber that gives the id of the last
event it saw first gets what it missed, read from ``job_events``, then the live events.
Because the hub reads by cursor, a lost NOTIFY or a reconnection loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from deployq.errors import DeployqError
from deployq.store import CHANNEL_JOBS, CHANNEL_SERVERS, Cursor, FeedEvent, Listener, Store

log = logging.getLogger(__name__)

#: events read per query
READ_BATCH = 500
#: read again this often even without a notification
FALLBACK_S = 5.0
#: first and longest pause before reading rows that wait for an older transaction to end
HELD_BACK_MIN_S = 0.02
HELD_BACK_MAX_S = 1.0
#: pause after the database failed a read
READ_ERROR_PAUSE_S = 1.0
#: seconds close() waits for the hub's tasks to end once cancelled
CLOSE_WAIT_S = 5.0


@dataclass(frozen=True)
class FeedFilter:
    """Which events a subscriber wants: of these apps, leaving jobs in these statuses.

    Server events have no app nor status: they pass only when neither is asked for."""

    apps: frozenset[str] | None = None
    statuses: frozenset[str] | None = None

    def matches(self, event: FeedEvent) -> bool:
        if self.apps is not None and event.app not in self.apps:
            return False
        return self.statuses is None or event.status in self.statuses


class Dropped(DeployqError):
    """The subscriber fell too far behind and was dropped; resume from ``last_id``."""

    code = "dropped"

    def __init__(self, message: str, *, last_id: int | None) -> None:
        super().__init__(message)
        self.last_id = last_id


class Subscription:
    """What one subscriber receives: ``async for event in sub.events()``.

    ``reset`` says why the feed could not resume where the subscriber asked (the event is
    no longer kept); it then starts from now.
    """

    def __init__(self, flt: FeedFilter, buffer: int, live_from: Cursor) -> None:
        self.filter = flt
        self.buffer = buffer
        self.live_from = live_from
        self.last_id: int | None = None
        self.reset: str | None = None
        self.dropped: Dropped | None = None
        self.gone = asyncio.Event()
        self._queue: asyncio.Queue[FeedEvent] = asyncio.Queue()
        self._resume: Cursor | None = None

    def offer(self, event: FeedEvent) -> None:
        """Queue a live event (never waits); drop the subscriber when it is too far behind."""
        if self.dropped is not None or not self.filter.matches(event):
            return
        if self._queue.qsize() >= self.buffer:
            self.dropped = Dropped(
                f"dropped: this client fell more than {self.buffer} events behind; "
                "reconnect with Last-Event-ID to resume",
                last_id=self.last_id,
            )
            self.gone.set()
            return
        self._queue.put_nowait(event)

    async def events(
        self, store: Store, *, idle_s: float | None = None
    ) -> AsyncIterator[FeedEvent | None]:
        """Missed events first (when resuming), then live ones; None after ``idle_s``
        without one (time for a keep-alive). Raises Dropped once dropped."""
        cursor = self._resume
        while cursor is not None and cursor < self.live_from:
            page = await store.feed.after(cursor, limit=READ_BATCH)
            missed = [e for e in page.events if e.cursor <= self.live_from]
            for event in missed:
                if self.filter.matches(event):
                    self.last_id = event.id
                    yield event
            cursor = missed[-1].cursor if len(missed) == READ_BATCH else None
        while True:
            if self.dropped is not None:
                raise self.dropped
            try:
                async with asyncio.timeout(idle_s):
                    event = await self._queue.get()
            except TimeoutError:
                yield None
                continue
            if self.dropped is not None:
                raise self.dropped
            self.last_id = event.id
            yield event


class FeedHub:
    """One per process (the web service, ``deployq watch``); starts with its first subscriber."""

    def __init__(self, store: Store, *, buffer: int | None = None) -> None:
        self.store = store
        self.buffer = buffer or store.settings.feed_buffer
        # a page never fills a subscriber's buffer at once: it gets to send between pages
        self.read_batch = max(1, min(READ_BATCH, self.buffer // 2))
        self.cursor: Cursor | None = None
        self._subscribers: set[Subscription] = set()
        self._wake = asyncio.Event()
        self._listener: Listener | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._starting = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def subscribe(
        self, flt: FeedFilter | None = None, *, after: int | None = None
    ) -> AsyncIterator[Subscription]:
        """A subscription to events from now on or, with ``after``, from the event after
        that id (Last-Event-ID; 0: every event kept)."""
        await self._start()
        resume: Cursor | None = None
        if after == 0:  # from the oldest event kept
            resume = Cursor(0, 0)
        elif after is not None:
            resume = await self.store.feed.cursor_of(after)
        assert self.cursor is not None
        sub = Subscription(flt or FeedFilter(), self.buffer, self.cursor)
        if after is not None:
            if resume is None:
                sub.reset = f"event {after} is not kept any more; the feed goes on from now"
            else:
                sub._resume = resume
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    async def _start(self) -> None:
        async with self._starting:
            if self._tasks:
                return
            self.cursor = await self.store.feed.head()
            self._listener = Listener(
                self.store.dsn, (CHANNEL_JOBS, CHANNEL_SERVERS), on_connect=self._poke
            )
            self._tasks = [
                asyncio.create_task(self._listen(self._listener), name="deployq-feed-listen"),
                asyncio.create_task(self._read(), name="deployq-feed-read"),
            ]

    async def _poke(self) -> None:
        self._wake.set()

    async def _listen(self, listener: Listener) -> None:
        async for _ in listener:
            self._wake.set()

    async def _read(self) -> None:
        pause: float | None = None
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause if pause is not None else FALLBACK_S):
                    await self._wake.wait()
            self._wake.clear()
            assert self.cursor is not None
            try:
                page = await self.store.feed.after(self.cursor, limit=self.read_batch)
            except DeployqError as exc:
                log.warning("the live feed cannot read events: %s", exc.message)
                pause = READ_ERROR_PAUSE_S
                continue
            self.cursor = page.cursor
            self._fan_out(page.events)
            if len(page.events) == self.read_batch:
                pause = 0.0
            elif page.held_back:
                pause = min(HELD_BACK_MAX_S, max(HELD_BACK_MIN_S, (pause or 0.0) * 2))
            else:
                pause = None

    def _fan_out(self, events: Iterable[FeedEvent]) -> None:
        subscribers = list(self._subscribers)
        for event in events:
            for sub in subscribers:
                sub.offer(event)

    async def close(self) -> None:
        """Stop the hub's tasks and its LISTEN connection, waiting at most ``CLOSE_WAIT_S``
        for them: a Ctrl-C of `deployq watch` must end the process, whatever a task is in the
        middle of (and a cancellation of the caller is not swallowed here)."""
        for task in self._tasks:
            task.cancel()
        if self._listener is not None:
            await self._listener.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=CLOSE_WAIT_S)
        self._tasks = []
