"""Build backends: BuildKit through the docker CLI, or the Engine API through the docker SDK.

``make_builder(docker_host, backend)`` returns a :class:`Builder` for one build server;
``detect()`` writes a Dockerfile for repositories that have none.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

from deployq.builders.attempts import EngineSteps, attempt_marker
from deployq.builders.base import (
    Builder,
    BuildRequest,
    EngineInfo,
    LogSink,
    RegistryAuth,
    registry_host,
    split_ref,
)
from deployq.builders.buildkit import BuildKitBuilder
from deployq.builders.detect import Detection, detect
from deployq.builders.engine import EngineBuilder
from deployq.builders.logins import RegistryLogins
from deployq.builders.sshconf import SshWrapper
from deployq.builders.tls import EngineTLS
from deployq.config import BuildBackend
from deployq.errors import ConfigError

__all__ = [
    "BuildKitBuilder",
    "BuildRequest",
    "Builder",
    "Detection",
    "EngineBuilder",
    "EngineInfo",
    "EngineSteps",
    "EngineTLS",
    "LogSink",
    "RegistryAuth",
    "RegistryLogins",
    "SshWrapper",
    "attempt_marker",
    "detect",
    "find_buildkit_cli",
    "make_builder",
    "registry_host",
    "split_ref",
]

#: where Debian's docker.io package puts a CLI that builds with BuildKit on its own
DEBIAN_DOCKER_CLI = "/usr/bin/docker"
#: seconds to wait for ``docker version`` when probing a CLI
CLI_PROBE_TIMEOUT_S = 10


def make_builder(
    docker_host: str,
    backend: BuildBackend,
    *,
    docker_cli: str | None = None,
    tls: EngineTLS | None = None,
    ssh: SshWrapper | None = None,
    disk_probe_image: str | None = None,
    logins: RegistryLogins | None = None,
) -> Builder:
    """A builder for the engine at ``docker_host`` (through mutual TLS with ``tls``; ssh://
    through the strict ssh of ``ssh`` with either backend; the BuildKit backend also measures
    a remote engine's free disk with ``df`` in a container of ``disk_probe_image``, and keeps
    its registry logins in ``logins``, which builders may share; None: its own).

    AUTO picks BuildKit when a docker CLI that can build with BuildKit exists, else the
    Engine API. ``docker_cli`` is Settings.docker_cli (None: search for one).
    """
    if backend is BuildBackend.ENGINE:
        return EngineBuilder(docker_host, tls=tls, ssh=ssh)
    cli = docker_cli if docker_cli is not None else find_buildkit_cli()
    if cli is not None and (docker_cli is None or _has_buildkit(cli)):
        return BuildKitBuilder(
            docker_host, cli, tls=tls, ssh=ssh, disk_probe_image=disk_probe_image, logins=logins
        )
    if backend is BuildBackend.BUILDKIT:
        raise ConfigError(
            f"DEPLOYQ_BUILD_BACKEND=buildkit needs a docker CLI that builds with BuildKit "
            f"(found {cli or 'none'}): install docker's CLI with buildx, set "
            "DEPLOYQ_DOCKER_CLI, or use DEPLOYQ_BUILD_BACKEND=engine"
        )
    return EngineBuilder(docker_host, tls=tls, ssh=ssh)


def find_buildkit_cli() -> str | None:
    """The first of PATH's ``docker`` and /usr/bin/docker that can build with BuildKit."""
    candidates = [shutil.which("docker"), DEBIAN_DOCKER_CLI]
    for cli in dict.fromkeys(c for c in candidates if c):
        if _has_buildkit(cli):
            return cli
    return None


@functools.cache
def _has_buildkit(cli: str) -> bool:
    """A CLI builds with BuildKit if it has the buildx plugin, or is older than 23 (built in)."""
    if not os.access(cli, os.X_OK):
        return False
    try:
        buildx = subprocess.run(
            [cli, "buildx", "version"],
            capture_output=True,
            timeout=CLI_PROBE_TIMEOUT_S,
            check=False,
        )
        if buildx.returncode == 0:
            return True
        version = subprocess.run(
            [cli, "version", "--format", "{{.Client.Version}}"],
            capture_output=True,
            text=True,
            timeout=CLI_PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    major = version.stdout.strip().split(".")[0]
    return major.isdigit() and 18 <= int(major) < 23
