"""The rescuer: takes back the jobs of workers that stopped answering, without ever letting a
server run more builds than its capacity.

An expired attempt is taken over first (``store.leases.take_expired``): the job stays
running, so the claim keeps counting its slot on the server. ``stop_build`` (the worker's
``worker.rescue.EngineStopper``) then has the engine stop the attempt's build and returns once
the engine reports none; only then is the job queued again (``requeue_taken``). The rescuer
renews its lease on the attempt meanwhile; should the rescuer die too, the lease runs out and
another rescuer takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from deployq.errors import DeployqError
from deployq.store._job_common import TakenAttempt
from deployq.store._retention import Component, wait_or_stop

if TYPE_CHECKING:
    from deployq.store._store import Store

log = logging.getLogger(__name__)

#: stops the build of a taken attempt on its engine; returns when none runs, with a note for
#: the job's timeline (or None)
StopBuild = Callable[[str, TakenAttempt], Coroutine[Any, Any, str | None]]


def rescuer_id() -> str:
    """The worker id a rescuer holds taken attempts under."""
    return f"rescuer@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


async def rescue_one(
    store: Store, rescuer: str, taken: TakenAttempt, stop_build: StopBuild | None
) -> bool:
    """Stop the attempt's build (``stop_build``), holding its lease meanwhile, then queue the
    job again. False when the attempt was no longer the rescuer's."""
    note = None
    if stop_build is not None:
        stopping: asyncio.Task[str | None] = asyncio.create_task(
            stop_build(rescuer, taken), name=f"rescue-{taken.id}"
        )
        try:
            while True:
                done, _ = await asyncio.wait({stopping}, timeout=store.settings.lease_ttl / 3)
                if done:
                    break
                with contextlib.suppress(DeployqError):  # the lease lasts a while yet
                    beat = await store.leases.heartbeat(rescuer, [taken.held])
                    if beat.lost:
                        return False
            note = stopping.result()
        finally:
            if not stopping.done():
                stopping.cancel()
                await asyncio.gather(stopping, return_exceptions=True)
    return await store.leases.requeue_taken(rescuer, taken, note=note) is not None


def rescuer_component(
    store: Store,
    *,
    stop_build: StopBuild | None = None,
    host_id: str | None = None,
    interval_s: float | None = None,
) -> Component:
    """Every lease TTL / 4: take the expired attempts and rescue each in a task of its own.

    Without ``stop_build`` the jobs are queued again at once (nothing asks an engine): for a
    store without workers, as in the queue's own tests. ``host_id``: the host this runs on
    (the unix:// engines it can look into).
    """

    async def run(stop: asyncio.Event) -> None:
        rescuer = rescuer_id()
        every = interval_s or store.settings.lease_ttl / 4
        running: dict[int, asyncio.Task[bool]] = {}  # job id -> its rescue
        try:
            while not await wait_or_stop(stop, every * random.uniform(0.8, 1.0)):
                try:
                    taken = await store.leases.take_expired(rescuer, host_id=host_id)
                except DeployqError as exc:
                    if store.health.up:  # an outage is logged once, by deployq.db.health
                        log.warning("rescue failed (will try again): %s", exc)
                    continue
                if taken:
                    log.warning(
                        "taking back %d job(s) whose worker stopped answering: %s",
                        len(taken),
                        ", ".join(f"#{t.id} attempt {t.attempt}" for t in taken),
                    )
                for attempt in taken:
                    if attempt.id in running:  # our own, whose lease ran out: still at it
                        continue
                    task = asyncio.create_task(_logged(store, rescuer, attempt, stop_build))
                    running[attempt.id] = task
                    task.add_done_callback(_forget(running, attempt.id))
        finally:
            for task in running.values():
                task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)

    return run


def _forget(
    running: dict[int, asyncio.Task[bool]], job_id: int
) -> Callable[[asyncio.Task[bool]], None]:
    def forget(_: asyncio.Task[bool]) -> None:
        running.pop(job_id, None)

    return forget


async def _logged(
    store: Store, rescuer: str, taken: TakenAttempt, stop_build: StopBuild | None
) -> bool:
    try:
        return await rescue_one(store, rescuer, taken, stop_build)
    except DeployqError as exc:  # the lease runs out: the next round takes it again
        log.warning("rescue of job #%s failed (will try again): %s", taken.id, exc)
        return False
