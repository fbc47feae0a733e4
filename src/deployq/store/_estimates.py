"""``store.estimates``: expected durations and start times of queued and running jobs.

The one home of the estimates that ``job show``, the API, the console and the ``started``
e-mail show: three reads here, the simulation in ``deployq.estimates``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from deployq.db import Connection
from deployq.estimates import (
    DEFAULT_DURATION_S,
    DURATION_SAMPLE,
    Queued,
    Running,
    expected_starts,
)
from deployq.models import Estimate, QueuePosition
from deployq.store._queries import sql

if TYPE_CHECKING:
    from deployq.store._store import Store


@dataclass(frozen=True)
class Usual:
    """An app's usual build time and how many builds it is the median of."""

    duration_s: float
    builds: int


class EstimateStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def usual_durations(
        self, app_ids: list[int | None], *, conn: Connection | None = None
    ) -> dict[int | None, Usual]:
        """app id -> its usual build time; the None key: every app's (the fallback). With
        ``conn``, read inside the caller's transaction."""
        wanted = sorted({a for a in app_ids if a is not None})
        params = {"app_ids": [None, *wanted], "last": DURATION_SAMPLE}
        if conn is None:
            async with self.store.connection() as own:
                rows = await (await own.execute(sql("estimate_durations"), params)).fetchall()
        else:
            rows = await (await conn.execute(sql("estimate_durations"), params)).fetchall()
        found = {r["app_id"]: r for r in rows}
        overall = found.get(None)
        fallback = Usual(
            round(float(overall["median_s"]), 1)
            if overall and overall["median_s"] is not None
            else DEFAULT_DURATION_S,
            0,
        )
        usual: dict[int | None, Usual] = {None: fallback}
        for app_id in wanted:
            row = found.get(app_id)
            if row is not None and row["median_s"] is not None:
                usual[app_id] = Usual(round(float(row["median_s"]), 1), int(row["builds"]))
            else:
                usual[app_id] = fallback
        return usual

    async def for_jobs(
        self, job_ids: list[int], *, now: datetime | None = None
    ) -> dict[int, Estimate]:
        """The estimates of those of ``job_ids`` that are queued or running."""
        estimates, _ = await self._simulate(job_ids, now)
        return estimates

    async def queue_positions(
        self, job_ids: list[int], *, now: datetime | None = None
    ) -> dict[int, QueuePosition]:
        """Where the queued ones of ``job_ids`` stand, and when they should start."""
        _, positions = await self._simulate(job_ids, now)
        return positions

    async def start_times(self, now: datetime | None = None) -> dict[int, float]:
        """Seconds from ``now`` (default: the database's) until each queued job should
        start; empty when no healthy server takes jobs."""
        rows, head = await self._queue(now)
        if not rows:
            return {}
        starts, _ = await self._starts(rows, head)
        return starts

    async def _queue(self, now: datetime | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        async with self.store.connection() as conn:
            head = await (await conn.execute(sql("estimate_capacity"), {"now": now})).fetchone()
            assert head is not None
            rows = await (
                await conn.execute(sql("estimate_queue"), {"now": head["now"]})
            ).fetchall()
        return rows, head

    async def _starts(
        self, rows: list[dict[str, Any]], head: dict[str, Any]
    ) -> tuple[dict[int, float], dict[int | None, Usual]]:
        usual = await self.usual_durations([r["app_id"] for r in rows])
        starts = expected_starts(
            int(head["capacity"]),
            [
                Running(int(r["id"]), r["app_id"], float(r["elapsed_s"]))
                for r in rows
                if r["status"] == "running"
            ],
            [
                Queued(int(r["id"]), r["app_id"], float(r["due_in_s"]), int(r["concurrency"]))
                for r in rows
                if r["status"] == "queued"
            ],
            {app_id: u.duration_s for app_id, u in usual.items()},
            fallback_s=usual[None].duration_s,
        )
        return starts, usual

    async def _simulate(
        self, job_ids: list[int], now: datetime | None
    ) -> tuple[dict[int, Estimate], dict[int, QueuePosition]]:
        if not job_ids:
            return {}, {}
        rows, head = await self._queue(now)
        wanted = set(job_ids)
        if not wanted & {int(r["id"]) for r in rows}:
            return {}, {}
        starts, usual = await self._starts(rows, head)
        at: datetime = head["now"]
        estimates: dict[int, Estimate] = {}
        positions: dict[int, QueuePosition] = {}
        for row in rows:
            job_id = int(row["id"])
            if job_id not in wanted:
                continue
            known = usual.get(row["app_id"], usual[None])
            if row["status"] == "running":
                estimates[job_id] = _estimate(job_id, known, row["started_at"], at)
                continue
            wait = round(starts[job_id], 1) if job_id in starts else None
            start = at + timedelta(seconds=wait) if wait is not None else None
            estimates[job_id] = _estimate(job_id, known, start, at)
            positions[job_id] = QueuePosition(
                job_id=job_id,
                position=int(row["position"]),
                ahead=int(row["position"]) - 1,
                estimated_start=start,
                estimated_wait_s=wait,
                expected_duration_s=known.duration_s,
            )
        return estimates, positions


def _estimate(job_id: int, usual: Usual, start: datetime | None, now: datetime) -> Estimate:
    finish = start + timedelta(seconds=usual.duration_s) if start is not None else None
    return Estimate(
        job_id=job_id,
        expected_duration_s=usual.duration_s,
        based_on=usual.builds,
        expected_start=start,
        expected_finish=max(finish, now) if finish is not None else None,
    )
