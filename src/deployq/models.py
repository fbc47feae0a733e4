"""Pydantic models shared by every layer: the words deployq speaks in."""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import IntEnum, StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from deployq.errors import PlanError
from deployq.redact import redact_urls, url_credentials
from deployq.sizes import format_bytes
from deployq.validation import APP_NAME_RE, APP_NAME_RULE, check_command, check_version

#: the first line of an OpenSSH or PEM private key
PRIVATE_KEY_RE = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")


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
    DEPLOY = "deploy"


#: progress percent when each step starts
STEP_START_PERCENT = {
    Step.CHECKOUT: 0,
    Step.DETECT: 10,
    Step.BUILD: 15,
    Step.PUSH: 80,
    Step.VERIFY: 95,
    Step.DEPLOY: 97,
}
INTERRUPTIBLE_STEPS = frozenset({Step.CHECKOUT, Step.DETECT, Step.BUILD})


class TriggerKind(StrEnum):
    WEBHOOK = "webhook"
    MANUAL = "manual"
    RETRY = "retry"
    RECONCILE = "reconcile"
    ROLLBACK = "rollback"


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


class DeployStrategy(StrEnum):
    RECREATE = "recreate"
    """stop the old container, start the new one (needed when a host port is published)"""
    START_FIRST = "start-first"
    """start the new container beside the old one, switch when it is healthy"""


