"""Pydantic models shared by every layer: the words deployq speaks in."""

from __future__ import annotations

import re
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

APP_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    SUPERSEDED = "superseded"

    @property
    def is_final(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


class Priority(IntEnum):
    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3

    @classmethod
    def parse(cls, value: str | int) -> Priority:
        """Accept ``high``, ``HIGH`` or ``2``."""
        if isinstance(value, int) or (value.isascii() and value.isdigit()):
            return cls(int(value))
        try:
            return cls[value.upper()]
        except KeyError:
            raise ValueError(
                f"unknown priority {value!r}: use low, normal, high or critical"
            ) from None


class Step(StrEnum):
    CHECKOUT = "checkout"
    DETECT = "detect"
    BUILD = "build"
    PUSH = "push"
    VERIFY = "verify"


#: progress percent when each step starts
STEP_START_PERCENT = {
    Step.CHECKOUT: 0,
    Step.DETECT: 10,
    Step.BUILD: 15,
    Step.PUSH: 80,
    Step.VERIFY: 95,
}
INTERRUPTIBLE_STEPS = frozenset({Step.CHECKOUT, Step.DETECT, Step.BUILD})


class TriggerKind(StrEnum):
    WEBHOOK = "webhook"
    MANUAL = "manual"
    RETRY = "retry"
    RECONCILE = "reconcile"


class RefType(StrEnum):
    BRANCH = "branch"
    TAG = "tag"
    PULL_REQUEST = "pr"


class SupersedePolicy(StrEnum):
    QUEUE = "queue"
    SUPERSEDE = "supersede"
    CANCEL_RUNNING = "cancel-running"


class TokenScope(StrEnum):
    READ = "read"
    DEPLOY = "deploy"
    ADMIN = "admin"

    def allows(self, needed: TokenScope) -> bool:
        order = [TokenScope.READ, TokenScope.DEPLOY, TokenScope.ADMIN]
        return order.index(self) >= order.index(needed)


class NotifyEvent(StrEnum):
    QUEUED = "queued"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


DEFAULT_NOTIFY_EVENTS = (
    NotifyEvent.STARTED,
    NotifyEvent.SUCCEEDED,
    NotifyEvent.FAILED,
    NotifyEvent.TIMED_OUT,
    NotifyEvent.CANCELLED,
)


class Model(BaseModel):
    model_config = ConfigDict(from_attributes=True, use_enum_values=False)


class AppSpec(Model):
    """What an operator configures for an app (``deployq app add``)."""

    name: str
    repo_url: str
    branches: list[str] = Field(default_factory=lambda: ["main"])
    build_tags: bool = False
    build_prs: bool = False
    paths: list[str] = Field(default_factory=list)
    image: str | None = None
    """Repository in the registry, e.g. ``team/myapp``; default ``<registry_project>/<name>``."""
    dockerfile: str = "Dockerfile"
    context: str = "."
    target: str | None = None
    build_args: dict[str, str] = Field(default_factory=dict)
    build_secrets: dict[str, str] = Field(default_factory=dict)
    """BuildKit secret id -> value, mounted with ``RUN --mount=type=secret,id=...``."""
    webhook_secret: str | None = None
    supersede_policy: SupersedePolicy = SupersedePolicy.SUPERSEDE
    concurrency: int = Field(1, ge=1, le=64)
    priority: Priority = Priority.NORMAL
    max_attempts: int | None = Field(None, ge=1, le=100)
    timeout_s: float | None = Field(None, gt=0)
    required_arch: str | None = None
    required_labels: list[str] = Field(default_factory=list)
    submodules: bool = False
    notify_emails: list[str] = Field(default_factory=list)
    notify_events: list[NotifyEvent] = Field(default_factory=lambda: list(DEFAULT_NOTIFY_EVENTS))
    notify_pusher: bool = False
    notify_webhook_url: str | None = None
    notify_webhook_secret: str | None = None
    reconcile_interval_s: float | None = Field(None, gt=0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not APP_NAME_RE.match(value):
            raise ValueError(
                "app names are 1-63 lower-case letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        return value


class App(AppSpec):
    id: int
    repo_identity: str
    created_at: datetime
    updated_at: datetime


class Trigger(Model):
    """A request to build: from a webhook, an operator, a retry or reconciliation."""

    kind: TriggerKind
    provider: str = "manual"
    """github, gitlab or manual."""
    repo: str | None = None
    """Repository identity of the payload (normalised), used to match apps."""
    app: str | None = None
    """Build this app only (manual triggers)."""
    ref: str
    """Full ref: refs/heads/main, refs/tags/v1, refs/pull/7/head."""
    ref_type: RefType = RefType.BRANCH
    commit_sha: str | None = None
    commit_message: str | None = None
    commit_author: str | None = None
    pusher: str | None = None
    pusher_email: str | None = None
    changed_paths: list[str] | None = None
    """Files touched by the push; None when unknown (every app matches)."""
    delivery_id: str | None = None
    priority: Priority | None = None
    actor: str | None = None
    """Who asked (operator user name, token name, provider)."""
    retry_of: int | None = None

    @property
    def short_ref(self) -> str:
        for prefix in ("refs/heads/", "refs/tags/"):
            if self.ref.startswith(prefix):
                return self.ref[len(prefix) :]
        return self.ref


class Job(Model):
    id: int
    app_id: int | None
    app_name: str
    provider: str
    trigger: TriggerKind
    delivery_id: str | None
    repo_url: str
    ref: str
    ref_type: RefType
    branch: str
    commit_sha: str | None
    commit_message: str | None
    commit_author: str | None
    pusher: str | None
    pusher_email: str | None
    priority: Priority
    status: JobStatus
    progress: int
    step: str | None
    attempt: int
    max_attempts: int
    server_id: int | None
    server_name: str | None = None
    worker_id: str | None
    lease_expires_at: datetime | None
    run_after: datetime
    enqueued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    error: str | None
    image_ref: str | None
    image_digest: str | None
    scan_summary: dict[str, Any] | None
    step_durations: dict[str, float]
    retry_of: int | None
    cancel_requested: bool
    cancel_force: bool
    wait_reason: str | None
    timeout_s: float | None
    pruned_at: datetime | None = None
    """When retention deleted this job's logs and events (the job row stays)."""

    @property
    def short_sha(self) -> str:
        return (self.commit_sha or "")[:7]

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or self.updated_at
        return max(0.0, (end - self.started_at).total_seconds())


class JobEvent(Model):
    id: int
    job_id: int
    at: datetime
    kind: str
    from_status: str | None
    to_status: str | None
    actor: str | None
    message: str | None
    data: dict[str, Any] | None


class LogLine(Model):
    job_id: int
    seq: int
    at: datetime
    stream: str
    line: str


class BuildServer(Model):
    id: int
    name: str
    docker_host: str
    capacity: int
    arch: str
    labels: list[str]
    draining: bool
    healthy: bool
    last_heartbeat_at: datetime | None
    last_error: str | None
    engine_version: str | None
    created_at: datetime
    running: int = 0


class ApiToken(Model):
    id: int
    name: str
    scope: TokenScope
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class WebhookDelivery(Model):
    id: int
    received_at: datetime
    provider: str
    event: str | None
    delivery_id: str | None
    repo: str | None
    ref: str | None
    result: str
    status_code: int
    job_ids: list[int]
    reason: str | None
    replay_of: int | None = None
    spooled: bool = False


class Notification(Model):
    id: int
    job_id: int
    event: str
    channel: str
    target: str
    status: str
    attempts: int
    max_attempts: int
    next_attempt_at: datetime
    last_error: str | None
    idempotency_key: str
    created_at: datetime
    sent_at: datetime | None
    attempt_started_at: datetime | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    """What the templates render: a snapshot of the job and app at the event."""


class QueueStats(Model):
    queued: int
    queued_by_priority: dict[str, int]
    running: int
    servers: list[dict[str, Any]]
    succeeded_24h: int
    failed_24h: int
    cancelled_24h: int
    timed_out_24h: int
    superseded_24h: int = 0
    success_rate_24h: float | None
    """succeeded / (succeeded + failed + timed_out); cancelled and superseded jobs not counted"""
    mean_duration_s: float | None
    p95_duration_s: float | None
    oldest_queued_age_s: float | None


class QueuePosition(Model):
    """Where a queued job stands: 1 is next; the start is an estimate from recent durations."""

    job_id: int
    position: int
    ahead: int
    estimated_start: datetime
    estimated_wait_s: float
