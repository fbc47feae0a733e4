"""ssh:// engines for the Engine API backend, through the same strict ssh as the docker CLI.

The docker SDK's own ssh transport needs paramiko, or runs whatever ``ssh`` is on PATH with the
user's configuration. Instead the SDK talks to a private unix socket (in a 0700 directory of
its own under /tmp: a socket path must be short), and each connection to it runs
``docker system dial-stdio`` on the engine's host through
:class:`~deployq.builders.sshconf.SshWrapper`: host keys checked strictly against
DEPLOYQ_SSH_KNOWN_HOSTS, the key DEPLOYQ_SSH_KEY, BatchMode. This is the transport the docker
CLI uses for ssh://, so both backends reach an engine the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import weakref
from pathlib import Path
from typing import IO

from deployq.builders.sshconf import SshWrapper

_CHUNK = 65536
#: where the socket goes: AF_UNIX paths are at most 107 bytes, TMPDIR may be long
_SHORT_TMP = "/tmp" if os.path.isdir("/tmp") else None


class SshDialer:
    """A unix socket whose every connection is a ``dial-stdio`` session on the engine."""

    def __init__(self, docker_host: str, wrapper: SshWrapper) -> None:
        user, _, address = docker_host.removeprefix("ssh://").rpartition("@")
        host, _, port = address.partition(":")
        self.argv = [str(wrapper.directory / "ssh")]
        self.argv += ["-l", user] if user else []
        self.argv += ["-p", port] if port else []
        self.argv += ["--", host, "docker system dial-stdio"]
        #: what ssh said when the last session failed (host key, auth, network)
        self.last_error = ""
        directory = Path(tempfile.mkdtemp(prefix="dq-dial-", dir=_SHORT_TMP))  # mode 0700
        self.path = directory / "engine.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._cleanup = weakref.finalize(self, _close, listener, directory)
        listener.bind(str(self.path))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, name="ssh-dial", daemon=True).start()

    @property
    def url(self) -> str:
        """What the SDK connects to."""
        return f"unix://{self.path}"

    def close(self) -> None:
        self._cleanup()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,  # a Ctrl-C of the worker is not ssh's
                )
            except OSError as exc:
                self.last_error = f"ssh: {exc.strerror}"
                return
            assert proc.stdin is not None and proc.stdout is not None
            assert proc.stderr is not None
            threading.Thread(target=_feed, args=(conn, proc.stdin), daemon=True).start()
            try:
                while data := os.read(proc.stdout.fileno(), _CHUNK):
                    conn.sendall(data)
            except OSError:  # the client went away: end the session
                proc.terminate()
            # ssh's error is kept before the client sees the connection end
            stderr = proc.stderr.read().decode(errors="replace")
            if proc.wait() not in (0, -15) and stderr.strip():
                self.last_error = stderr.strip()
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


def _feed(conn: socket.socket, stdin: IO[bytes]) -> None:
    """The client's bytes to ssh; its end (or a cancelled build's cut) closes ssh's input."""
    with contextlib.suppress(OSError, ValueError):
        while data := conn.recv(_CHUNK):
            stdin.write(data)
            stdin.flush()
    with contextlib.suppress(OSError):
        stdin.close()


def _close(listener: socket.socket, directory: Path) -> None:
    with contextlib.suppress(OSError):
        listener.close()
    shutil.rmtree(directory, ignore_errors=True)
