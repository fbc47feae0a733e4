"""The job log writer: redacted, carriage-return-collapsed lines, stored in batches.

Builders call :meth:`LogBuffer.write` (a ``LogSink``) for every line, possibly from a worker
thread (the docker SDK runs in ``asyncio.to_thread``). Lines are stored by one flusher task
every ``FLUSH_INTERVAL_S`` or as soon as ``FLUSH_LINES`` are waiting, whichever comes first,
so a chatty build costs a few INSERTs a second instead of one per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from deployq.errors import DeployqError, LostJob
from deployq.redact import Redactor

if TYPE_CHECKING:
    from deployq.store import Store

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.2
FLUSH_LINES = 200
#: longer lines are cut: a minified bundle echoed by a build is not worth storing whole
MAX_LINE_CHARS = 8192
#: lines kept in memory while the database does not answer; older ones are dropped
MAX_PENDING_LINES = 20_000


def collapse_cr(line: str) -> str:
    """``"10%\\r50%\\r100%"`` -> ``"100%"``: a progress bar's last state (its last non-empty
    carriage-return segment)."""
    if "\r" not in line:
        return line
    for segment in reversed(line.split("\r")):
        if segment.strip():
            return segment
    return ""


class LogBuffer:
    """Job log lines of one attempt, written in batches; fenced on the attempt.

    When the store reports the attempt is no longer ours (:class:`LostJob`), lines are
    dropped from then on and ``on_lost`` is called once.
    """

    def __init__(
        self,
        store: Store,
        job_id: int,
        attempt: int,
        *,
        redact: Redactor | None = None,
        on_lost: Callable[[], None] | None = None,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        flush_lines: int = FLUSH_LINES,
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.attempt = attempt
        self.redact = redact or Redactor()
        self.on_lost = on_lost
        self.flush_interval_s = flush_interval_s
        self.flush_lines = flush_lines
        self.lost = False
        self.last_seq = 0
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._partial = ""
        self._dropped = 0
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._closed = False
        self._task = asyncio.create_task(self._flusher(), name=f"job-{job_id}-log")

    # -- writing (any thread) --------------------------------------------------------------

    def write(self, text: str) -> None:
        """Add one or more lines. A piece that ends in ``\\r`` without a newline is a progress
        bar in flight: it is held back and replaced by the next write."""
        if self._closed or self.lost:
            return
        with self._lock:
            text = self._partial + text
            self._partial = ""
            pieces = text.split("\n")
            last = pieces.pop()
            if last.endswith("\r"):
                self._partial = last
            elif last:
                pieces.append(last)
            for piece in pieces:
                self._add(piece)
            full = len(self._pending) >= self.flush_lines
        if full:
            self._wake_flusher()

    def _add(self, raw: str) -> None:
        line = self.redact(collapse_cr(raw).rstrip())
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS] + " …(cut)"
        self._pending.append(line)
        if len(self._pending) > MAX_PENDING_LINES:
            del self._pending[0]
            self._dropped += 1

    def _wake_flusher(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self._wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._loop.call_soon_threadsafe(self._wake.set)

    # -- storing (event loop) --------------------------------------------------------------

    async def flush(self) -> None:
        """Store what is waiting now."""
        async with self._flush_lock:
            lines = self._take()
            if self.lost or not lines:
                return
            try:
                self.last_seq = await self.store.logs.append(
                    self.job_id, lines, attempt=self.attempt
                )
            except LostJob:
                self._mark_lost()
            except (DeployqError, OSError) as exc:
                if self.store.health.up:  # an outage is logged once, by deployq.db.health
                    log.warning(
                        "job #%s: storing %d log lines failed (%s); retrying",
                        self.job_id,
                        len(lines),
                        exc,
                    )
                with self._lock:
                    self._pending[:0] = lines

    def _take(self) -> list[str]:
        """The lines waiting now, taken out (with a line saying how many were dropped)."""
        with self._lock:
            lines, self._pending = self._pending, []
            dropped, self._dropped = self._dropped, 0
        if dropped and lines:
            lines.insert(0, f"[deployq: {dropped} log lines dropped while the database was away]")
        return lines

    async def _flusher(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            await self.flush()

    def _mark_lost(self) -> None:
        if not self.lost:
            self.lost = True
            if self.on_lost is not None:
                self.on_lost()

    async def rest(self) -> list[str]:
        """Stop the flusher and hand back the lines not stored yet (including a held-back
        progress line) instead of storing them: the job's finish stores them with its outcome
        (store.leases.finish), so the end of a job is one round trip. Nothing once lost."""
        await self._stop()
        async with self._flush_lock:  # a flush still in flight lands first
            lines = self._take()
        return [] if self.lost else lines

    async def close(self, *, discard: bool = False) -> None:
        """Stop the flusher; store what is left (including a held-back progress line) unless
        ``discard``."""
        if discard:
            self._closed = self.lost = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            return
        await self._stop()
        await self.flush()

    async def _stop(self) -> None:
        """Stop the flusher (a flush it has started lands) and queue the held-back line."""
        self._closed = True
        self._wake.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with self._lock:
            if self._partial:
                self._add(self._partial)
                self._partial = ""
