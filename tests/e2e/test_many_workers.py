"""Worker processes on several "hosts" share one PostgreSQL and three build servers, exactly.

Three `deployq worker` processes, each with data directory and host id (DEPLOYQ_HOST_ID) of
its own as if on three hosts, and WORKER_SLOTS slots each, share build servers of capacity
1, 2 and 3: all three are the second dockerd's tcp:// (mutual TLS) endpoint, which every host
may use (a unix:// engine belongs to the host that registered it). Six apps (three with
concurrency 1, three with 2) get JOBS_PER_APP jobs each, every job a commit of its own (a
real, uncached BuildKit build, pushed to the registry). While they run, the worker building a
job of a concurrency-1 app is killed with SIGKILL.

Asserted, from the job timeline (job_events) and from sampling the jobs table meanwhile:
no server ever runs more builds than its capacity; per app, jobs start in the order they were
queued (concurrency 1: one after the other, the killed job's new attempt before the next job);
every job succeeds, ends once, and runs once (one claim; the killed worker's jobs two: their
attempt on the dead worker and their rescue; a retry after a failed attempt, which the test
registry's occasional HTTP 500 under this load causes, one more, printed); the killed worker's
jobs are rescued within two lease TTLs (the delay is printed); the two surviving workers both
built; the workers table shows the three host ids.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet

from deployq.config import Settings
from deployq.models import AppSpec, SupersedePolicy, Trigger, TriggerKind
from deployq.store import Store
from deployq.testing.services import SecondEngine
from worker_support import registry_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]

WORKERS = ("host-a", "host-b", "host-c")
WORKER_SLOTS = 3
CAPACITIES = {"small": 1, "medium": 2, "large": 3}
#: app name -> concurrency
APPS = {"one-a": 1, "one-b": 1, "one-c": 1, "two-a": 2, "two-b": 2, "two-c": 2}
JOBS_PER_APP = 5
LEASE_TTL_S = 6.0
FINAL = ("succeeded", "failed", "cancelled", "timed_out", "superseded")


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:]


async def _rows(dsn: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    conn = await psycopg.AsyncConnection.connect(dsn)
    async with conn:
        return await (await conn.execute(statement, params)).fetchall()


async def test_workers_on_three_hosts_keep_capacity_order_and_rescue(
    database_url: str,
    registry: Any,
    docker_host: str,
    base_image: str,
    engine: SecondEngine,
    git_repo_factory: Any,
    tmp_path: Path,
) -> None:
    tls = (str(engine.tls.ca), str(engine.tls.client_cert), str(engine.tls.client_key))
    # the base image (busybox) is what the rescue looks into the engines with
    settings = registry_settings(
        registry, docker_host, lease_ttl=LEASE_TTL_S, shutdown_grace=5, base_image_static=base_image
    )
    key = Fernet.generate_key().decode()
    store = await Store.open(
        Settings(database_url=database_url, data_dir=tmp_path / "cli", secret_key=key, **settings),
        database_url,
        min_size=1,
    )
    try:
        for name, capacity in CAPACITIES.items():
            await store.servers.add(name, engine.tcp, capacity=capacity, tls=tls)
        commits: dict[str, list[str]] = {}
        for app, concurrency in APPS.items():
            repo = git_repo_factory(
                {"Dockerfile": f"FROM {base_image}\nCOPY stamp /stamp\nRUN sleep 1\n",
                 "stamp": app}, message=app,
            )  # fmt: skip
            commits[app] = [
                repo.commit({"stamp": f"{app} {n} {time.time_ns()}"}, message=f"{app} {n}")
                for n in range(JOBS_PER_APP)
            ]
            await store.apps.add(
                AppSpec(name=app, repo_url=repo.url, concurrency=concurrency, max_attempts=3,
                        supersede_policy=SupersedePolicy.QUEUE)
            )  # fmt: skip
        # queued in rounds (app by app), so every app has jobs waiting the whole time
        for n in range(JOBS_PER_APP):
            for app in APPS:
                await store.queue.enqueue(
                    Trigger(kind=TriggerKind.MANUAL, app=app, ref="refs/heads/main",
                            commit_sha=commits[app][n], actor="test")
                )  # fmt: skip
    finally:
        await store.close()

    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    env.update({f"DEPLOYQ_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in settings.items()})  # fmt: skip
    env.update(
        DEPLOYQ_DATABASE_URL=database_url,
        DEPLOYQ_WORKER_CONCURRENCY=str(WORKER_SLOTS),
        DEPLOYQ_SECRET_KEY=key,
        DEPLOYQ_RETRY_BASE_DELAY="1",
        DEPLOYQ_POLL_INTERVAL="1",
    )
    workers: dict[str, subprocess.Popen[bytes]] = {}
    logs = {host: tmp_path / f"{host}.log" for host in WORKERS}
    samples: list[dict[str, int]] = []
    try:
        for host in WORKERS:
            extra = {"DEPLOYQ_DATA_DIR": str(tmp_path / host), "DEPLOYQ_HOST_ID": host}
            workers[host] = _spawn(["worker"], {**env, **extra}, logs[host])
        pid_host = {str(proc.pid): host for host, proc in workers.items()}
        sampler = asyncio.create_task(_sample(database_url, samples))
        victim, killed_worker, killed_at = await _kill_a_builder(database_url, workers, pid_host)
        killed_host = pid_host[killed_worker.split(":")[-2]]
        total = len(APPS) * JOBS_PER_APP
        async with asyncio.timeout(600):
            while True:
                for host, proc in workers.items():
                    if host != killed_host:
                        assert proc.poll() is None, _tail(logs[host])
                rows = await _rows(
                    database_url,
                    "SELECT count(*) FILTER (WHERE status = ANY(%s)), count(*) FROM jobs",
                    (list(FINAL),),
                )
                if rows[0] == (total, total):
                    break
                await asyncio.sleep(0.5)  # jobs end in other processes: poll
        sampler.cancel()
        hosts = await _rows(database_url, "SELECT DISTINCT host_id FROM workers")
        events = await _rows(
            database_url,
            "SELECT e.job_id, j.app_name, e.at, e.kind, e.from_status, e.to_status, "
            "e.data->>'server', e.actor, j.status::text, e.message "
            "FROM job_events e JOIN jobs j ON j.id = e.job_id ORDER BY e.id",
        )
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in workers.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    assert sorted(h for (h,) in hosts) == sorted(WORKERS)
    timeline = _timeline(events)
    # capacity: never more builds on a server than it has room for, sampled and exact
    for sample in samples:
        for server, running in sample.items():
            assert running <= CAPACITIES[server], sample
    peaks = {server: _peak(spans) for server, spans in timeline.spans.items()}
    assert all(peaks[s] <= CAPACITIES[s] for s in peaks), peaks
    assert peaks["large"] >= 2, f"the servers were never busy: {peaks}"
    # every job ran once, the killed one twice (its rescue), and ended once, succeeded
    unsucceeded = {
        job: timeline.history[job] for job, st in timeline.status.items() if st != "succeeded"
    }
    assert not unsucceeded, "\n".join(
        f"#{job}: " + " | ".join(lines) for job, lines in unsucceeded.items()
    )
    assert set(timeline.ends.values()) == {1}, timeline.ends
    # the killed worker's jobs (all its slots) were rescued; nothing else was
    assert victim in timeline.rescued
    assert {timeline.first_claimer[job] for job in timeline.rescued} == {killed_worker}
    claims = {job: len(c) for job, c in timeline.claims.items()}
    # (plus one per retry after a failed attempt: the shared test registry answers a HEAD with
    # HTTP 500 now and then under this load; the retry is the designed answer, and reported)
    expected = {job: 1 + (job in timeline.rescued) + len(timeline.retries[job]) for job in claims}
    odd = {job: timeline.history[job] for job in claims if claims[job] != expected[job]}
    assert not odd, "\n".join(f"#{job}: " + " | ".join(lines) for job, lines in odd.items())
    # per app: in queue order; concurrency 1: one at a time
    for app, jobs in timeline.by_app.items():
        ordered = sorted(jobs)
        first_claims = [timeline.claims[job][0] for job in ordered]
        assert first_claims == sorted(first_claims), (app, ordered, first_claims)
        if APPS[app] == 1:
            for earlier, later in itertools.pairwise(ordered):
                assert timeline.claims[later][0] >= timeline.ended[earlier], (app, earlier, later)
    # the rescue
    rescue_s = max((at - killed_at).total_seconds() for at in timeline.rescued.values())
    assert rescue_s <= 2 * LEASE_TTL_S, rescue_s
    builders = {pid_host.get(worker.split(":")[-2]) for worker in timeline.claimed_by}
    assert {h for h in WORKERS if h != killed_host} <= builders, builders
    print(
        f"\nmany workers: {len(WORKERS)} workers x {WORKER_SLOTS} slots, servers {CAPACITIES}, "
        f"{len(timeline.status)} jobs; peak running per server {peaks} "
        f"({len(samples)} samples); the {len(timeline.rescued)} jobs of the worker killed on "
        f"{killed_host} rescued at most {rescue_s:.2f}s after SIGKILL (lease TTL "
        f"{LEASE_TTL_S:g}s); retries after a failed attempt: "
        f"{[m for ms in timeline.retries.values() for m in ms] or 'none'}"
    )


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "deployq", *args], env=env, stdout=out, stderr=out
        )


async def _sample(dsn: str, samples: list[dict[str, int]]) -> None:
    """What the jobs table says runs on each server, every 50 ms until cancelled."""
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    async with conn:
        while True:
            rows = await (
                await conn.execute(
                    "SELECT s.name, count(*) FROM jobs j JOIN build_servers s "
                    "ON s.id = j.server_id WHERE j.status = 'running' GROUP BY 1"
                )
            ).fetchall()
            samples.append({name: int(n) for name, n in rows})
            await asyncio.sleep(0.05)


async def _kill_a_builder(
    dsn: str, workers: dict[str, subprocess.Popen[bytes]], pid_host: dict[str, str]
) -> tuple[int, str, datetime]:
    """SIGKILL the worker building a job of a concurrency-1 app; that job, the worker's id
    and when."""
    one_at_a_time = [app for app, concurrency in APPS.items() if concurrency == 1]
    async with asyncio.timeout(300):
        while True:
            rows = await _rows(
                dsn,
                "SELECT id, worker_id FROM jobs WHERE status = 'running' AND step = 'build' "
                "AND app_name = ANY(%s) ORDER BY id LIMIT 1",
                (one_at_a_time,),
            )
            if rows:
                break
            await asyncio.sleep(0.05)  # another process moves the job: poll
    job_id, worker_id = rows[0]
    host = pid_host[worker_id.split(":")[-2]]
    workers[host].send_signal(signal.SIGKILL)
    killed_at = datetime.now(UTC)
    workers[host].wait()
    return int(job_id), str(worker_id), killed_at


class Timeline:
    """The job_events rows, by what the checks need."""

    def __init__(self) -> None:
        self.claims: dict[int, list[datetime]] = defaultdict(list)
        self.ended: dict[int, datetime] = {}
        self.ends: dict[int, int] = defaultdict(int)
        self.rescued: dict[int, datetime] = {}
        self.status: dict[int, str] = {}
        self.by_app: dict[str, set[int]] = defaultdict(set)
        #: server -> [(claimed at, left running at)]
        self.spans: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
        self.claimed_by: set[str] = set()
        #: job -> the worker of its first claim
        self.first_claimer: dict[int, str] = {}
        #: job -> why each failed attempt was retried
        self.retries: dict[int, list[str]] = defaultdict(list)
        #: job -> its events, for the failure messages
        self.history: dict[int, list[str]] = defaultdict(list)


def _timeline(events: list[tuple[Any, ...]]) -> Timeline:
    timeline = Timeline()
    open_spans: dict[int, tuple[str, datetime]] = {}
    for job, app, at, kind, from_status, to_status, server, actor, status, message in events:
        timeline.history[job].append(f"{kind} {from_status}->{to_status} {actor}: {message}")
        timeline.by_app[app].add(job)
        timeline.status[job] = status
        if to_status == "running":
            timeline.claims[job].append(at)
            timeline.claimed_by.add(actor)
            timeline.first_claimer.setdefault(job, actor)
            open_spans[job] = (server, at)
        elif from_status == "running" and job in open_spans:
            name, since = open_spans.pop(job)
            timeline.spans[name].append((since, at))
        if kind == "rescued":
            timeline.rescued[job] = at
        if kind == "retry_scheduled":
            timeline.retries[job].append(str(message))
        if to_status in FINAL:
            timeline.ends[job] += 1
            timeline.ended[job] = at
    assert not open_spans, open_spans
    return timeline


def _peak(spans: list[tuple[datetime, datetime]]) -> int:
    """The most spans open at one instant (an end before a start at the same instant)."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    peak = running = 0
    for _, change in edges:
        running += change
        peak = max(peak, running)
    return peak
