"""Whether PostgreSQL answers, as a state rather than an error.

Losing the database is something deployq waits out: the pool (``deployq.db.pool``) marks it
down at the first sign (one log line), probes it every 0.25 s, and marks it up when it answers
again (one log line), running the reconnect hooks: the spool replayer wakes, the worker renews
its leases and claims, loops that waited resume. Components ask :meth:`DatabaseHealth.wait_up`
instead of retrying on a timer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]


class DatabaseHealth:
    """Up or down, the moment it changed, and what to run when it comes back."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.up = True
        self.reason: str | None = None
        #: monotonic time of the last transition to down
        self.down_since: float | None = None
        #: how many outages this process saw
        self.outages = 0
        self._hooks: list[Hook] = []
        self._up_event: asyncio.Event | None = None
        self._down_event: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        if self._up_event is None:
            self._up_event = asyncio.Event()
            if self.up:
                self._up_event.set()
        return self._up_event

    def _down(self) -> asyncio.Event:
        if self._down_event is None:
            self._down_event = asyncio.Event()
            if not self.up:
                self._down_event.set()
        return self._down_event

    def on_reconnect(self, hook: Hook) -> Callable[[], None]:
        """Run ``hook`` each time the database comes back; returns the way to remove it."""
        self._hooks.append(hook)

        def remove() -> None:
            if hook in self._hooks:
                self._hooks.remove(hook)

        return remove

    def mark_down(self, reason: str) -> None:
        if not self.up:
            return
        self.up = False
        self.reason = reason
        self.down_since = time.monotonic()
        self.outages += 1
        self._event().clear()
        self._down().set()
        log.warning(
            "PostgreSQL at %s is unreachable (%s): deployq keeps running and waits for it",
            self.where,
            reason,
        )

    async def mark_up(self, server: str | None = None) -> None:
        """Up again; ``server`` (``host:port``) is the one that answered, named in the log
        line when the DSN lists several (after a failover it is the promoted standby)."""
        if self.up:
            return
        self.up = True
        down_for = time.monotonic() - (self.down_since or time.monotonic())
        self.reason = None
        self._down().clear()
        self._event().set()
        via = f" (answered by {server})" if server and "," in self.where else ""
        log.warning("PostgreSQL at %s is back after %.1fs%s", self.where, down_for, via)
        await self._run_hooks()

    async def moved(self, old: str, new: str) -> None:
        """The connections broke but the database answers at once, from another server (a
        standby promoted before this process noticed): no outage to wait out, but what a
        reconnect does (renew leases, claim, replay the spool) is due all the same."""
        log.warning(
            "PostgreSQL at %s is now answered by %s instead of %s (a failover); reconnected",
            self.where,
            new,
            old,
        )
        await self._run_hooks()

    async def _run_hooks(self) -> None:
        for hook in list(self._hooks):
            try:
                await hook()
            except Exception:  # one hook failing must not keep the others from running
                log.exception("a reconnect hook failed")

    async def wait_down(self) -> None:
        """Until the database is found down (tests, and the console's banner)."""
        await self._down().wait()

    async def wait_up(self, timeout_s: float | None = None) -> bool:
        """Until the database is up (True), or ``timeout_s`` passed (False)."""
        if self.up:
            return True
        try:
            async with asyncio.timeout(timeout_s):
                await self._event().wait()
        except TimeoutError:
            return False
        return True
