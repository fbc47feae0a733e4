"""Retention (``store.retention``): prune, and the pruner loop the worker side runs.

Retention keeps the ``jobs`` rows (the history: who built what, when, with which result
and digest stay queryable forever, and they are small) and deletes, for jobs finished
before the cutoff, their log lines, their timeline events, their notification outbox
rows that are done (sent or failed) and their Harbor scan worklist rows (``job_scans``) that
are finished (the result stays in ``jobs.scan_summary``). Each pruned job is marked
``pruned_at``. Webhook
deliveries lose their body (kept for replay) after the body retention, and keep their row:
``body_pruned_at`` and ``body_bytes`` say when and how much went. Work goes in
batches of PRUNE_BATCH_JOBS jobs, one short transaction each, so pruning a year of history
never holds locks for long; batches lock their jobs with SKIP LOCKED, so several workers may
prune at once without doing the same work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from deployq.errors import DeployqError
from deployq.models import ImageInUse, PushedImage
from deployq.store._job_common import StorePart
from deployq.store._queries import sql

if TYPE_CHECKING:
    from deployq.store._store import Store

log = logging.getLogger(__name__)

#: jobs whose logs/events one prune transaction deletes
PRUNE_BATCH_JOBS = 200
#: webhook delivery bodies one prune transaction drops (each up to 25 MiB of TOAST)
PRUNE_BATCH_BODIES = 100
#: how often the worker-side pruner runs (the first run is a minute after start)
PRUNE_INTERVAL_S = 3600.0
PRUNE_FIRST_DELAY_S = 60.0

#: ``async def run(stop)``, as deployq.service.Component (the store does not import service)
Component = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class Retention(StorePart):
    """``store.retention``: ``prune``."""

    async def prune(
        self, older_than_s: float, *, batch_size: int = PRUNE_BATCH_JOBS, dry_run: bool = False
    ) -> dict[str, int]:
        """Delete the logs, events, done notifications and finished scan rows of jobs finished
        more than ``older_than_s`` ago (the job rows stay), and server events as old. Returns
        what was deleted (``dry_run``: what would be, deleting nothing), by kind."""
        totals = {"jobs": 0, "log_lines": 0, "events": 0, "notifications": 0, "scans": 0}
        params = {"age": timedelta(seconds=older_than_s), "batch": batch_size}
        if dry_run:
            async with self.store.connection() as conn:
                row = await (await conn.execute(sql("prune_count"), params)).fetchone()
            assert row is not None
            totals = {key: int(row[key]) for key in totals}
            totals["events"] += await self.store.feed.prune_server_events(
                older_than_s, dry_run=True
            )
            return totals
        while True:
            async with self.store.connection() as conn:
                row = await (await conn.execute(sql("prune_batch"), params)).fetchone()
            assert row is not None
            for key in totals:
                totals[key] += int(row[key])
            if int(row["jobs"]) < batch_size:
                break
        # the feed's server events belong to no job: they go by age alone
        totals["events"] += await self.store.feed.prune_server_events(older_than_s)
        return totals

    async def prune_bodies(
        self, older_than_s: float, *, batch_size: int = PRUNE_BATCH_BODIES, dry_run: bool = False
    ) -> dict[str, int]:
        """Drop the bodies of webhook deliveries received more than ``older_than_s`` ago (the
        rows stay, with ``body_pruned_at`` and ``body_bytes``). Returns
        ``{"deliveries": n, "bytes": b}`` pruned (``dry_run``: that would be)."""
        params = {"age": timedelta(seconds=older_than_s), "batch": batch_size}
        if dry_run:
            async with self.store.connection() as conn:
                row = await (await conn.execute(sql("prune_bodies_count"), params)).fetchone()
            assert row is not None
            return {"deliveries": int(row["deliveries"]), "bytes": int(row["bytes"])}
        totals = {"deliveries": 0, "bytes": 0}
        while True:
            async with self.store.connection() as conn:
                row = await (await conn.execute(sql("prune_bodies_batch"), params)).fetchone()
            assert row is not None
            totals["deliveries"] += int(row["deliveries"])
            totals["bytes"] += int(row["bytes"])
            if int(row["deliveries"]) < batch_size:
                return totals

    async def pushed_images(self, app_id: int) -> list[PushedImage]:
        """The images the app's builds pushed, newest job first (registry tag retention)."""
        async with self.store.connection() as conn:
            rows = await (await conn.execute(sql("pushed_images"), {"app_id": app_id})).fetchall()
        return [PushedImage.model_validate(r) for r in rows]

    async def images_in_use(self, app_name: str, *, keep_releases: int) -> list[ImageInUse]:
        """What runs on the app's targets, the ``keep_releases`` releases before it on each
        target, and what its queued or running jobs will deploy: never to be deleted."""
        params = {"app_name": app_name, "keep": keep_releases}
        async with self.store.connection() as conn:
            rows = await (await conn.execute(sql("images_in_use"), params)).fetchall()
        return [ImageInUse.model_validate(r) for r in rows]


def prune_component(
    store: Store,
    *,
    interval_s: float = PRUNE_INTERVAL_S,
    first_delay_s: float = PRUNE_FIRST_DELAY_S,
) -> Component:
    """A loop that prunes past ``settings.retention`` (and delivery bodies past
    ``settings.delivery_body_retention``) every ``interval_s`` until stopped."""

    async def run(stop: asyncio.Event) -> None:
        delay = first_delay_s
        while not await wait_or_stop(stop, delay):
            try:
                counts = await store.retention.prune(store.settings.retention)
                if counts["jobs"]:
                    log.info("pruned logs and events of %(jobs)d finished jobs", counts)
                bodies = await store.retention.prune_bodies(store.settings.delivery_body_retention)
                if bodies["deliveries"]:
                    log.info(
                        "pruned the bodies of %(deliveries)d webhook deliveries (%(bytes)d bytes)",
                        bodies,
                    )
            except DeployqError as exc:
                if store.health.up:  # an outage is logged once, by deployq.db.health
                    log.warning("prune failed (will try again): %s", exc)
            delay = interval_s * random.uniform(0.9, 1.1)

    return run


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True as soon as ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()
