"""The job queue as the worker and operators drive it: ``store.jobs``.

Correctness rules (docs/ARCHITECTURE.md, "The job model"):
- enqueue is one transaction; a provider delivery id yields one job per app, even when the
  same delivery arrives twice at once (unique index + ON CONFLICT DO NOTHING).
- claim runs under one transaction-scoped advisory lock, so server capacity and per-app
  concurrency are counted consistently across every worker on every host.
- every write by a worker is fenced on (id, attempt, status='running'): a worker whose lease
  was taken over changes nothing and learns it has lost the job (LostJob).

This module holds the running attempt (heartbeat, progress, release) and operator
actions (cancel, priority); ``JobStore`` also carries the other parts of the queue, so every
caller writes ``store.jobs.<method>``: enqueue/retry (``enqueue``), claim/rescue_expired
(``claim``), finish/finish_many (``finish``; group commits: ``finisher.Finisher``),
get/list/events/stats/queue_position(s) (``queue_read``), wait_reason(s) (``wait``) and
prune (``maintenance``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from psycopg.types.json import Jsonb

from deployq.errors import Conflict, LostJob, NotFound
from deployq.models import Job, JobStatus, NotifyEvent, Priority, Step
from deployq.store._channels import CHANNEL_CANCEL, dumps
from deployq.store._claim import ClaimPart
from deployq.store._enqueue import EnqueuePart
from deployq.store._finish import FinishPart
from deployq.store._job_common import (
    WORKER_FIELDS,
    EnqueueResult,
    HeartbeatResult,
    Lease,
    Outcome,
    add_event,
    notify_job,
)
from deployq.store._maintenance import MaintenancePart
from deployq.store._queries import sql
from deployq.store._queue_read import QueueReadPart
from deployq.store._wait import WaitReasonPart

__all__ = [
    "EnqueueResult",
    "HeartbeatResult",
    "JobStore",
    "Lease",
    "Outcome",
    "add_event",
    "notify_job",
]


class JobStore(EnqueuePart, ClaimPart, FinishPart, QueueReadPart, WaitReasonPart, MaintenancePart):
    """Everything about jobs; see the module docstring for where each part lives."""

    # -- while running ---------------------------------------------------------------------

    async def heartbeat(self, worker_id: str, held: list[tuple[int, int]]) -> HeartbeatResult:
        """Renew the leases of (job id, attempt) pairs in one statement; report lost ones."""
        if not held:
            return HeartbeatResult(set(), set(), {})
        ttl = timedelta(seconds=self.store.settings.lease_ttl)
        async with self.store.connection() as conn:
            rows = await (
                await conn.execute(
                    sql("job_heartbeat"),
                    {
                        "ttl": ttl,
                        "ids": [h[0] for h in held],
                        "attempts": [h[1] for h in held],
                        "worker_id": worker_id,
                    },
                )
            ).fetchall()
        renewed = {int(r["id"]) for r in rows}
        cancel = {int(r["id"]): bool(r["cancel_force"]) for r in rows if r["cancel_requested"]}
        return HeartbeatResult(renewed, {h[0] for h in held} - renewed, cancel)

    async def set_progress(
        self,
        lease: Lease,
        *,
        step: Step | str,
        progress: int,
        step_durations: dict[str, float] | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        """Record the current step and percent (fenced); raise LostJob if not ours."""
        params: dict[str, Any] = {
            "step": str(step),
            "progress": max(0, min(100, progress)),
            "id": lease.id,
            "attempt": lease.attempt,
            "set_step_durations": step_durations is not None,
            "step_durations": Jsonb(step_durations) if step_durations is not None else None,
        }
        for name in WORKER_FIELDS:
            params[f"set_{name}"] = False
            params[name] = None
        for name, value in (fields or {}).items():
            if name not in WORKER_FIELDS:
                raise ValueError(f"set_progress cannot set {name}")
            params[f"set_{name}"] = True
            params[name] = Jsonb(value) if isinstance(value, dict) else value
        async with self.store.connection() as conn:
            row = await (await conn.execute(sql("job_progress"), params)).fetchone()
        if row is None:
            raise LostJob(f"job #{lease.id} attempt {lease.attempt} is no longer ours")

    async def release(self, worker_id: str, held: list[tuple[int, int]], reason: str) -> list[int]:
        """Put this worker's running jobs back in the queue now (hard shutdown); the
        interrupted attempt does not count against max_attempts."""
        if not held:
            return []
        async with self.store.connection() as conn, conn.transaction():
            rows = await (
                await conn.execute(
                    sql("jobs_release"),
                    {
                        "ids": [h[0] for h in held],
                        "attempts": [h[1] for h in held],
                        "worker_id": worker_id,
                    },
                )
            ).fetchall()
            for row in rows:
                await add_event(
                    conn,
                    int(row["id"]),
                    "released",
                    from_status="running",
                    to_status="queued",
                    actor=worker_id,
                    message=reason,
                )
                await notify_job(conn, row, "released")
        return [int(r["id"]) for r in rows]

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
