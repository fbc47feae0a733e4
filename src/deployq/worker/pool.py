"""The worker pool: claims jobs when woken by NOTIFY, runs their pipelines, keeps leases alive.

One asyncio task per running job (see runner.py); heartbeats renew every lease in one
statement, and cancel requests reach the job's task by NOTIFY or, if one was missed, by the
heartbeat's answer. The claim loop is woken by NOTIFY on the jobs, cancel and servers
channels, and re-polls on every (re)connection; a jittered poll and a timer for the next
``run_after`` are only safety nets.

A slot is a build: a job leaves its slot once its outcome is decided and its log closed,
and its finish commits (through the runner's group-committing Finisher) while the next
claim runs. Until that commit the job keeps its lease (renewed by the heartbeats; a
shutdown waits for it), and the database still counts it against its server's capacity and
its app's concurrency. At most ``concurrency`` jobs wait for their finish at once, so a
worker never holds more than twice its slots of leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
from collections import deque
from typing import TYPE_CHECKING

from deployq.durations import setting
from deployq.errors import DeployqError
from deployq.hostid import host_id
from deployq.models import JobStatus
from deployq.store import CHANNEL_CANCEL, CHANNEL_JOBS, CHANNEL_SERVERS, Lease, Listener, Notice
from deployq.worker.runner import JobRunner, RunningJob
from deployq.worker.scratch import Scratch
from deployq.worker.sdnotify import SdNotifier
from deployq.worker.servers import BuilderFactory, ServerMonitor
from deployq.worker.targets import run_target_probes

if TYPE_CHECKING:
    from deployq.store import Store

log = logging.getLogger(__name__)

#: job notices that cannot free a slot or add work: no reason to try a claim
_QUIET_KINDS = frozenset({"progress", "claimed", "cancel_requested", "waiting"})
#: how many ended jobs the pool remembers as its own (their NOTIFYs arrive after the end)
ENDED_KEPT = 256
#: poll jitter, as a fraction of poll_interval either way
POLL_JITTER = 0.2
#: errors of the database that a loop survives (it logs and tries again)
_TRANSIENT = (DeployqError, OSError)


class WorkerPool:
    """Claims and builds jobs until ``stop`` is set; ``run`` is a service Component."""

    def __init__(
        self,
        store: Store,
        *,
        worker_id: str | None = None,
        concurrency: int | None = None,
        server_ids: list[int] | None = None,
        notifier: SdNotifier | None = None,
        builder_factory: BuilderFactory | None = None,
    ) -> None:
        self.store = store
        self.settings = store.settings
        self.worker_id = worker_id or (
            f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        )
        #: this host's stable id: the claim gives this worker only its own host's unix://
        #: servers (and the shared ones)
        self.host_id = host_id(self.settings)
        self.concurrency = concurrency or self.settings.worker_concurrency
        self.server_ids = server_ids
        self.sd = notifier or SdNotifier.from_environ()
        #: the jobs building, one per slot
        self.jobs: dict[int, RunningJob] = {}
        #: built jobs whose outcome is being written: lease held, no slot
        self.finishing: dict[int, RunningJob] = {}
        #: the jobs that ended here lately (their finished NOTIFYs are this worker's own)
        self._ended: deque[int] = deque(maxlen=ENDED_KEPT)
        self.monitor = ServerMonitor(
            store, host_id=self.host_id, builder_factory=builder_factory, on_change=self.wake
        )
        self.runner = JobRunner(
            store, self.monitor, self.worker_id, on_lost=self._lose, on_built=self._built
        )
        #: set once the pool claims (tests and `deployq up` wait on it)
        self.claiming = asyncio.Event()
        self._wake = asyncio.Event()
        self._stopping = False
        self._wait_reason: str | None = None
        #: the server list may have changed since the monitor read it (a servers notice,
        #: a reconnection): the next claim refreshes it first, probing new servers
        self._servers_changed = True

    # -- public ----------------------------------------------------------------------------

    def wake(self) -> None:
        """Try a claim now."""
        self._wake.set()

    @property
    def free_slots(self) -> int:
        slots = self.concurrency - len(self.jobs)
        leases = 2 * self.concurrency - len(self.jobs) - len(self.finishing)
        return max(0, min(slots, leases))

    async def run(self, stop: asyncio.Event) -> None:
        """Register, claim and build until ``stop``; then shut down gracefully."""
        self._stopping = False  # run again by the supervisor after a failure
        scratch = Scratch(self.settings.data_dir / "scratch", self.worker_id)
        await asyncio.to_thread(scratch.open)
        self.runner.workspaces = scratch.workspaces
        try:
            await self._run(stop)
        finally:
            await asyncio.to_thread(scratch.close)

    async def _run(self, stop: asyncio.Event) -> None:
        host = socket.gethostname()
        await self.store.workers.register(
            self.worker_id,
            host=host,
            host_id=self.host_id,
            pid=os.getpid(),
            concurrency=self.concurrency,
        )
        background_stop = asyncio.Event()
        background: list[asyncio.Task[None]] = []
        listener = Listener(
            self.store.dsn,
            [CHANNEL_JOBS, CHANNEL_CANCEL, CHANNEL_SERVERS],
            on_connect=self._on_connect,
        )
        forget_hook = self.store.health.on_reconnect(self._on_database_back)
        try:
            await self.monitor.ensure_local(self.settings.local_docker_host, self.concurrency)
            await self.monitor.refresh(force=True)
            background = [
                asyncio.create_task(self._listen(listener), name="worker-listen"),
                asyncio.create_task(self._heartbeats(background_stop), name="worker-heartbeat"),
                asyncio.create_task(self.monitor.run(background_stop), name="worker-probe"),
                asyncio.create_task(
                    run_target_probes(self.store, background_stop), name="worker-targets"
                ),
                asyncio.create_task(self._watchdog(background_stop), name="worker-watchdog"),
                asyncio.create_task(self._relay(stop), name="worker-stop"),
            ]
            log.info(
                "worker %s claiming (host id %s, concurrency %d)",
                self.worker_id,
                self.host_id,
                self.concurrency,
            )
            self.sd.ready()
            self._status()
            self.claiming.set()
            await self._claim_loop(stop)
        finally:
            forget_hook()
            self._stopping = True
            self.sd.stopping()
            await self._shutdown()
            await self.runner.finisher.close()
            await self.runner.prefetch.close()
            self.monitor.close()
            background_stop.set()
            await listener.close()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            with contextlib.suppress(*_TRANSIENT):
                await self.store.workers.unregister(self.worker_id)
            log.info("worker %s stopped", self.worker_id)

    # -- claiming ----------------------------------------------------------------------------

    async def _relay(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.wake()

    async def _on_database_back(self) -> None:
        """After an outage: renew the leases at once (those no other worker took), so the
        builds that ran through it can record their outcome; then look for work."""
        await self.heartbeat()
        self.wake()

    async def _on_connect(self) -> None:
        # notifications sent while we were away are lost: look again
        self._servers_changed = True
        self.runner.known_digests.forget()  # another worker's job may have moved the tags
        self.wake()

    async def _listen(self, listener: Listener) -> None:
        async for notice in listener:
            self._dispatch(notice)

    def _dispatch(self, notice: Notice) -> None:
        payload = notice.payload
        if notice.channel == CHANNEL_CANCEL:
            with contextlib.suppress(TypeError, ValueError):
                self.request_cancel(int(payload["id"]), force=bool(payload.get("force")))
        elif notice.channel == CHANNEL_SERVERS:
            self._servers_changed = True
            self.wake()
        else:
            if payload.get("kind") == "finished" and not self._ours(payload.get("id")):
                # it may have moved its app's cache tags (worker.cache.KnownDigests)
                self.runner.known_digests.forget(str(payload.get("app")))
            if payload.get("kind") not in _QUIET_KINDS and self.free_slots:
                self.wake()

    def _ours(self, job_id: object) -> bool:
        """Whether ``job_id`` is a job this worker runs or ran lately."""
        return job_id in self.jobs or job_id in self.finishing or job_id in self._ended

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            delay = self.settings.poll_interval * random.uniform(1 - POLL_JITTER, 1 + POLL_JITTER)
            try:
                if await self._claim_once() and self.free_slots:
                    continue  # took a full batch: there may be more
                if self.free_slots:
                    due = await self.store.waits.seconds_to_next_due()
                    if due is not None:
                        delay = min(delay, due + 0.05)
            except _TRANSIENT as exc:
                if self.store.health.up:  # while it is down, the reconnect wakes us
                    log.warning("claiming failed: %s; trying again in %.1fs", exc, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _claim_once(self) -> bool:
        """Claim for the free slots; True when every slot asked for was filled."""
        free = self.free_slots
        if free <= 0 or self._stopping:
            return False
        if self._servers_changed:  # else the monitor's own loop keeps it current
            self._servers_changed = False
            try:
                await self.monitor.refresh()
            except BaseException:
                self._servers_changed = True
                raise
        reason = self.monitor.wait_reason()
        if reason != self._wait_reason:
            self._wait_reason = reason
            await self.store.waits.set_due_reason(reason)
        leases = await self.store.leases.claim(
            self.worker_id,
            limit=free,
            server_ids=self.server_ids,
            excluded_server_ids=self.monitor.excluded_ids(),
            host_id=self.host_id,
        )
        for lease in leases:
            if lease.job.status is JobStatus.RUNNING and lease.job.worker_id == self.worker_id:
                await self._start(lease)
        return bool(leases) and len(leases) >= free

    async def _start(self, lease: Lease) -> None:
        server_id = lease.job.server_id
        state = self.monitor.states.get(server_id) if server_id is not None else None
        server = state.server if state else await self.store.servers.get_by_id(server_id or 0)
        await self.monitor.prepare(server)  # runner.run uses monitor.builder(server)
        running = RunningJob(lease, server)
        self.jobs[lease.id] = running
        running.task = asyncio.create_task(self._run_job(running), name=f"job-{lease.id}")
        self._status()

    # -- one job -----------------------------------------------------------------------------

    async def _run_job(self, running: RunningJob) -> None:
        try:
            await self.runner.run(running)
        finally:
            self._ended.append(running.lease.id)  # its finished NOTIFY may come after this
            if not running.shutdown:  # on shutdown the pool releases the job, then forgets it
                self.jobs.pop(running.lease.id, None)
                self.finishing.pop(running.lease.id, None)
                self._status()
                self.wake()

    def _built(self, running: RunningJob) -> None:
        """The runner decided the job's outcome: its slot goes to the next job while the
        outcome commits; its lease stays renewed until then."""
        if running.shutdown or self.jobs.pop(running.lease.id, None) is None:
            return
        self.finishing[running.lease.id] = running
        self._status()
        if self.free_slots:
            self.wake()

    # -- cancel, lost, heartbeats ------------------------------------------------------------

    def request_cancel(self, job_id: int, *, force: bool = False) -> None:
        """Stop a job this worker runs: at once in checkout, detect and build (or with
        ``force``); after the push otherwise."""
        running = self.jobs.get(job_id)
        if running is not None:
            running.request_cancel(force=force)

    def _lose(self, job_id: int) -> None:
        """Another worker owns the job now: stop it and write nothing more. A built job whose
        outcome is being written is left to that write: a heartbeat that raced its commit
        finds the job ended, not taken, and the write is fenced (LostJob if it was taken)."""
        if job_id in self.finishing:
            return
        running = self.jobs.get(job_id)
        if running is not None and not running.lost:
            log.warning(
                "job #%s attempt %s is no longer ours: stopping it", job_id, running.lease.attempt
            )
            running.lose()

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        interval = self.settings.lease_ttl / 3
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stop.wait()
            if stop.is_set():
                return
            await self.heartbeat()

    async def heartbeat(self) -> None:
        """Renew every lease in one statement; stop lost jobs, cancel requested ones."""
        held = [r.held for r in self._held() if not r.lost]
        try:
            result = await self.store.leases.heartbeat(self.worker_id, held)
            await self.store.workers.heartbeat(self.worker_id)
        except _TRANSIENT as exc:
            if self.store.health.up:  # while it is down, the reconnect renews the leases
                log.warning("heartbeat failed: %s", exc)
            return
        for job_id in result.lost:
            self._lose(job_id)
        for job_id, force in result.cancel.items():
            self.request_cancel(job_id, force=force)

    def _held(self) -> list[RunningJob]:
        """Every job whose lease this worker holds: building, or writing its outcome."""
        return [*self.jobs.values(), *self.finishing.values()]

    # -- shutdown and systemd ----------------------------------------------------------------

    async def _shutdown(self) -> None:
        """Let running builds finish (and finished ones be written) for shutdown_grace;
        stop and release the others."""
        if not self.jobs and not self.finishing:
            return
        with contextlib.suppress(*_TRANSIENT):
            await self.store.workers.set_stopping(self.worker_id)
        grace = self.settings.shutdown_grace
        tasks = {r.task for r in self._held() if r.task is not None}
        if not tasks:  # the last ones ended while we said we are stopping
            return
        log.info("waiting up to %gs for %d running build(s)", grace, len(tasks))
        self._status()
        _, pending = await asyncio.wait(tasks, timeout=grace)
        if not pending:
            return
        remaining = [r for r in self._held() if r.task in pending]
        for running in remaining:
            running.shutdown = True
            if running.inner is not None and not running.inner.done():
                running.inner.cancel()
            elif running.task is not None:  # not started, or its outcome is being written
                running.task.cancel()
        await asyncio.wait(pending)
        held = [r.held for r in remaining if not r.lost]
        reason = (
            f"worker {self.worker_id} stopped before the build finished "
            f"(shutdown grace {setting(grace)}): queued again"
        )
        try:
            released = await self.store.leases.release(self.worker_id, held, reason)
        except _TRANSIENT as exc:
            log.error("releasing %d job(s) failed: %s; their leases will expire", len(held), exc)
        else:
            log.info("released job(s) %s back to the queue", ", ".join(map(str, released)))
        for running in remaining:
            self.jobs.pop(running.lease.id, None)
            self.finishing.pop(running.lease.id, None)

    def _status(self) -> None:
        text = f"{len(self.jobs)}/{self.concurrency} builds running"
        self.sd.status(f"stopping: {text}" if self._stopping else text)

    async def _watchdog(self, stop: asyncio.Event) -> None:
        interval = self.sd.watchdog_interval_s
        if interval is None:
            return
        while not stop.is_set():
            self.sd.watchdog()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stop.wait()
