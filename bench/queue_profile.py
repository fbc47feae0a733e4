"""Where a no-op job's time goes in deployq's queue: per job, not per second.

Usage: .venv/bin/python bench/queue_profile.py [--jobs N] [--top N] [c1 c4 c16 s4 s16 ...]

Each mode drains N queued jobs as bench/queue_bench.py does (cK: a pool of K slots with its
Finisher; sK: K separate one-slot claimers) and prints, per job: the CPU time of this
process and of its PostgreSQL backends (from /proc: the server must run on this host), the
WAL written, and, when the server loads pg_stat_statements (shared_preload_libraries), the
statements run and the costliest ones. Unlike rates these barely move with the load of a
shared machine, so two versions can be compared from one run each (bench/README.md).
Runs on DEPLOYQ_DATABASE_URL's server, else on the test suite's embedded one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from _database import database, server_dsn
from queue_bench import TRIGGER, add_bench_app, deployq_store, drain_deployq, drain_separately

from deployq.store import Store

_STATEMENTS = """
SELECT calls, total_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 72) AS query
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND query NOT LIKE '%%pg_stat%%' AND query NOT LIKE '%%pg_current_wal_lsn%%'
ORDER BY total_exec_time DESC
"""


def backend_cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


async def profile(store: Store, dsn: str, mode: str, jobs: int, top: int) -> dict[str, Any]:
    for _ in range(jobs):
        await store.queue.enqueue(TRIGGER)
    with psycopg.connect(dsn, autocommit=True) as conn:
        pids = [
            r[0]
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
        ]
        statements = conn.execute(
            "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'"
        ).fetchone()
        if statements:
            conn.execute("SELECT pg_stat_statements_reset()")
        (lsn,) = conn.execute("SELECT pg_current_wal_lsn()").fetchone()  # type: ignore[misc]
    server0, client0, start = backend_cpu_s(pids), time.process_time(), time.perf_counter()
    slots = int(mode[1:])
    if mode[0] == "c":
        await drain_deployq(store, slots)
    else:
        await drain_separately(store, slots)
    elapsed = time.perf_counter() - start
    out: dict[str, Any] = {
        "per_s": round(jobs / elapsed, 1),
        "client_cpu_ms_per_job": round((time.process_time() - client0) * 1000 / jobs, 3),
        "server_cpu_ms_per_job": round((backend_cpu_s(pids) - server0) * 1000 / jobs, 3),
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        (wal,) = conn.execute(  # type: ignore[misc]
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (str(lsn),)
        ).fetchone()
        out["wal_bytes_per_job"] = round(float(wal) / jobs)
        if statements:
            rows = conn.execute(_STATEMENTS).fetchall()
            out["statements_per_job"] = round(sum(r[0] for r in rows) / jobs, 2)
            out["top"] = [
                f"{r[0] / jobs:5.2f}/job {r[1] / jobs:7.3f} ms/job  {r[2]}" for r in rows[:top]
            ]
    return out


async def main_async(args: argparse.Namespace) -> None:
    with database(f"bench_profile_{uuid.uuid4().hex[:8]}", server_dsn()) as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            # only when the server loads it: the extension alone makes its reset fail
            if conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements'"
                " AND current_setting('shared_preload_libraries') LIKE '%pg_stat_statements%'"
            ).fetchone():
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        store = await deployq_store(dsn, 18)
        try:
            await add_bench_app(store)
            for mode in args.modes:
                result = await profile(store, dsn, mode, args.jobs, args.top)
                top = result.pop("top", [])
                print(mode, result)
                for line in top:
                    print("   ", line)
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--top", type=int, default=8, help="costliest statements shown")
    parser.add_argument("modes", nargs="*", default=["c1", "c4", "c16", "s4", "s16"])
    args = parser.parse_args()
    for mode in args.modes:
        if mode[:1] not in ("c", "s") or not mode[1:].isdigit():
            parser.error(f"mode {mode!r}: cK (a K-slot pool) or sK (K separate claimers)")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
