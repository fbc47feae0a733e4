"""What clients see of the queue: jobs, timelines, positions, wait reasons, statistics.

Computed here, in the store, so the CLI, the console and the REST API all show the same
position, the same estimate and the same words for why a job waits.
"""

from __future__ import annotations

import builtins
from datetime import datetime, timedelta
from typing import Any

from deployq.errors import NotFound
from deployq.models import Job, JobStatus, Priority, QueuePosition, QueueStats
from deployq.store._job_common import JOB_SELECT, StorePart

#: how far back finished jobs count for the statistics and the estimates
RECENT_WINDOW = timedelta(hours=24)

_STATS = """
SELECT
  (SELECT coalesce(jsonb_object_agg(priority, n), '{}') FROM (
     SELECT priority, count(*) AS n FROM jobs WHERE status = 'queued' GROUP BY priority) q)
     AS queued_by_priority,
  (SELECT count(*) FROM jobs WHERE status = 'running') AS running,
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
      'name', s.name, 'capacity', s.capacity, 'running', r.n, 'healthy', s.healthy,
      'draining', s.draining, 'arch', s.arch,
      'load', CASE WHEN s.capacity > 0 THEN round(r.n::numeric / s.capacity, 3) END)
      ORDER BY s.name), '[]')
     FROM build_servers s CROSS JOIN LATERAL (
       SELECT count(*) AS n FROM jobs j WHERE j.server_id = s.id AND j.status = 'running') r)
     AS servers,
  (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM (
     SELECT status, count(*) AS n FROM jobs WHERE finished_at > now() - %(window)s
     GROUP BY status) f) AS finished,
  (SELECT avg(d) FROM durations) AS mean_duration_s,
  (SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY d) FROM durations) AS p95_duration_s,
  (SELECT extract(epoch FROM now() - min(enqueued_at))::float8 FROM jobs
    WHERE status = 'queued') AS oldest_queued_age_s
"""
_DURATIONS = """
WITH durations AS (
  SELECT extract(epoch FROM finished_at - started_at)::float8 AS d FROM jobs
  WHERE finished_at > now() - %(window)s AND started_at IS NOT NULL
    AND status IN ('succeeded', 'failed', 'timed_out'))
"""


class QueueReadPart(StorePart):
    """The read side of JobStore."""

    async def get(self, job_id: int) -> Job:
        """One job; NotFound when there is none."""
        async with self.store.connection() as conn:
            row = await (await conn.execute(JOB_SELECT + " WHERE j.id = %s", (job_id,))).fetchone()
        if row is None:
            raise NotFound(f"no job #{job_id}; `deployq jobs` lists the jobs")
        return Job.model_validate(row)

    async def list(
        self,
        *,
        status: builtins.list[JobStatus] | None = None,
        app: str | None = None,
        server: str | None = None,
        since: datetime | None = None,
        since_id: int | None = None,
        before_id: int | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> builtins.list[Job]:
        """Newest first, filtered. Page with ``before_id`` (the last id of the previous
        page) or ``offset``; ``since`` keeps jobs enqueued at or after that moment."""
        where = ["TRUE"]
        params: builtins.list[Any] = []
        if status:
            where.append("j.status = ANY(%s)")
            params.append([s.value for s in status])
        if app:
            where.append("j.app_name = %s")
            params.append(app)
        if server:
            where.append("s.name = %s")
            params.append(server)
        if since is not None:
            where.append("j.enqueued_at >= %s")
            params.append(since)
        if since_id is not None:
            where.append("j.id > %s")
            params.append(since_id)
        if before_id is not None:
            where.append("j.id < %s")
            params.append(before_id)
        params.extend([limit, offset])
        sql = f"{JOB_SELECT} WHERE {' AND '.join(where)} ORDER BY j.id DESC LIMIT %s OFFSET %s"
        async with self.store.connection() as conn:
            rows = await (await conn.execute(sql, params)).fetchall()
        return [Job.model_validate(r) for r in rows]

    async def events(self, job_id: int) -> builtins.list[dict[str, Any]]:
        """The job's timeline, oldest first (rows of job_events; the step and progress
        events, for the live feed, are left out: ``step_durations`` tells the steps)."""
        async with self.store.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT id, job_id, at, kind, from_status, to_status, actor, message, data "
                    "FROM job_events WHERE job_id = %s AND kind NOT IN ('step', 'progress') "
                    "ORDER BY id",
                    (job_id,),
                )
            ).fetchall()
        return [dict(r) for r in rows]

    # -- statistics ------------------------------------------------------------------------

    async def stats(self) -> QueueStats:
        """Queue depth by priority, running jobs, server load, the last 24 h in numbers."""
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(_DURATIONS + _STATS, {"window": RECENT_WINDOW})
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

    async def queue_positions(self, job_ids: builtins.list[int]) -> dict[int, QueuePosition]:
        """``queue_position`` for many jobs at once (the ones not queued are left out); the
        estimates are ``store.estimates``'."""
        return await self.store.estimates.queue_positions(list(job_ids))


def _float(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)
