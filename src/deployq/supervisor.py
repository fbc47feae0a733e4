"""Components side by side, each restarted on its own when it fails.

A component is ``async def run(stop: asyncio.Event)``: it runs until ``stop`` is set, then
winds down. One component's unexpected exception is logged and that component alone is
restarted after a capped backoff (1 s, doubling, at most 30 s; back to 1 s after it ran a
minute); the others keep running. A component that failed because PostgreSQL is unreachable
is restarted as soon as the database answers again. ``SystemExit`` (e.g. the listen address
is taken) still ends the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from deployq.db import DatabaseHealth
from deployq.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

Component = Callable[[asyncio.Event], Coroutine[Any, Any, None]]

RESTART_MIN_S = 1.0
RESTART_MAX_S = 30.0
#: a component that ran this long before failing starts again from RESTART_MIN_S
HEALTHY_AFTER_S = 60.0


def component_name(component: Component) -> str:
    """``WorkerPool.run`` -> ``WorkerPool``; ``web_component.<locals>.run`` -> ``web``."""
    name = getattr(component, "__qualname__", None) or repr(component)
    head = name.split(".<locals>", 1)[0].split(".", 1)[0]
    return head.removesuffix("_component") or name


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True as soon as ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return stop.is_set()


async def supervise(
    component: Component,
    stop: asyncio.Event,
    *,
    health: DatabaseHealth | None = None,
    name: str | None = None,
) -> None:
    """Run ``component`` until ``stop``, restarting it whenever it ends early."""
    name = name or component_name(component)
    delay = RESTART_MIN_S
    while not stop.is_set():
        started = time.monotonic()
        waited_for_db = False
        try:
            await component(stop)
            if stop.is_set():
                return
            log.error("%s ended on its own: restarting it in %gs", name, delay)
        except DatabaseUnavailable as exc:
            log.warning("%s stopped: %s; restarting it when the database answers", name, exc)
            if health is not None:
                waited_for_db = True
                await _until_up(health, stop)
        except Exception:
            log.exception("%s failed: restarting it in %gs (the rest keeps running)", name, delay)
        if time.monotonic() - started >= HEALTHY_AFTER_S:
            delay = RESTART_MIN_S
        if not waited_for_db:
            if await _wait(stop, delay):
                return
            delay = min(delay * 2, RESTART_MAX_S)


async def _until_up(health: DatabaseHealth, stop: asyncio.Event) -> None:
    stopping = asyncio.ensure_future(stop.wait())
    up = asyncio.ensure_future(health.wait_up())
    try:
        await asyncio.wait({stopping, up}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        up.cancel()


async def run_supervised(
    components: list[Component], stop: asyncio.Event, *, health: DatabaseHealth | None = None
) -> None:
    """Every component under :func:`supervise` until ``stop``; a ``SystemExit`` of one stops
    the others and leaves."""
    tasks = [
        asyncio.create_task(supervise(c, stop, health=health), name=f"supervise-{i}")
        for i, c in enumerate(components)
    ]
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    for task in done:
        error = task.exception()
        if error is not None:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise error
