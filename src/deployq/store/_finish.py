"""The end of an attempt: ``finish`` (one job) and ``finish_many`` (a group commit).

Every finish is fenced on (id, attempt, status='running'): a worker whose lease was taken
over changes nothing and learns it lost the job (LostJob). A retryable failure with attempts
left goes back to the queue after an exponential backoff with jitter.

``finish_many`` ends several attempts in ONE transaction: one commit, so one turn on
PostgreSQL's notify-queue lock for all their NOTIFYs, instead of one per job. Each job gets
exactly what ``finish`` would have done to it: the same statement (update, timeline row,
NOTIFY), its outbox rows in the same transaction; a job that is no longer ours is a LostJob
in its place in the answer and changes nothing for the others.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from psycopg.types.json import Jsonb

from deployq.backoff import backoff_s
from deployq.db import Connection
from deployq.durations import elapsed
from deployq.errors import LostJob
from deployq.models import Job, JobStatus, NotifyEvent
from deployq.store._channels import CHANNEL_JOBS, dumps
from deployq.store._job_common import (
    NOTIFY_VALUES,
    Lease,
    Outcome,
    StorePart,
    wants_notification,
)

# The fenced end of an attempt, its timeline row and its NOTIFY in one statement. A failure
# with attempts left goes back to the queue after the backoff delay.
_FINISH = """
WITH cur AS (
    SELECT id, (%(may_retry)s::boolean AND attempt < max_attempts) AS retry FROM jobs
    WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running'
    FOR UPDATE
), u AS (
    UPDATE jobs SET
        status = CASE WHEN cur.retry THEN 'queued' ELSE %(status)s::text END,
        run_after = CASE WHEN cur.retry THEN now() + %(delay)s::interval ELSE run_after END,
        finished_at = CASE WHEN cur.retry THEN NULL ELSE now() END,
        worker_id = CASE WHEN cur.retry THEN NULL ELSE worker_id END,
        cancel_requested = cancel_requested AND NOT cur.retry,
        cancel_force = cancel_force AND NOT cur.retry,
        lease_expires_at = NULL,
        error = %(error)s::text,
        image_ref = coalesce(%(image_ref)s::text, image_ref),
        image_digest = coalesce(%(image_digest)s::text, image_digest),
        scan_summary = coalesce(%(scan)s::jsonb, scan_summary),
        progress = CASE WHEN %(status)s::text = 'succeeded' THEN 100 ELSE progress END,
        updated_at = now()
    FROM cur WHERE jobs.id = cur.id
    RETURNING jobs.*
), e AS (
    INSERT INTO job_events (job_id, kind, from_status, to_status, message, data)
    SELECT id, CASE WHEN status = 'queued' THEN 'retry_scheduled' ELSE status END,
           'running', status,
           CASE WHEN status = 'queued' THEN %(retry_message)s::text ELSE %(message)s::text END,
           jsonb_build_object('attempt', attempt, 'image_digest', %(image_digest)s::text)
    FROM u
)
SELECT u.*, s.name AS server_name, pg_notify(%(channel)s, jsonb_build_object(
    'id', u.id, 'app', u.app_name, 'status', u.status, 'kind', 'finished')::text) AS notified
