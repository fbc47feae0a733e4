"""Webhook ingest: signed GitHub push deliveries against a real `deployq serve`, and pgbench.

Sends a real-size (~8 KB) signed push payload with distinct X-GitHub-Delivery ids from
--concurrency connections for --duration seconds to a `deployq serve` subprocess, then runs
pgbench (single-row INSERT, same concurrency) on the same database for the same time.
Prints JSON: accepted deliveries per second, p50/p99 latency, the pgbench INSERT tps, their
ratio; `lost` (accepted answers whose job is not in the database, must be 0), `unrecorded`
(accepted jobs without an accepted webhook_deliveries row, must be 0) and
`deliveries_per_commit` (jobs per writing transaction: the receiver's group commit).

The load generator is wrk (C, `apt-get install wrk`) when installed, with a Lua script that
gives each request its own delivery id; the body is signed once before the timed window.
`--client aiohttp` uses a Python client instead (it takes a share of the two cores).

    .venv/bin/python bench/webhooks.py [--duration 20] [--concurrency 32] [--client wrk]

Database: a fresh one on DEPLOYQ_DATABASE_URL's server, else on the test suite's embedded
PostgreSQL (.pytest-data).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from _database import database

from deployq.config import Settings
from deployq.db.migrate import migrate
from deployq.models import AppSpec, SupersedePolicy
from deployq.store import Store
from deployq.testing.services import free_port
from deployq.webhooks.signatures import github_signature

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = ROOT / "tests" / "fixtures" / "payloads" / "github_push_branch.json"
SECRET = "bench-secret"
TARGET_BYTES = 8 * 1024
READY_TIMEOUT_S = 60.0


def push_body() -> bytes:
    """The documented push payload, grown with commits to about 8 KB (GitHub's typical)."""
    data = json.loads(PAYLOAD.read_text())
    template = data["commits"][-1]
    n = 0
    while len(json.dumps(data)) < TARGET_BYTES:
        n += 1
        data["commits"].insert(0, {**template, "id": f"{n:040x}", "message": f"change {n}"})
    return json.dumps(data).encode()


def pgbench_bin() -> str:
    try:
        from pgserver._commands import POSTGRES_BIN_PATH

        candidate = Path(POSTGRES_BIN_PATH) / "pgbench"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    return shutil.which("pgbench") or "/usr/lib/postgresql/15/bin/pgbench"


def run_pgbench(dsn: str, concurrency: int, duration_s: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_insert (id bigserial PRIMARY KEY, v int)")
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write("INSERT INTO bench_insert (v) VALUES (1);\n")
    try:
        out = subprocess.run(
            [
                pgbench_bin(),
                "-n",
                "-c",
                str(concurrency),
                "-j",
                "2",
                "-T",
                str(duration_s),
                "-f",
                script.name,
                dsn,
            ],
            capture_output=True,
            text=True,
            timeout=duration_s + 60,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    if match is None:
        raise RuntimeError(f"cannot read pgbench's tps from:\n{out}")
    return float(match.group(1))


async def wait_ready(url: str, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError("deployq serve exited before it was ready")
            try:
                async with session.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)  # polling a starting process: there is no event to wait on
    raise RuntimeError("deployq serve did not become ready")


#: wrk's per-request hooks: a distinct delivery id per request, status counts, and the job
#: ids of accepted answers (to check afterwards that every one of them was committed)
WRK_SCRIPT = r"""
local threads, counter = {}, 1
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  local f = io.open(os.getenv("BENCH_BODY"), "rb")
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-GitHub-Event"] = "push"
  wrk.headers["X-Hub-Signature-256"] = os.getenv("BENCH_SIGNATURE")
  prefix = os.getenv("BENCH_PREFIX") .. "-" .. tid .. "-"
  n, statuses, ids = 0, {}, {}
end
function request()
  n = n + 1
  wrk.headers["X-GitHub-Delivery"] = prefix .. n
  return wrk.format(nil, "/webhooks/github")
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 202 then
    for id in string.gmatch(body, '"id":%s*(%d+)') do ids[#ids + 1] = id end
  end
end
function done(summary, latency, requests)
  local out = io.open(os.getenv("BENCH_OUT"), "w")
  local e = summary.errors
  out:write(string.format('{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99)))
  out:write(string.format('"client_errors":%d,"statuses":{', e.connect + e.read + e.write
    + e.timeout))
  local all, sep = {}, ""
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      all[status] = (all[status] or 0) + count
    end
  end
  for status, count in pairs(all) do
    out:write(string.format('%s"%d":%d', sep, status, count))
    sep = ","
  end
  out:write('},"ids":[')
  sep = ""
  for _, thread in ipairs(threads) do
    for _, id in ipairs(thread:get("ids")) do
      out:write(sep, id)
      sep = ","
    end
  end
  out:write("]}")
  out:close()
end
"""


def summarise(
    statuses: dict[int, int], latencies_s: list[float] | None, raw: dict[str, Any], elapsed: float
) -> dict[str, Any]:
    accepted = statuses.get(202, 0)
    result = {
        "requests": sum(statuses.values()),
        "accepted": accepted,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "client_errors": raw.get("client_errors", 0),
        "accepted_per_s": round(accepted / elapsed, 1),
    }
    if latencies_s is not None:
        latencies_s.sort()

        def pct(q: float) -> float | None:
            if not latencies_s:
                return None
            return round(latencies_s[min(len(latencies_s) - 1, int(q * len(latencies_s)))] * 1e3, 2)

        result.update(p50_ms=pct(0.50), p99_ms=pct(0.99))
    else:
        result.update(p50_ms=raw["p50_us"] / 1000, p99_ms=raw["p99_us"] / 1000)
    return result


async def load_wrk(
    url: str, body: bytes, concurrency: int, duration_s: float, prefix: str
) -> tuple[dict[str, Any], list[int]]:
    """wrk (C, two threads) as the load generator: it takes far less of the two cores than
    a Python client, so the figures are the server's."""
    with tempfile.TemporaryDirectory(prefix="deployq-bench-wrk-") as tmp:
        (Path(tmp) / "body.json").write_bytes(body)
        (Path(tmp) / "script.lua").write_text(WRK_SCRIPT)
        env = {
            **os.environ,
            "BENCH_BODY": str(Path(tmp) / "body.json"),
            "BENCH_SIGNATURE": github_signature(SECRET, body),
            "BENCH_PREFIX": prefix,
            "BENCH_OUT": str(Path(tmp) / "out.json"),
        }
        proc = await asyncio.create_subprocess_exec(
            "wrk",
            "-t",
            "2",
            "-c",
            str(concurrency),
            "-d",
            f"{max(1, round(duration_s))}s",
            "--timeout",
            "10s",
            "-s",
            str(Path(tmp) / "script.lua"),
            url,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
        )
        if await proc.wait() != 0:
            raise RuntimeError(f"wrk exited with {proc.returncode}")
        raw = json.loads((Path(tmp) / "out.json").read_text())
    statuses = {int(k): v for k, v in raw["statuses"].items()}
    ids = [int(i) for i in raw["ids"]]
    return summarise(statuses, None, raw, raw["duration_us"] / 1e6), ids


async def load_aiohttp(
    url: str, body: bytes, concurrency: int, duration_s: float, prefix: str
) -> tuple[dict[str, Any], list[int]]:
    """The Python client, when wrk is not installed (it shares the cores with the server:
    expect lower figures)."""
    signature = github_signature(SECRET, body)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    ids: list[int] = []
    raw = {"client_errors": 0}
    # the headers of every request are made before the timed window
    budget = int(duration_s * 5000) + concurrency
    headers = [
        {
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": f"{prefix}-{n}",
            "X-Hub-Signature-256": signature,
        }
        for n in range(budget)
    ]
    target = f"{url}/webhooks/github"
    stop_at = time.monotonic() + duration_s

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop_at and headers:
            request_headers = headers.pop()
            start = time.perf_counter()
            try:
                async with session.post(target, data=body, headers=request_headers) as r:
                    answer = await r.read()
            except aiohttp.ClientError:
                raw["client_errors"] += 1
                continue
            latencies.append(time.perf_counter() - start)
            statuses[r.status] = statuses.get(r.status, 0) + 1
            if r.status == 202:
                ids.extend(int(j["id"]) for j in json.loads(answer).get("jobs", []))

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        began = time.monotonic()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.monotonic() - began
    return summarise(statuses, latencies, raw, elapsed), ids


def check_committed(dsn: str, job_ids: list[int]) -> dict[str, int]:
    """Accepted answers whose job is missing (lost) or whose delivery has no accepted record
    (unrecorded); and the transactions the jobs were written in (commits)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM unnest(%(ids)s::bigint[]) a(id) "
            "        WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = a.id)) AS lost, "
            "  (SELECT count(*) FROM jobs j WHERE j.id = ANY(%(ids)s) AND NOT EXISTS ("
            "      SELECT 1 FROM webhook_deliveries d WHERE d.provider = 'github' "
            "      AND d.delivery_id = j.delivery_id AND d.result = 'accepted')) AS unrecorded, "
            "  (SELECT count(DISTINCT xmin::text) FROM jobs WHERE id = ANY(%(ids)s)) AS commits",
            {"ids": job_ids},
        ).fetchone()
    assert row is not None
    return {"lost": int(row[0]), "unrecorded": int(row[1]), "commits": int(row[2])}


async def bench(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    await migrate(dsn)
    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="deployq-bench-webhooks-"))
    store = await Store.open(Settings(database_url=dsn, data_dir=data_dir), dsn, min_size=1)
    try:
        await store.apps.add(
            AppSpec(
                name="bench",
                repo_url="https://github.com/octo-org/octo-repo.git",
                webhook_secret=SECRET,
                supersede_policy=SupersedePolicy.QUEUE,
            )
        )
    finally:
        await store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    env.update(
        DEPLOYQ_DATABASE_URL=dsn,
        DEPLOYQ_DATA_DIR=str(data_dir),
        DEPLOYQ_LISTEN=f"127.0.0.1:{port}",
        DEPLOYQ_DB_POOL_MAX=str(args.pool),
        DEPLOYQ_LOG_LEVEL="WARNING",
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "deployq", "serve", env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url, proc)
        body = push_body()
        load = load_wrk if args.client == "wrk" else load_aiohttp
        run = uuid.uuid4().hex[:8]
        await load(url, body, args.concurrency, 1.0, f"warm-{run}")  # pool, caches
        result, job_ids = await load(url, body, args.concurrency, args.duration, run)
    finally:
        proc.terminate()
        await proc.wait()
        shutil.rmtree(data_dir, ignore_errors=True)
    result["client"] = args.client
    result["payload_bytes"] = len(body)
    result.update(check_committed(dsn, job_ids))
    result["lost"] += result["accepted"] - len(job_ids)  # a 202 naming no job
    result["deliveries_per_commit"] = round(len(job_ids) / max(1, result["commits"]), 1)
    result["pgbench_insert_tps"] = round(
        await asyncio.to_thread(run_pgbench, dsn, args.concurrency, int(args.duration)), 1
    )
    result["webhook_vs_insert"] = round(result["accepted_per_s"] / result["pgbench_insert_tps"], 3)
    result["targets"] = {
        "ge_1000_per_s": result["accepted_per_s"] >= 1000,
        "p99_le_50ms": result["p99_ms"] is not None and result["p99_ms"] <= 50,
        "zero_lost": result["lost"] == 0
        and result["unrecorded"] == 0
        and result["client_errors"] == 0,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--concurrency", type=int, default=32, help="connections")
    parser.add_argument("--pool", type=int, default=10, help="DEPLOYQ_DB_POOL_MAX of the server")
    parser.add_argument(
        "--client",
        choices=("wrk", "aiohttp"),
        default="wrk" if shutil.which("wrk") else "aiohttp",
        help="load generator (default: wrk when installed; `apt-get install wrk`)",
    )
    args = parser.parse_args()
    with database("bench_webhooks") as dsn:
        result = asyncio.run(bench(dsn, args))
    result.update(duration_s=args.duration, concurrency=args.concurrency)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
