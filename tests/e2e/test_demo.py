"""The documented demo (`scripts/demo`) runs end to end and reaches every milestone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.docker
def test_demo_pushes_builds_publishes_and_mails(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--dir", str(tmp_path / "demo")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "HTTP 202" in output
    assert "-- job #1 succeeded" in output
    assert "→ Hello from a deployq build!" in output
    assert "Subject: [deployq] hello main@" in output
    assert "Demo complete" in output
    # the scratch directory (embedded database, registry, repository) is removed afterwards
    assert not (tmp_path / "demo").exists()
