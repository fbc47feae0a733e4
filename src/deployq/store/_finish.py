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
from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Jsonb

from deployq.backoff import backoff_s
from deployq.db import Connection
from deployq.errors import LostJob
from deployq.models import Job, JobStatus, NotifyEvent
from deployq.store._job_common import (
    NOTIFY_VALUES,
    Lease,
    Outcome,
    StorePart,
    wants_notification,
)
from deployq.store._queries import sql


def _finished(row: dict[str, Any]) -> Job:
    """The job of a ``finish_jobs`` row (without the statement's own columns)."""
    for extra in ("notified", "_message", "_retry_message", "_image_digest"):
        row.pop(extra)
    return Job.model_validate(row)


def _lost(lease: Lease) -> LostJob:
    return LostJob(f"job #{lease.id} attempt {lease.attempt} is no longer ours")


def _event(outcome: Outcome) -> NotifyEvent | None:
    value = outcome.status.value
    return NotifyEvent(value) if value in NOTIFY_VALUES else None


class FinishPart(StorePart):
    """``finish`` and ``finish_many`` of JobStore."""

    def _item(self, lease: Lease, outcome: Outcome) -> dict[str, Any]:
        """One element of ``finish_jobs``' items."""
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
            "scan": outcome.scan_summary or None,
            "message": outcome.error if status is not JobStatus.SUCCEEDED else None,
            "retry_message": f"attempt {lease.attempt} failed: {outcome.error}; "
            f"retry in {delay:.0f}s",
        }

    async def finish(self, lease: Lease, outcome: Outcome) -> Job:
        """End an attempt (fenced: LostJob when it is no longer ours).

        A retryable failure with attempts left is queued again with ``run_after`` after an
        exponential backoff with jitter; anything else is final.
        """
        params = {"items": Jsonb([self._item(lease, outcome)])}
        event = _event(outcome)
        async with self.store.connection() as conn:
            # one statement is atomic on its own: the transaction is only for outbox rows
            outbox = event is not None and wants_notification(lease.app, event)
            async with conn.transaction() if outbox else contextlib.nullcontext():
                row = await (await conn.execute(sql("finish_jobs"), params)).fetchone()
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
                params = {"items": Jsonb([self._item(*items[n]) for n in round_.values()])}
                rows = await (await conn.execute(sql("finish_jobs"), params)).fetchall()
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
