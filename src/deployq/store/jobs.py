"""The job queue: enqueue, claim, heartbeat, progress, finish, cancel, retry, rescue.

Correctness rules (see DESIGN.md §1, §3):
- enqueue is one transaction; a provider delivery id yields one job per app, even when the
  same delivery arrives twice at once (unique index + ON CONFLICT DO NOTHING).
- claim runs under one transaction-scoped advisory lock, so server capacity and per-app
  concurrency are counted consistently across every worker on every host.
- every write by a worker is fenced on (id, attempt, status='running', worker_id): a worker
  whose lease was taken over changes nothing and learns it has lost the job.
"""

from __future__ import annotations

import builtins
import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from deployq.db import Connection
from deployq.errors import Conflict, LostJob, NotFound
from deployq.matching import skip_reason
from deployq.models import (
    INTERRUPTIBLE_STEPS,
    App,
    Job,
    JobStatus,
    NotifyEvent,
    Priority,
    RefType,
    Step,
    SupersedePolicy,
    Trigger,
    TriggerKind,
)
from deployq.store.base import CHANNEL_CANCEL, CHANNEL_JOBS, dumps

if TYPE_CHECKING:
    from deployq.store.base import Store

#: pg_advisory_xact_lock key held while claiming ("claim" in ASCII)
CLAIM_LOCK_KEY = 0x636C61696D
#: how many queued jobs one claim looks at before giving up on this round
CLAIM_SCAN_LIMIT = 200

_JOB_SELECT = (
    "SELECT j.*, s.name AS server_name FROM jobs j LEFT JOIN build_servers s ON s.id = j.server_id"
)


