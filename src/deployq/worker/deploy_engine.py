"""One deploy target's Docker engine, through the docker SDK (blocking, run in threads).

Containers deployq runs carry labels (``io.deployq.app``, ``.job``, ``.commit``,
``.digest``), and every decision is taken from what the engine lists under those labels,
never from memory: a worker killed mid-deploy leaves nothing the next attempt cannot find.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import docker
import docker.errors
import requests

from deployq.builders.base import split_ref
from deployq.errors import DeployError, EngineUnavailable

T = TypeVar("T")

LABEL_APP = "io.deployq.app"
LABEL_JOB = "io.deployq.job"
LABEL_COMMIT = "io.deployq.commit"
LABEL_DIGEST = "io.deployq.digest"
#: seconds a stopped container gets to exit on SIGTERM before SIGKILL
STOP_TIMEOUT_S = 10
#: seconds an engine call may take (a pull of a big image takes longer: PULL_TIMEOUT_S)
CALL_TIMEOUT_S = 60
PULL_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Deployed:
    """A container of an app, as the engine lists it."""

    id: str
    name: str
    running: bool
    job_id: int
    commit: str
    digest: str

    @property
    def label(self) -> str:
        """``#12 abc1234 (sha256:...)`` for logs and errors."""
        return f"#{self.job_id} {self.commit[:7]} ({self.digest})"


@dataclass(frozen=True)
class ContainerSpec:
    """What ``create`` makes: the settings of ``docker run`` that deploys use."""

    name: str
    image: str
    labels: dict[str, str]
    env: dict[str, str]
    ports: dict[str, Any]
    volumes: list[str]
    network: str | None
    aliases: list[str]


