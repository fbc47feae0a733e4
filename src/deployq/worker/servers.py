"""Build server health: probe each engine, check free disk, decide which servers get jobs.

Every worker probes every server (each ``PROBE_INTERVAL_S`` and before claiming when its last
probe is older than that) and records the result with ``store.servers.record_health``; the
claim skips servers marked unhealthy, so an engine that stops answering gets no new jobs from
any worker until it answers again. Low disk is not a failure of the host: the server is only
left out of this worker's claims, with the reason on the server row, and jobs wait.
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
from deployq.builders import Builder, EngineInfo, EngineTLS, SshWrapper, make_builder
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


@dataclass
class ServerState:
    """What the last probe found."""

    server: BuildServer
    healthy: bool
    reason: str | None
    """why this worker sends no job there (engine down, low disk); None when usable"""
    info: EngineInfo | None
    probed_at: float


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
        self.states: dict[int, ServerState] = {}
        self.on_change = on_change
        self._lock = asyncio.Lock()

    def _make_builder(self, docker_host: str, tls: EngineTLS | None) -> Builder:
        ssh = None
        if docker_host.startswith("ssh://"):
            if self._ssh is None:
                self._ssh = SshWrapper(self.settings.ssh_known_hosts, self.settings.ssh_key)
            ssh = self._ssh
        return make_builder(
            docker_host,
            self.settings.build_backend,
            docker_cli=self.settings.docker_cli,
            tls=tls,
            ssh=ssh,
            disk_probe_image=self.settings.base_image_static,
        )

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
        """Probe the servers not probed for PROBE_INTERVAL_S (all of them with ``force``)."""
        async with self._lock:
            servers = await self.store.servers.all()
            known = {s.id for s in servers}
            for gone in set(self.states) - known:
                del self.states[gone]
            now = time.monotonic()
            stale = [
                s
                for s in servers
                if force
                or s.id not in self.states
                or now - self.states[s.id].probed_at >= PROBE_INTERVAL_S
            ]
            for server in servers:  # keep drain/capacity changes current
                if server.id in self.states:
                    self.states[server.id].server = server
            if stale:
                await asyncio.gather(*(self._probe(s) for s in stale))

    async def _probe(self, server: BuildServer) -> None:
        before = self.states.get(server.id)
        info: EngineInfo | None = None
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
        healthy = error is None
        reason = error or disk_problem(
            self.settings.workspaces_dir, info, self.settings.min_free_disk_mb
        )
        self.states[server.id] = ServerState(server, healthy, reason, info, time.monotonic())
        try:
            await self.store.servers.record_health(
                server.id,
                healthy=healthy,
                error=reason,
                engine_version=info.version if info else None,
                free_disk_mb=info.free_disk_mb if info else None,
            )
        except DeployqError as exc:
            log.warning("recording the health of server %s failed: %s", server.name, exc)
        if before is None or before.reason != reason:
            if reason:
                log.warning("build server %s gets no jobs: %s", server.name, reason)
            elif before is not None:
                log.info("build server %s takes jobs again", server.name)
            if self.on_change is not None:
                self.on_change()

    async def mark_unhealthy(self, server: BuildServer, error: str) -> None:
        """A build found the engine dead: stop sending it jobs before the next probe."""
        self.states[server.id] = ServerState(server, False, error, None, time.monotonic())
        with contextlib.suppress(DeployqError):
            await self.store.servers.record_health(server.id, healthy=False, error=error)

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
        """Probe every PROBE_INTERVAL_S until ``stop``."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PROBE_INTERVAL_S):
                    await stop.wait()
            if stop.is_set():
                return
            try:
                await self.refresh()
            except DeployqError as exc:
                if self.store.health.up:  # an outage is logged once, by deployq.db.health
                    log.warning("probing the build servers failed: %s", exc)
