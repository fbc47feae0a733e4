"""Jobs go to servers: the claim, and the rescue of jobs whose worker died.

Both are PL/pgSQL functions (sql/001_initial.sql: ``deployq_claim``, ``deployq_rescue``)
run under one transaction advisory lock: capacity is counted across every worker process on
every host, and a claim costs one round trip, so the lock is held for as short a time as
possible (a claim that waited on Python between statements would hold it much longer).
"""

from __future__ import annotations

from datetime import timedelta

from deployq.db import Connection
from deployq.models import App, Job, JobStatus, NotifyEvent
from deployq.store._job_common import (
    CLAIM_LOCK_KEY,
    CLAIM_SCAN_LIMIT,
    Lease,
    StorePart,
    wants_notification,
)
from deployq.store._queries import sql


class ClaimPart(StorePart):
    """``claim`` and ``rescue_expired`` of JobStore."""

    async def claim(
        self,
        worker_id: str,
        *,
        limit: int,
        server_ids: list[int] | None = None,
        excluded_server_ids: list[int] | None = None,
    ) -> list[Lease]:
        """Take up to ``limit`` due jobs, each on a server with a free slot.

        Priority DESC, then run_after/enqueued_at ASC. Never more running jobs on a server
        than its capacity, nor for an app than its concurrency, across every worker. Expired
        leases are rescued first, in the same transaction, so a dead worker's jobs come back
        on the next claim (the worker's fallback poll claims even when nothing is enqueued).
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
                        "scan_limit": CLAIM_SCAN_LIMIT,
                    },
                )
            ).fetchall()
            leases: list[Lease] = []
            failed: list[Job] = []
            for row in rows:
                app_row = row.pop("app_row")
                job = Job.model_validate(row)
                if job.status is JobStatus.RUNNING and job.worker_id == worker_id:
                    app = App.model_validate(app_row) if app_row is not None else None
                    if app is not None:
                        app = (await self.store.secrets.attach(conn, [app]))[0]
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

    async def rescue_expired(self) -> list[int]:
        """Take back jobs whose lease expired (their worker died). Returns their ids.

        For a periodic rescuer; any number may run, the claim lock makes them take turns.
        """
        async with self.store.connection() as conn:
            async with conn.transaction():
                await conn.execute(sql("claim_lock"), {"key": CLAIM_LOCK_KEY})
                rows = await (await conn.execute(sql("rescue_expired"))).fetchall()
            failed = [Job.model_validate(r) for r in rows if r["status"] == JobStatus.FAILED]
            if failed:
                await self._notify_rescued_failures(conn, failed)
        return [int(r["id"]) for r in rows]

    async def _notify_rescued_failures(self, conn: Connection, jobs: list[Job]) -> None:
        # The outbox rows of a job failed by the rescue are written right after it, in a
        # transaction of their own: keeping the claim one statement matters more than this
        # (rare) pair being atomic.
        async with conn.transaction():
            for job in jobs:
                await self.store.notifications.create_for_job(conn, job, NotifyEvent.FAILED)
