"""kill -9 of a worker in the middle of a build leaves nothing running and nothing behind.

The build's commands die with the worker (PR_SET_PDEATHSIG; the docker client's death ends its
session, so the daemon cancels the build), and the next worker on the host removes the dead
one's scratch directory: its workspace, build dirs and the docker config holding the registry
login.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from deployq.models import JobStatus
from deployq.store import Store
from worker_support import add_app, deploy, registry_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _processes_with(*markers: str) -> list[int]:
    """Pids of processes whose command line contains one of ``markers`` (NULs as spaces)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if any(marker.encode() in cmdline for marker in markers):
                found.append(int(entry.name))
    return found


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "deployq", "worker"], env=env, stdout=out, stderr=out
        )


def _wait_for(what: str, check: Any, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # other processes send no event: poll
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_kill_9_mid_build_leaves_no_build_running_and_no_scratch_behind(
    settings_factory: Any,
    database_url: str,
    docker_host: str,
    base_image: str,
    registry: Any,
    git_repo_factory: Any,
    tmp_path: Path,
) -> None:
    marker = f"sleep {600 + time.monotonic_ns() % 3000}"  # the RUN step, unique to this test
    repo = git_repo_factory({"Dockerfile": f"FROM {base_image}\nRUN {marker}\n"})
    settings = settings_factory(**registry_settings(registry, docker_host))
    store = await Store.open(settings, database_url, min_size=1)
    data_dir = tmp_path / "worker-data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    for key, value in registry_settings(registry, docker_host).items():
        env[f"DEPLOYQ_{key.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    # a lease longer than the test: the second worker does not take the job over
    env.update(
        DEPLOYQ_DATABASE_URL=database_url, DEPLOYQ_DATA_DIR=str(data_dir), DEPLOYQ_LEASE_TTL="300"
    )
    try:
        app = await add_app(store, repo.url)
        job_id = await deploy(store, app)
        first = await asyncio.to_thread(_worker, env, tmp_path / "worker1.log")
        workspace = f"job-{job_id}-1"
        # the build runs: its docker client and the RUN step's sleep in the daemon
        await asyncio.to_thread(_wait_for, "the build", lambda: _processes_with(marker), 180)
        clients = _processes_with(workspace)
        assert clients, "no docker client of the job found"
        scratch = data_dir / "scratch"
        [dead_scratch] = list(scratch.iterdir())

        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        killed = time.monotonic()
        await asyncio.to_thread(
            _wait_for, "the build to stop", lambda: not _processes_with(workspace), 2.0
        )
        client_gone_after = time.monotonic() - killed
        await asyncio.to_thread(
            _wait_for, "the daemon-side build to stop", lambda: not _processes_with(marker), 10
        )

        second = await asyncio.to_thread(_worker, env, tmp_path / "worker2.log")
        try:
            await asyncio.to_thread(_wait_for, "the sweep", lambda: not dead_scratch.exists(), 60)
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.to_thread(second.wait, 60)
        job = await store.jobs.get(job_id)
    finally:
        for pid in _processes_with(marker):
            os.kill(pid, signal.SIGKILL)
        await store.close()

    assert client_gone_after <= 2.0
    assert not list(scratch.glob("*/tmp/deployq-docker-config-*"))
    assert job.status is JobStatus.RUNNING  # until its lease expires and the rescuer takes it
