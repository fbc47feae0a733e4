"""What clients see of the queue: jobs, timelines, positions, wait reasons, statistics.

Computed here, in the store, so the CLI, the console and the REST API all show the same
position, the same estimate and the same words for why a job waits.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from deployq.errors import NotFound
from deployq.models import Job, JobEvent, JobStatus, Priority, QueuePosition, QueueStats
from deployq.store._job_common import StorePart
from deployq.store._queries import sql

#: how far back finished jobs count for the statistics and the estimates
RECENT_WINDOW = timedelta(hours=24)


class QueueReadPart(StorePart):
    """The read side of JobStore."""

    async def get(self, job_id: int) -> Job:
        """One job; NotFound when there is none."""
        async with self.store.connection() as conn:
            row = await (await conn.execute(sql("job_get"), {"id": job_id})).fetchone()
        if row is None:
            raise NotFound(f"no job #{job_id}; `deployq jobs` lists the jobs")
        return Job.model_validate(row)

    async def recent(
        self,
        *,
        status: list[JobStatus] | None = None,
        app: str | None = None,
        server: str | None = None,
        since: datetime | None = None,
        since_id: int | None = None,
        before_id: int | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Job]:
        """Newest first, filtered. Page with ``before_id`` (the last id of the previous
        page) or ``offset``; ``since`` keeps jobs enqueued at or after that moment."""
        params = {
            "statuses": [s.value for s in status] if status else None,
            "app": app or None,
            "server": server or None,
            "since": since,
            "since_id": since_id,
            "before_id": before_id,
            "limit": limit,
            "offset": offset,
        }
        async with self.store.connection() as conn:
            rows = await (await conn.execute(sql("jobs_recent"), params)).fetchall()
        return [Job.model_validate(r) for r in rows]

    async def events(self, job_id: int) -> list[JobEvent]:
        """The job's timeline, oldest first."""
        async with self.store.connection() as conn:
            rows = await (await conn.execute(sql("job_events"), {"job_id": job_id})).fetchall()
        return [JobEvent.model_validate(r) for r in rows]

    # -- statistics ------------------------------------------------------------------------

    async def stats(self) -> QueueStats:
        """Queue depth by priority, running jobs, server load, the last 24 h in numbers."""
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(sql("queue_stats"), {"window": RECENT_WINDOW})
            ).fetchone()
        assert row is not None
        by_priority = {p.name.lower(): 0 for p in Priority}
        for key, n in row["queued_by_priority"].items():
            by_priority[Priority(int(key)).name.lower()] = int(n)
        finished = {k: int(v) for k, v in row["finished"].items()}
        succeeded = finished.get("succeeded", 0)
        judged = succeeded + finished.get("failed", 0) + finished.get("timed_out", 0)
        return QueueStats(
            queued=sum(by_priority.values()),
            queued_by_priority=by_priority,
            running=int(row["running"]),
            servers=row["servers"],
            succeeded_24h=succeeded,
            failed_24h=finished.get("failed", 0),
            cancelled_24h=finished.get("cancelled", 0),
            timed_out_24h=finished.get("timed_out", 0),
            superseded_24h=finished.get("superseded", 0),
            success_rate_24h=round(succeeded / judged, 4) if judged else None,
            mean_duration_s=_float(row["mean_duration_s"]),
            p95_duration_s=_float(row["p95_duration_s"]),
            oldest_queued_age_s=_float(row["oldest_queued_age_s"]),
        )

    # -- queue position and estimated start ------------------------------------------------

    async def queue_position(self, job_id: int) -> QueuePosition | None:
        """Where a queued job stands and when it should start; None unless it is queued."""
        return (await self.queue_positions([job_id])).get(job_id)

    async def queue_positions(self, job_ids: list[int]) -> dict[int, QueuePosition]:
        """``queue_position`` for many jobs at once (the ones not queued are left out); the
        estimates are ``store.estimates``'."""
        return await self.store.estimates.queue_positions(list(job_ids))


def _float(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)