_PORT_RE = re.compile(
    r"^(?:(?:(?P<ip>\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):)?(?P<host>\d{1,5})?:)?"
    r"(?P<container>\d{1,5})(?:/(?P<proto>tcp|udp))?$"
)
_VOLUME_RE = re.compile(r"^(?P<source>[^:]+):(?P<path>/[^:]*)(?::(?P<mode>ro|rw))?$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class PortSpec(Model):
    """One ``docker run -p`` mapping: ``[IP:][HOST:]CONTAINER[/PROTO]``."""

    ip: str | None
    host_port: int | None
    container_port: int
    proto: str = "tcp"

    @classmethod
    def parse(cls, text: str) -> PortSpec:
        match = _PORT_RE.match(text.strip())
        if match is None:
            raise ValueError(
                f"port {text!r}: expected [IP:]HOST:CONTAINER[/tcp|udp] as in docker run -p, "
                "e.g. 8080:80 or 127.0.0.1:8080:80"
            )
        host = int(match["host"]) if match["host"] else None
        container = int(match["container"])
        for port in (host, container):
            if port is not None and not 0 < port < 65536:
                raise ValueError(f"port {text!r}: {port} is not a port number (1-65535)")
        ip = match["ip"].strip("[]") if match["ip"] else None
        return cls(ip=ip, host_port=host, container_port=container, proto=match["proto"] or "tcp")


class ScanAction(StrEnum):
    """What an app's scan policy does to a job whose image has too many criticals."""

    FAIL = "fail"
    BLOCK_DEPLOY = "block-deploy"


class ScanPolicy(Model):
    """``app add --scan-policy ACTION --max-critical N`` (docs/harbor.md): a job of the app
    waits for its image's scan; more than ``max_critical`` critical vulnerabilities fail it
    or keep it from deploying."""

    action: ScanAction
    max_critical: int = Field(0, ge=0)


class DeploySettings(Model):
    """How an app runs once built (``deployq app add --deploy-target ...``).

    ``env`` values are secrets: hidden by ``app show`` and redacted from job logs."""

    targets: list[str] = Field(default_factory=list)
    """Names of deploy targets (``deployq target add``) the image runs on."""
    webhook_url: str | None = None
    """POST a signed JSON here and wait for a 2xx (teams with their own orchestrator)."""
    webhook_secret: str | None = None
    ports: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    volumes: list[str] = Field(default_factory=list)
    network: str | None = None
    network_aliases: list[str] = Field(default_factory=list)
    health_path: str | None = None
    health_port: int | None = Field(None, gt=0, lt=65536)
    health_cmd: str | None = None
    health_timeout_s: float = Field(60.0, gt=0, le=3600)
    strategy: DeployStrategy = DeployStrategy.RECREATE
    keep_releases: int = Field(3, ge=1, le=100)
    """Stopped containers of earlier releases kept per target (for a quick rollback)."""

    @property
    def enabled(self) -> bool:
        """Whether jobs of the app have a deploy step."""
        return bool(self.targets or self.webhook_url)

    @property
    def port_specs(self) -> list[PortSpec]:
        return [PortSpec.parse(p) for p in self.ports]

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: list[str]) -> list[str]:
        for port in value:
            PortSpec.parse(port)
        return value

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, value: list[str]) -> list[str]:
        for volume in value:
            if not _VOLUME_RE.match(volume):
                raise ValueError(
                    f"volume {volume!r}: expected NAME:/path[:ro] (a named volume or a host "
                    "directory, then the absolute path in the container)"
                )
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ENV_KEY_RE.match(key):
                raise ValueError(f"environment variable name {key!r}: letters, digits and _")
        return value

    @field_validator("health_path")
    @classmethod
    def _health_path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"health path {value!r} must start with /")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DeploySettings:
        if self.health_path and self.health_cmd:
            raise ValueError("give --health-path or --health-cmd, not both")
        if self.health_path and self.health_port is None:
            containers = {p.container_port for p in self.port_specs}
            if len(containers) != 1:
                raise ValueError("--health-path needs --health-port (the container's port)")
            self.health_port = containers.pop()
        if self.network_aliases and not self.network:
            raise ValueError("--network-alias needs --network (aliases live on a network)")
        published = [p for p in self.port_specs if p.host_port is not None]
        if self.strategy is DeployStrategy.START_FIRST and published:
            raise ValueError(
                "start-first runs two containers at once, which cannot both publish host port "
                f"{published[0].host_port}: use --strategy recreate, or reach the app through "
                "--network and --network-alias"
            )
        return self


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
    max_queued: int | None = Field(None, ge=1)
    """At most this many queued jobs of the app; a new one beyond is refused (QueueFull)."""
    keep_tags: int | None = Field(None, ge=1, le=100_000)
    """Registry tags (<sha7>) `deployq prune` keeps per branch; None: DEPLOYQ_REGISTRY_KEEP_TAGS."""
    required_arch: str | None = None
    required_labels: list[str] = Field(default_factory=list)
    submodules: bool = False
    notify_emails: list[str] = Field(default_factory=list)
    notify_events: list[NotifyEvent] = Field(default_factory=lambda: list(DEFAULT_NOTIFY_EVENTS))
    notify_pusher: bool = False
    notify_webhook_url: str | None = None
    notify_webhook_secret: str | None = None
    forge_token: str | None = None
    """GitHub/GitLab token: each job's commit statuses are sent with it (docs/forge-status.md)."""
    git_token: str | None = None
    """HTTPS token for this app's repository (instead of DEPLOYQ_GIT_TOKEN; deployq.gitauth)."""
    git_ssh_key: str | None = None
    """SSH deploy key (the private key's text) for this app's repository (instead of
    DEPLOYQ_GIT_SSH_KEY)."""
    reconcile_interval_s: float | None = Field(None, gt=0)
    deploy: DeploySettings | None = None
    """Where and how the image runs after verify; None: build and push only."""
    install_cmd: str | None = None
    """Zero-config builds: replaces the detected install command (docs/zero-config.md)."""
    build_cmd: str | None = None
    start_cmd: str | None = None
    runtime_version: str | None = None
    """Language version of zero-config builds, e.g. ``3.12`` or ``22``."""
    scan_policy: ScanPolicy | None = None
    """What the vulnerability scan's result does to the job; None: it is only recorded."""
    registry_username: str | None = None
    """The app's own registry login (e.g. a Harbor robot); default DEPLOYQ_REGISTRY_USERNAME."""
    registry_password: str | None = None
    """Its password (sealed in app_secrets, docs/secrets.md)."""

    @field_validator("install_cmd", "build_cmd", "start_cmd")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_command(value, "the value")
        except PlanError as exc:
            raise ValueError(exc.message) from None

    @field_validator("runtime_version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_version(value, "the value")
        except PlanError as exc:
            raise ValueError(exc.message) from None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not APP_NAME_RE.match(value):
            raise ValueError(APP_NAME_RULE)
        return value

    @field_validator("repo_url")
    @classmethod
    def _repo_url(cls, value: str) -> str:
        problem = url_credentials(value)
        if problem is not None:
            raise ValueError(
                f"the repository URL {redact_urls(value)} is refused: {problem}, and URLs are "
                "shown and stored in the clear; give the URL without credentials and the "
                "app's own --git-token (stored encrypted), or set DEPLOYQ_GIT_TOKEN (HTTPS, "
                "sent only to DEPLOYQ_GIT_TOKEN_HOSTS) or DEPLOYQ_GIT_SSH_KEY instead"
            )
        return value

    @field_validator("git_token")
    @classmethod
    def _git_token(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c.isspace() for c in value)):
            raise ValueError("the git token must be one word without white space")
        return value

    @field_validator("git_ssh_key")
    @classmethod
    def _git_ssh_key(cls, value: str | None) -> str | None:
        if value is not None and not PRIVATE_KEY_RE.search(value):
            raise ValueError("the SSH deploy key must be a private key (not the .pub file)")
        return value

    @model_validator(mode="after")
    def _credentials_fit_the_transport(self) -> AppSpec:
        https = self.repo_url.lower().startswith(("https://", "http://"))
        if self.git_token is not None and not https:
            raise ValueError(
                "a git token is sent over HTTP(S) only, and the repository URL is not https://: "
                "give --git-ssh-key for an ssh repository (or clear the token)"
            )
        if self.git_ssh_key is not None and https:
            raise ValueError(
                "an SSH deploy key is used over ssh only, and the repository URL is https://: "
                "give --git-token for an https repository (or clear the key)"
            )
        return self


