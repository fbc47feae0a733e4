"""What one PostgreSQL carries: the measured figures of docs/SCALING.md.

Usage: .venv/bin/python bench/scale.py [--jobs 2000] [--processes 1,2,4,8] [--slots 4]
                                       [--skip-connections]

On a throwaway embedded PostgreSQL of its own (or DEPLOYQ_DATABASE_URL's server). Prints JSON:

- ``claims``: --jobs no-op jobs claimed and finished by P worker processes of --slots slots
  each, for every P of --processes. Each process is what ``deployq worker`` does to the
  database: its own Store (pool of 2 to 10 connections) and Finisher, one claim for all its
  free slots at once, each finish group-committed (queue_bench.drain_deployq). Jobs per
  second overall, and the PostgreSQL server's CPU seconds per 1,000 jobs (postmaster and
  backends, from /proc; local servers only), the figure to scale from to a bigger server.
- ``logs``: build log lines stored per second by --log-writers concurrent writers (running
  builds), each appending batches of 50 lines, then of 5 (LOG_BATCHES), of LOG_LINE_CHARS
  characters as ``worker.logbuffer`` does, and the bytes one stored line takes (table, index
  and TOAST).
- ``connections``: real ``deployq serve``, ``deployq worker`` (4 slots) and ``deployq tui``
  (in a pseudo-terminal) on one database: connections per process from pg_stat_activity
  (``application_name`` is ``deployq serve`` / ``deployq worker`` / ``deployq tui``), idle
  and at the peak of a load (the worker draining jobs that fail at checkout, serve answering
  signed webhooks from 32 concurrent clients).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from cryptography.fernet import Fernet
from psycopg.conninfo import conninfo_to_dict
from queue_bench import drain_deployq

from deployq.config import Settings
from deployq.db import with_dbname
from deployq.db.migrate import migrate
from deployq.models import AppSpec, SupersedePolicy, Trigger, TriggerKind
from deployq.store import Store
from deployq.testing.services import free_port
from deployq.webhooks.signatures import github_signature

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = ROOT / "tests" / "fixtures" / "payloads" / "github_push_branch.json"
TRIGGER = Trigger(kind=TriggerKind.MANUAL, app="bench", ref="refs/heads/main")
#: lines per append: a chatty build (the flusher's 200-line cap is rarely reached) and a
#: quiet one (a few lines per 0.2 s flush)
LOG_BATCHES = (50, 5)
LOG_LINE_CHARS = 100
SECRET = "scale-secret"
#: seals the app's webhook secret, for the bench's own store and the processes alike
SECRET_KEY = Fernet.generate_key().decode()

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


# -- the server ------------------------------------------------------------------------------


@contextlib.contextmanager
def server() -> Iterator[tuple[str, Path | None]]:
    """The admin DSN and, for the embedded server, its data directory (for its CPU time)."""
    url = os.environ.get("DEPLOYQ_DATABASE_URL")
    if url:
        yield url, None
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="deployq-scale-") as tmp:
        pg = pgserver.get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        try:
            yield pg.get_uri("postgres"), Path(tmp) / "pgdata"
        finally:
            pg.cleanup()


def server_cpu_s(pgdata: Path | None) -> float | None:
    """CPU seconds of the server so far: the postmaster, its live children, and its exited
    children (cutime/cstime)."""
    if pgdata is None:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    pid = int((pgdata / "postmaster.pid").read_text().split()[0])

    def fields(p: int) -> list[str]:
        return Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()

    own = fields(pid)
    total = sum(int(x) for x in own[11:15])  # utime stime cutime cstime
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for child in children:
        with contextlib.suppress(OSError):
            total += sum(int(x) for x in fields(int(child))[11:13])
    return total / tick


def new_database(admin: str) -> str:
    name = f"scale_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_dbname(admin, name)


def settings_for(dsn: str, pool: int = 4, pool_max: int | None = None, **extra: Any) -> Settings:
    return Settings(
        database_url=dsn,
        data_dir=Path(tempfile.gettempdir()) / "deployq-scale",
        db_pool_min=pool,
        db_pool_max=pool_max or pool,
        secret_key=SECRET_KEY,
        **extra,
    )


# -- claims with N worker processes ----------------------------------------------------------


async def prepare_queue(dsn: str) -> None:
    store = await Store.open(settings_for(dsn), dsn, min_size=1)
    try:
        await store.servers.add("bench", "unix:///var/run/docker.sock", capacity=1024)
        await store.apps.add(
            AppSpec(
                name="bench",
                repo_url="https://example.invalid/bench.git",
                concurrency=64,
                supersede_policy=SupersedePolicy.QUEUE,
            )
        )
    finally:
        await store.close()


async def enqueue(dsn: str, jobs: int) -> None:
    store = await Store.open(settings_for(dsn, pool=8), dsn, min_size=8)
    try:
        remaining = jobs
        while remaining:
            batch = min(remaining, 8)
            await asyncio.gather(*(store.queue.enqueue(TRIGGER) for _ in range(batch)))
            remaining -= batch
    finally:
        await store.close()


def worker_process(dsn: str, slots: int, ready: Any, go: Any, done: Any) -> None:
    """One worker process: its own store and Finisher; drains until the queue is empty."""

    async def main() -> None:
        # the pool of `deployq worker` (DEPLOYQ_DB_POOL_MIN/MAX defaults)
        store = await Store.open(settings_for(dsn, pool=2, pool_max=10), dsn, min_size=2)
        name = f"scale-{os.getpid()}"
        ready.release()
        await asyncio.to_thread(go.wait)
        try:
            await drain_deployq(store, slots, name=name)
        finally:
            await store.close()
            done.release()

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main())


def claims_rate(
    dsn: str, jobs: int, processes: int, slots: int, pgdata: Path | None
) -> dict[str, Any]:
    asyncio.run(enqueue(dsn, jobs))
    ctx = multiprocessing.get_context("spawn")
    ready, done = ctx.Semaphore(0), ctx.Semaphore(0)
    go = ctx.Event()
    procs = [
        ctx.Process(target=worker_process, args=(dsn, slots, ready, go, done))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.acquire()
    cpu_before = server_cpu_s(pgdata)
    start = time.perf_counter()
    go.set()
    for _ in procs:
        done.acquire()
    elapsed = time.perf_counter() - start
    cpu_after = server_cpu_s(pgdata)
    for proc in procs:
        proc.join()
    out: dict[str, Any] = {"jobs_per_s": round(jobs / elapsed, 1)}
    if cpu_before is not None and cpu_after is not None:
        out["server_cpu_s_per_1000_jobs"] = round(1000 * (cpu_after - cpu_before) / jobs, 3)
    return out


# -- log ingest ------------------------------------------------------------------------------


async def logs_rate(
    dsn: str, writers: int, lines_each: int, batch_size: int, pgdata: Path | None
) -> dict[str, Any]:
    store = await Store.open(settings_for(dsn, pool=min(writers, 10)), dsn, min_size=2)
    try:
        jobs = [(await store.queue.enqueue(TRIGGER)).jobs[0].id for _ in range(writers)]
        line = "x" * (LOG_LINE_CHARS - 12)

        async def write(job_id: int) -> None:
            for start in range(0, lines_each, batch_size):
                batch = [f"{start + i:>10}: {line}" for i in range(batch_size)]
                await store.logs.append(job_id, batch)

        cpu_before = server_cpu_s(pgdata)
        begin = time.perf_counter()
        await asyncio.gather(*(write(job) for job in jobs))
        elapsed = time.perf_counter() - begin
        cpu_after = server_cpu_s(pgdata)
    finally:
        await store.close()
    total = writers * lines_each
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    async with conn:
        await conn.execute("VACUUM ANALYZE job_logs")
        row = await (
            await conn.execute("SELECT pg_total_relation_size('job_logs'), count(*) FROM job_logs")
        ).fetchone()
    assert row is not None
    batches = total / batch_size
    cpu = {}
    if cpu_before is not None and cpu_after is not None:
        cpu["server_cpu_s_per_1000_batches"] = round(1000 * (cpu_after - cpu_before) / batches, 3)
    return {
        **cpu,
        "writers": writers,
        "lines_per_s": round(total / elapsed, 1),
        "batch_lines": batch_size,
        "batches_per_s": round(batches / elapsed, 1),
        "bytes_per_line": round(row[0] / row[1], 1),
        "line_chars": LOG_LINE_CHARS,
    }


# -- connections per process -----------------------------------------------------------------


def counts(dsn: str) -> dict[str, int]:
    name = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name LIKE 'deployq %%' GROUP BY 1",
            (name,),
        ).fetchall()
    return {str(app): int(n) for app, n in rows}


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "deployq", *args], env=env, stdout=out, stderr=out
        )


def spawn_tui(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """``deployq tui`` on a pseudo-terminal; what it draws is read and dropped."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "deployq", "tui", "--read-only"],
        env={**env, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"},
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
    )  # fmt: skip
    os.close(slave)

    def drain() -> None:
        with contextlib.suppress(OSError):
            while os.read(master, 65536):
                pass

    threading.Thread(target=drain, daemon=True).start()
    return proc, master


