"""Is a new release healthy? HTTP on a path, a command in the container, the image's own
HEALTHCHECK, or (none of them) still running after a moment — within the app's timeout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from deployq.durations import setting
from deployq.errors import DeployError
from deployq.models import DeploySettings
from deployq.worker.deploy_engine import DeployEngine

#: seconds between two probes at first; doubles up to PROBE_INTERVAL_MAX_S
PROBE_INTERVAL_S = 0.05
PROBE_INTERVAL_MAX_S = 1.0
#: seconds one HTTP probe may take
HTTP_PROBE_TIMEOUT_S = 2.0
#: with no health check at all: how long the container must keep running
NO_CHECK_SETTLE_S = 1.0

#: (healthy, what the probe saw)
Probe = Callable[[dict[str, Any]], Awaitable[tuple[bool, str]]]


def describe(deploy: DeploySettings, image_has_check: bool) -> str:
    """The health check in words, for the job log."""
    if deploy.health_cmd:
        return f"`{deploy.health_cmd}` exiting 0"
    if deploy.health_path:
        return f"HTTP 2xx/3xx on port {deploy.health_port} {deploy.health_path}"
    if image_has_check:
        return "the image's HEALTHCHECK"
    return f"the container still running after {setting(NO_CHECK_SETTLE_S)}"


async def wait_healthy(
    engine: DeployEngine,
    container: str,
    deploy: DeploySettings,
    *,
    image_has_check: bool,
    session: aiohttp.ClientSession,
) -> float:
    """Seconds until ``container`` was healthy; DeployError when it exits or the timeout
    passes (the message says what the last probe saw)."""
    started = time.monotonic()
    deadline = started + deploy.health_timeout_s
    probe = _probe(engine, container, deploy, image_has_check, session, started)
    interval = PROBE_INTERVAL_S
    seen = "no probe answered yet"
    while True:
        info = await engine.inspect(container)
        state = info.get("State") or {}
        if not state.get("Running"):
            raise DeployError(
                f"the new container exited with code {state.get('ExitCode')} before it was "
                f"healthy{': ' + state['Error'] if state.get('Error') else ''}"
            )
        healthy, seen = await probe(info)
        if healthy:
            return time.monotonic() - started
        if time.monotonic() + interval > deadline:
            raise DeployError(
                f"not healthy within {setting(deploy.health_timeout_s)} "
                f"({describe(deploy, image_has_check)}): {seen}"
            )
        await asyncio.sleep(interval)
        interval = min(interval * 2, PROBE_INTERVAL_MAX_S)


def _probe(
    engine: DeployEngine,
    container: str,
    deploy: DeploySettings,
    image_has_check: bool,
    session: aiohttp.ClientSession,
    started: float,
) -> Probe:
    if deploy.health_cmd:
        command = deploy.health_cmd

        async def by_command(_info: dict[str, Any]) -> tuple[bool, str]:
            code, last = await engine.exec(container, command)
            return code == 0, f"the command exited {code}" + (f": {last}" if last else "")

        return by_command
    if deploy.health_path:

        async def by_http(info: dict[str, Any]) -> tuple[bool, str]:
            url = probe_url(engine.docker_host, info, deploy)
            try:
                async with session.get(
                    url,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=HTTP_PROBE_TIMEOUT_S),
                ) as response:
                    return 200 <= response.status < 400, f"{url} answered {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                return False, f"{url}: {type(exc).__name__} {exc}".rstrip()

        return by_http
    if image_has_check:

        async def by_healthcheck(info: dict[str, Any]) -> tuple[bool, str]:
            health = (info.get("State") or {}).get("Health") or {}
            status = str(health.get("Status", "starting"))
            if status == "unhealthy":
                log = health.get("Log") or [{}]
                raise DeployError(
                    "the image's HEALTHCHECK says unhealthy: "
                    + str(log[-1].get("Output", "")).strip()[:200]
                )
            return status == "healthy", f"HEALTHCHECK status {status}"

        return by_healthcheck

    async def still_running(_info: dict[str, Any]) -> tuple[bool, str]:
        ran = time.monotonic() - started
        return ran >= NO_CHECK_SETTLE_S, f"running for {ran:.1f}s"

    return still_running


def probe_url(docker_host: str, info: dict[str, Any], deploy: DeploySettings) -> str:
    """Where the worker reaches the container: its address on its network when the engine
    is on this host, else the engine's host at the port published for the health port."""
    port = deploy.health_port
    path = deploy.health_path or "/"
    parts = urlsplit(docker_host)
    remote_host = parts.hostname if parts.scheme in ("tcp", "ssh", "http", "https") else None
    if remote_host not in (None, "127.0.0.1", "localhost", "::1"):
        published = ((info.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{port}/tcp")
        if not published:
            raise DeployError(
                f"the worker cannot reach port {port} of a container on {remote_host}: "
                f"publish it (--port HOST:{port}) or use --health-cmd"
            )
        return f"http://{remote_host}:{published[0]['HostPort']}{path}"
    networks: dict[str, Any] = (info.get("NetworkSettings") or {}).get("Networks") or {}
    chosen: dict[str, Any] = networks.get(deploy.network or "bridge") or next(
        iter(networks.values()), {}
    )
    address = chosen.get("IPAddress") if chosen else None
    if not address:
        raise DeployError("the new container has no IP address to probe (network mode?)")
    return f"http://{address}:{port}{path}"
