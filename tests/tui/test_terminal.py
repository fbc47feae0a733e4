"""The console over a real terminal, as an operator uses it: tmux at 80×24 running
``ssh -tt`` to a loopback sshd (started here, with its own host key and configuration),
which runs ``deployq tui``. No headless driver: keys go through tmux, ssh and a pty.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tui_helpers import seed_fixed

from deployq.testing.services import free_port

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
#: how long the console may take to show what a step waits for
SCREEN_WAIT_S = 30.0

pytestmark = pytest.mark.skipif(
    not (shutil.which("tmux") and os.path.exists(SSHD) and shutil.which("ssh")),
    reason="tmux, ssh and sshd come with scripts/provision",
)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An sshd on loopback that lets this test's key in; yields (port, client key)."""
    home = tmp_path / "sshd"
    home.mkdir()
    host_key, client_key = home / "host_key", home / "client_key"
    for key in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (home / "authorized_keys").write_text((home / "client_key.pub").read_text())
    port = free_port()
    config = home / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {home}/authorized_keys\nPidFile {home}/sshd.pid\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nPrintMotd no\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 10
        while True:  # sshd has no readiness signal but its port
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"sshd did not start: {proc.stderr.read() if proc.stderr else ''}"
                    ) from None
                time.sleep(0.05)
        yield port, client_key
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Tmux:
    """One tmux server of this test (its own socket), one session."""

    def __init__(self, command: str, width: int, height: int) -> None:
        self.socket = f"deployq-test-{uuid.uuid4().hex[:8]}"
        self._run("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), command)

    def _run(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True
        ).stdout

    def screen(self) -> str:
        return self._run("capture-pane", "-p", "-t", "t")

    def keys(self, *keys: str, literal: bool = False) -> None:
        self._run("send-keys", "-t", "t", *(["-l"] if literal else []), *keys)

    def wait_for(self, what: str, condition: Callable[[str], bool]) -> str:
        """Poll the pane (tmux has no change event) until ``condition`` holds."""
        deadline = time.monotonic() + SCREEN_WAIT_S
        while True:
            shown = self.screen()
            if condition(shown):
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{shown}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def test_ctrl_p_over_ssh_in_tmux_runs_a_typed_command(
    sshd: tuple[int, Path], database_url: str, tmp_path: Path
) -> None:
    seed_fixed(database_url)
    port, key = sshd
    deployq = Path(sys.executable).with_name("deployq")
    remote = " ".join(
        [
            "env",
            f"DEPLOYQ_DATABASE_URL={shlex.quote(database_url)}",
            f"DEPLOYQ_DATA_DIR={shlex.quote(str(tmp_path / 'data'))}",
            "LANG=C.UTF-8",
            shlex.quote(str(deployq)),
            "tui",
            "--user",
            "alice",
        ]
    )
    ssh = shlex.join(
        [
            "ssh",
            "-tt",
            "-p",
            str(port),
            "-i",
            str(key),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "root@127.0.0.1",
            remote,
        ]
    )
    tmux = Tmux(ssh, 80, 24)
    try:
        queue = tmux.wait_for("the queue", lambda s: "? help q quit" in s and "release/2.0" in s)
        assert all(len(line) <= 80 for line in queue.splitlines())
        tmux.keys("C-p")
        palette = tmux.wait_for("the palette", lambda s: "Cancel (c)" in s)
        assert "Cursor" not in palette and "Theme" not in palette
        tmux.keys("servers", literal=True)
        tmux.wait_for("the hit", lambda s: "Servers (3)" in s)
        tmux.keys("Enter")
        servers = tmux.wait_for("the servers view", lambda s: "Build servers" in s)
        assert "builder-1" in servers and "unhealthy" in servers
        tmux.keys("q")
        tmux.wait_for("the console to end", lambda s: "Build servers" not in s)
    finally:
        tmux.close()
