"""Build server health as this host sees it: probe each engine, check free disk, decide which
servers get this worker's jobs.

Every worker probes every server each ``PROBE_INTERVAL_S``, in the background (a claim probes
only a server it has never probed: it never waits for an engine's answer), and records the
observation with ``store.servers.observe``, as its host's view (table server_health). A view
changes only after two observations in a row disagree with it, so one lost probe does not move
jobs around; when an observation disagrees, the next probe comes after ``CONFIRM_INTERVAL_S``
instead. This worker claims nothing on a
server its host sees as failed; the server is unhealthy for everyone (build_servers.healthy)
only when every host that probed it recently sees it failed. Low disk is not a failure of the
engine: the server is only left out of this worker's claims, with the reason, and jobs wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deployq import hostid
from deployq.builders import (
    Builder,
    EngineInfo,
    EngineTLS,
    RegistryLogins,
    SshWrapper,
    make_builder,
)
from deployq.builders.base import normalize_arch
from deployq.builders.tls import server_tls
from deployq.durations import setting
from deployq.errors import DeployqError
from deployq.models import BuildServer

if TYPE_CHECKING:
    from deployq.store import Store

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 15.0
PROBE_TIMEOUT_S = 10.0
#: the next probe after an observation that disagrees with the host's view
CONFIRM_INTERVAL_S = 2.0


@dataclass
class ServerState:
    """This host's view of a server, and what the last probe found."""

    server: BuildServer
    healthy: bool
    """this host's view (changes after two observations in a row disagree)"""
    reason: str | None
    """why this worker sends no job there (engine down, low disk); None when usable"""
    info: EngineInfo | None
    probed_at: float
    observed_ok: bool = True
    """the last observation: the engine answered"""
    latency_ms: int | None = None

    @property
    def unconfirmed(self) -> bool:
        """The last observation disagrees with the view: probe again soon."""
        return self.observed_ok != self.healthy

    def due(self, now: float) -> bool:
        wait = CONFIRM_INTERVAL_S if self.unconfirmed else PROBE_INTERVAL_S
        return now - self.probed_at >= wait


#: makes the builder of one engine: (docker host, its TLS files or None)
BuilderFactory = Callable[[str, EngineTLS | None], Builder]