async def connections(dsn: str, tmp: Path) -> dict[str, Any]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    env.update(
        DEPLOYQ_DATABASE_URL=dsn,
        DEPLOYQ_DATA_DIR=str(tmp / "data"),
        DEPLOYQ_LISTEN=f"127.0.0.1:{port}",
        DEPLOYQ_WORKER_CONCURRENCY="4",
        DEPLOYQ_REGISTRY_URL="127.0.0.1:1",
        DEPLOYQ_MAX_ATTEMPTS="1",
        DEPLOYQ_LOG_LEVEL="WARNING",
        DEPLOYQ_SECRET_KEY=SECRET_KEY,
    )
    await migrate(dsn)
    store = await Store.open(settings_for(dsn), dsn, min_size=1)
    try:
        await store.apps.add(
            AppSpec(name="gone", repo_url=f"file://{tmp}/no-such-repo", concurrency=4,
                    supersede_policy=SupersedePolicy.QUEUE, webhook_secret=SECRET)
        )  # fmt: skip
    finally:
        await store.close()
    procs = {
        "serve": spawn(["serve"], env, tmp / "serve.log"),
        "worker": spawn(["worker"], env, tmp / "worker.log"),
    }
    tui, master = spawn_tui(env)
    procs["tui"] = tui
    try:
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(120):
                while True:
                    for name, proc in procs.items():
                        if proc.poll() is not None and name != "tui":
                            log = (tmp / f"{name}.log").read_text(errors="replace")
                            raise RuntimeError(f"deployq {name} exited: {log[-3000:]}")
                    with contextlib.suppress(aiohttp.ClientConnectionError):
                        async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
                            if resp.status == 200:
                                break
                    await asyncio.sleep(0.2)
            await asyncio.sleep(5)  # every process settles: pools at their minimum
            idle = counts(dsn)
            peak: dict[str, int] = {}
            stop = asyncio.Event()

            async def sample() -> None:
                while not stop.is_set():
                    for app, n in (await asyncio.to_thread(counts, dsn)).items():
                        peak[app] = max(peak.get(app, 0), n)
                    await asyncio.sleep(0.1)

            sampler = asyncio.create_task(sample())
            await enqueue_failing(dsn, 100)
            await webhooks(session, port, f"file://{tmp}/no-such-repo", clients=32, each=20)
            await drained(dsn)
            stop.set()
            await sampler
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        os.close(master)
    return {"idle": idle, "peak": peak, "pool_max": Settings.model_fields["db_pool_max"].default}


