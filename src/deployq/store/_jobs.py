"""Jobs as clients see and steer them: ``store.jobs``.

Reads (one job, recent jobs, the timeline, statistics, queue positions) are computed here so
the CLI, the console and the REST API show the same figures; operator actions (cancel,
priority, retry) write the timeline and NOTIFY like every change of a job.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from deployq.errors import Conflict, NotFound
from deployq.models import (
    Job,
    JobEvent,
    JobStatus,
    NotifyEvent,
    Priority,
    QueuePosition,
    QueueStats,
    Trigger,
    TriggerKind,
)
from deployq.store._channels import CHANNEL_CANCEL, dumps
from deployq.store._job_common import (
    StorePart,
    add_event,
    notify_job,
)
from deployq.store._queries import sql

#: how far back finished jobs count for the statistics and the estimates
RECENT_WINDOW = timedelta(hours=24)


class Jobs(StorePart):
    """``store.jobs``: reads, cancel, priority, retry, timeline."""

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

    # -- operator actions ------------------------------------------------------------------

    async def cancel(self, job_id: int, *, actor: str, force: bool = False) -> Job:
        """Cancel a queued job at once; ask the worker of a running one to stop it (NOTIFY
        on CHANNEL_CANCEL; the heartbeat repeats the request in case the NOTIFY is lost)."""
        async with self.store.connection() as conn, conn.transaction():
            row = await (await conn.execute(sql("job_lock"), {"id": job_id})).fetchone()
            if row is None:
                raise NotFound(f"no job #{job_id}; `deployq jobs` lists the jobs")
            job = Job.model_validate(row)
            if job.status is JobStatus.QUEUED:
                row = await (
                    await conn.execute(
                        sql("job_cancel_queued"),
                        {"id": job_id, "error": f"cancelled by {actor} while queued"},
                    )
                ).fetchone()
                assert row is not None
                job = Job.model_validate(row)
                await add_event(
                    conn,
                    job_id,
                    "cancelled",
                    from_status="queued",
                    to_status="cancelled",
                    actor=actor,
                    message="cancelled while queued",
                )
                await self.store.notifications.create_for_job(conn, job, NotifyEvent.CANCELLED)
                await notify_job(conn, job, "cancelled")
                return job
            if job.status is JobStatus.RUNNING:
                row = await (
                    await conn.execute(sql("job_cancel_running"), {"id": job_id, "force": force})
                ).fetchone()
                assert row is not None
                job = Job.model_validate(row)
                await add_event(
                    conn,
                    job_id,
                    "cancel_requested",
                    actor=actor,
                    message="force cancel requested" if force else "cancel requested",
                )
                await conn.execute(
                    sql("notify"),
                    {
                        "channel": CHANNEL_CANCEL,
                        "payload": dumps({"id": job_id, "force": force}),
                    },
                )
                await notify_job(conn, job, "cancel_requested")
                return job
            raise Conflict(f"job #{job_id} is {job.status.value} already; nothing to cancel")

    async def set_priority(self, job_id: int, priority: Priority, *, actor: str) -> Job:
        """Change the priority of a queued job (Conflict once it runs or ended)."""
        async with self.store.connection() as conn, conn.transaction():
            row = await (
                await conn.execute(
                    sql("job_set_priority"), {"id": job_id, "priority": int(priority)}
                )
            ).fetchone()
            if row is None:
                await self.get(job_id)  # NotFound when missing
                raise Conflict(f"job #{job_id} is not queued; only queued jobs change priority")
            job = Job.model_validate(row)
            await add_event(
                conn,
                job_id,
                "priority",
                actor=actor,
                message=f"priority set to {priority.name.lower()}",
            )
            await notify_job(conn, job, "priority")
            return job

    async def add_event(self, job_id: int, kind: str, *, actor: str, message: str) -> None:
        """Append a row to a job's timeline (e.g. the worker's step changes)."""
        async with self.store.connection() as conn:
            await add_event(conn, job_id, kind, actor=actor, message=message)

    async def retry(self, job_id: int, *, actor: str) -> Job:
        """A new job for the same app and commit, linked to the finished one (retry_of)."""
        job = await self.get(job_id)
        if not job.status.is_final:
            raise Conflict(
                f"job #{job_id} is {job.status.value}; only a finished job can be retried"
            )
        if job.app_id is None:
            raise Conflict(f"the app of job #{job_id} was removed; it cannot be retried")
        trigger = Trigger(
            kind=TriggerKind.RETRY,
            provider="manual",
            app=job.app_name,
            ref=job.ref,
            ref_type=job.ref_type,
            commit_sha=job.commit_sha,
            commit_message=job.commit_message,
            commit_author=job.commit_author,
            pusher=job.pusher,
            pusher_email=job.pusher_email,
            priority=job.priority,
            actor=actor,
            retry_of=job.id,
        )
        result = await self.store.queue.enqueue(trigger)
        return result.jobs[0]


def _float(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)
