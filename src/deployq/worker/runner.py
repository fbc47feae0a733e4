"""One claimed job from start to end: its log, its pipeline task, its timeout, its outcome.

The pipeline runs in an inner task, so a cancel, a lost lease or a shutdown interrupts the
step while the outer task still decides what is written: ``finish`` with the outcome, or
nothing at all (the lease was lost, or the pool is stopping and releases the job).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from deployq.db import dsn_password
from deployq.durations import setting
from deployq.errors import DatabaseUnavailable, DeployqError, LostJob
from deployq.models import App, BuildServer, JobStatus
from deployq.redact import Redactor
from deployq.store import Finisher, Lease, Outcome
from deployq.worker.cache import KnownDigests
from deployq.worker.logbuffer import LogBuffer
from deployq.worker.mirror import mirror_path
from deployq.worker.pipeline import CancelState, Pipeline
from deployq.worker.prefetch import Prefetcher
from deployq.worker.servers import ServerMonitor
from deployq.worker.workspaces import Workspace, Workspaces, remove

if TYPE_CHECKING:
    from deployq.config import Settings
    from deployq.store import Store

log = logging.getLogger(__name__)

#: errors of the database that the worker survives (it logs them and goes on)
_TRANSIENT = (DeployqError, OSError)
#: pause before writing an outcome again after a lost connection while the database is up
FINISH_RETRY_S = 0.5


@dataclass
class RunningJob:
    """A job this worker holds."""

    lease: Lease
    server: BuildServer
    cancel: CancelState = field(default_factory=CancelState)
    task: asyncio.Task[None] | None = None
    inner: asyncio.Task[Outcome] | None = None
    pipeline: Pipeline | None = None
    logs: LogBuffer | None = None
    lost: bool = False
    shutdown: bool = False
    #: set once the job's run is over (its outcome written, or nothing to write): the cache
    #: prefetch of what it pushed starts then
    concluded: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def held(self) -> tuple[int, int]:
        return (self.lease.id, self.lease.attempt)

    def request_cancel(self, *, force: bool = False) -> None:
        """Interrupt the step now, unless the push has begun (then it ends after the push),
        or ``force``."""
        if self.lost:
            return
        first = not self.cancel.requested
        self.cancel.requested = True
        self.cancel.force = self.cancel.force or force
        if self.inner is None:
            return  # the runner sees the flag before it starts the pipeline
        if self.pipeline is None or self.pipeline.interruptible or self.cancel.force:
            self.inner.cancel()
        elif first and self.logs is not None:
            step = self.pipeline.step.value if self.pipeline.step else "step"
            self.logs.write(
                f"==> cancel requested: the {step} has begun and finishes first "
                "(`deployq cancel --force` stops it now)"
            )

    def lose(self) -> None:
        """Another worker owns the job now: stop the pipeline, write nothing more."""
        self.lost = True
        if self.inner is not None:
            self.inner.cancel()


def job_secrets(settings: Settings, app: App | None) -> list[str]:
    """Every value that must never reach a job log or error."""
    values: list[str | None] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if hasattr(value, "get_secret_value"):
            values.append(value.get_secret_value())
    if settings.database_url is not None:
        values.append(dsn_password(settings.database_url.get_secret_value()))
    if app is not None:
        values += [app.webhook_secret, app.notify_webhook_secret, *app.build_secrets.values()]
        values += [app.forge_token, app.git_token, app.git_ssh_key]
        if app.git_ssh_key:  # each line of the key, should one be echoed alone
            values += [line for line in app.git_ssh_key.splitlines() if "-----" not in line]
        if app.deploy is not None:
            values += [app.deploy.webhook_secret, *app.deploy.env.values()]
    return [v for v in values if v]


class JobRunner:
    """Runs claimed jobs for one worker."""

    def __init__(
        self,
        store: Store,
        monitor: ServerMonitor,
        worker_id: str,
        *,
        on_lost: Callable[[int], None],
        on_built: Callable[[RunningJob], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = store.settings
        self.monitor = monitor
        self.worker_id = worker_id
        self.on_lost = on_lost
        #: called once a job's outcome is decided and its log closed, just before the
        #: outcome is written: its build is over (the pool gives its slot to the next job
        #: while the finish commits; the lease is still the job's until then)
        self.on_built = on_built
        #: finishes of this worker's jobs go out in group commits
        self.finisher = Finisher(store)
        #: pulls what this worker's jobs pushed onto the other build servers (docs/cache.md)
        self.prefetch = Prefetcher(monitor)
        #: the digests this worker's jobs put under their apps' cache tags (worker.cache)
        self.known_digests = KnownDigests()
        #: each job's workspace, fresh or its app's warm one (deployq.worker.workspaces)
        self._workspaces = Workspaces(self.settings.workspaces_dir)

    @property
    def workspaces(self) -> Path:
        """Where workspaces go: the worker's scratch directory (deployq.worker.scratch)."""
        return self._workspaces.root

    @workspaces.setter
    def workspaces(self, root: Path) -> None:
        self._workspaces.root = root

    async def run(self, running: RunningJob) -> None:
        """Run the job to its end and record it (or, lost or stopped, record nothing)."""
        lease = running.lease
        job = lease.job
        logs = LogBuffer(
            self.store,
            job.id,
            job.attempt,
            redact=Redactor(job_secrets(self.settings, lease.app)),
            on_lost=lambda: self.on_lost(job.id),
        )
        running.logs = logs
        logs.write(
            f"==> deployq job #{job.id} attempt {job.attempt}/{job.max_attempts}: "
            f"{job.app_name} {job.ref}{f' @ {job.short_sha}' if job.commit_sha else ''} "
            f"on {running.server.name} ({running.server.docker_host}) by worker {self.worker_id}"
        )
        workspace = self._workspaces.take(self._warm_key(running), f"job-{job.id}-{job.attempt}")
        if workspace.reused:
            logs.write("==> checking out into the workspace of this app's previous build")
        outcome: Outcome | None = None
        try:
            outcome = await self._execute(running, workspace)
        finally:
            try:
                await self._conclude(running, outcome, workspace)
            finally:
                running.concluded.set()

    def _warm_key(self, running: RunningJob) -> str | None:
        """The key of the job's app for a warm workspace; None when the workspace of its
        build cannot serve the next one (deployq.worker.workspaces)."""
        app, job = running.lease.app, running.lease.job
        if app is None or app.submodules or job.deploy_only:
            return None
        if self.monitor.builder(running.server).backend != "buildkit":
            return None
        return mirror_path(self.settings.data_dir, app.name, job.repo_url).name.removesuffix(".git")

    async def _execute(self, running: RunningJob, workspace: Workspace) -> Outcome | None:
        """The pipeline's outcome, or None when this worker must write nothing (lost lease,
        shutdown: the pool releases the job)."""
        lease = running.lease
        assert running.logs is not None
        if lease.app is None:
            return Outcome(
                JobStatus.FAILED,
                error=f"app {lease.job.app_name!r} was removed; nothing to build",
                retryable=False,
            )
        if not workspace.reused:
            await asyncio.to_thread(shutil.rmtree, workspace.path, ignore_errors=True)
        pipeline = Pipeline(
            self.store,
            lease,
            lease.app,
            running.server,
            self.monitor.builder(running.server),
            running.logs,
            workspace.path,
            on_engine_down=lambda error: self.monitor.mark_unhealthy(running.server, error),
            cancel=running.cancel,
            known_digests=self.known_digests,
            on_pushed=lambda refs, auth: self.prefetch.pushed(
                lease.job.app_name,
                lease.job.branch,
                running.server,
                refs,
                auth,
                after=running.concluded,
            ),
        )
        running.pipeline = pipeline
        if running.lost or running.shutdown:
            return None
        if running.cancel.requested or lease.job.cancel_requested:
            return Outcome(JobStatus.CANCELLED, error="cancelled before the build started")
        timeout_s = lease.job.timeout_s or self.settings.build_timeout
        running.inner = asyncio.create_task(pipeline.run(), name=f"job-{lease.id}-pipeline")
        try:
            async with asyncio.timeout(timeout_s):
                return await running.inner
        except TimeoutError:
            step = pipeline.step.value if pipeline.step else "start"
            error = f"timed out after {setting(timeout_s)} during {step} on {running.server.name}"
            running.logs.write(f"ERROR: {error}")
            return Outcome(JobStatus.TIMED_OUT, error=error)
        except LostJob:
            self.on_lost(lease.id)
            return None
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                if not running.shutdown:
                    raise  # the pool itself is being torn down
                current.uncancel()  # our own shutdown cancel: the pool releases the job
            if running.lost or running.shutdown:
                return None
            step = pipeline.step.value if pipeline.step else "start"
            running.logs.write(f"==> cancelled during {step}")
            return Outcome(
                JobStatus.CANCELLED,
                error=f"cancelled during {step}",
                image_ref=pipeline.image_ref,
                image_digest=pipeline.image_digest,
            )

    async def _record(self, lease: Lease, outcome: Outcome) -> None:
        """Write the outcome; while the database is away, wait for it and write it then (the
        reconnect renews the lease unless another worker took the job: fencing decides)."""
        while True:
            try:
                await self.finisher.finish(lease, outcome)
                return
            except LostJob:
                log.warning("job #%s was taken over before it finished here", lease.id)
                return
            except DatabaseUnavailable:
                if not self.store.health.up:
                    log.info("job #%s ended: its outcome waits for the database", lease.id)
                    await self.store.health.wait_up()
                else:  # one broken connection: the probe decides; try again shortly
                    await asyncio.sleep(FINISH_RETRY_S)
            except _TRANSIENT as exc:
                log.error(
                    "job #%s: recording the outcome failed: %s (the lease will expire "
                    "and the job will be rescued)",
                    lease.id,
                    exc,
                )
                return

    async def _conclude(
        self, running: RunningJob, outcome: Outcome | None, workspace: Workspace
    ) -> None:
        lease = running.lease
        logs = running.logs
        held: Workspace | None = workspace
        try:
            if running.lost or logs is None:
                if logs is not None:
                    await logs.close(discard=True)
                return
            if outcome is None:  # stopped by our shutdown: the pool releases the job
                logs.write("==> worker stopping: this attempt is put back in the queue")
                await logs.close()
                return
            if running.pipeline is not None and running.pipeline.durations:
                spent = ", ".join(f"{k} {v:.1f}s" for k, v in running.pipeline.durations.items())
                logs.write(f"==> {outcome.status.value} ({spent})")
            else:
                logs.write(f"==> {outcome.status.value}")
            # the log's last lines go with the outcome, once the last progress write landed
            lines, ours = await asyncio.gather(logs.rest(), self._progress_landed(running))
            if not ours:
                self.on_lost(lease.id)
                return
            if outcome.status is JobStatus.SUCCEEDED:  # the app's next build may use it now
                await self._release(workspace, reusable=True)
                held = None
            if self.on_built is not None:
                self.on_built(running)
            await self._record(lease, replace(outcome, log_lines=tuple(lines)))
        finally:
            if held is not None:
                failed = outcome is not None and outcome.status is not JobStatus.SUCCEEDED
                if self.settings.keep_failed_workspaces and failed:
                    # out of the worker's scratch, which goes when the worker does
                    kept = self.settings.workspaces_dir / f"job-{lease.id}-{lease.attempt}"
                    await asyncio.to_thread(_move, workspace.path, kept)
                    log.info("job #%s: workspace kept in %s", lease.id, kept)
                await self._release(workspace, reusable=False)

    async def _progress_landed(self, running: RunningJob) -> bool:
        """Wait for the pipeline's last progress writes; False when they found the job taken
        over (LostJob): then nothing more is written for it."""
        if running.pipeline is None:
            return True
        try:
            await running.pipeline.settled()
        except LostJob:
            log.warning("job #%s was taken over before it finished here", running.lease.id)
            return False
        except _TRANSIENT as exc:  # progress is for the eyes: the finish carries the state
            log.warning("job #%s: its last progress write failed: %s", running.lease.id, exc)
        return True

    async def _release(self, workspace: Workspace, *, reusable: bool) -> None:
        """The job is done with ``workspace``: it becomes its app's warm one (``reusable``)
        or is removed."""
        gone = self._workspaces.done(workspace, reusable=reusable)
        if gone:  # else it stays where it is
            await asyncio.to_thread(remove, gone)


def _move(source: Path, dest: Path) -> None:
    if source == dest or not source.exists():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.move(source, dest)