async def enqueue_failing(dsn: str, jobs: int) -> None:
    store = await Store.open(settings_for(dsn), dsn, min_size=1)
    try:
        trigger = Trigger(kind=TriggerKind.MANUAL, app="gone", ref="refs/heads/main")
        for _ in range(jobs):
            await store.queue.enqueue(trigger)
    finally:
        await store.close()


async def webhooks(
    session: aiohttp.ClientSession, port: int, repo: str, *, clients: int, each: int
) -> None:
    """``clients`` concurrent senders of ``each`` signed pushes to ``repo`` (jobs of "gone")."""
    data = json.loads(PAYLOAD.read_text())
    data["ref"] = "refs/heads/main"
    data["repository"].update(clone_url=repo, html_url=None, ssh_url=None, git_url=None,
                              full_name=None)  # fmt: skip
    body = json.dumps(data).encode()
    signature = github_signature(SECRET, body)

    async def client() -> None:
        for _ in range(each):
            headers = {
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": signature,
            }
            async with session.post(
                f"http://127.0.0.1:{port}/webhooks/github", data=body, headers=headers
            ) as resp:
                await resp.read()
                assert resp.status < 300, resp.status

    await asyncio.gather(*(client() for _ in range(clients)))


async def drained(dsn: str) -> None:
    async with asyncio.timeout(300):
        while True:
            conn = await psycopg.AsyncConnection.connect(dsn)
            async with conn:
                row = await (
                    await conn.execute(
                        "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')"
                    )
                ).fetchone()
            if row is not None and row[0] == 0:
                return
            await asyncio.sleep(0.5)


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per claims measure")
    parser.add_argument("--processes", default="1,2,4,8", help="worker process counts")
    parser.add_argument("--slots", type=int, default=4, help="slots per worker process")
    parser.add_argument("--log-writers", type=int, default=16)
    parser.add_argument("--log-lines", type=int, default=5000, help="lines per writer")
    parser.add_argument("--skip-connections", action="store_true")
    parser.add_argument("--only-connections", action="store_true")
    parser.add_argument("--skip-claims", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result: dict[str, Any] = {"cpus": os.cpu_count()}
    with server() as (admin, pgdata):
        if not args.only_connections:
            dsn = new_migrated(admin)
            result["claims"] = {}
            for p in () if args.skip_claims else (int(x) for x in args.processes.split(",")):
                result["claims"][f"{p}x{args.slots}"] = claims_rate(
                    dsn, args.jobs, p, args.slots, pgdata
                )
                print(json.dumps(result["claims"]), file=sys.stderr)
            result["logs"] = []
            for batch in LOG_BATCHES:
                lines = args.log_lines * batch // 50  # fewer lines when the batches are small
                dsn = new_migrated(admin)
                result["logs"].append(
                    asyncio.run(logs_rate(dsn, args.log_writers, lines, batch, pgdata))
                )
            print(json.dumps(result["logs"]), file=sys.stderr)
        if not args.skip_connections:
            with tempfile.TemporaryDirectory(prefix="deployq-scale-") as tmp:
                result["connections"] = asyncio.run(connections(new_database(admin), Path(tmp)))
    print(json.dumps(result, indent=2))


def new_migrated(admin: str) -> str:
    dsn = new_database(admin)
    asyncio.run(migrate(dsn))
    asyncio.run(prepare_queue(dsn))
    return dsn


if __name__ == "__main__":
    main()
