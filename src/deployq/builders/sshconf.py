"""ssh:// engines: the docker CLI's own ssh transport, with host keys checked strictly.

The CLI runs ``ssh ... -- host docker system dial-stdio`` with whatever ``ssh`` is first on
PATH. :class:`SshWrapper` makes a private directory holding an ``ssh`` that runs the real one
with ``-F`` a config of ours (``StrictHostKeyChecking yes``, the known_hosts file and key from
settings, ``BatchMode yes``), and the builder puts that directory first on the CLI's PATH.
Nothing is ever trusted on first use: an unknown or changed host key refuses the engine.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
import weakref
from pathlib import Path

#: where Debian's openssh-client puts ssh
SSH = "/usr/bin/ssh"
#: seconds ssh waits for the TCP connection
CONNECT_TIMEOUT_S = 15


class SshWrapper:
    """A directory with an ``ssh`` that checks host keys against ``known_hosts``."""

    def __init__(self, known_hosts: Path | None, key: Path | None) -> None:
        self.known_hosts = known_hosts or Path("~/.ssh/known_hosts").expanduser()
        self.key = key
        self.directory = Path(tempfile.mkdtemp(prefix="deployq-ssh-"))  # mode 0700
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.directory, True)
        lines = [
            "Host *",
            "  StrictHostKeyChecking yes",
            f"  UserKnownHostsFile {_quote(self.known_hosts)}",
            "  GlobalKnownHostsFile /dev/null",
            "  BatchMode yes",
            f"  ConnectTimeout {CONNECT_TIMEOUT_S}",
        ]
        if key is not None:
            lines += [f"  IdentityFile {_quote(key)}", "  IdentitiesOnly yes"]
        config = self.directory / "ssh_config"
        config.write_text("\n".join(lines) + "\n")
        real = shutil.which("ssh") or SSH
        script = self.directory / "ssh"
        script.write_text(
            f'#!/bin/sh\nexec {shlex.quote(real)} -F {shlex.quote(str(config))} "$@"\n'
        )
        script.chmod(0o700)

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` with this wrapper first on PATH."""
        path = base.get("PATH", os.defpath)
        return {**base, "PATH": f"{self.directory}{os.pathsep}{path}"}

    def close(self) -> None:
        self._cleanup()


def _quote(path: Path) -> str:
    return '"' + str(path).replace('"', "") + '"'


_HOST_KEY = re.compile(
    r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED"
    r"|No \S+ host key is known",
    re.I,
)
_AUTH = re.compile(r"Permission denied \(", re.I)
_UNRESOLVED = re.compile(r"Could not resolve hostname", re.I)
_REFUSED = re.compile(r"connect to host \S+ port \d+: Connection refused", re.I)
_NO_ROUTE = re.compile(
    r"connect to host \S+ port \d+: (Connection timed out|No route to host)", re.I
)


def ssh_problem(text: str, docker_host: str, wrapper: SshWrapper | None) -> str | None:
    """What an ssh failure in ``text`` means, in one sentence; None when it is not one."""
    known = wrapper.known_hosts if wrapper else "~/.ssh/known_hosts"
    target = docker_host.removeprefix("ssh://")
    host, _, port = target.rpartition("@")[2].partition(":")
    if _HOST_KEY.search(text):
        scan = f"ssh-keyscan {'-p ' + port + ' ' if port else ''}{host}"
        return (
            f"ssh: the host key of {host} is not the one in {known} (unknown or changed): "
            f"check its fingerprint, then add it (`{scan} >> {known}`) or set "
            "DEPLOYQ_SSH_KNOWN_HOSTS"
        )
    if _UNRESOLVED.search(text):
        return f"ssh: cannot resolve the host name {host}: correct the server's --docker-host"
    if _REFUSED.search(text):
        return f"ssh: {host} refused the connection on port {port or 22}: is sshd running there?"
    if _NO_ROUTE.search(text):
        return f"ssh: no answer from {host} on port {port or 22}: check the address and firewall"
    if _AUTH.search(text):
        key = wrapper.key if wrapper and wrapper.key else "ssh's default key"
        return (
            f"ssh: {target} refused the key {key}: add its public key to the remote user's "
            "authorized_keys, or set DEPLOYQ_SSH_KEY"
        )
    return None
