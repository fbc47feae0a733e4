"""BuildKit backend: the docker CLI (``DOCKER_BUILDKIT=1 docker build --progress=plain``).

Output is streamed line by line as BuildKit prints it. Secrets reach the CLI through its
environment (``--secret id=X,env=VAR``), registry credentials through a private DOCKER_CONFIG
directory filled by ``docker login --password-stdin``: neither is ever in argv.

Logins are kept per (registry, user) for the following builds and pushes (builders.logins):
logged in again when the password changes or the registry answers 401. The builders of one
worker share them (``logins=``): the DOCKER_CONFIG is read by the CLI here, whatever engine it
talks to, so only the first job of the worker logs in, through its own server's engine. A push
to a ``unix://`` or ``tcp://`` engine is the Engine API call the CLI would make, with that
stored login, made without the CLI (builders.enginepush).
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from deployq.builders import enginepush
from deployq.builders.attempts import (
    EXECUTOR_DIR,
    LOOK_TIMEOUT_S,
    MARKER_NAME,
    STEPS_SCRIPT,
    EngineSteps,
    parse_steps,
)
from deployq.builders.base import (
    BuildRequest,
    EngineInfo,
    LogSink,
    RegistryAuth,
    df_free_mb,
    local_free_disk_mb,
    normalize_arch,
    split_ref,
)
from deployq.builders.logins import Login, RegistryLogins
from deployq.builders.process import ProcessResult, base_env, run_streaming
from deployq.builders.sshconf import SshWrapper, ssh_problem
from deployq.builders.tls import EngineTLS, tls_problem
from deployq.errors import BuildError, EngineUnavailable, RegistryError
from deployq.redact import Redactor

#: environment of the CLI that must not leak in from ours
_DROP_ENV = (
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
)
# BuildKit's gRPC dialer says "cannot connect", the CLI "Cannot connect"
_UNREACHABLE = re.compile(
    r"cannot connect to the Docker daemon|error during connect|x509:|remote error: tls"
    r"|HTTP request to an HTTPS server|Could not load X509 key pair|Host key verification failed",
    re.IGNORECASE,
)
#: seconds to wait for ``docker info`` when pinging an engine
PING_TIMEOUT_S = 20
#: how often the free disk of a remote engine is measured (it runs a container)
DISK_PROBE_INTERVAL_S = 300.0
#: how long that container may take (within the worker's probe timeout)
DISK_PROBE_TIMEOUT_S = 5.0
_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")
#: what ``docker push`` says when the registry refuses the stored credentials
_AUTH_REFUSED = re.compile(
    r"unauthorized|authentication required|no basic auth credentials", re.IGNORECASE
)


class BuildKitBuilder:
    """Builds and pushes through the docker CLI with BuildKit."""

    backend = "buildkit"

    def __init__(
        self,
        docker_host: str,
        docker_cli: str = "/usr/bin/docker",
        *,
        tls: EngineTLS | None = None,
        ssh: SshWrapper | None = None,
        disk_probe_image: str | None = None,
        logins: RegistryLogins | None = None,
    ) -> None:
        self.docker_host = docker_host
        self.docker_cli = docker_cli
        self.tls = tls
        #: the ssh the CLI's ssh:// transport runs (strict host key checking)
        self.ssh = ssh if docker_host.startswith("ssh://") else None
        #: image with ``df`` that measures a remote engine's free disk (None: not measured)
        self.disk_probe_image = disk_probe_image
        self._disk: tuple[float, int | None] | None = None
        self._data_root: str | None = None
        #: the registry logins: the worker's, shared by its builders, or this builder's own
        self.logins = logins if logins is not None else RegistryLogins()
        self._own_logins = logins is None

    def close(self) -> None:
        """Forget the builder's own logins and remove the credentials they left on disk
        (shared ones are closed by their owner). The builder stays usable: the next build
        or push logs in again."""
        if self._own_logins:
            self.logins.close()

    @property
    def config_root(self) -> Path | None:
        """The directory holding this builder's DOCKER_CONFIGs (None before the first login)."""
        return self.logins.root

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {"DOCKER_HOST": self.docker_host, "DOCKER_BUILDKIT": "1"}
        env.update(extra or {})
        merged = base_env(env, drop=_DROP_ENV)
        return self.ssh.env(merged) if self.ssh else merged

    def _cli(self, *args: str) -> list[str]:
        """argv of the docker CLI talking to this engine (with its TLS files, if any)."""
        return [self.docker_cli, *(self.tls.cli_flags() if self.tls else []), *args]

    def _unavailable(self, result: ProcessResult) -> EngineUnavailable:
        text = result.last_lines(3)
        problem = tls_problem(text, self.tls) or ssh_problem(text, self.docker_host, self.ssh)
        if problem is not None:
            return EngineUnavailable(f"docker engine {self.docker_host} refused: {problem}")
        return EngineUnavailable(
            f"docker engine {self.docker_host} does not answer: {result.last_lines(2)} — "
            "start dockerd there, or fix the build server's --docker-host"
        )

    async def ping(self) -> EngineInfo:
        lines: list[str] = []
        try:
            result = await asyncio.wait_for(
                run_streaming(
                    self._cli("info", "--format", "{{json .}}"),
                    env=self._env(),
                    on_line=lines.append,
                ),
                PING_TIMEOUT_S,
            )
        except TimeoutError as exc:
            raise EngineUnavailable(
                f"docker engine {self.docker_host} did not answer within {PING_TIMEOUT_S} s — "
                "check that dockerd runs there and the address is reachable"
            ) from exc
        if result.returncode != 0 or not lines:
            raise self._unavailable(result)
        try:
            info = json.loads(lines[-1])
        except ValueError as exc:
            raise self._unavailable(result) from exc
        if info.get("ServerErrors"):
            result.tail.append("; ".join(info["ServerErrors"]))
            raise self._unavailable(result)
        data_root = info.get("DockerRootDir") or None
        self._data_root = data_root
        return EngineInfo(
            version=str(info.get("ServerVersion", "")),
            arch=normalize_arch(str(info.get("Architecture", ""))),
            buildkit=True,
            free_disk_mb=await self._free_disk_mb(data_root),
            data_root=data_root,
        )

    async def _free_disk_mb(self, data_root: str | None) -> int | None:
        """Free disk of the engine's data root: measured here for a unix:// engine, else by
        ``df`` in a throwaway container on the engine (every DISK_PROBE_INTERVAL_S)."""
        if self.docker_host.startswith("unix://") or not data_root:
            return local_free_disk_mb(self.docker_host, data_root)
        if self.disk_probe_image is None:
            return None
        if self._disk is not None and time.monotonic() - self._disk[0] < DISK_PROBE_INTERVAL_S:
            return self._disk[1]
        lines: list[str] = []
        argv = self._cli(
            "run", "--rm", "--pull=never", "--network", "none",
            "--volume", f"{data_root}:/data-root:ro",
            self.disk_probe_image, "df", "-Pk", "/data-root",
        )  # fmt: skip
        free: int | None = None
        try:  # never pulls, and is bounded: an engine without the image reports no figure
            result = await asyncio.wait_for(
                run_streaming(argv, env=self._env(), on_line=lines.append), DISK_PROBE_TIMEOUT_S
            )
        except TimeoutError:
            pass
        else:
            free = df_free_mb("\n".join(lines)) if result.returncode == 0 else None
        self._disk = (time.monotonic(), free)
        return free

    async def attempt_steps(self, marker: str, *, stop: bool = False) -> EngineSteps | None:
        """BuildKit's running steps of the builds named ``marker``, seen by a container on the
        engine (``builders.attempts``); with ``stop`` their processes are SIGKILLed first.
        None when the engine cannot be looked into (no data root, no image to look with)."""
        if self._data_root is None:
            await self.ping()
        if self.disk_probe_image is None or self._data_root is None:
            return None
        lines: list[str] = []
        executor = f"{self._data_root.rstrip('/')}/{EXECUTOR_DIR}"
        argv = self._cli(
            "run", "--rm", "--pull=never", "--network", "none", "--pid", "host",
            "--volume", f"{executor}:/executor:ro",
            self.disk_probe_image, "sh", "-c", STEPS_SCRIPT, "sh", marker,
            "kill" if stop else "look",
        )  # fmt: skip
        try:
            result = await asyncio.wait_for(
                run_streaming(argv, env=self._env(), on_line=lines.append), LOOK_TIMEOUT_S
            )
        except TimeoutError as exc:
            raise EngineUnavailable(
                f"docker engine {self.docker_host} did not say within {LOOK_TIMEOUT_S:g} s "
                "which builds it runs"
            ) from exc
        steps = parse_steps(marker, "\n".join(lines)) if result.returncode == 0 else None
        if steps is None and _UNREACHABLE.search(result.last_lines(3)):
            raise self._unavailable(result)
        return steps

    async def build(
        self, req: BuildRequest, log: LogSink, *, auth: RegistryAuth | None = None
    ) -> str:
        req.check_paths()
        secret_env = {f"DEPLOYQ_BUILD_SECRET_{i}": v for i, v in enumerate(req.secrets.values())}
        extra = dict(secret_env)
        login = await self.logins.get(auth, log, self._login)
        if login is not None:
            extra["DOCKER_CONFIG"] = login.config
        with tempfile.TemporaryDirectory(prefix="deployq-build-") as tmp:
            tmpdir = Path(tmp)
            dockerfile = req.dockerfile_path
            if req.dockerfile_text is not None:
                dockerfile = tmpdir / "Dockerfile"
                dockerfile.write_text(req.dockerfile_text)
            iidfile = tmpdir / "iid"
            argv = self._cli("build", "--progress=plain", "--iidfile", str(iidfile))
            argv += ["--file", str(dockerfile)]
            if req.target:
                argv += ["--target", req.target]
            for key, value in req.build_args.items():
                argv += ["--build-arg", f"{key}={value}"]
            argv += ["--build-arg", "BUILDKIT_INLINE_CACHE=1"]
            for env_name, secret_id in zip(secret_env, req.secrets, strict=True):
                argv += ["--secret", f"id={secret_id},env={env_name}"]
            for key, value in req.labels.items():
                argv += ["--label", f"{key}={value}"]
            if req.attempt_marker:
                argv += ["--add-host", f"{MARKER_NAME}:{req.attempt_marker}"]
            for tag in req.tags:
                argv += ["--tag", tag]
            for ref in req.cache_from:
                argv += ["--cache-from", ref]
            argv.append(str(req.context_path))
            result = await run_streaming(
                argv,
                env=self._env(extra),
                on_line=log,
                cwd=req.workspace,
                redact=Redactor(req.secrets.values()),
            )
            if result.returncode != 0:
                if _UNREACHABLE.search(result.last_lines(3)):
                    raise self._unavailable(result)
                raise BuildError(
                    f"docker build on {self.docker_host} failed (exit {result.returncode}): "
                    f"{_error_summary(result)}"
                )
            image_id = iidfile.read_text().strip()
        if not image_id:
            raise BuildError(f"docker build on {self.docker_host} reported no image id")
        return image_id

    async def push(
        self,
        ref: str,
        auth: RegistryAuth | None,
        log: LogSink,
        *,
        on_digest: Callable[[str], None] | None = None,
    ) -> str:
        if on_digest is not None:
            log = _watching(log, split_ref(ref)[1], on_digest)
        login = await self.logins.get(auth, log, self._login)
        result = await self._push_once(ref, auth, login, log)
        refused = result.returncode != 0 and _AUTH_REFUSED.search(result.last_lines(3))
        if refused and auth is not None and login is not None:
            # the stored login went stale (rotated password, config removed): log in again,
            # for every builder sharing it
            log(f"{auth.server} refused the stored login: logging in again")
            login = await self.logins.get(auth, log, self._login, stale=login.generation)
            result = await self._push_once(ref, auth, login, log)
        if result.returncode != 0:
            summary = result.last_lines(3)
            if _UNREACHABLE.search(summary):
                raise self._unavailable(result)
            raise RegistryError(f"push of {ref} failed: {summary}")
        for line in reversed(result.tail):
            if match := _DIGEST.search(line):
                return match.group(1)
        raise RegistryError(f"push of {ref} finished without reporting a digest")

    async def _push_once(
        self, ref: str, auth: RegistryAuth | None, login: Login | None, log: LogSink
    ) -> ProcessResult:
        redact = Redactor([auth.password if auth else None])
        # without a login of ours the CLI reads the user's own ~/.docker/config.json: it pushes
        if login is not None and auth is not None and enginepush.speaks_api(self.docker_host):
            stored = enginepush.stored_login(login.config, auth.server)
            if stored is not None:  # the CLI's call, without the CLI (builders.enginepush)
                return await enginepush.push(self.docker_host, self.tls, ref, stored, log, redact)
        extra = {"DOCKER_CONFIG": login.config} if login is not None else {}
        return await run_streaming(
            self._cli("push", ref), env=self._env(extra), on_line=log, redact=redact
        )

    async def _login(self, config: str, auth: RegistryAuth, log: LogSink) -> None:
        """``docker login --password-stdin`` into the DOCKER_CONFIG directory ``config``."""
        log(f"logging in to {auth.server} as {auth.username}")
        result = await run_streaming(
            self._cli("login", "--username", auth.username or "", "--password-stdin", auth.server),
            env=self._env({"DOCKER_CONFIG": config}),
            on_line=lambda line: None,
            stdin_data=(auth.password or "").encode(),
            redact=Redactor([auth.password]),
        )
        if result.returncode != 0:
            summary = result.last_lines(2)
            if _UNREACHABLE.search(summary):
                raise self._unavailable(result)
            raise RegistryError(
                f"login to registry {auth.server} as {auth.username!r} failed: {summary} — "
                "check DEPLOYQ_REGISTRY_USERNAME and DEPLOYQ_REGISTRY_PASSWORD"
            )


def _watching(log: LogSink, tag: str, on_digest: Callable[[str], None]) -> LogSink:
    """``log``, calling ``on_digest`` once with the digest of the line that reports ``tag``'s
    manifest stored (``TAG: digest: sha256:… size: N``; the engine says a little more before
    the push call ends)."""
    reported = False

    def line(text: str) -> None:
        nonlocal reported
        log(text)
        if not reported and text.startswith(f"{tag}: ") and (match := _DIGEST.search(text)):
            reported = True
            on_digest(match.group(1))

    return line


def _error_summary(result: ProcessResult) -> str:
    """The lines of BuildKit's output that say what went wrong."""
    errors = [line for line in result.tail if "error" in line.lower()]
    return "\n".join(errors[-3:]) if errors else result.last_lines(3)
