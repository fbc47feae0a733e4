"""The worker's side of the queue: ``store.leases``.

Jobs go to servers (``claim``, one PL/pgSQL call under the claim lock, see
queries/claim.sql), the running attempt renews its lease (``heartbeat``), records its step
(``set_progress``) and ends (``finish``, ``finish_many``: one statement for any number of
jobs, the group commit of ``Finisher``); ``release`` gives jobs back at a hard shutdown;
``rescue_expired`` and the rescuer loop take back the jobs of workers that died.

Every write of a worker is fenced on (id, attempt, status='running'): a worker whose lease
was taken over changes nothing and learns it lost the job (LostJob). A retryable failure
with attempts left goes back to the queue after an exponential backoff with jitter.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from deployq.backoff import backoff_s
from deployq.db import Connection
from deployq.errors import LostJob
from deployq.models import App, Job, JobStatus, NotifyEvent, Step
from deployq.store._job_common import (
    CLAIM_LOCK_KEY,
    CLAIM_SCAN_LIMIT,
    NOTIFY_VALUES,
    WORKER_FIELDS,
    HeartbeatResult,
    Lease,
    Outcome,
    StorePart,
    TakenAttempt,
    add_event,
    notify_job,
    wants_notification,
)
from deployq.store._queries import sql

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


def _finished(row: dict[str, Any]) -> Job:
    """The job of a ``finish_job``/``finish_jobs`` row (without the statement's own columns)."""
    for extra in (
        "notified",
        "logs_notified",
        "_message",
        "_retry_message",
        "_image_digest",
        "_step",
        "_old_step",
        "_old_progress",
        "_log_lines",
    ):
        row.pop(extra, None)
    return Job.model_validate(row)


def _lost(lease: Lease) -> LostJob:
    return LostJob(f"job #{lease.id} attempt {lease.attempt} is no longer ours")


def _event(outcome: Outcome) -> NotifyEvent | None:
    value = outcome.status.value
    return NotifyEvent(value) if value in NOTIFY_VALUES else None


class Leases(StorePart):
    """``store.leases``: claim, heartbeat, progress, finish, release, rescue."""

    async def claim(
        self,
        worker_id: str,
        *,
        limit: int,
        server_ids: list[int] | None = None,
        excluded_server_ids: list[int] | None = None,
        host_id: str | None = None,
    ) -> list[Lease]:
        """Take up to ``limit`` due jobs, each on a server with a free slot.

        ``host_id``: the worker's host (deployq.hostid); servers another host owns (its
        ``unix://`` engine) are never given to this worker, nor are any owned ones without it.

        Priority DESC, then run_after/enqueued_at ASC. Never more running jobs on a server
        than its capacity, nor for an app than its concurrency, across every worker. Expired
        leases are not rescued here: the rescuer (store._rescue) has the engine stop the dead
        attempt's build first, and the job keeps its slot until then.
        """
        ttl = timedelta(seconds=self.store.settings.lease_ttl)
        async with self.store.connection() as conn:
            rows = await (
                await conn.execute(
                    sql("claim_jobs"),
                    {
                        "worker_id": worker_id,
                        "limit": max(0, limit),
                        "ttl": ttl,
                        "server_ids": server_ids,
                        "excluded_server_ids": excluded_server_ids or [],
                        "host_id": host_id,
                        "scan_limit": CLAIM_SCAN_LIMIT,
                    },
                )
            ).fetchall()
            leases: list[Lease] = []
            failed: list[Job] = []
            # the jobs of one app claimed together share one App (read once, opened once)
            apps: dict[int, App] = {}
            for row in rows:
                app_row, sealed = row.pop("app_row"), row.pop("app_sealed")
                job = Job.model_validate(row)
                if job.status is JobStatus.RUNNING and job.worker_id == worker_id:
                    app = None
                    if app_row is not None:
                        app = apps.get(app_row["id"])
                        if app is None:
                            app = App.model_validate(app_row)
                            if sealed is not None:
                                app = self.store.secrets.opened(app, sealed)
                            apps[app.id] = app
                    leases.append(Lease(job, app))
                elif job.status is JobStatus.FAILED:
                    failed.append(job)
            if failed:
                await self._notify_rescued_failures(conn, failed)
            started = [
                lease
                for lease in leases
                if lease.app and wants_notification(lease.app, NotifyEvent.STARTED)
            ]
            if started:
                # Written right after the claim commits, so the claim stays one statement
                # (the lock is held for its duration). Should the worker die in between, the
                # job is rescued and its next attempt writes its own "started" rows.
                async with conn.transaction():
                    for lease in started:
                        await self.store.notifications.create_for_job(
                            conn, lease.job, NotifyEvent.STARTED, app=lease.app
                        )
        return leases

    async def take_expired(
        self, rescuer: str, *, host_id: str | None = None, limit: int = 100
    ) -> list[TakenAttempt]:
        """Attempts whose lease expired become ``rescuer``'s (a fresh lease, same attempt):
        the job stays running, so its slot stays counted, and the worker that lost it learns
        it at its next heartbeat. ``requeue_taken`` ends each (see ``rescuer_component``).

        An attempt on a unix:// engine of another host than ``host_id`` is taken only once
        its lease expired ``rescue_stop_timeout`` ago: that host's rescuers come first."""
        settings = self.store.settings
        params = {
            "rescuer": rescuer,
            "ttl": timedelta(seconds=settings.lease_ttl),
            "limit": limit,
            "host_id": host_id,
            "foreign_after": timedelta(seconds=settings.rescue_stop_timeout),
        }
        async with self.store.connection() as conn, conn.transaction():
            rows = await (await conn.execute(sql("rescue_take"), params)).fetchall()
            for row in rows:
                where = f" on {row['server_name']}" if row["server_name"] else ""
                await add_event(
                    conn,
                    int(row["id"]),
                    "rescuing",
                    actor=rescuer,
                    message=f"lease of worker {row['lost_worker']} expired during attempt "
                    f"{row['attempt']}: its build{where} is stopped before the job runs again",
                    data={"worker": row["lost_worker"], "attempt": row["attempt"]},
                )
                await notify_job(conn, row, "rescuing")
        return [
            TakenAttempt(
                id=int(r["id"]),
                attempt=int(r["attempt"]),
                app_name=str(r["app_name"]),
                server_id=r["server_id"],
                server_name=r["server_name"],
                lost_worker=str(r["lost_worker"]),
                enqueued_at=r["enqueued_at"],
            )
            for r in rows
        ]

    async def note_rescue(self, rescuer: str, taken: TakenAttempt, message: str) -> None:
        """A line on the job's timeline while its rescue waits (``rescuing``)."""
        async with self.store.connection() as conn:
            await add_event(
                conn,
                taken.id,
                "rescuing",
                actor=rescuer,
                message=message,
                data={"worker": taken.lost_worker, "attempt": taken.attempt},
            )

    async def requeue_taken(
        self, rescuer: str, taken: TakenAttempt, *, note: str | None = None
    ) -> Job | None:
        """Queue a taken job again (or fail it after its last attempt), freeing its slot;
        None when the rescuer no longer holds it."""
        async with self.store.connection() as conn:
            async with conn.transaction():
                await conn.execute(sql("claim_lock"), {"key": CLAIM_LOCK_KEY})
                row = await (
                    await conn.execute(
                        sql("rescue_requeue"),
                        {
                            "id": taken.id,
                            "attempt": taken.attempt,
                            "rescuer": rescuer,
                            "lost_worker": taken.lost_worker,
                        },
                    )
                ).fetchone()
                if row is None:
                    return None
                job = Job.model_validate(row)
                queued = job.status is JobStatus.QUEUED
                await add_event(
                    conn,
                    job.id,
                    "rescued",
                    from_status="running",
                    to_status=job.status.value,
                    actor="rescuer",
                    message=f"lease of worker {taken.lost_worker} expired during attempt "
                    f"{taken.attempt}: {'queued again' if queued else 'no attempts left'}"
                    + (f" ({note})" if note else ""),
                    data={"worker": taken.lost_worker, "attempt": taken.attempt},
                )
                await notify_job(conn, job, "rescued")
            if not queued:
                await self._notify_rescued_failures(conn, [job])
        return job

    async def rescue_expired(self, rescuer: str = "rescuer") -> list[int]:
        """Take back every expired attempt and queue it again at once, without asking an
        engine whether its build still runs (the workers' rescuer asks: worker.rescue).
        Returns the ids of the jobs queued again or failed."""
        rescued = []
        for taken in await self.take_expired(rescuer, host_id=None):
            if await self.requeue_taken(rescuer, taken) is not None:
                rescued.append(taken.id)
        return rescued

    async def _notify_rescued_failures(self, conn: Connection, jobs: list[Job]) -> None:
        # The outbox rows of a job failed by the rescue are written right after it, in a
        # transaction of their own: keeping the claim one statement matters more than this
        # (rare) pair being atomic.
        async with conn.transaction():
            for job in jobs:
                await self.store.notifications.create_for_job(conn, job, NotifyEvent.FAILED)

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

    def _item(self, lease: Lease, outcome: Outcome) -> dict[str, Any]:
        """One element of ``finish_jobs``' items, or ``finish_job``'s parameters."""
        settings = self.store.settings
        delay = backoff_s(
            lease.attempt,
            settings.retry_base_delay,
            settings.retry_factor,
            settings.retry_max_delay,
        )
        status = outcome.status
        return {
            "id": lease.id,
            "attempt": lease.attempt,
            "status": status.value,
            "may_retry": status is JobStatus.FAILED and outcome.retryable,
            "delay_s": delay,
            "error": outcome.error,
            "image_ref": outcome.image_ref,
            "image_digest": outcome.image_digest,
            "message": outcome.error if status is not JobStatus.SUCCEEDED else None,
            "retry_message": f"attempt {lease.attempt} failed: {outcome.error}; "
            f"retry in {delay:.0f}s",
            "step": outcome.step.value if outcome.step is not None else None,
            "step_durations": outcome.step_durations,
            "log_lines": list(outcome.log_lines),
        }

    def _params(self, lease: Lease, outcome: Outcome) -> dict[str, Any]:
        """``finish_job``'s parameters."""
        params = self._item(lease, outcome)
        if outcome.step_durations is not None:
            params["step_durations"] = Jsonb(outcome.step_durations)
        return params

    async def finish(self, lease: Lease, outcome: Outcome) -> Job:
        """End an attempt (fenced: LostJob when it is no longer ours).

        A retryable failure with attempts left is queued again with ``run_after`` after an
        exponential backoff with jitter; anything else is final.
        """
        params = self._params(lease, outcome)
        event = _event(outcome)
        async with self.store.connection() as conn:
            # one statement is atomic on its own: the transaction is only for outbox rows
            outbox = event is not None and wants_notification(lease.app, event)
            async with conn.transaction() if outbox else contextlib.nullcontext():
                row = await (await conn.execute(sql("finish_job"), params)).fetchone()
                if row is None:
                    raise _lost(lease)
                finished = _finished(row)
                if outbox:
                    await self._outbox(conn, lease, outcome, finished)
        return finished

    async def finish_many(self, items: Sequence[tuple[Lease, Outcome]]) -> list[Job | LostJob]:
        """``finish`` for several attempts in ONE transaction; answers in the same order.

        A job no longer ours is a LostJob in its place (nothing written for it; the others
        are finished all the same). Any other error (the database, a deadlock) rolls the
        whole batch back and is raised: nothing was written, callers may finish the jobs one
        by one. One statement for all the jobs; it locks their rows in id order (two batches
        touching the same rows cannot deadlock on each other).
        """
        if not items:
            return []
        answers: list[Job | LostJob] = [_lost(lease) for lease, _ in items]
        # a job finished twice in the batch (a stale lease and the current one, say): its
        # finishes go in rounds, in order, so each meets the job as it would one after the other
        rounds: list[dict[int, int]] = []  # job id -> index in items, per round
        for n, (lease, _) in enumerate(items):
            for round_ in rounds:
                if lease.id not in round_:
                    round_[lease.id] = n
                    break
            else:
                rounds.append({lease.id: n})
        async with self.store.connection() as conn, conn.transaction():
            for round_ in rounds:
                if len(round_) == 1:  # a group of one: the lone finish's statement
                    (n,) = round_.values()
                    query, params = sql("finish_job"), self._params(*items[n])
                else:
                    query = sql("finish_jobs")
                    params = {"items": Jsonb([self._item(*items[n]) for n in round_.values()])}
                rows = await (await conn.execute(query, params)).fetchall()
                for row in rows:
                    n = round_[int(row["id"])]
                    lease, outcome = items[n]
                    finished = _finished(row)
                    event = _event(outcome)
                    if event is not None and wants_notification(lease.app, event):
                        await self._outbox(conn, lease, outcome, finished)
                    answers[n] = finished
        return answers

    async def _outbox(
        self, conn: Connection, lease: Lease, outcome: Outcome, finished: Job
    ) -> None:
        event = _event(outcome)
        if event is None:
            return
        await self.store.notifications.create_for_job(
            conn,
            finished,
            event,
            retry_scheduled=finished.status is JobStatus.QUEUED,
            app=lease.app,
        )
