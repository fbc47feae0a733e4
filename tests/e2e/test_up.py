"""`deployq up` on a fresh embedded database answers /healthz."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from deployq.embedded_registry import stop_registry
from deployq.testing.services import free_port


@pytest.mark.slow
def test_up_on_the_embedded_database_serves_healthz(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    env.update({"DEPLOYQ_DATA_DIR": str(tmp_path / "data"), "DEPLOYQ_LISTEN": f"127.0.0.1:{port}"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "deployq", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    status = r.status
                    break
            except OSError:
                time.sleep(0.2)  # polling a port that is not open yet: there is no event
        assert status == 200, proc.stdout.read() if proc.poll() is not None else "no answer"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        # leave no embedded server running behind the test
        stop_registry(tmp_path / "data")
        pgdata = tmp_path / "data" / "pgdata"
        subprocess.run(["bash", "-c", f"pkill -f 'postgres.*{pgdata}' || true"], check=False)