def free_mb(path: Path) -> int | None:
    """Free space of the file system holding ``path`` (its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free // (1024 * 1024)
    except OSError:
        return None


def disk_problem(workspaces_dir: Path, info: EngineInfo | None, min_free_mb: int) -> str | None:
    """Why builds should wait for disk space, or None when there is enough."""
    if min_free_mb <= 0:
        return None
    local = free_mb(workspaces_dir)
    if local is not None and local < min_free_mb:
        return (
            f"low disk: {local} MB free in {workspaces_dir} (minimum {min_free_mb} MB); "
            "free some space or lower DEPLOYQ_MIN_FREE_DISK_MB"
        )
    if info is not None and info.free_disk_mb is not None and info.free_disk_mb < min_free_mb:
        where = info.data_root or "the engine's data root"
        return (
            f"low disk: {info.free_disk_mb} MB free in {where} (minimum {min_free_mb} MB); "
            "run `docker system prune` there or lower DEPLOYQ_MIN_FREE_DISK_MB"
        )
    return None


class ServerMonitor:
    """Keeps one :class:`Builder` per server and the health of each, as this worker sees it."""

    def __init__(
        self,
        store: Store,
        *,
        host_id: str | None = None,
        builder_factory: BuilderFactory | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = store.settings
        #: the host this worker runs on (deployq.hostid)
        self.host_id = host_id or hostid.host_id(self.settings)
        self._factory = builder_factory or self._make_builder
        self._ssh: SshWrapper | None = None
        self._builders: dict[tuple[str, EngineTLS | None], Builder] = {}
        #: the registry logins every builder of this worker uses: one ``docker login`` per
        #: (registry, user), not one per server (the DOCKER_CONFIG is read here, by the CLI)
        self.logins = RegistryLogins()
        self.states: dict[int, ServerState] = {}
        self.on_change = on_change
        self._lock = asyncio.Lock()
        #: set when an observation awaits its confirmation: the run loop recomputes its wait
        self._soon = asyncio.Event()

    def ssh(self) -> SshWrapper:
        """The strict ssh every ``ssh://`` engine is reached through (DEPLOYQ_SSH_KNOWN_HOSTS,
        DEPLOYQ_SSH_KEY): by the builders and the cache prefetch."""
        if self._ssh is None:
            self._ssh = SshWrapper(self.settings.ssh_known_hosts, self.settings.ssh_key)
        return self._ssh

    def _make_builder(self, docker_host: str, tls: EngineTLS | None) -> Builder:
        ssh = self.ssh() if docker_host.startswith("ssh://") else None
        return make_builder(
            docker_host,
            self.settings.build_backend,
            docker_cli=self.settings.docker_cli,
            tls=tls,
            ssh=ssh,
            disk_probe_image=self.settings.base_image_static,
            logins=self.logins,
        )

    def close(self) -> None:
        """Remove the registry logins' credentials (the worker stops; a later job logs in
        again)."""
        self.logins.close()

    async def prepare(self, server: BuildServer) -> Builder:
        """The server's builder, made in a thread: making one probes the docker CLI and may
        ask the engine its API version, which must not block the event loop."""
        key = (server.docker_host, server_tls(server))
        builder = self._builders.get(key)
        if builder is None:
            made = await asyncio.to_thread(self._factory, *key)
            builder = self._builders.setdefault(key, made)
        return builder

    def builder(self, server: BuildServer) -> Builder:
        """The server's builder (made by ``prepare``, or here when it was not)."""
        key = (server.docker_host, server_tls(server))
        builder = self._builders.get(key)
        if builder is None:
            builder = self._builders[key] = self._factory(*key)
        return builder

    def excluded_ids(self) -> list[int]:
        """Servers this worker must not claim for: not answering, or short of disk."""
        return [sid for sid, state in self.states.items() if state.reason is not None]

    def wait_reason(self) -> str | None:
        """A reason for the queue when every server known is out for lack of disk."""
        if not self.states:
            return None
        reasons = [s.reason for s in self.states.values()]
        disk = [r for r in reasons if r is not None and r.startswith("low disk")]
        if disk and all(r is not None for r in reasons):
            return disk[0]
        return None

    async def refresh(self, *, force: bool = False) -> None:
        """Bring the view up to date before a claim: the server list from the database, and a
        probe of each server never probed yet. The servers already known are probed by
        :meth:`run` on their schedule, never here: a claim does not wait for an engine's
        answer, nor for a probe running meanwhile. ``force``: probe every server now."""
        servers = await self.store.servers.all()
        known = {s.id for s in servers}
        for gone in set(self.states) - known:
            del self.states[gone]
        for server in servers:  # keep drain/capacity changes current
            if server.id in self.states:
                self.states[server.id].server = server
        if force:
            await self._probe_servers(servers, due_only=False)
        elif any(s.id not in self.states for s in servers):
            await self._probe_servers([s for s in servers if s.id not in self.states])

    async def _probe_due(self) -> None:
        """Probe the servers not probed for PROBE_INTERVAL_S (CONFIRM_INTERVAL_S when the
        last observation awaits its confirmation), and any never probed."""
        await self._probe_servers(await self.store.servers.all())

    async def _probe_servers(self, servers: list[BuildServer], *, due_only: bool = True) -> None:
        """Probe ``servers`` concurrently (with ``due_only``, those due), one round at a time."""
        async with self._lock:
            now = time.monotonic()
            stale = [
                s
                for s in servers
                if not due_only or s.id not in self.states or self.states[s.id].due(now)
            ]
            if stale:
                await asyncio.gather(*(self._probe(s) for s in stale))

    async def _probe(self, server: BuildServer) -> None:
        info: EngineInfo | None = None
        started = time.monotonic()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                info = await (await self.prepare(server)).ping()
        except TimeoutError:
            error: str | None = (
                f"docker engine {server.docker_host} did not answer within "
                f"{setting(PROBE_TIMEOUT_S)}"
            )
        except DeployqError as exc:
            error = exc.message
        else:
            error = None
        latency_ms = round((time.monotonic() - started) * 1000)
        if error is None:
            error = disk_problem(self.settings.workspaces_dir, info, self.settings.min_free_disk_mb)
            await self._observe(server, True, error, info=info, latency_ms=latency_ms)
        else:
            await self._observe(server, False, error, latency_ms=latency_ms)

    async def mark_unhealthy(self, server: BuildServer, error: str) -> None:
        """A build found the engine dead: an observation like a failed probe (the next probe
        comes soon and confirms it, or not)."""
        await self._observe(server, False, error)

    async def _observe(
        self,
        server: BuildServer,
        ok: bool,
        error: str | None,
        *,
        info: EngineInfo | None = None,
        latency_ms: int | None = None,
    ) -> None:
        """Record an observation as this host's; keep the view it leads to."""
        before = self.states.get(server.id)
        view = None
        try:
            view = await self.store.servers.observe(
                server.id,
                host_id=self.host_id,
                ok=ok,
                error=error,
                latency_ms=latency_ms,
                engine_version=info.version if info else None,
                free_disk_mb=info.free_disk_mb if info else None,
            )
        except DeployqError as exc:
            log.warning("recording the health of server %s failed: %s", server.name, exc)
        if view is not None:
            healthy = view.healthy
        else:  # not recorded: the same rule on what this worker saw
            healthy = ok if before is None or before.observed_ok == ok else before.healthy
        reason: str | None
        if not healthy:
            # failed: the last error seen, also while a first good answer awaits its second
            reason = (
                error
                or (before.reason if before else None)
                or (
                    f"docker engine {server.docker_host} answered once after failing; "
                    "it takes jobs again after one more answer"
                )
            )
        else:
            reason = error if ok else None  # low disk; one failed answer is not enough
        state = ServerState(
            server, healthy, reason, info, time.monotonic(), observed_ok=ok, latency_ms=latency_ms
        )
        self.states[server.id] = state
        if before is None or before.reason != reason:
            if reason:
                log.warning("build server %s gets no jobs from this host: %s", server.name, reason)
            elif before is not None:
                log.info("build server %s takes jobs from this host again", server.name)
            if self.on_change is not None:
                self.on_change()
        if state.unconfirmed:
            self._soon.set()  # the run loop probes again sooner

    async def ensure_local(self, docker_host: str, capacity: int) -> BuildServer | None:
        """Register ``docker_host`` as `local` when no build server exists at all."""
        if await self.store.servers.all():
            return None
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                builder = await asyncio.to_thread(self._factory, docker_host, None)  # it probes
                arch = (await builder.ping()).arch
        except (TimeoutError, DeployqError):
            arch = normalize_arch(platform.machine())
        owner = self.host_id if hostid.is_host_local(docker_host) else None
        server = await self.store.servers.ensure_local(
            docker_host, capacity=capacity, arch=arch, host_id=owner
        )
        if server is not None:
            log.info("registered the local docker engine %s as build server `local`", docker_host)
        return server

    async def run(self, stop: asyncio.Event) -> None:
        """Probe every PROBE_INTERVAL_S (CONFIRM_INTERVAL_S for an unconfirmed observation)
        until ``stop``."""
        while not stop.is_set():
            self._soon.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._next_probe_in()):
                    await _either(stop, self._soon)
            if stop.is_set():
                return
            if self._soon.is_set():
                continue  # wait again, for the sooner probe
            try:
                await self._probe_due()
            except DeployqError as exc:
                if self.store.health.up:  # an outage is logged once, by deployq.db.health
                    log.warning("probing the build servers failed: %s", exc)

    def _next_probe_in(self) -> float:
        now = time.monotonic()
        waits = [
            (CONFIRM_INTERVAL_S if s.unconfirmed else PROBE_INTERVAL_S) - (now - s.probed_at)
            for s in self.states.values()
        ]
        return max(0.1, min(waits, default=PROBE_INTERVAL_S))


async def _either(first: asyncio.Event, second: asyncio.Event) -> None:
    """Return when either event is set."""
    waits = {asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())}
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
