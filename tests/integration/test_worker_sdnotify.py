"""`deployq worker` speaks sd_notify on NOTIFY_SOCKET: READY, WATCHDOG, STATUS, STOPPING."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployq.embedded_registry import stop_registry

pytestmark = pytest.mark.slow

RECEIVE_TIMEOUT_S = 60.0


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(RECEIVE_TIMEOUT_S)
    yield sock
    sock.close()


def receive_until(sock: socket.socket, wanted: str, seen: list[str]) -> None:
    """Read datagrams (blocking, with the socket's timeout) until one equals ``wanted``."""
    while True:
        message = sock.recv(4096).decode()
        seen.append(message)
        if message == wanted:
            return


def test_the_worker_tells_systemd_it_is_ready_alive_and_stopping(
    notify_socket: socket.socket, database_url: str, docker_host: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    env.update(
        {
            "DEPLOYQ_DATABASE_URL": database_url,
            "DEPLOYQ_DATA_DIR": str(tmp_path / "data"),
            "DEPLOYQ_DOCKER_HOST": docker_host,
            "NOTIFY_SOCKET": notify_socket.getsockname(),
            "WATCHDOG_USEC": "400000",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "deployq", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    try:
        receive_until(notify_socket, "READY=1", seen)
        receive_until(notify_socket, "WATCHDOG=1", seen)
        receive_until(notify_socket, "WATCHDOG=1", seen)
        proc.send_signal(signal.SIGTERM)
        receive_until(notify_socket, "STOPPING=1", seen)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate()[0]
        stop_registry(tmp_path / "data")  # the worker started the embedded registry
    assert "STATUS=0/4 builds running" in seen, (seen, output)