@dataclass
class EnqueueResult:
    """What an enqueue did: the jobs (new or, for a redelivery, the existing ones)."""

    jobs: list[Job] = field(default_factory=list)
    created: bool = True
    skipped: dict[str, str] = field(default_factory=dict)
    """app name -> why that app does not build this trigger"""
    superseded: list[int] = field(default_factory=list)
    cancel_requested: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as the worker reports it."""

    status: JobStatus
    error: str | None = None
    image_ref: str | None = None
    image_digest: str | None = None
    retryable: bool = True
    scan_summary: dict[str, Any] | None = None


@dataclass(frozen=True)
class Lease:
    """A claimed job as the worker holds it; (id, attempt) is the fencing token."""

    job: Job
    app: App | None

    @property
    def id(self) -> int:
        return self.job.id

    @property
    def attempt(self) -> int:
        return self.job.attempt


@dataclass(frozen=True)
class HeartbeatResult:
    renewed: set[int]
    lost: set[int]
    cancel: dict[int, bool]
    """job id -> force, for jobs whose cancel was requested (in case a NOTIFY was lost)"""


def short_ref(trigger: Trigger) -> str:
    if trigger.ref_type is RefType.PULL_REQUEST:
        parts = trigger.ref.split("/")
        return f"pr-{parts[2]}" if len(parts) > 2 and parts[1] == "pull" else trigger.ref
    return trigger.short_ref


def backoff_s(attempt: int, base_s: float, factor: float, cap_s: float) -> float:
    """Exponential backoff with equal jitter: between half and all of base·factor^(n-1)."""
    delay = min(cap_s, base_s * factor ** max(0, attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


async def add_event(
    conn: Connection,
    job_id: int,
    kind: str,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    actor: str | None = None,
    message: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO job_events (job_id, kind, from_status, to_status, actor, message, data) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (job_id, kind, from_status, to_status, actor, message, Jsonb(data) if data else None),
    )


async def notify_job(conn: Connection, job: Job | dict[str, Any], kind: str) -> None:
    if isinstance(job, Job):
        payload = {"id": job.id, "app": job.app_name, "status": job.status.value, "kind": kind}
    else:
        payload = {"id": job["id"], "app": job["app_name"], "status": job["status"], "kind": kind}
    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL_JOBS, dumps(payload)))


class JobStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- enqueue ---------------------------------------------------------------------------

    async def enqueue(self, trigger: Trigger) -> EnqueueResult:
        """Turn a trigger into jobs, one per matching app, in one transaction."""
        result = EnqueueResult()
        async with self.store.pool.connection() as conn, conn.transaction():
            apps = await self._candidate_apps(conn, trigger)
            for app in apps:
                reason = skip_reason(app, trigger)
                if reason is not None:
                    result.skipped[app.name] = reason
                    continue
                job, created = await self._insert_job(conn, app, trigger)
                result.jobs.append(job)
                if not created:
                    result.created = False
                    continue
                await add_event(
                    conn,
                    job.id,
                    "enqueued",
                    to_status="queued",
                    actor=trigger.actor or trigger.provider,
                    message=f"{trigger.kind.value} {job.branch}"
                    + (f"@{job.short_sha}" if job.commit_sha else ""),
                    data={"delivery_id": trigger.delivery_id, "retry_of": trigger.retry_of},
                )
                await self.store.notifications.create_for_job(conn, job, NotifyEvent.QUEUED)
                await self._supersede(conn, app, job, result)
                await notify_job(conn, job, "enqueued")
        return result

    async def _candidate_apps(self, conn: Connection, trigger: Trigger) -> list[App]:
        if trigger.app is not None:
            row = await (
                await conn.execute("SELECT * FROM apps WHERE name = %s", (trigger.app,))
            ).fetchone()
            if row is None:
                raise NotFound(f"no app named {trigger.app!r}; `deployq app list` shows the apps")
            return [App.model_validate(row)]
        if trigger.repo is None:
            return []
        rows = await (
            await conn.execute(
                "SELECT * FROM apps WHERE repo_identity = %s ORDER BY name", (trigger.repo,)
            )
        ).fetchall()
        return [App.model_validate(r) for r in rows]

    async def _insert_job(self, conn: Connection, app: App, trigger: Trigger) -> tuple[Job, bool]:
        settings = self.store.settings
        priority = trigger.priority if trigger.priority is not None else app.priority
        params = {
            "app_id": app.id,
            "app_name": app.name,
            "provider": trigger.provider,
            "trigger": trigger.kind.value,
            "delivery_id": trigger.delivery_id,
            "repo_url": app.repo_url,
            "ref": trigger.ref,
            "ref_type": trigger.ref_type.value,
            "branch": short_ref(trigger),
            "commit_sha": trigger.commit_sha.lower() if trigger.commit_sha else None,
            "commit_message": trigger.commit_message,
            "commit_author": trigger.commit_author,
            "pusher": trigger.pusher,
            "pusher_email": trigger.pusher_email,
            "priority": int(priority),
            "max_attempts": app.max_attempts or settings.max_attempts,
            "timeout_s": app.timeout_s or settings.build_timeout,
            "retry_of": trigger.retry_of,
        }
        columns = list(params)
        sql = (
            f"INSERT INTO jobs ({', '.join(columns)}) "
            f"VALUES ({', '.join(f'%({c})s' for c in columns)}) "
            "ON CONFLICT (provider, delivery_id, app_id) WHERE delivery_id IS NOT NULL "
            "DO NOTHING RETURNING *"
        )
        row = await (await conn.execute(sql, params)).fetchone()
        if row is not None:
            return Job.model_validate(row), True
        existing = await (
            await conn.execute(
                "SELECT * FROM jobs WHERE provider = %s AND delivery_id = %s AND app_id = %s",
                (trigger.provider, trigger.delivery_id, app.id),
            )
        ).fetchone()
        assert existing is not None, "ON CONFLICT without a conflicting row"
        return Job.model_validate(existing), False

    async def _supersede(self, conn: Connection, app: App, job: Job, result: EnqueueResult) -> None:
        if app.supersede_policy is SupersedePolicy.QUEUE or job.ref_type is not RefType.BRANCH:
            return
        rows = await (
            await conn.execute(
                "UPDATE jobs SET status = 'superseded', finished_at = now(), updated_at = now(), "
                "error = %s WHERE app_id = %s AND branch = %s AND status = 'queued' "
                "AND ref_type = 'branch' AND id < %s RETURNING id, app_name, status",
                (f"superseded by #{job.id}", app.id, job.branch, job.id),
            )
        ).fetchall()
        for row in rows:
            result.superseded.append(int(row["id"]))
            await add_event(
                conn,
                int(row["id"]),
                "superseded",
                from_status="queued",
                to_status="superseded",
                message=f"a newer push to {job.branch} arrived: #{job.id}",
                data={"by": job.id},
            )
            await notify_job(conn, row, "superseded")
        if app.supersede_policy is not SupersedePolicy.CANCEL_RUNNING:
            return
        steps = [s.value for s in INTERRUPTIBLE_STEPS]
        running = await (
            await conn.execute(
                "UPDATE jobs SET cancel_requested = true, updated_at = now() "
                "WHERE app_id = %s AND branch = %s AND status = 'running' AND id < %s "
                "AND NOT cancel_requested AND (step IS NULL OR step = ANY(%s)) RETURNING id",
                (app.id, job.branch, job.id, steps),
            )
        ).fetchall()
        for row in running:
            job_id = int(row["id"])
            result.cancel_requested.append(job_id)
            await add_event(
                conn,
                job_id,
                "cancel_requested",
                message=f"a newer push to {job.branch} arrived: #{job.id}",
                data={"by": job.id},
            )
            await conn.execute(
                "SELECT pg_notify(%s, %s)",
                (CHANNEL_CANCEL, dumps({"id": job_id, "force": False})),
            )

    # -- claim -----------------------------------------------------------------------------

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
        leases are rescued first, in the same transaction.
        """
        if limit <= 0:
            return []
        ttl = timedelta(seconds=self.store.settings.lease_ttl)
        async with self.store.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (CLAIM_LOCK_KEY,))
            await self._rescue(conn)
            servers = await self._free_servers(conn, server_ids, excluded_server_ids or [])
            if not servers:
                return []
            candidates = await (
                await conn.execute(
                    "SELECT j.id, j.app_id, a.concurrency, a.required_arch, a.required_labels, "
                    "(SELECT count(*) FROM jobs r WHERE r.app_id = j.app_id "
                    "   AND r.status = 'running') AS app_running "
                    "FROM jobs j LEFT JOIN apps a ON a.id = j.app_id "
                    "WHERE j.status = 'queued' AND j.run_after <= now() "
                    "ORDER BY j.priority DESC, j.run_after, j.id LIMIT %s",
                    (CLAIM_SCAN_LIMIT,),
                )
            ).fetchall()
            app_running: dict[int, int] = {}
            chosen: list[tuple[int, int]] = []
            for cand in candidates:
                app_id = cand["app_id"]
                if app_id is not None:
                    running = app_running.setdefault(app_id, int(cand["app_running"]))
                    if running >= int(cand["concurrency"]):
                        continue
                server = _pick_server(servers, cand["required_arch"], cand["required_labels"])
                if server is None:
                    continue
                server["free"] -= 1
                if app_id is not None:
                    app_running[app_id] += 1
                chosen.append((int(cand["id"]), int(server["id"])))
                if len(chosen) >= limit or not any(s["free"] > 0 for s in servers):
                    break
            if not chosen:
                return []
            rows = await (
                await conn.execute(
                    "UPDATE jobs SET status = 'running', attempt = attempt + 1, "
                    "server_id = c.server_id, worker_id = %s, lease_expires_at = now() + %s, "
                    "started_at = now(), updated_at = now(), progress = 0, step = NULL, "
                    "wait_reason = NULL, error = NULL, finished_at = NULL "
                    "FROM unnest(%s::bigint[], %s::bigint[]) AS c(job_id, server_id) "
                    "WHERE jobs.id = c.job_id RETURNING jobs.*",
                    (worker_id, ttl, [c[0] for c in chosen], [c[1] for c in chosen]),
                )
            ).fetchall()
            names = {int(s["id"]): str(s["name"]) for s in servers}
            leases = []
            app_ids = {int(r["app_id"]) for r in rows if r["app_id"] is not None}
            apps = await self._apps_by_id(conn, app_ids)
            for row in rows:
                job = Job.model_validate({**row, "server_name": names.get(int(row["server_id"]))})
                await add_event(
                    conn,
                    job.id,
                    "claimed",
                    from_status="queued",
                    to_status="running",
                    actor=worker_id,
                    message=f"attempt {job.attempt}/{job.max_attempts} on {job.server_name}",
                    data={"server": job.server_name, "attempt": job.attempt},
                )
                await notify_job(conn, job, "claimed")
                leases.append(Lease(job, apps.get(job.app_id) if job.app_id else None))
            return leases

    async def _free_servers(
        self, conn: Connection, only: list[int] | None, excluded: list[int]
    ) -> list[dict[str, Any]]:
        rows = await (
            await conn.execute(
                "SELECT s.id, s.name, s.arch, s.labels, s.capacity - "
                "  (SELECT count(*) FROM jobs r WHERE r.server_id = s.id "
                "   AND r.status = 'running') AS free, "
                "  (SELECT count(*) FROM jobs r WHERE r.server_id = s.id "
                "   AND r.status = 'running') AS running "
                "FROM build_servers s WHERE s.healthy AND NOT s.draining "
                "AND (%s::bigint[] IS NULL OR s.id = ANY(%s)) AND NOT (s.id = ANY(%s)) "
                "ORDER BY s.id",
                (only, only, excluded),
            )
        ).fetchall()
        return [dict(r) for r in rows if int(r["free"]) > 0]

    async def _apps_by_id(self, conn: Connection, ids: set[int]) -> dict[int, App]:
        if not ids:
            return {}
        rows = await (
            await conn.execute("SELECT * FROM apps WHERE id = ANY(%s)", (list(ids),))
        ).fetchall()
        return {int(r["id"]): App.model_validate(r) for r in rows}

    # -- rescue ----------------------------------------------------------------------------

    async def rescue_expired(self) -> list[int]:
        """Take back jobs whose lease expired (their worker died). Returns their ids."""
        async with self.store.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (CLAIM_LOCK_KEY,))
            return await self._rescue(conn)

    async def _rescue(self, conn: Connection) -> list[int]:
        rows = await (
            await conn.execute(
                "UPDATE jobs SET "
                "  status = CASE WHEN attempt >= max_attempts THEN 'failed' ELSE 'queued' END, "
                "  finished_at = CASE WHEN attempt >= max_attempts THEN now() END, "
                "  error = CASE WHEN attempt >= max_attempts THEN "
                "    'the worker ' || worker_id || ' stopped answering during attempt ' "
                "    || attempt || ' (the last one)' END, "
                "  lease_expires_at = NULL, run_after = now(), updated_at = now(), "
                "  cancel_requested = false "
                "WHERE status = 'running' AND lease_expires_at < now() "
                "RETURNING id, app_name, status, worker_id, attempt",
            )
        ).fetchall()
        for row in rows:
            requeued = row["status"] == "queued"
            await add_event(
                conn,
                int(row["id"]),
                "rescued",
                from_status="running",
                to_status=str(row["status"]),
                actor="rescuer",
                message=(
                    f"lease of worker {row['worker_id']} expired during attempt {row['attempt']}: "
                    + ("queued again" if requeued else "no attempts left")
                ),
            )
            await notify_job(conn, row, "rescued")
        return [int(r["id"]) for r in rows]

    # -- while running ---------------------------------------------------------------------

    async def heartbeat(self, worker_id: str, held: list[tuple[int, int]]) -> HeartbeatResult:
        """Renew the leases of (job id, attempt) pairs in one statement; report lost ones."""
        if not held:
            return HeartbeatResult(set(), set(), {})
        ttl = timedelta(seconds=self.store.settings.lease_ttl)
        async with self.store.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "UPDATE jobs SET lease_expires_at = now() + %s, updated_at = now() "
                    "FROM unnest(%s::bigint[], %s::int[]) AS h(job_id, attempt) "
                    "WHERE jobs.id = h.job_id AND jobs.attempt = h.attempt "
                    "AND jobs.status = 'running' AND jobs.worker_id = %s "
                    "RETURNING jobs.id, jobs.cancel_requested, jobs.cancel_force",
                    (ttl, [h[0] for h in held], [h[1] for h in held], worker_id),
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
        extra = dict(fields or {})
        sets = ["step = %(step)s", "progress = %(progress)s", "updated_at = now()"]
        params: dict[str, Any] = {
            "step": str(step),
            "progress": max(0, min(100, progress)),
            "id": lease.id,
            "attempt": lease.attempt,
        }
        if step_durations is not None:
            sets.append("step_durations = %(durations)s")
            params["durations"] = Jsonb(step_durations)
        for name, value in extra.items():
            if name not in _WORKER_FIELDS:
                raise ValueError(f"set_progress cannot set {name}")
            sets.append(f"{name} = %({name})s")
            params[name] = Jsonb(value) if isinstance(value, dict) else value
        async with self.store.pool.connection() as conn:
            row = await (
                await conn.execute(
                    f"UPDATE jobs SET {', '.join(sets)} WHERE id = %(id)s "
                    "AND attempt = %(attempt)s AND status = 'running' "
                    "RETURNING id, app_name, status",
                    params,
                )
            ).fetchone()
            if row is None:
                raise LostJob(f"job #{lease.id} attempt {lease.attempt} is no longer ours")
            await notify_job(conn, row, "progress")

    # -- finish ----------------------------------------------------------------------------

    async def finish(self, lease: Lease, outcome: Outcome) -> Job:
        """End an attempt (fenced). A retryable failure with attempts left is queued again."""
        settings = self.store.settings
        async with self.store.pool.connection() as conn, conn.transaction():
            current = await (
                await conn.execute(
                    "SELECT * FROM jobs WHERE id = %s AND attempt = %s AND status = 'running' "
                    "FOR UPDATE",
                    (lease.id, lease.attempt),
                )
            ).fetchone()
            if current is None:
                raise LostJob(f"job #{lease.id} attempt {lease.attempt} is no longer ours")
            job = Job.model_validate(current)
            status = outcome.status
            retry = (
                status is JobStatus.FAILED and outcome.retryable and job.attempt < job.max_attempts
            )
            params: dict[str, Any] = {
                "id": job.id,
                "error": outcome.error,
                "image_ref": outcome.image_ref,
                "image_digest": outcome.image_digest,
                "scan": Jsonb(outcome.scan_summary) if outcome.scan_summary else None,
            }
            if retry:
                delay = backoff_s(
                    job.attempt,
                    settings.retry_base_delay,
                    settings.retry_factor,
                    settings.retry_max_delay,
                )
                params["delay"] = timedelta(seconds=delay)
                row = await (
                    await conn.execute(
                        "UPDATE jobs SET status = 'queued', run_after = now() + %(delay)s, "
                        "lease_expires_at = NULL, worker_id = NULL, error = %(error)s, "
                        "updated_at = now(), cancel_requested = false, cancel_force = false "
                        "WHERE id = %(id)s RETURNING *",
                        params,
                    )
                ).fetchone()
                message: str | None = (
                    f"attempt {job.attempt} failed: {outcome.error}; retry in {delay:.0f}s"
                )
            else:
                params["status"] = status.value
                row = await (
                    await conn.execute(
                        "UPDATE jobs SET status = %(status)s, finished_at = now(), "
                        "lease_expires_at = NULL, error = %(error)s, "
                        "image_ref = coalesce(%(image_ref)s, image_ref), "
                        "image_digest = coalesce(%(image_digest)s, image_digest), "
                        "scan_summary = coalesce(%(scan)s, scan_summary), "
                        "progress = CASE WHEN %(status)s = 'succeeded' THEN 100 ELSE progress END, "
                        "updated_at = now() WHERE id = %(id)s RETURNING *",
                        params,
                    )
                ).fetchone()
                message = outcome.error if status is not JobStatus.SUCCEEDED else None
            assert row is not None
            finished = Job.model_validate({**row, "server_name": job.server_name})
            await add_event(
                conn,
                job.id,
                "retry_scheduled" if retry else status.value,
                from_status="running",
                to_status=finished.status.value,
                message=message,
                data={"attempt": job.attempt, "image_digest": outcome.image_digest},
            )
            event = NotifyEvent(status.value) if status.value in _NOTIFY_VALUES else None
            if event is not None:
                await self.store.notifications.create_for_job(
                    conn, finished, event, retry_scheduled=retry
                )
            await notify_job(conn, finished, "finished")
            return finished

    async def release(self, worker_id: str, held: list[tuple[int, int]], reason: str) -> list[int]:
        """Put this worker's running jobs back in the queue now (shutdown); the interrupted
        attempt does not count against max_attempts."""
        if not held:
            return []
        async with self.store.pool.connection() as conn, conn.transaction():
            rows = await (
                await conn.execute(
                    "UPDATE jobs SET status = 'queued', lease_expires_at = NULL, "
                    "worker_id = NULL, run_after = now(), updated_at = now(), "
                    "max_attempts = max_attempts + 1 "
                    "FROM unnest(%s::bigint[], %s::int[]) AS h(job_id, attempt) "
                    "WHERE jobs.id = h.job_id AND jobs.attempt = h.attempt "
                    "AND jobs.status = 'running' AND jobs.worker_id = %s "
                    "RETURNING jobs.id, jobs.app_name, jobs.status",
                    ([h[0] for h in held], [h[1] for h in held], worker_id),
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
        """Cancel a queued job at once; ask the worker of a running one to stop it."""
        async with self.store.pool.connection() as conn, conn.transaction():
            row = await (
                await conn.execute("SELECT * FROM jobs WHERE id = %s FOR UPDATE", (job_id,))
            ).fetchone()
            if row is None:
                raise NotFound(f"no job #{job_id}")
            job = Job.model_validate(row)
            if job.status is JobStatus.QUEUED:
                row = await (
                    await conn.execute(
                        "UPDATE jobs SET status = 'cancelled', finished_at = now(), "
                        "updated_at = now(), error = %s WHERE id = %s RETURNING *",
                        (f"cancelled by {actor} while queued", job_id),
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
                    await conn.execute(
                        "UPDATE jobs SET cancel_requested = true, "
                        "cancel_force = cancel_force OR %s, updated_at = now() "
                        "WHERE id = %s RETURNING *",
                        (force, job_id),
                    )
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
                    "SELECT pg_notify(%s, %s)",
                    (CHANNEL_CANCEL, dumps({"id": job_id, "force": force})),
                )
                await notify_job(conn, job, "cancel_requested")
                return job
            raise Conflict(f"job #{job_id} is {job.status.value} already; nothing to cancel")

    async def retry(self, job_id: int, *, actor: str) -> Job:
        """A new job for the same app and commit, linked to the finished one."""
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
        result = await self.enqueue(trigger)
        return result.jobs[0]

    async def set_priority(self, job_id: int, priority: Priority, *, actor: str) -> Job:
        async with self.store.pool.connection() as conn, conn.transaction():
            row = await (
                await conn.execute(
                    "UPDATE jobs SET priority = %s, updated_at = now() WHERE id = %s "
                    "AND status = 'queued' RETURNING *",
                    (int(priority), job_id),
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
        async with self.store.pool.connection() as conn:
            await add_event(conn, job_id, kind, actor=actor, message=message)

    # -- read side -------------------------------------------------------------------------

    async def get(self, job_id: int) -> Job:
        async with self.store.pool.connection() as conn:
            row = await (await conn.execute(_JOB_SELECT + " WHERE j.id = %s", (job_id,))).fetchone()
        if row is None:
            raise NotFound(f"no job #{job_id}; `deployq jobs` lists the jobs")
        return Job.model_validate(row)

    async def list(
        self,
        *,
        status: list[JobStatus] | None = None,
        app: str | None = None,
        server: str | None = None,
        since_id: int | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Newest first, filtered; page with ``before_id``."""
        where = ["TRUE"]
        params: list[Any] = []
        if status:
            where.append("j.status = ANY(%s)")
            params.append([s.value for s in status])
        if app:
            where.append("j.app_name = %s")
            params.append(app)
        if server:
            where.append("s.name = %s")
            params.append(server)
        if since_id is not None:
            where.append("j.id > %s")
            params.append(since_id)
        if before_id is not None:
            where.append("j.id < %s")
            params.append(before_id)
        params.append(limit)
        sql = f"{_JOB_SELECT} WHERE {' AND '.join(where)} ORDER BY j.id DESC LIMIT %s"
        async with self.store.pool.connection() as conn:
            rows = await (await conn.execute(sql, params)).fetchall()
        return [Job.model_validate(r) for r in rows]

    async def events(self, job_id: int) -> builtins.list[dict[str, Any]]:
        async with self.store.pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT * FROM job_events WHERE job_id = %s ORDER BY id", (job_id,)
                )
            ).fetchall()
        return [dict(r) for r in rows]


_NOTIFY_VALUES = frozenset(e.value for e in NotifyEvent)

#: job columns a worker may set through set_progress
_WORKER_FIELDS = frozenset(
    {
        "commit_sha",
        "commit_message",
        "commit_author",
        "image_ref",
        "image_digest",
        "wait_reason",
        "scan_summary",
    }
)


def _pick_server(
    servers: list[dict[str, Any]], arch: str | None, labels: list[str] | None
) -> dict[str, Any] | None:
    """The least loaded server with a free slot that has the arch and every label."""
    fitting = [
        s
        for s in servers
        if s["free"] > 0
        and (not arch or s["arch"] == arch)
        and set(labels or []) <= set(s["labels"] or [])
    ]
    if not fitting:
        return None
    return max(fitting, key=lambda s: (s["free"], -int(s["id"])))
