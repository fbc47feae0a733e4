"""Commands die with a killed worker (builders.orphans), except a bounded one, which ends by
itself: a real worker-like process is SIGKILLed while its command runs."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from deployq.builders.orphans import SETPRIV

SIGKILL_BIT = 1 << (signal.SIGKILL - 1)

WORKER = """
import asyncio, os, sys
from deployq.builders.process import run_streaming

async def main() -> None:
    await run_streaming(
        ["sh", "-c", "echo $$; exec sleep 60"],
        env=dict(os.environ),
        on_line=lambda line: print(line, flush=True),
        bounded=sys.argv[1] == "bounded",
    )

asyncio.run(main())
"""


def command_of_killed_worker(tmp_path: Path, kind: str) -> int:
    """The pid of the command a worker ran when it was killed with SIGKILL (reaped)."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    worker = subprocess.Popen(
        [sys.executable, str(script), kind], stdout=subprocess.PIPE, text=True
    )
    assert worker.stdout is not None
    pid = int(worker.stdout.readline())  # the command runs (its shell's pid, then sleep's)
    worker.kill()
    worker.wait()
    worker.stdout.close()
    return pid


def pending_kill(pid: int) -> bool:
    """Whether SIGKILL was sent to ``pid`` (pending; False once it is gone it is not read)."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    return any(int(fields[name], 16) & SIGKILL_BIT for name in ("SigPnd", "ShdPnd"))


@pytest.mark.skipif(SETPRIV is None, reason="needs util-linux setpriv")
def test_a_command_dies_with_the_worker_that_ran_it(tmp_path: Path) -> None:
    pid = command_of_killed_worker(tmp_path, "build")
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # gone already
    try:
        # the parent-death signal was sent as the worker died: the command exits now
        ready, _, _ = select.select([fd], [], [], 10)
        assert ready, f"command {pid} outlived its killed worker"
    finally:
        os.close(fd)


def test_a_bounded_command_is_left_to_end_by_itself(tmp_path: Path) -> None:
    pid = command_of_killed_worker(tmp_path, "bounded")
    try:
        # the worker is reaped: a parent-death signal would have been sent by now
        assert not pending_kill(pid)
    finally:
        os.kill(pid, signal.SIGKILL)
