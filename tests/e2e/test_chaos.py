"""PostgreSQL dies twice under `deployq up` while signed pushes arrive and images build.

A PostgreSQL of the test's own is stopped for OUTAGE_S twice: first with an immediate
shutdown (SIGQUIT), then with kill -9 of the postmaster. Throughout, a signed GitHub push
arrives every PUSH_EVERY_S and the worker builds each with the real BuildKit and registry.
The test asserts what the README promises: the process never exits, every delivery is
answered 2xx, every delivery becomes exactly one job, every job ends exactly once, and the
spool is replayed within REPLAY_WITHIN_S of the database coming back. It prints the replay
delay and the worst webhook latency during the outages (the closing note quotes them).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from deployq.testing.services import free_port
from integration.webhook_helpers import push_of, send_github
from worker_support import registry_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]

OUTAGE_S = 45.0
PUSH_EVERY_S = 1.5
REPLAY_WITHIN_S = 2.0
SECRET = "chaos-secret"
FINAL = ("succeeded", "failed", "cancelled", "timed_out", "superseded")
PAYLOADS = Path(__file__).resolve().parents[1] / "fixtures" / "payloads"


def _start_postgres(pgdata: Path, attempts: int = 3) -> str:
    """Start (or restart) the embedded server of ``pgdata``; its DSN. pgserver gives pg_ctl
    10 s, which crash recovery after kill -9 can pass on a loaded machine: try again."""
    code = (
        "import pgserver,sys; "
        "s = pgserver.get_server(sys.argv[1], cleanup_mode=None); print(s.get_uri('postgres'))"
    )
    for attempt in range(1, attempts + 1):
        out = subprocess.run(
            [sys.executable, "-c", code, str(pgdata)], capture_output=True, text=True, timeout=120
        )
        if out.returncode == 0:
            return out.stdout.strip().splitlines()[-1]
        if attempt == attempts:
            log = pgdata / "log"
            raise AssertionError(
                f"PostgreSQL did not start: {out.stderr[-2000:]}\n"
                f"{log.read_text(errors='replace')[-2000:] if log.exists() else ''}"
            )
    raise AssertionError("unreachable")


def _postmaster(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().splitlines()[0])


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def _stop_postgres(pgdata: Path, how: signal.Signals) -> None:
    """SIGQUIT: immediate shutdown; SIGKILL: the postmaster dies, its backends follow."""
    if not (pgdata / "postmaster.pid").exists():
        return
    pid = _postmaster(pgdata)
    family = [pid, *_children(pid)]
    os.kill(pid, how)
    await asyncio.to_thread(_wait_gone, family)


def _wait_gone(pids: list[int], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while any(_alive(p) for p in pids):  # other processes' exits send us no event
        assert time.monotonic() < deadline, f"processes {pids} did not exit"
        time.sleep(0.1)


async def test_deployq_up_survives_postgresql_dying_twice(
    docker_host: str,
    base_image: str,
    registry: Any,
    git_repo_factory: Any,
    tmp_path: Path,
) -> None:
    repo = git_repo_factory(
        {"Dockerfile": f"FROM {base_image}\nRUN echo built > /built.txt\n"}, message="chaos"
    )
    pgdata = tmp_path / "pgdata"
    admin_dsn = _start_postgres(pgdata)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE chaos")
    dsn = admin_dsn.replace("/postgres?", "/chaos?", 1)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    settings = registry_settings(registry, docker_host, lease_ttl=30, shutdown_grace=10)
    env.update({f"DEPLOYQ_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in settings.items()})  # fmt: skip
    env.update(
        DEPLOYQ_DATABASE_URL=dsn,
        DEPLOYQ_DATA_DIR=str(tmp_path / "data"),
        DEPLOYQ_LISTEN=f"127.0.0.1:{port}",
        DEPLOYQ_WORKER_CONCURRENCY="3",
        DEPLOYQ_MAX_ATTEMPTS="1",
        DEPLOYQ_DB_CONNECT_TIMEOUT="5",
    )
    app = f"chaos{uuid.uuid4().hex[:6]}"
    added = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "deployq", "app", "add", app, "--repo", repo.url,
         "--webhook-secret", SECRET, "--on-new-push", "queue", "--concurrency", "3",
         "--no-check"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        up = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-m", "deployq", "up"],
            env=env,
            stdout=log,
            stderr=log,
        )
    base = f"http://127.0.0.1:{port}"
    accepted: list[str] = []
    answers: list[tuple[float, float, int]] = []  # (sent at, latency, status)
    outages: list[tuple[float, float]] = []
    replay_delays: list[float] = []
    try:
        async with aiohttp.ClientSession() as session:
            await _ready(session, base, up, log_path)
            stop_pushing = asyncio.Event()

            async def pushes() -> None:
                while not stop_pushing.is_set():
                    sent = time.monotonic()
                    delivery, status, took = await send_github(
                        session, base, "push", push_of(repo.url, repo.head), secret=SECRET
                    )
                    answers.append((sent, took, status))
                    if 200 <= status < 300:
                        accepted.append(delivery)
                    await asyncio.sleep(PUSH_EVERY_S)

            pusher = asyncio.create_task(pushes())
            await asyncio.sleep(10)
            for how in (signal.SIGQUIT, signal.SIGKILL):
                down = time.monotonic()
                await _stop_postgres(pgdata, how)
                await asyncio.sleep(OUTAGE_S)
                assert up.poll() is None, _tail(log_path)
                waiting = len(accepted)
                await asyncio.to_thread(_start_postgres, pgdata)
                back = time.monotonic()
                outages.append((down, back))
                replay_delays.append(await _replayed(dsn, accepted[:waiting], back))
                await asyncio.sleep(10)
            stop_pushing.set()
            await pusher
            await _all_ended(dsn, len(accepted), up, log_path)
        assert up.poll() is None, _tail(log_path)
        per_delivery, endings = await asyncio.to_thread(_outcomes, dsn, app)
        timeline = [
            line
            for line in log_path.read_text(errors="replace").splitlines()
            if "deployq.db.health" in line or "spooled webhook" in line
        ]
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
        await _stop_postgres(pgdata, signal.SIGQUIT)

    statuses = [status for _, _, status in answers]
    assert all(200 <= s < 300 for s in statuses), statuses
    assert sorted(per_delivery) == sorted(accepted)
    assert set(per_delivery.values()) == {1}
    assert {count for _, count in endings} == {1}, endings
    in_outage = [latency for sent, latency, _ in answers if any(d <= sent <= b for d, b in outages)]
    print(
        f"\nchaos: {len(accepted)} deliveries, {len(endings)} jobs; replay after restart "
        f"{', '.join(f'{d:.2f}s' for d in replay_delays)}; worst webhook latency during "
        f"outages {max(in_outage):.3f}s, overall {max(lat for _, lat, _ in answers):.3f}s"
    )
    assert all(delay <= REPLAY_WITHIN_S for delay in replay_delays), (replay_delays, timeline)


def _outcomes(dsn: str, app: str) -> tuple[dict[str, int], list[tuple[int, int]]]:
    """Jobs per delivery id, and final-state events per job."""
    with psycopg.connect(dsn) as conn:
        per_delivery = dict(
            conn.execute(
                "SELECT delivery_id, count(*) FROM jobs WHERE app_name = %s GROUP BY 1", (app,)
            ).fetchall()
        )
        endings = conn.execute(
            "SELECT j.id, count(e.*) FROM jobs j LEFT JOIN job_events e ON e.job_id = j.id "
            "AND e.to_status = ANY(%s) GROUP BY j.id",
            (list(FINAL),),
        ).fetchall()
    return per_delivery, [(int(j), int(c)) for j, c in endings]


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:]


async def _ready(
    session: aiohttp.ClientSession, base: str, up: subprocess.Popen[bytes], log: Path
) -> None:
    async with asyncio.timeout(120):
        while True:
            assert up.poll() is None, _tail(log)
            try:
                async with session.get(f"{base}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.2)  # a port that is not open yet sends no event


async def _replayed(dsn: str, deliveries: list[str], back: float) -> float:
    """Seconds from the restart until every delivery accepted so far has its job."""
    async with asyncio.timeout(60):
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(dsn)
                async with conn:
                    row = await (
                        await conn.execute(
                            "SELECT count(DISTINCT delivery_id) FROM jobs "
                            "WHERE delivery_id = ANY(%s)",
                            (deliveries,),
                        )
                    ).fetchone()
                if row is not None and row[0] == len(deliveries):
                    return time.monotonic() - back
            except psycopg.OperationalError:
                pass
            await asyncio.sleep(0.05)  # another process writes the rows: poll


async def _all_ended(dsn: str, expected: int, up: subprocess.Popen[bytes], log: Path) -> None:
    async with asyncio.timeout(600):
        while True:
            assert up.poll() is None, _tail(log)
            conn = await psycopg.AsyncConnection.connect(dsn)
            async with conn:
                row = await (
                    await conn.execute(
                        "SELECT count(*) FILTER (WHERE status = ANY(%s)), count(*) FROM jobs",
                        (list(FINAL),),
                    )
                ).fetchone()
            assert row is not None
            if row[1] >= expected and row[0] == row[1]:
                return
            await asyncio.sleep(1)  # jobs end in another process: poll