FROM u LEFT JOIN build_servers s ON s.id = u.server_id
"""


# _FINISH for many attempts in one statement: the same update, timeline row and NOTIFY per
# job, the parameters as arrays (one per job, at the same index). Rows are locked in id order.
_FINISH_MANY = """
WITH i AS (
    SELECT * FROM unnest(%(id)s::bigint[], %(attempt)s::integer[], %(status)s::text[],
        %(may_retry)s::boolean[], %(delay)s::double precision[], %(error)s::text[],
        %(image_ref)s::text[], %(image_digest)s::text[], %(scan)s::text[], %(message)s::text[],
        %(retry_message)s::text[])
        AS i(id, attempt, status, may_retry, delay, error, image_ref, image_digest, scan,
             message, retry_message)
), cur AS (
    SELECT i.*, (i.may_retry AND jobs.attempt < jobs.max_attempts) AS retry
    FROM jobs JOIN i ON jobs.id = i.id AND jobs.attempt = i.attempt
    WHERE jobs.status = 'running'
    ORDER BY jobs.id
    FOR UPDATE OF jobs
), u AS (
    UPDATE jobs SET
        status = CASE WHEN cur.retry THEN 'queued' ELSE cur.status END,
        run_after = CASE WHEN cur.retry THEN now() + cur.delay * interval '1 second'
                    ELSE run_after END,
        finished_at = CASE WHEN cur.retry THEN NULL ELSE now() END,
        worker_id = CASE WHEN cur.retry THEN NULL ELSE worker_id END,
        cancel_requested = cancel_requested AND NOT cur.retry,
        cancel_force = cancel_force AND NOT cur.retry,
        lease_expires_at = NULL,
        error = cur.error,
        image_ref = coalesce(cur.image_ref, jobs.image_ref),
        image_digest = coalesce(cur.image_digest, jobs.image_digest),
        scan_summary = coalesce(cur.scan::jsonb, scan_summary),
        progress = CASE WHEN cur.status = 'succeeded' THEN 100 ELSE progress END,
        updated_at = now()
    FROM cur WHERE jobs.id = cur.id
    RETURNING jobs.*, cur.message AS _message, cur.retry_message AS _retry_message,
        cur.image_digest AS _image_digest
), e AS (
    INSERT INTO job_events (job_id, kind, from_status, to_status, message, data)
    SELECT id, CASE WHEN status = 'queued' THEN 'retry_scheduled' ELSE status END,
           'running', status,
           CASE WHEN status = 'queued' THEN _retry_message ELSE _message END,
           jsonb_build_object('attempt', attempt, 'image_digest', _image_digest)
    FROM u ORDER BY id
)
SELECT u.*, s.name AS server_name, pg_notify(%(channel)s, jsonb_build_object(
    'id', u.id, 'app', u.app_name, 'status', u.status, 'kind', 'finished')::text) AS notified
FROM u LEFT JOIN build_servers s ON s.id = u.server_id
ORDER BY u.id
"""


def _lost(lease: Lease) -> LostJob:
    return LostJob(f"job #{lease.id} attempt {lease.attempt} is no longer ours")


def _event(outcome: Outcome) -> NotifyEvent | None:
    value = outcome.status.value
    return NotifyEvent(value) if value in NOTIFY_VALUES else None


class FinishPart(StorePart):
    """``finish`` and ``finish_many`` of JobStore."""

    def _finish_params(self, lease: Lease, outcome: Outcome) -> dict[str, Any]:
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
            "delay": timedelta(seconds=delay),
            "error": outcome.error,
            "image_ref": outcome.image_ref,
            "image_digest": outcome.image_digest,
            "scan": Jsonb(outcome.scan_summary) if outcome.scan_summary else None,
            "message": outcome.error if status is not JobStatus.SUCCEEDED else None,
            "retry_message": f"attempt {lease.attempt} failed: {outcome.error}; "
            f"retry in {elapsed(delay)}",
            "channel": CHANNEL_JOBS,
        }

    async def finish(self, lease: Lease, outcome: Outcome) -> Job:
        """End an attempt (fenced: LostJob when it is no longer ours).

        A retryable failure with attempts left is queued again with ``run_after`` after an
        exponential backoff with jitter; anything else is final.
        """
        params = self._finish_params(lease, outcome)
        event = _event(outcome)
        async with self.store.connection() as conn:
            # one statement is atomic on its own: the transaction is only for outbox rows
            outbox = event is not None and wants_notification(lease.app, event)
            async with conn.transaction() if outbox else contextlib.nullcontext():
                row = await (await conn.execute(_FINISH, params)).fetchone()
                if row is None:
                    raise _lost(lease)
                row.pop("notified")
                finished = Job.model_validate(row)
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
                rows = await (
                    await conn.execute(_FINISH_MANY, self._columns(items, round_.values()))
                ).fetchall()
                for row in rows:
                    n = round_[int(row["id"])]
                    lease, outcome = items[n]
                    for extra in ("notified", "_message", "_retry_message", "_image_digest"):
                        row.pop(extra)
                    finished = Job.model_validate(row)
                    event = _event(outcome)
                    if event is not None and wants_notification(lease.app, event):
                        await self._outbox(conn, lease, outcome, finished)
                    answers[n] = finished
        return answers

    def _columns(
        self, items: Sequence[tuple[Lease, Outcome]], indexes: Iterable[int]
    ) -> dict[str, Any]:
        """The parameters of _FINISH_MANY: one array per parameter of _FINISH."""
        columns: dict[str, list[Any]] = {}
        for n in indexes:
            params = self._finish_params(*items[n])
            params["delay"] = params["delay"].total_seconds()
            scan = items[n][1].scan_summary
            params["scan"] = dumps(scan) if scan else None
            for key, value in params.items():
                columns.setdefault(key, []).append(value)
        return {**columns, "channel": CHANNEL_JOBS}

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
