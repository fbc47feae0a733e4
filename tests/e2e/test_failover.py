"""PostgreSQL fails over to its standby while signed pushes arrive and images build.

A primary and a synchronous streaming standby (``deployq.testing.replication``: the embedded
server's own initdb, pg_basebackup -R and pg_ctl) serve ``DEPLOYQ_DATABASE_URL=
postgresql://deployq:PW@127.0.0.1:P1,127.0.0.1:P2/deployq?target_session_attrs=read-write``
to real processes: `deployq serve` and two `deployq worker`s (data directories of their own,
as on separate hosts), and, in this process, the console (DeployqApp, headless). A signed
GitHub push of a new commit arrives every PUSH_EVERY_S; each is a real BuildKit build pushed
to the registry. While builds run, the primary is shut down immediately; GAP_S later the
standby is promoted. Asserted: no process exited; every delivery was answered 2xx; every
delivery became exactly one job, and every job ended exactly once, succeeded, on its first
attempt (the outage is shorter than the lease: nothing was rescued, nothing ran twice);
jobs that were running at the stop finished; the pools say they are back on the standby's
port; the console showed the outage and came back with live updates; the DSN's password is
in no log. Printed: the time from the promotion to the first claim and to the spool's replay.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from cryptography.fernet import Fernet

from deployq.config import Settings
from deployq.models import Trigger, TriggerKind
from deployq.store import Store
from deployq.testing.replication import PostgresPair, start_pair
from deployq.testing.services import free_port
from deployq.tui import DeployqApp
from deployq.tui.screens.queue import QueueScreen
from integration.webhook_helpers import push_of, send_github
from worker_support import registry_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SECRET = "failover-secret"
PUSH_EVERY_S = 1.0
COMMITS = 40
#: between the primary's death and the promotion (what a failover manager would take)
GAP_S = 3.0
#: pushes after the promotion
AFTER_S = 8.0
LEASE_TTL_S = 20
FINAL = ("succeeded", "failed", "cancelled", "timed_out", "superseded")
PAYLOADS = Path(__file__).resolve().parents[1] / "fixtures" / "payloads"


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:]


class Processes:
    """The real deployq processes of the test, each logging to its own file."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"

    def start(self, name: str, *args: str, **env: str) -> None:
        with self.log(name).open("wb") as out:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "deployq", *args],
                env={**self.env, **env},
                stdout=out,
                stderr=out,
            )

    def assert_running(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited ({proc.returncode}): {_tail(self.log(name))}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _ready(session: aiohttp.ClientSession, base: str, procs: Processes) -> None:
    async with asyncio.timeout(120):
        while True:
            procs.assert_running()
            try:
                async with session.get(f"{base}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.2)  # a port that is not open yet sends no event


async def _query(dsn: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    conn = await psycopg.AsyncConnection.connect(dsn, connect_timeout=2)
    async with conn:
        return await (await conn.execute(statement, params)).fetchall()


async def _until(
    dsn: str, statement: str, params: Any, done: Callable[[list[tuple[Any, ...]]], bool],
    *, timeout_s: float = 120.0, procs: Processes,
) -> list[tuple[Any, ...]]:  # fmt: skip
    """Poll (other processes write the rows) until ``done(rows)``; the rows. On timeout, an
    AssertionError with what the queue and the processes were doing."""
    rows: list[tuple[Any, ...]] = []
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                procs.assert_running()
                try:
                    rows = await _query(dsn, statement, params)
                    if done(rows):
                        return rows
                except psycopg.OperationalError:
                    pass
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(
            f"after {timeout_s:.0f}s still not done: {statement} -> {rows}\n"
            + await _state(dsn, procs)
        ) from None


async def _state(dsn: str, procs: Processes) -> str:
    """The queue, the servers and each process's log tail, for a failure's message."""
    try:
        jobs = await _query(dsn, "SELECT status::text, count(*) FROM jobs GROUP BY 1")
        servers = await _query(dsn, "SELECT * FROM build_servers")
        events = await _query(
            dsn, "SELECT at, job_id, kind, to_status, message FROM job_events ORDER BY id DESC "
            "LIMIT 15",
        )  # fmt: skip
        queue = f"jobs {jobs}\nservers {servers}\nlast events {events[::-1]}"
    except psycopg.Error as exc:
        queue = f"(the queue could not be read: {exc})"
    logs = "\n".join(f"--- {name}.log\n{_tail(procs.log(name))}" for name in procs.procs)
    return f"{queue}\n{logs}"


async def _first_claim(admin: str, since: datetime, procs: Processes) -> float:
    """Seconds from ``since`` to the first claim after it (the claim's own timestamp)."""
    rows = await _until(
        admin, "SELECT min(at) FROM job_events WHERE to_status = 'running' AND at > %s",
        (since,), lambda rows: rows[0][0] is not None, procs=procs,
    )  # fmt: skip
    return float((rows[0][0] - since).total_seconds())


async def _replayed(admin: str, deliveries: list[str], procs: Processes) -> float:
    """time.monotonic() once every delivery of ``deliveries`` has its job."""
    await _until(
        admin, "SELECT count(DISTINCT delivery_id) FROM jobs WHERE delivery_id = ANY(%s)",
        (deliveries,), lambda rows: rows[0][0] == len(deliveries), procs=procs,
    )  # fmt: skip
    return time.monotonic()


async def _console_until(app: DeployqApp, condition: Callable[[], bool], what: str) -> None:
    """Until ``condition()`` holds: re-checked when the app applies a batch of job changes,
    and every 50 ms for the rest (its banner, its LISTEN state)."""
    deadline = time.monotonic() + 60
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        applied = asyncio.ensure_future(app.jobs_applied.wait())
        try:
            await asyncio.wait({applied}, timeout=0.05)
        finally:
            applied.cancel()


async def test_failover_to_a_promoted_standby_loses_nothing(
    docker_host: str, base_image: str, registry: Any, git_repo_factory: Any, tmp_path: Path
) -> None:
    repo = git_repo_factory(
        {"Dockerfile": f"FROM {base_image}\nCOPY stamp /stamp\nRUN sleep 1\n", "stamp": "0"},
        message="failover",
    )
    shas = [repo.commit({"stamp": str(i)}, message=f"push {i}") for i in range(1, COMMITS + 1)]
    password = secrets.token_urlsafe(16)
    with start_pair(tmp_path / "pg") as pair:
        pair.sql(pair.primary, f"CREATE ROLE deployq LOGIN PASSWORD '{password}'")
        pair.sql(pair.primary, "CREATE DATABASE deployq OWNER deployq")
        dsn = pair.dsn("deployq", user="deployq", password=password)
        admin = pair.dsn("deployq")  # the test's own reads: the superuser, both servers
        await _scenario(pair, dsn, admin, password, repo, shas, registry, docker_host, tmp_path)


async def _scenario(
    pair: PostgresPair, dsn: str, admin: str, password: str, repo: Any, shas: list[str],
    registry: Any, docker_host: str, tmp_path: Path,
) -> None:  # fmt: skip
    key = Fernet.generate_key().decode()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    settings = registry_settings(registry, docker_host, lease_ttl=LEASE_TTL_S, shutdown_grace=10)
    env.update({f"DEPLOYQ_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in settings.items()})  # fmt: skip
    env.update(
        DEPLOYQ_DATABASE_URL=dsn,
        DEPLOYQ_SECRET_KEY=key,
        DEPLOYQ_DATA_DIR=str(tmp_path / "serve"),
        DEPLOYQ_LISTEN=f"127.0.0.1:{port}",
        DEPLOYQ_WORKER_CONCURRENCY="2",
        DEPLOYQ_MAX_ATTEMPTS="2",
        DEPLOYQ_DB_CONNECT_TIMEOUT="2",
    )
    procs = Processes(tmp_path, env)
    add = ["app", "add", "web", "--repo", repo.url, "--webhook-secret", SECRET,
           "--on-new-push", "queue", "--concurrency", "4", "--no-check"]  # fmt: skip
    for args in (["migrate"], add):
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "deployq", *args],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    procs.start("serve", "serve")
    for n in (1, 2):
        procs.start(f"worker{n}", "worker", DEPLOYQ_DATA_DIR=str(tmp_path / f"worker{n}"))

    console_store = await Store.open(
        Settings(database_url=dsn, secret_key=key, data_dir=tmp_path / "console"), dsn, min_size=1
    )
    base = f"http://127.0.0.1:{port}"
    accepted: list[str] = []
    answers: list[tuple[float, int]] = []
    try:
        app = DeployqApp(console_store, user="alice")
        async with aiohttp.ClientSession() as session, app.run_test(size=(120, 40)):
            await _ready(session, base, procs)
            queue = app.screen
            assert isinstance(queue, QueueScreen)
            await queue.loaded.wait()
            await app.listening.wait()
            stop_pushing = asyncio.Event()

            async def pushes() -> None:
                for sha in shas:
                    if stop_pushing.is_set():
                        return
                    delivery, status, took = await send_github(
                        session, base, "push", push_of(repo.url, sha), secret=SECRET
                    )
                    answers.append((took, status))
                    if 200 <= status < 300:
                        accepted.append(delivery)
                    await asyncio.sleep(PUSH_EVERY_S)

            pusher = asyncio.create_task(pushes())
            # a build is running: the moment to lose the primary
            await _until(admin, "SELECT count(*) FROM jobs WHERE status = 'running'", None,
                         lambda rows: rows[0][0] >= 1, procs=procs)  # fmt: skip
            stopped_at = datetime.now(UTC)
            await asyncio.to_thread(pair.stop_primary)
            await _console_until(app, lambda: app.db_problem is not None, "the console's banner")
            await asyncio.sleep(GAP_S)  # the outage itself: what is measured happens in it
            procs.assert_running()
            waiting = list(accepted)
            await asyncio.to_thread(pair.promote)
            promoted = time.monotonic()
            promoted_at = datetime.now(UTC)
            first_claim_s, replayed = await asyncio.gather(
                _first_claim(admin, promoted_at, procs), _replayed(admin, waiting, procs)
            )
            replay_s = replayed - promoted
            # the console is live again: a job made now shows up through its LISTEN
            await _console_until(
                app, lambda: app.db_problem is None and app.listening.is_set(), "recovery"
            )
            await asyncio.sleep(AFTER_S)
            stop_pushing.set()
            await pusher
            fresh = await console_store.queue.enqueue(
                Trigger(kind=TriggerKind.MANUAL, app="web", ref="refs/heads/main", actor="t")
            )
            await _console_until(app, lambda: fresh.jobs[0].id in queue.jobs, "a live job")
            await _until(
                admin,
                "SELECT count(*) FILTER (WHERE status = ANY(%s)), count(*) FROM jobs",
                (list(FINAL),),
                lambda rows: rows[0][1] >= len(accepted) + 1 and rows[0][0] == rows[0][1],
                timeout_s=600,
                procs=procs,
            )
        procs.assert_running()
        per_delivery = dict(
            await _query(
                admin,
                "SELECT delivery_id, count(*) FROM jobs WHERE delivery_id IS NOT NULL GROUP BY 1",
            )
        )
        jobs = await _query(
            admin,
            "SELECT j.id, j.status::text, j.attempt, "
            "count(e.*) FILTER (WHERE e.to_status = ANY(%s)), "
            "count(e.*) FILTER (WHERE e.to_status = 'running'), "
            "bool_or(e.to_status = 'running' AND e.at < %s) "
            "AND NOT bool_or(e.to_status = ANY(%s) AND e.at < %s) "
            "FROM jobs j JOIN job_events e ON e.job_id = j.id GROUP BY j.id",
            (list(FINAL), stopped_at, list(FINAL), stopped_at),
        )
    finally:
        procs.stop()
        await console_store.close()

    statuses = [status for _, status in answers]
    assert all(200 <= s < 300 for s in statuses), statuses
    assert sorted(per_delivery) == sorted(accepted)
    assert set(per_delivery.values()) == {1}
    assert {(status, ends) for _, status, _, ends, _, _ in jobs} == {("succeeded", 1)}, jobs
    # nothing rescued, nothing started twice: one attempt, one claim each
    assert {(attempt, claims) for _, _, attempt, _, claims, _ in jobs} == {(1, 1)}, jobs
    across = [job_id for job_id, *_, spanning in jobs if spanning]
    assert across, "no job was running when the primary stopped"
    for name in procs.procs:
        text = procs.log(name).read_text(errors="replace")
        assert password not in text, f"{name}'s log shows the database password"
    back = f"answered by 127.0.0.1:{pair.standby.port}"
    for name in ("serve", "worker1", "worker2"):
        assert back in procs.log(name).read_text(errors="replace"), _tail(procs.log(name))
    print(
        f"\nfailover: {len(accepted)} deliveries, {len(jobs)} jobs, {len(across)} running at "
        f"the stop; promote -> first claim {first_claim_s:.2f}s, -> spool replayed "
        f"({len(waiting)} deliveries) {replay_s:.2f}s; worst webhook "
        f"{max(lat for lat, _ in answers):.3f}s"
    )
