"""Engine API backend: the docker SDK (``docker.APIClient``), blocking, run in a thread.

Each call gets its own client and connection. A cancelled build shuts its streaming
connection down: the daemon sees the client go away and stops that build (and only it),
and the abandoned thread ends on the closed socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import requests

from deployq.builders.attempts import MARKER_NAME, EngineSteps
from deployq.builders.base import (
    BuildRequest,
    EngineInfo,
    LogSink,
    RegistryAuth,
    local_free_disk_mb,
    normalize_arch,
    split_ref,
)
from deployq.builders.sshconf import SshWrapper, ssh_problem
from deployq.builders.sshdial import SshDialer
from deployq.builders.tls import EngineTLS, tls_problem
from deployq.errors import BuildError, EngineUnavailable, RegistryError
from deployq.redact import Redactor

#: seconds to wait for the engine to answer a ping
PING_TIMEOUT_S = 10
#: seconds a streaming build or push may stay silent (long RUN steps print nothing)
STREAM_TIMEOUT_S = 24 * 3600

T = TypeVar("T")


class _Stream:
    """Holds the streaming HTTP response of one call so another thread can cut it."""

    def __init__(self) -> None:
        self.response: requests.Response | None = None
        self.cancelled = threading.Event()

    def hook(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        self.response = response
        if self.cancelled.is_set():
            self.cut()
        return response

    def cut(self) -> None:
        """Shut the connection down; a blocked reader wakes with an error or EOF."""
        self.cancelled.set()
        response = self.response
        if response is None:
            return
        conn = getattr(response.raw, "_connection", None)
        sock = getattr(conn, "sock", None)
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            response.close()


class _APIClient(docker.APIClient):  # type: ignore[misc]
    """An APIClient whose TLS verification uses the engine's CA even when the environment
    names a CA bundle (``REQUESTS_CA_BUNDLE`` would otherwise replace it in requests)."""

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        settings: dict[str, Any] = super().merge_environment_settings(
            url, proxies, stream, verify, cert
        )
        if self.verify not in (True, False, None):
            settings["verify"] = self.verify
        return settings


def api_client(docker_host: str, *, timeout: int, tls: EngineTLS | None) -> docker.APIClient:
    """A docker SDK client for ``docker_host`` (ssh:// through ssh, tcp:// with ``tls``)."""
    return _APIClient(
        base_url=docker_host,
        version="auto",
        timeout=timeout,
        use_ssh_client=docker_host.startswith("ssh://"),
        tls=tls.sdk_config() if tls else False,
    )


class EngineBuilder:
    """Builds and pushes through the Docker Engine API with the docker SDK."""

    backend = "engine"

    def __init__(
        self, docker_host: str, *, tls: EngineTLS | None = None, ssh: SshWrapper | None = None
    ) -> None:
        self.docker_host = docker_host
        self.tls = tls
        #: ssh:// through the strict ssh wrapper (builders.sshdial), as the CLI reaches it
        self.ssh = ssh if docker_host.startswith("ssh://") else None
        self.dialer = SshDialer(docker_host, self.ssh) if self.ssh else None

    def close(self) -> None:
        """Each call passes its credentials to the engine and keeps none; an ssh:// engine's
        socket goes."""
        if self.dialer is not None:
            self.dialer.close()

    def _client(self, timeout: int = STREAM_TIMEOUT_S) -> docker.APIClient:
        base_url = self.dialer.url if self.dialer else self.docker_host
        try:
            return api_client(base_url, timeout=timeout, tls=self.tls)
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> EngineUnavailable:
        tls = tls_problem(str(exc), self.tls)
        if tls is not None:
            return EngineUnavailable(f"docker engine {self.docker_host} refused: {tls}")
        if self.dialer is not None:
            ssh = ssh_problem(self.dialer.last_error, self.docker_host, self.ssh)
            if ssh is not None:
                return EngineUnavailable(f"docker engine {self.docker_host} refused: {ssh}")
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return EngineUnavailable(
            f"docker engine {self.docker_host} does not answer: {reason} — "
            "start dockerd there, or fix the build server's --docker-host"
        )

    async def ping(self) -> EngineInfo:
        def call() -> EngineInfo:
            client = self._client(PING_TIMEOUT_S)
            try:
                info = client.info()
            except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
                raise self._unavailable(exc) from exc
            finally:
                client.close()
            data_root = info.get("DockerRootDir") or None
            return EngineInfo(
                version=str(info.get("ServerVersion", "")),
                arch=normalize_arch(str(info.get("Architecture", ""))),
                buildkit=False,
                free_disk_mb=local_free_disk_mb(self.docker_host, data_root),
                data_root=data_root,
            )

        return await asyncio.to_thread(call)

    async def build(
        self, req: BuildRequest, log: LogSink, *, auth: RegistryAuth | None = None
    ) -> str:
        req.check_paths()
        if req.secrets:
            raise BuildError(
                "build secrets need BuildKit: set DEPLOYQ_BUILD_BACKEND=buildkit (the engine "
                "backend's classic builder cannot mount secrets)"
            )
        redact = Redactor([auth.password if auth else None])

        def call(stream: _Stream, emit: Callable[[str], None]) -> str:
            client = self._client()
            client.hooks["response"].append(stream.hook)
            image_id = ""
            try:
                if auth is not None and auth.username:
                    client.login(auth.username, auth.password, registry=auth.server)
                cache_from = _pull_cache(
                    client, req.cache_from, auth, lambda line: emit(redact(line))
                )
                dockerfile: str = str(req.dockerfile_path)
                if req.dockerfile_text is not None:
                    dockerfile = _write_generated(req)
                chunks = client.build(
                    path=str(req.context_path),
                    dockerfile=dockerfile,
                    tag=req.tags[0] if req.tags else None,
                    buildargs=dict(req.build_args),
                    target=req.target,
                    labels=dict(req.labels),
                    cache_from=cache_from or None,
                    extra_hosts=({MARKER_NAME: req.attempt_marker} if req.attempt_marker else None),
                    rm=True,
                    forcerm=True,
                    decode=True,
                )
                for chunk in _chunks(chunks, stream):
                    if "error" in chunk:
                        raise BuildError(
                            f"docker build on {self.docker_host} failed: "
                            f"{redact(str(chunk['error']).strip())}"
                        )
                    if isinstance(chunk.get("aux"), dict) and "ID" in chunk["aux"]:
                        image_id = str(chunk["aux"]["ID"])
                    for line in str(chunk.get("stream", "")).splitlines():
                        if line.strip():
                            emit(redact(line.rstrip()))
                if not image_id:
                    raise BuildError(f"docker build on {self.docker_host} reported no image id")
                for tag in req.tags[1:]:
                    repository, name = split_ref(tag)
                    client.tag(image_id, repository, name)
                return image_id
            except docker.errors.APIError as exc:
                raise BuildError(
                    f"docker build on {self.docker_host} failed: {redact(exc.explanation or '')}"
                ) from exc
            except (docker.errors.DockerException, requests.ConnectionError) as exc:
                raise self._unavailable(exc) from exc
            finally:
                client.close()

        return await self._run(call, log)

    async def attempt_steps(self, marker: str, *, stop: bool = False) -> EngineSteps:
        """The classic builder's running step containers of the builds named ``marker``
        (their HostConfig.ExtraHosts holds it); killed first with ``stop``."""
        wanted = f"{MARKER_NAME}:{marker}"

        def call() -> EngineSteps:
            client = self._client(PING_TIMEOUT_S)
            try:
                found = []
                for summary in client.containers(filters={"status": "running"}):
                    with contextlib.suppress(docker.errors.NotFound):
                        details = client.inspect_container(summary["Id"])
                        if wanted in (details.get("HostConfig", {}).get("ExtraHosts") or []):
                            found.append(str(summary["Id"]))
                            if stop:
                                with contextlib.suppress(docker.errors.APIError):
                                    client.kill(summary["Id"])
                return EngineSteps(marker, tuple(found))
            except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
                raise self._unavailable(exc) from exc
            finally:
                client.close()

        return await asyncio.to_thread(call)

    async def push(
        self,
        ref: str,
        auth: RegistryAuth | None,
        log: LogSink,
        *,
        on_digest: Callable[[str], None] | None = None,
    ) -> str:
        repository, tag = split_ref(ref)
        auth_config = None
        if auth is not None and auth.username:
            auth_config = {"username": auth.username, "password": auth.password or ""}

        def call(stream: _Stream, emit: Callable[[str], None]) -> str:
            client = self._client()
            client.hooks["response"].append(stream.hook)
            digest = ""
            try:
                chunks = client.push(
                    repository, tag, stream=True, decode=True, auth_config=auth_config
                )
                for chunk in _chunks(chunks, stream):
                    if "error" in chunk:
                        raise RegistryError(f"push of {ref} failed: {chunk['error']}")
                    aux = chunk.get("aux")
                    if isinstance(aux, dict) and aux.get("Digest"):
                        digest = str(aux["Digest"])
                    line = " ".join(
                        str(chunk[k]) for k in ("id", "status", "progress") if chunk.get(k)
                    )
                    if line.strip() and "progress" not in chunk:
                        emit(line)
            except docker.errors.APIError as exc:
                raise RegistryError(f"push of {ref} failed: {exc.explanation}") from exc
            except (docker.errors.DockerException, requests.ConnectionError) as exc:
                raise self._unavailable(exc) from exc
            finally:
                client.close()
            if not digest:
                raise RegistryError(f"push of {ref} finished without reporting a digest")
            return digest

        return await self._run(call, log)

    async def _run(self, call: Callable[[_Stream, Callable[[str], None]], T], log: LogSink) -> T:
        """Run ``call`` in a thread; lines go to ``log`` on the event loop; cancel cuts it."""
        loop = asyncio.get_running_loop()
        stream = _Stream()

        def emit(line: str) -> None:
            loop.call_soon_threadsafe(log, line)

        task = asyncio.ensure_future(asyncio.to_thread(call, stream, emit))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            stream.cut()
            # the daemon stops the build once the connection is gone; give the thread a
            # moment to notice so it does not outlive us for long, but never block on it
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 2.0)
            raise