class App(AppSpec):
    id: int
    repo_identity: str
    forge_status: bool = False
    """Whether jobs report commit statuses (the app has a forge token; readable without it)."""
    created_at: datetime
    updated_at: datetime

    @field_validator("repo_url")
    @classmethod
    def _repo_url(cls, value: str) -> str:
        return value  # stored before URLs with credentials were refused: shown redacted


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
    deploy_only: bool = False
    """A rollback: deploy ``image_digest`` (built before) without building."""

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


class JobScan(Model):
    """A scan the background collector looks after (``store.scans.claim_due``)."""

    job_id: int
    app_id: int | None
    project: str
    repository: str
    """Inside the project: ``team/web`` of ``deployq/team/web``."""
    digest: str
    state: str
    polls: int
    requested_at: datetime
    deadline_at: datetime
    overdue: bool


class LogLine(Model):
    job_id: int
    seq: int
    at: datetime
    stream: str
    line: str


class ServerView(Model):
    """One host's view of a build server's health (table server_health)."""

    host_id: str
    healthy: bool
    """the view its workers act on: changes only after two observations in a row disagree"""
    last_ok: bool
    """the last observation: the engine answered"""
    streak: int
    """observations in a row equal to the last one"""
    latency_ms: int | None
    error: str | None
    """why the last observation made the server unusable (engine error, low disk)"""
    observed_at: datetime
    changed_at: datetime
    recent: bool = True
    """observed within the last minute: only recent views make the shared state"""

    def summary(self) -> str:
        """``host-a ok 12ms``, ``host-b failed``, with what is not settled yet."""
        if self.healthy:
            text = f"{self.host_id} ok"
            text += f" {self.latency_ms}ms" if self.last_ok and self.latency_ms is not None else ""
            text += "" if self.last_ok else " (1 failed probe)"
        else:
            text = f"{self.host_id} failed" + (" (1 answer)" if self.last_ok else "")
        return text if self.recent else f"{text} (no longer probing)"


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
    #: paths of the PEM files for mutual TLS to a tcp:// engine (all three or none)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    #: the host whose workers alone build here (a unix:// engine); None: any host
    host_id: str | None = None
    #: each host's view of its health, by host id; ``healthy`` is false only when every
    #: recent view is failed
    views: list[ServerView] = []

    def seen_by(self) -> str:
        """Every host's view in one line (`server list`, the console)."""
        return ", ".join(view.summary() for view in self.views)