class DeployEngine:
    """The engine at ``docker_host`` (unix, tcp with TLS from the environment, ssh)."""

    def __init__(self, docker_host: str) -> None:
        self.docker_host = docker_host
        self._client: docker.DockerClient | None = None

    # -- plumbing ----------------------------------------------------------------------------

    def _connect(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.DockerClient(
                    base_url=self.docker_host,
                    version="auto",
                    timeout=CALL_TIMEOUT_S,
                    use_ssh_client=self.docker_host.startswith("ssh://"),
                )
            except (docker.errors.DockerException, requests.RequestException) as exc:
                raise self._unavailable(exc) from exc
        return self._client

    def _unavailable(self, exc: BaseException) -> EngineUnavailable:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return EngineUnavailable(
            f"docker engine {self.docker_host} does not answer: {reason} — start dockerd "
            "there, or fix the target's --docker-host"
        )

    async def _call(self, what: str, func: Callable[[docker.DockerClient], T]) -> T:
        def call() -> T:
            client = self._connect()
            try:
                return func(client)
            except docker.errors.APIError as exc:
                raise DeployError(
                    f"{what} on {self.docker_host} failed: {exc.explanation or exc}"
                ) from exc
            except (docker.errors.DockerException, requests.RequestException) as exc:
                raise self._unavailable(exc) from exc

        return await asyncio.to_thread(call)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- what the deploy step does -----------------------------------------------------------

    async def version(self) -> str:
        return await self._call("docker version", lambda c: str(c.version().get("Version", "")))

    async def pull(self, image: str, auth: dict[str, str] | None) -> None:
        """Pull ``repo@sha256:...`` (with the registry login when one is configured)."""
        repository, digest = split_ref(image)

        def pull(client: docker.DockerClient) -> None:
            client.api.timeout = PULL_TIMEOUT_S
            try:
                client.api.pull(repository, tag=digest, auth_config=auth)
            finally:
                client.api.timeout = CALL_TIMEOUT_S

        await self._call(f"pull of {image}", pull)

    async def containers(self, app: str) -> list[Deployed]:
        """Every container of ``app`` on this engine, running or not, newest job first."""

        def listed(client: docker.DockerClient) -> list[Deployed]:
            found = client.api.containers(all=True, filters={"label": f"{LABEL_APP}={app}"})
            out = []
            for c in found:
                labels = c.get("Labels") or {}
                job = labels.get(LABEL_JOB, "")
                out.append(
                    Deployed(
                        id=str(c["Id"]),
                        name=str(c["Names"][0]).lstrip("/") if c.get("Names") else "",
                        running=c.get("State") == "running",
                        job_id=int(job) if job.isdigit() else 0,
                        commit=labels.get(LABEL_COMMIT, ""),
                        digest=labels.get(LABEL_DIGEST, ""),
                    )
                )
            return sorted(out, key=lambda d: d.job_id, reverse=True)

        return await self._call(f"listing the containers of {app}", listed)

    async def ensure_network(self, name: str) -> None:
        def ensure(client: docker.DockerClient) -> None:
            if not client.api.networks(names=[name]):
                client.api.create_network(name, driver="bridge", check_duplicate=True)

        await self._call(f"creating network {name}", ensure)

    async def create(self, spec: ContainerSpec) -> str:
        """Create (not start) the container; returns its id."""

        def create(client: docker.DockerClient) -> str:
            api = client.api
            networking = None
            if spec.network:
                networking = api.create_networking_config(
                    {spec.network: api.create_endpoint_config(aliases=spec.aliases or None)}
                )
            host_config = api.create_host_config(
                port_bindings=spec.ports or None,
                binds=spec.volumes or None,
                network_mode=spec.network or None,
                init=True,  # SIGTERM reaches the app even when it is PID 1 without a handler
                restart_policy={"Name": "unless-stopped"},
            )
            created = api.create_container(
                spec.image,
                name=spec.name,
                labels=spec.labels,
                environment=spec.env or None,
                ports=[_port_key(k) for k in spec.ports] or None,
                host_config=host_config,
                networking_config=networking,
                detach=True,
            )
            return str(created["Id"])

        return await self._call(f"creating container {spec.name}", create)

    async def start(self, container: str) -> None:
        await self._call(f"starting {container}", lambda c: c.api.start(container))

    async def stop(self, container: str) -> None:
        await self._call(
            f"stopping {container}", lambda c: c.api.stop(container, timeout=STOP_TIMEOUT_S)
        )

    async def remove(self, container: str) -> None:
        def remove(client: docker.DockerClient) -> None:
            try:
                client.api.remove_container(container, force=True, v=False)
            except docker.errors.NotFound:
                pass

        await self._call(f"removing {container}", remove)

    async def disconnect(self, container: str, network: str) -> None:
        """Take ``container`` off ``network``: its aliases stop resolving to it at once."""

        def disconnect(client: docker.DockerClient) -> None:
            try:
                client.api.disconnect_container_from_network(container, network)
            except docker.errors.APIError as exc:
                if "is not connected" not in str(exc.explanation or ""):
                    raise

        await self._call(f"disconnecting {container} from {network}", disconnect)

    async def connect(self, container: str, network: str, aliases: list[str]) -> None:
        def connect(client: docker.DockerClient) -> None:
            try:
                client.api.connect_container_to_network(container, network, aliases=aliases or None)
            except docker.errors.APIError as exc:
                if "already exists" not in str(exc.explanation or ""):
                    raise

        await self._call(f"connecting {container} to {network}", connect)

    async def inspect(self, container: str) -> dict[str, Any]:
        return await self._call(
            f"inspecting {container}", lambda c: dict(c.api.inspect_container(container))
        )

    async def image_healthcheck(self, image: str) -> bool:
        """Whether the image declares a HEALTHCHECK of its own."""

        def has(client: docker.DockerClient) -> bool:
            config = client.api.inspect_image(image).get("Config") or {}
            test = (config.get("Healthcheck") or {}).get("Test") or []
            return bool(test) and test != ["NONE"]

        return await self._call(f"inspecting {image}", has)

    async def exec(self, container: str, command: str) -> tuple[int, str]:
        """Run ``sh -c command`` in the container: (exit code, last output line)."""

        def run(client: docker.DockerClient) -> tuple[int, str]:
            api = client.api
            exec_id = api.exec_create(container, ["sh", "-c", command])["Id"]
            output = api.exec_start(exec_id, demux=False) or b""
            code = api.exec_inspect(exec_id).get("ExitCode")
            lines = output.decode(errors="replace").strip().splitlines()
            return (int(code) if code is not None else 1), (lines[-1] if lines else "")

        return await self._call(f"running the health command in {container}", run)

    async def logs_tail(self, container: str, lines: int) -> list[str]:
        def tail(client: docker.DockerClient) -> list[str]:
            raw = client.api.logs(container, tail=lines, stdout=True, stderr=True)
            return raw.decode(errors="replace").splitlines() if raw else []

        return await self._call(f"reading the log of {container}", tail)


@functools.cache
def _port_key(key: str) -> tuple[int, str] | int:
    """``80/tcp`` -> ``80`` (the SDK's form for exposed ports), ``53/udp`` -> (53, udp)."""
    port, _, proto = key.partition("/")
    return int(port) if proto in ("", "tcp") else (int(port), proto)
