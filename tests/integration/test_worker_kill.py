"""kill -9 of a worker in the middle of a build leaves nothing running and nothing behind.

The build's commands die with the worker (PR_SET_PDEATHSIG; the docker client's death ends its
session, so the daemon cancels the build), and the next worker on the host removes the dead
one's scratch directory: its workspace, build dirs and the docker config holding the registry
login. When the engine does not see the client go (a remote engine whose worker host vanished),
the rescue has the engine stop the dead attempt's build before the job runs again, so the
server never runs more builds than its capacity.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from engine_proxy import HalfOpenEngineProxy

from deployq.builders.attempts import MARKER_NAME, attempt_marker
from deployq.models import Job, JobStatus
from deployq.store import Store
from deployq.testing.jobs import wait_job
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


def _worker_env(settings: dict[str, Any], database_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    for key, value in settings.items():
        env[f"DEPLOYQ_{key.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    env.update(DEPLOYQ_DATABASE_URL=database_url, DEPLOYQ_DATA_DIR=str(data_dir))
    return env


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


class EngineSampler:
    """Counts, every 200 ms, the build steps the engine runs for each attempt of one job: the
    RUN steps of dockerd's BuildKit (bundles under <data root>/buildkit/executor whose hosts
    file names the attempt and whose cgroup has processes), read from the host, not asked of
    deployq."""

    def __init__(self, data_root: str, job: Job) -> None:
        self.executor = Path(data_root) / "buildkit" / "executor"
        #: the address deployq-attempt.invalid has in the builds of an attempt -> the attempt
        self.markers = {attempt_marker(job.id, n, job.enqueued_at): n for n in range(1, 16)}
        self.samples: list[tuple[float, Counter[int]]] = []
        #: step id -> its command, for the messages
        self.steps: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def running(self) -> Counter[int]:
        """attempt -> its steps running now."""
        live: dict[str, int] = {}
        for config in self.executor.glob("*/config.json"):
            try:
                spec = json.loads(config.read_text())
                mounts = spec["mounts"]
                hosts = next(m["source"] for m in mounts if m["destination"] == "/etc/hosts")
                entries = [line.split() for line in Path(hosts).read_text().splitlines()]
            except (OSError, ValueError, KeyError, StopIteration):
                continue  # the step ended while we read
            for entry in entries:
                if entry[1:] == [MARKER_NAME] and entry[0] in self.markers:
                    live[config.parent.name] = self.markers[entry[0]]
                    self.steps[config.parent.name] = " ".join(spec["process"]["args"])
        found: Counter[int] = Counter()
        if not live:
            return found
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cgroup = (entry / "cgroup").read_text()
            except OSError:
                continue
            for step, attempt in list(live.items()):
                if step in cgroup:
                    found[attempt] += 1
                    del live[step]  # counted once, by any of its processes
        return found

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.samples.append((time.monotonic(), self.running()))

    def __enter__(self) -> EngineSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def most_at_once(self) -> int:
        return max((sum(c.values()) for _, c in self.samples), default=0)

    def seen(self, attempt: int, *, after: float = 0.0) -> bool:
        return any(c[attempt] for at, c in self.samples if at >= after)


def _data_root(docker_host: str) -> str:
    out = subprocess.run(
        ["/usr/bin/docker", "-H", docker_host, "info", "--format", "{{.DockerRootDir}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout.strip()


async def test_the_rescue_stops_a_dead_workers_build_on_the_engine_before_the_job_runs_again(
    database_url: str,
    docker_host: str,
    base_image: str,
    registry: Any,
    git_repo_factory: Any,
    settings_factory: Any,
    tmp_path: Path,
) -> None:
    # attempt 1 sleeps for ten minutes; attempt 2 (its build is named after it) for 3 s
    unique = uuid.uuid4().hex[:12]
    # (the attempt is the last group of the address deployq-attempt.invalid has)
    run = (
        f"echo {unique} && a=$(awk '$2 == \"{MARKER_NAME}\" {{ print $1 }}' /etc/hosts) && "
        "if [ $(( 0x${a##*:} )) -eq 1 ]; then sleep 600; else sleep 3; fi"
    )
    repo = git_repo_factory({"Dockerfile": f"FROM {base_image}\nRUN {run}\n"})
    proxy = HalfOpenEngineProxy()
    await proxy.start()
    values = registry_settings(
        registry, proxy.docker_host, lease_ttl=3, base_image_static=base_image
    )
    store = await Store.open(settings_factory(**values), database_url, min_size=1)
    data_dir = tmp_path / "worker-data"
    env = _worker_env(values, database_url, data_dir)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        await store.servers.add("far", proxy.docker_host, capacity=1)
        app = await add_app(store, repo.url)
        job_id = await deploy(store, app)
        data_root = await asyncio.to_thread(_data_root, docker_host)
        sampler = EngineSampler(data_root, await store.jobs.get(job_id))
        with sampler:
            workers.append(await asyncio.to_thread(_worker, env, tmp_path / "worker1.log"))
            await asyncio.to_thread(
                _wait_for, "attempt 1's RUN on the engine", lambda: sampler.running()[1], 180
            )
            workers.append(await asyncio.to_thread(_worker, env, tmp_path / "worker2.log"))
            os.kill(workers[0].pid, signal.SIGKILL)
            workers[0].wait()
            killed = time.monotonic()
            await asyncio.to_thread(
                _wait_for,
                "the dead worker's docker client to go",
                lambda: not _processes_with(f"job-{job_id}-1"),
                2.0,
            )
            client_gone_after = time.monotonic() - killed
            job = await wait_job(store, job_id, lambda j: j.status.is_final, timeout_s=180)
        events = await store.jobs.events(job_id)
        workers[1].send_signal(signal.SIGTERM)
        await asyncio.to_thread(workers[1].wait, 60)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        await proxy.stop()
        await store.close()

    assert client_gone_after <= 2.0
    # the engine went on with the dead attempt's build (nothing told it the client was gone)
    assert sampler.seen(1, after=killed + 1.0)
    # and never ran it beside the rescued attempt: at most the server's capacity at once
    assert sampler.seen(2)
    assert sampler.most_at_once() <= 1, ([s for s in sampler.samples if s[1]], sampler.steps)
    assert job.status is JobStatus.SUCCEEDED and job.attempt == 2, job.error
    kinds = [e.kind for e in events if e.kind != "step"]
    assert kinds.count("succeeded") == 1 and kinds.count("claimed") == 2, kinds
    waited = [e.message or "" for e in events if e.kind == "rescuing"]
    assert any(
        f"waiting for engine {proxy.docker_host} to stop the build of job #{job_id} attempt 1" in m
        for m in waited
    ), waited
    # nothing of either worker is left: workspaces, build dirs, logged-in docker configs
    assert not list((data_dir / "scratch").iterdir())
    assert not list(data_dir.rglob("deployq-docker-config-*"))
    assert not list(data_dir.rglob(f"job-{job_id}-*"))
    last_old = max(at for at, c in sampler.samples if c[1]) - killed
    first_new = min(at for at, c in sampler.samples if c[2]) - killed
    print(
        f"\nrescue on a half-open engine: docker client gone {client_gone_after:.2f}s after "
        f"SIGKILL; attempt 1's step last seen {last_old:.2f}s, attempt 2's first seen "
        f"{first_new:.2f}s after it (lease TTL 3s); at most {sampler.most_at_once()} step(s) "
        f"at once in {len(sampler.samples)} samples (capacity 1)"
    )