class Worker(Model):
    """A running worker process (``deployq workers``)."""

    id: str
    host: str
    """the host name it runs on"""
    host_id: str | None
    """its host's stable id (deployq.hostid): which unix:// servers it builds on"""
    pid: int
    concurrency: int
    started_at: datetime
    heartbeat_at: datetime
    stopping: bool
    running: int = 0


class DeployTarget(Model):
    """A Docker engine apps run on (``deployq target add``)."""

    id: int
    name: str
    docker_host: str
    healthy: bool
    last_probe_at: datetime | None
    last_error: str | None
    engine_version: str | None
    created_at: datetime


class Release(Model):
    """One successful deploy of an app on a target; ``replaced_at`` None: it runs now."""

    id: int
    app_name: str
    target: str
    job_id: int | None
    commit_sha: str | None
    image_ref: str
    digest: str
    container: str | None
    started_at: datetime
    replaced_at: datetime | None

    @property
    def current(self) -> bool:
        return self.replaced_at is None


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
    body_bytes: int | None = None
    """Size of the body kept for replay (verified deliveries), also once it was pruned."""
    body_pruned_at: datetime | None = None
    """When retention dropped the body (DEPLOYQ_DELIVERY_BODY_RETENTION); the row stays."""

    @property
    def body_state(self) -> str:
        """``body 1.2 KiB``, ``body pruned 2026-12-01`` or ``no body`` (not verified)."""
        if self.body_pruned_at is not None:
            return f"body pruned {self.body_pruned_at:%Y-%m-%d}"
        if self.body_bytes is not None:
            return f"body {format_bytes(self.body_bytes)}"
        return "no body"


class PushedImage(Model):
    """An image a build of the app pushed (registry tag retention): tags ``<sha7>`` and
    ``<branch>`` of ``image_ref``'s repository."""

    job_id: int
    branch: str
    commit_sha: str
    image_ref: str
    at: datetime
    """When the build ended (or was queued, while it runs)."""


class ImageInUse(Model):
    """An image a target runs, a kept release, or a queued/running job needs: never deleted.
    A job not pushed yet has no digest, only the commit whose ``<sha7>`` tag it will push."""

    digest: str | None = None
    image_ref: str | None = None
    commit_sha: str | None = None


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
    estimated_start: datetime | None
    """None while no healthy server takes jobs (no estimate is honest then)"""
    estimated_wait_s: float | None
    expected_duration_s: float | None = None
    """how long its build should take: the app's usual time (see Estimate)"""


class Estimate(Model):
    """How long a queued or running job should take, and when it should start and end.

    The duration is the median of the app's last 20 successful builds (``based_on`` says
    how many there were; with none, of every app's, and with none at all 120 s). The start
    of a queued job comes from a simulation of the queue (``deployq.estimates``).
    """

    job_id: int
    expected_duration_s: float
    based_on: int
    """successful builds of the app the duration is the median of (0: not the app's own)"""
    expected_start: datetime | None
    expected_finish: datetime | None


class BuildFigures(Model):
    """Jobs that ended in a period: counts, success rate, wait and build times (seconds).

    Wait: enqueued to the start of the last attempt. Build: start to end of builds that
    reached a verdict (succeeded, failed, timed out). success_rate: succeeded / verdicts.
    """

    jobs: int
    succeeded: int
    failed: int
    cancelled: int
    success_rate: float | None
    avg_wait_s: float | None
    p95_wait_s: float | None
    avg_build_s: float | None
    p95_build_s: float | None


class DayFigures(BuildFigures):
    """A row of the ``build_performance_summary`` view: one app, one day (UTC)."""

    app: str
    day: date


class BuildStats(BuildFigures):
    """``deployq stats``: the window's figures, what is active now, and the days in it."""

    app: str | None
    since: datetime
    until: datetime
    queued: int
    running: int
    oldest_wait_s: float | None
    days: list[DayFigures]
