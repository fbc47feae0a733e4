"""deployq deploy | jobs | job show | logs | cancel | retry: the queue."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from typing import Any

import click

from deployq.attempts import JobTimes, job_times
from deployq.cli.common import CliState, common_options, emit, table, to_jsonable, with_store
from deployq.durations import elapsed
from deployq.errors import DeployqError, InvalidInput
from deployq.imageref import pull_reference
from deployq.logfollow import LogWaker
from deployq.manual import manual_trigger
from deployq.models import Estimate, Job, JobStatus, Priority
from deployq.scans import scan_text
from deployq.store import Store


def operator() -> str:
    """The operator's user name: the actor of the events a command writes."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


def _ago(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return elapsed((datetime.now(UTC) - moment).total_seconds()) + " ago"


def _trigger(job: Job) -> str:
    """``manual``, ``webhook (github)``: the provider only when it adds something."""
    kind = job.trigger.value
    return kind if job.provider in ("manual", kind) else f"{kind} ({job.provider})"


def _indent(text: str | None, prefix: str = " " * 13) -> str | None:
    """Continuation lines of a multi-line value aligned under its first line."""
    return text.replace("\n", "\n" + prefix) if text else text


def _state(job: Job) -> str:
    if job.status is JobStatus.RUNNING:
        return f"running {job.progress}% {job.step or ''}".rstrip()
    return job.status.value


@click.command("deploy")
@click.argument("app")
@click.option("--ref", help="Branch, tag (tags/v1) or full ref; default the app's branch.")
@click.option("--commit", "sha", help="Commit to build (default: the ref's head at checkout).")
@click.option(
    "--priority", type=click.Choice([p.name.lower() for p in Priority]), help="Default: the app's."
)
@common_options
@with_store
async def deploy_cmd(
    state: CliState, store: Store, app: str, ref: str | None, sha: str | None, priority: str | None
) -> None:
    """Queue a build of APP now."""
    user = operator()
    trigger = manual_trigger(
        await store.apps.get(app), actor=user, ref=ref, commit=sha, priority=priority
    )
    result = await store.queue.enqueue(trigger)
    job = result.jobs[0]
    position = await store.jobs.queue_position(job.id)
    text = f"queued job #{job.id} for {job.app_name} ({job.branch}"
    text += f"@{job.short_sha})" if job.commit_sha else ")"
    if position is not None:
        text += f", position {position.position} in the queue"
    else:  # a worker took it between the enqueue and this look
        now = await store.jobs.get(job.id)
        text += f", {_state(now)}" + (f" on {now.server_name}" if now.server_name else "")
    if result.superseded:
        text += "; superseded " + ", ".join(f"#{i}" for i in result.superseded)
    data = {
        "jobs": result.jobs,
        "superseded": result.superseded,
        "position": position.position if position else None,
    }
    emit(state, data, text)


@click.command("jobs")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in JobStatus]),
    help="Only jobs in this state (repeat).",
)
@click.option("--app", help="Only this app's jobs.")
@click.option("--server", help="Only jobs that ran on this build server.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=30, show_default=True)
@click.option("--before", "before_id", type=int, help="Page: jobs older than this id.")
@common_options
@with_store
async def jobs_cmd(
    state: CliState,
    store: Store,
    statuses: tuple[str, ...],
    app: str | None,
    server: str | None,
    limit: int,
    before_id: int | None,
) -> None:
    """List jobs, newest first, with why each queued one waits."""
    jobs = await store.jobs.recent(
        status=[JobStatus(s) for s in statuses] or None,
        app=app,
        server=server,
        limit=limit,
        before_id=before_id,
    )
    reasons = await store.waits.reasons([j.id for j in jobs if j.status is JobStatus.QUEUED])
    data = [{**to_jsonable(j), "wait_reason": reasons.get(j.id)} for j in jobs]

    def text() -> str:
        if not jobs:
            return "no jobs: queue one with `deployq deploy APP`"
        rows = [
            [
                f"#{j.id}",
                j.app_name,
                f"{j.branch}@{j.short_sha}" if j.commit_sha else j.branch,
                _state(j),
                j.server_name or "",
                f"{j.attempt}/{j.max_attempts}",
                _ago(j.enqueued_at),
                reasons.get(j.id) or j.error or "",
            ]
            for j in jobs
        ]
        return table(["ID", "APP", "REF", "STATUS", "SERVER", "TRY", "QUEUED", "NOTE"], rows)

    emit(state, data, text)


@click.group("job")
def job_group() -> None:
    """One job: its details and timeline."""


@job_group.command("show")
@click.argument("job_id", type=int)
@click.option(
    "--pull-ref",
    is_flag=True,
    help="Print only the pushed image by digest (HOST/REPO@sha256:…), for docker pull.",
)
@common_options
@with_store
async def job_show(state: CliState, store: Store, job_id: int, pull_ref: bool) -> None:
    """A job's details, timeline, and (while queued) why it waits and when it should start."""
    job = await store.jobs.get(job_id)
    pull = pull_reference(job.image_ref, job.image_digest)
    if pull_ref:
        if pull is None:
            raise InvalidInput(f"job #{job_id} pushed no image ({job.status.value})")
        click.echo(pull)
        return
    events = await store.jobs.events(job_id)
    reason = await store.waits.reason(job_id)
    position = await store.jobs.queue_position(job_id)
    estimate = (await store.estimates.for_jobs([job_id])).get(job_id)
    times = job_times(job, events)
    data = {
        "job": job,
        "total_s": times.total_s,
        "attempts": [
            {"attempt": a.attempt, "seconds": a.seconds, "outcome": a.outcome}
            for a in times.attempts
        ],
        "image": job.image_ref if pull else None,
        "digest": job.image_digest if pull else None,
        "pull": pull,
        "events": events,
        "wait_reason": reason,
        "queue_position": position,
        "estimate": estimate,
    }

    def text() -> str:
        fields: list[tuple[str, Any]] = [
            ("app", job.app_name),
            ("ref", job.ref),
            ("commit", f"{job.commit_sha or '(head at checkout)'} {job.commit_message or ''}"),
            ("pushed by", job.pusher),
            ("trigger", _trigger(job)),
            ("priority", job.priority.name.lower()),
            ("status", _state(job)),
            ("attempt", f"{job.attempt}/{job.max_attempts}"),
            ("server", job.server_name),
            ("image", pull),
            ("scan", scan_text(job.scan_summary)),
            ("error", _indent(job.error)),
            ("enqueued", job.enqueued_at.isoformat(timespec="seconds")),
            ("duration", _durations(times)),
            ("retry of", f"#{job.retry_of}" if job.retry_of else None),
            ("waiting", reason),
        ]
        if position is not None:
            when = "no estimate: no healthy build server"
            if position.estimated_start is not None:
                start = position.estimated_start.astimezone().strftime("%H:%M:%S")
                when = f"about {start}, in {elapsed(position.estimated_wait_s)}"
            fields.append(("position", f"{position.position} ({when})"))
        if estimate is not None:
            fields.append(("expected", _expected(estimate, job.status)))
        lines = [f"job #{job.id}"]
        lines += [f"  {k:<10} {v}" for k, v in fields if v not in (None, "")]
        lines.append("timeline")
        for e in events:
            at = e.at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
            who = f" by {e.actor}" if e.actor else ""
            # the error is shown once, above; its event only points at it
            message = "(error above)" if job.error and e.message == job.error else e.message
            lines.append(f"  {at}  {e.kind}{who}" + (f": {message}" if message else ""))
        return "\n".join(lines)

    emit(state, data, text)


def _expected(estimate: Estimate, status: JobStatus) -> str:
    """``takes about 45s (median of the last 12 builds), ends about 10:42:07``."""
    basis = (
        f"median of its last {estimate.based_on} successful build"
        + ("s" if estimate.based_on != 1 else "")
        if estimate.based_on
        else "no successful build of this app yet: the usual time of all apps"
    )
    text = f"takes about {elapsed(estimate.expected_duration_s)} ({basis})"
    if status is JobStatus.RUNNING and estimate.expected_finish is not None:
        text += f", ends about {estimate.expected_finish.astimezone():%H:%M:%S}"
    return text


@click.command("logs")
@click.argument("job_id", type=int)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the job ends.")
@common_options
@with_store
async def logs_cmd(state: CliState, store: Store, job_id: int, follow: bool) -> None:
    """Print a job's build log (with --json: one JSON object per line)."""
    job = await store.jobs.get(job_id)  # NotFound when missing
    if job.pruned_at is not None:
        click.echo(f"the log of job #{job_id} was deleted by retention (prune)", err=True)
        return
    if not follow:
        _print_lines(state, await store.logs.read(job_id))
        return
    await follow_logs(state, store, job_id)


async def follow_logs(state: CliState, store: Store, job_id: int) -> None:
    """Print lines as they arrive (the one :class:`~deployq.logfollow.LogFollower`, woken by
    LISTEN), until the job reaches a final state."""
    waker = LogWaker(store.dsn)
    try:
        async with waker.follow(store, job_id) as follower:
            async for lines in follower:
                _print_lines(state, lines)
    finally:
        await waker.close()
    final = follower.final
    if final is None:
        return
    if final.status is not JobStatus.SUCCEEDED:  # exit 1: scripts stop here, like CI would
        error = f": {final.error}" if final.error else ""
        raise JobFailed(f"job #{job_id} {final.status.value}{error}")
    if not state.json:
        click.echo(f"-- job #{job_id} {final.status.value}", err=True)


class JobFailed(DeployqError):
    """The followed job did not succeed (``logs -f`` exits 1)."""

    code = "job_failed"


def _print_lines(state: CliState, lines: list[Any]) -> None:
    for line in lines:
        if state.json:
            click.echo(json.dumps(to_jsonable(line), default=str))
        else:
            click.echo(line.line)


@click.command("cancel")
@click.argument("job_id", type=int)
@click.option("--force", is_flag=True, help="Stop even a push in progress.")
@common_options
@with_store
async def cancel_cmd(state: CliState, store: Store, job_id: int, force: bool) -> None:
    """Cancel a job: a queued one at once, a running one as soon as its worker hears."""
    job = await store.jobs.cancel(job_id, actor=operator(), force=force)
    text = (
        f"cancelled job #{job.id}"
        if job.status is JobStatus.CANCELLED
        else f"asked the worker to stop job #{job.id}" + (" (force)" if force else "")
    )
    emit(state, job, text)


@click.command("retry")
@click.argument("job_id", type=int)
@common_options
@with_store
async def retry_cmd(state: CliState, store: Store, job_id: int) -> None:
    """Build a finished job's commit again, as a new job linked to the old one."""
    job = await store.jobs.retry(job_id, actor=operator())
    emit(state, job, f"queued job #{job.id} (retry of #{job_id})")


def register(main: click.Group) -> None:
    for command in (deploy_cmd, jobs_cmd, job_group, logs_cmd, cancel_cmd, retry_cmd):
        main.add_command(command)


def _durations(times: JobTimes) -> str | None:
    """``1m22s (attempt 1: 1m10s failed, attempt 2: 6s succeeded)``: first claim to end."""
    if times.total_s is None:
        return None
    if len(times.attempts) <= 1:
        return elapsed(times.total_s)
    parts = [
        f"attempt {a.attempt}: "
        + (f"{elapsed(a.seconds)} {a.outcome}" if a.seconds is not None else "running")
        for a in times.attempts
    ]
    return f"{elapsed(times.total_s)} ({', '.join(parts)})"