def _pull_cache(
    client: docker.APIClient,
    refs: list[str],
    auth: RegistryAuth | None,
    emit: Callable[[str], None],
) -> list[str]:
    """Pull the cache images (the classic builder reuses only local images); the ones the
    registry has not got yet are left out, with a line saying so."""
    auth_config = None
    if auth is not None and auth.username:
        auth_config = {"username": auth.username, "password": auth.password or ""}
    pulled = []
    for ref in refs:
        repository, tag = split_ref(ref)
        try:
            for chunk in client.pull(
                repository, tag, stream=True, decode=True, auth_config=auth_config
            ):
                if "error" in chunk:
                    raise docker.errors.APIError(str(chunk["error"]))
        except docker.errors.APIError as exc:
            reason = (exc.explanation or str(exc)).strip().splitlines()
            emit(f"no cache image {ref}: {reason[-1] if reason else 'not found'}")
            continue
        emit(f"pulled cache image {ref}")
        pulled.append(ref)
    return pulled


def _chunks(chunks: Iterator[dict[str, Any]], stream: _Stream) -> Iterator[dict[str, Any]]:
    """Decoded stream entries, stopping quietly once the call was cancelled."""
    try:
        for chunk in chunks:
            if stream.cancelled.is_set():
                return
            yield chunk
    except (requests.RequestException, OSError, ValueError):
        if not stream.cancelled.is_set():
            raise


def _write_generated(req: BuildRequest) -> str:
    """Put a generated Dockerfile into the context (the SDK reads it from there)."""
    path = req.context_path / ".deployq.Dockerfile"
    Path(path).write_text(req.dockerfile_text or "")
    return str(path)
