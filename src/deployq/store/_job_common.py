"""What the objects of the job queue share: result types, timeline events, NOTIFY.

The queue is split by responsibility, one object each: ``store.queue`` (triggers become
jobs, ``_queue``), ``store.leases`` (the worker's side: claim, heartbeat, finish, rescue,
``_leases``), ``store.jobs`` (reads and operator actions, ``_jobs``), ``store.waits`` (why
jobs wait, ``_waits``) and ``store.retention`` (prune, ``_retention``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from deployq.db import Connection
from deployq.models import App, Job, JobStatus, NotifyEvent, RefType, Step, Trigger
from deployq.store._channels import CHANNEL_JOBS, dumps
from deployq.store._queries import sql

if TYPE_CHECKING:
    from deployq.store._store import Store

#: pg_advisory_xact_lock key held while claiming or rescuing ("claim" in ASCII)
CLAIM_LOCK_KEY = 0x636C61696D
#: how many queued jobs one claim looks at before giving up on this round
CLAIM_SCAN_LIMIT = 200

NOTIFY_VALUES = frozenset(e.value for e in NotifyEvent)

#: job columns a worker may set through set_progress
WORKER_FIELDS = frozenset(
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
class TakenAttempt:
    """An attempt whose lease expired, now held by a rescuer (``store.leases.take_expired``):
    the job stays running, its slot on the server taken, until ``requeue_taken``."""

    id: int
    attempt: int
    app_name: str
    server_id: int | None
    server_name: str | None
    #: the worker that stopped answering
    lost_worker: str
    enqueued_at: datetime

    @property
    def held(self) -> tuple[int, int]:
        return (self.id, self.attempt)


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as the worker reports it."""

    status: JobStatus
    error: str | None = None
    image_ref: str | None = None
    image_digest: str | None = None
    retryable: bool = True
    #: the attempt's last step (a success's, at 100 %) and the durations of its steps,
    #: written with the outcome instead of by a progress write before it
    step: Step | None = None
    step_durations: dict[str, float] | None = None
    #: the attempt's last log lines (already redacted), stored with the outcome
    log_lines: tuple[str, ...] = ()


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
    """Which leases a heartbeat renewed, which are lost, which jobs must stop."""

    renewed: set[int]
    lost: set[int]
    cancel: dict[int, bool]
    """job id -> force, for jobs whose cancel was requested (in case a NOTIFY was lost)"""


def wants_notification(app: App | None, event: NotifyEvent) -> bool:
    """Whether ``event`` of a job of ``app`` may write outbox rows; False saves the
    transaction that would hold them. Unknown (None) apps are asked by the outbox."""
    if app is None:
        return True
    has_target = bool(app.notify_emails or app.notify_pusher or app.notify_webhook_url)
    return app.forge_status or (has_target and event in app.notify_events)


class StorePart:
    """Base of the queue's objects: they reach PostgreSQL through the Store's connections."""

    def __init__(self, store: Store) -> None:
        self.store = store


def short_ref(trigger: Trigger) -> str:
    """The branch column: ``main``, ``v1.2``, ``pr-7`` (GitHub), ``mr-7`` (GitLab)."""
    if trigger.ref_type is RefType.PULL_REQUEST:
        parts = trigger.ref.split("/")
        if len(parts) > 2 and parts[1] in _REVIEW_PREFIXES:
            return f"{_REVIEW_PREFIXES[parts[1]]}-{parts[2]}"
        return trigger.ref
    return trigger.short_ref


#: refs/pull/N/head (GitHub) and refs/merge-requests/N/head (GitLab)
_REVIEW_PREFIXES = {"pull": "pr", "merge-requests": "mr"}


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
    """Append a row to the job's timeline (inside the caller's transaction)."""
    await conn.execute(
        sql("job_event_add"),
        {
            "job_id": job_id,
            "kind": kind,
            "from_status": from_status,
            "to_status": to_status,
            "actor": actor,
            "message": message,
            "data": Jsonb(data) if data else None,
        },
    )


async def notify_job(conn: Connection, job: Job | dict[str, Any], kind: str) -> None:
    """NOTIFY CHANNEL_JOBS that a job changed (delivered when the transaction commits)."""
    if isinstance(job, Job):
        payload = {"id": job.id, "app": job.app_name, "status": job.status.value, "kind": kind}
    else:
        payload = {"id": job["id"], "app": job["app_name"], "status": job["status"], "kind": kind}
    await conn.execute(sql("notify"), {"channel": CHANNEL_JOBS, "payload": dumps(payload)})
