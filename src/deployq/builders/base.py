"""What every build backend offers: the Builder protocol and the values it takes and returns."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from deployq.builders.attempts import EngineSteps
from deployq.errors import BuildError

#: receives one line of build or push output at a time; must not block
LogSink = Callable[[str], None]


@dataclass(frozen=True)
class BuildRequest:
    """One image build. Paths are relative to ``workspace`` (the checked-out repository)."""

    workspace: Path
    context: str = "."
    dockerfile: str = "Dockerfile"
    target: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    #: BuildKit secret id -> value; values never reach argv or logs
    secrets: dict[str, str] = field(default_factory=dict)
    #: full references, e.g. 127.0.0.1:5000/deployq/app:abc1234
    tags: list[str] = field(default_factory=list)
    #: registry references whose layers may serve as cache
    cache_from: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    #: Dockerfile text to use instead of ``dockerfile`` (zero-config builds)
    dockerfile_text: str | None = None
    #: the name the engine reports this attempt's steps under (``builders.attempts``)
    attempt_marker: str | None = None

    @property
    def context_path(self) -> Path:
        return (self.workspace / self.context).resolve()

    @property
    def dockerfile_path(self) -> Path:
        return (self.workspace / self.dockerfile).resolve()

    def check_paths(self) -> None:
        """Raise :class:`BuildError` when the context or the Dockerfile is missing or escapes."""
        root = self.workspace.resolve()
        context = self.context_path
        if not context.is_relative_to(root) or not context.is_dir():
            raise _not_retryable(
                BuildError(
                    f"build context {self.context!r} is not a directory of the repository: "
                    "fix the app's --context"
                )
            )
        if self.dockerfile_text is not None:
            return
        dockerfile = self.dockerfile_path
        if not dockerfile.is_relative_to(root) or not dockerfile.is_file():
            raise _not_retryable(
                BuildError(
                    f"Dockerfile {self.dockerfile!r} not found in the repository: add it, or "
                    "set the app's --dockerfile to its path (or remove the setting to let "
                    "deployq detect the runtime)"
                )
            )


def _not_retryable(exc: BuildError) -> BuildError:
    exc.retryable = False
    return exc


@dataclass(frozen=True)
class EngineInfo:
    """What a docker engine says about itself."""

    version: str
    arch: str
    buildkit: bool
    free_disk_mb: int | None
    data_root: str | None


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one registry server (host[:port])."""

    server: str
    username: str | None
    password: str | None = field(default=None, repr=False)


@runtime_checkable
class Builder(Protocol):
    """A docker engine that builds and pushes images."""

    backend: str
    docker_host: str

    async def ping(self) -> EngineInfo:
        """Ask the engine about itself; raise EngineUnavailable naming the host and a fix."""
        ...

    async def build(
        self, req: BuildRequest, log: LogSink, *, auth: RegistryAuth | None = None
    ) -> str:
        """Build ``req``; return the image id. ``auth`` serves registry cache-from pulls."""
        ...

    async def push(
        self,
        ref: str,
        auth: RegistryAuth | None,
        log: LogSink,
        *,
        on_digest: Callable[[str], None] | None = None,
    ) -> str:
        """Push ``ref``; return its manifest digest ``sha256:...``. ``on_digest`` is called
        with it as soon as the engine reports the manifest stored, which may come before the
        push call is over (or not at all: then only the return value has it)."""
        ...

    async def attempt_steps(self, marker: str, *, stop: bool = False) -> EngineSteps | None:
        """The steps the engine still runs of builds carrying ``marker`` (killed first with
        ``stop``); None when the engine answers but cannot be looked into; EngineUnavailable
        when it does not answer."""
        ...

    def close(self) -> None:
        """Drop what the builder keeps between calls (stored registry logins) from memory and
        disk; the builder stays usable."""
        ...


ARCH_NAMES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


def normalize_arch(arch: str) -> str:
    """docker reports ``x86_64`` in some places and ``amd64`` in others: use GOARCH names."""
    return ARCH_NAMES.get(arch, arch)


def local_free_disk_mb(docker_host: str, data_root: str | None) -> int | None:
    """Free space of the engine's data root when the engine is on this host (a unix socket)."""
    if not data_root or not docker_host.startswith("unix://"):
        return None
    try:
        return shutil.disk_usage(data_root).free // (1024 * 1024)
    except OSError:
        return None


def df_free_mb(output: str) -> int | None:
    """Available MB from the last line of ``df -Pk`` output (None when it is not that)."""
    lines = [line.split() for line in output.splitlines() if line.strip()]
    if len(lines) < 2 or len(lines[-1]) < 4 or not lines[-1][3].isdigit():
        return None
    return int(lines[-1][3]) // 1024


def split_ref(ref: str) -> tuple[str, str]:
    """``host:5000/a/b:tag`` -> (``host:5000/a/b``, ``tag``); a missing tag is ``latest``."""
    if "@" in ref:
        repo, _, digest = ref.partition("@")
        return repo, digest
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return repo, tag


def registry_host(ref: str) -> str:
    """The registry part of a reference (``docker.io`` when it has none)."""
    first, sep, _ = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"
