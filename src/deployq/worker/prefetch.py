"""Cache prefetch: once a job pushed its images, the other build servers pull them.

A warm build on server B of a commit whose parent A built pulls and unpacks the layers A
pushed before its first changed step (docs/cache.md). After a push, the worker that made it
asks every other build server it may use to pull the pushed images (the image and its
stage cache images, each by the digest the push reported), in the background, so the next
build there finds them local: BuildKit takes a ``--cache-from repo@sha256:…`` from a local
image of that very digest, and the classic builder's cache pull finds every layer present.

Best effort, never part of the job: the pulls start once the job that pushed has written its
outcome (they would load the registry and the hosts' CPUs while its last writes go out), and
a pull that fails is an info line in the worker's log.
At most ``CONCURRENCY`` pulls run at once per worker; a newer push of the same (app, branch)
replaces the pull still waiting or running for a server (stale images are never queued).
Servers skipped: the one that pushed, draining ones, those this host sees failed or short of
disk, another host's ``unix://`` engine, and those busy at capacity as of the last refresh.
The pull goes through the Engine API (as builders.enginepush's push); an ``ssh://`` engine's
through a private socket whose connections run ``docker system dial-stdio`` over the strict
ssh the builders use (builders.sshdial).
``DEPLOYQ_CACHE_PREFETCH`` turns it on or off; unset, it is on with more than one server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import ssl
from typing import TYPE_CHECKING

import aiohttp

from deployq.builders.base import RegistryAuth
from deployq.builders.enginepush import CONNECT_TIMEOUT_S, engine_endpoint, stream_message
from deployq.builders.sshdial import SshDialer
from deployq.builders.tls import server_tls
from deployq.models import BuildServer

if TYPE_CHECKING:
    from deployq.worker.servers import ServerMonitor

log = logging.getLogger(__name__)

#: pulls one worker runs at once, over all servers
CONCURRENCY = 2
#: longest a prefetch may take (a registry that stalls must not hold a slot for long)
PULL_TIMEOUT_S = 600.0
#: longest the engine may say nothing during a pull: it reports progress several times a
#: second while it downloads or extracts, so a silence this long is a pull stuck in the
#: engine (seen with dockerd 20.10: a pull of a digest it had mostly, silent until the
#: 600 s timeout); the prefetch gives up and the slot is free again
PULL_STALL_S = 60.0
#: longest line of the engine's answer (one JSON message)
_LINE_LIMIT = 1024 * 1024


async def pull(
    docker_host: str,
    server: BuildServer,
    ref: str,
    auth: RegistryAuth | None,
    *,
    stall_s: float = PULL_STALL_S,
) -> None:
    """Pull ``ref`` (``repo@sha256:…``) onto the engine at ``docker_host`` through the Engine
    API (``POST /images/create``), with the registry login the builders send. Raises
    RuntimeError with the engine's reason when the pull fails, TimeoutError when the engine
    says nothing for ``stall_s`` seconds."""
    login: dict[str, str] = {}
    if auth is not None and auth.username:
        login = {
            "username": auth.username,
            "password": auth.password or "",
            "serveraddress": auth.server,
        }
    header = base64.urlsafe_b64encode(json.dumps(login).encode()).decode()
    base, connector = engine_endpoint(docker_host, server_tls(server))
    timeout = aiohttp.ClientTimeout(
        total=PULL_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S, sock_read=stall_s
    )
    url = f"{base}/images/create"
    async with (
        aiohttp.ClientSession(
            connector=connector, timeout=timeout, read_bufsize=_LINE_LIMIT
        ) as session,
        session.post(
            url, params={"fromImage": ref}, headers={"X-Registry-Auth": header}
        ) as response,
    ):
        if response.status != 200:
            body = await response.text(errors="replace")
            raise RuntimeError(f"engine answered HTTP {response.status}: {body.strip()[:200]}")
        async for raw in response.content:
            message = stream_message(raw)
            if message and message.get("error"):
                raise RuntimeError(str(message["error"]))


class Prefetcher:
    """Pulls what this worker's jobs pushed onto the other build servers, in the background."""

    def __init__(
        self,
        monitor: ServerMonitor,
        *,
        concurrency: int = CONCURRENCY,
        stall_s: float = PULL_STALL_S,
    ) -> None:
        self.monitor = monitor
        self.stall_s = stall_s
        self.enabled = monitor.settings.cache_prefetch
        self._slots = asyncio.Semaphore(concurrency)
        #: (app, branch, server id) -> the prefetch running or waiting for it
        self._tasks: dict[tuple[str, str, int], asyncio.Task[None]] = {}
        #: docker_host of an ssh:// engine -> the socket its pulls go through
        self._dialers: dict[str, SshDialer] = {}

    def targets(self, source: BuildServer) -> list[BuildServer]:
        """The servers that should pull what ``source`` pushed."""
        states = self.monitor.states
        if self.enabled is False or (self.enabled is None and len(states) < 2):
            return []
        found = []
        for state in states.values():
            server = state.server
            host = server.docker_host
            if server.id == source.id or server.draining or state.reason is not None:
                continue
            if host.startswith("unix://"):
                if server.host_id is not None and server.host_id != self.monitor.host_id:
                    continue
            elif not host.startswith(("tcp://", "ssh://")):
                continue
            if server.running >= server.capacity > 0:
                continue
            found.append(server)
        return found

    def pushed(
        self,
        app: str,
        branch: str,
        source: BuildServer,
        refs: list[str],
        auth: RegistryAuth | None,
        *,
        after: asyncio.Event | None = None,
    ) -> None:
        """``source`` pushed ``refs`` (each ``repo@sha256:…``) for ``branch`` of ``app``: pull
        them onto the other servers, once ``after`` is set (the job that pushed them has
        written its outcome: the pulls load the registry and the engines, not that job's
        last writes); a prefetch of an older push of that branch still waiting or running
        for a server is dropped. :meth:`idle` waits for these from now on."""
        if not refs:
            return
        for server in self.targets(source):
            key = (app, branch, server.id)
            older = self._tasks.get(key)
            if older is not None and not older.done():
                older.cancel()
            task = asyncio.create_task(
                self._prefetch(server, refs, auth, after), name=f"prefetch-{app}-{server.name}"
            )
            self._tasks[key] = task
            task.add_done_callback(functools.partial(self._forget, key))

    def _forget(self, key: tuple[str, str, int], task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]

    async def _prefetch(
        self,
        server: BuildServer,
        refs: list[str],
        auth: RegistryAuth | None,
        after: asyncio.Event | None,
    ) -> None:
        if after is not None:
            await after.wait()
        async with self._slots:
            for ref in refs:
                try:
                    await pull(self._reach(server), server, ref, auth, stall_s=self.stall_s)
                except (
                    RuntimeError,
                    aiohttp.ClientError,
                    TimeoutError,
                    ssl.SSLError,
                    OSError,
                ) as exc:
                    log.info("prefetch of %s onto %s failed: %s", ref, server.name, exc)
                    return
                log.debug("prefetched %s onto %s", ref, server.name)

    def _reach(self, server: BuildServer) -> str:
        """Where the Engine API of ``server`` answers: its docker_host, or for ``ssh://`` the
        dial socket (made on first use, kept until close)."""
        host = server.docker_host
        if not host.startswith("ssh://"):
            return host
        dialer = self._dialers.get(host)
        if dialer is None:
            dialer = self._dialers[host] = SshDialer(host, self.monitor.ssh())
        return dialer.url

    async def idle(self) -> None:
        """Wait for the prefetches running or waiting now."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def close(self) -> None:
        """Stop every prefetch (the worker stops)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)
        for dialer in self._dialers.values():
            dialer.close()
        self._dialers.clear()
