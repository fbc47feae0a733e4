"""deployq's queue against procrastinate and pgqueuer on the same PostgreSQL.

Usage: .venv/bin/python bench/queue_bench.py [--jobs N] [--samples N] [--skip-peers]
       .venv/bin/python bench/queue_bench.py --duel ROUNDS [--jobs N]

One PostgreSQL (a throwaway embedded server, or DEPLOYQ_DATABASE_URL's server), one
database per queue. No-op jobs throughout:
- enqueue: N jobs, one per call, one after the other;
- drain: N queued jobs claimed and finished with concurrency 1, 4 and 16 (deployq: a worker
  pool of that many slots that claims for all its free slots at once and finishes each job
  as its own task through the pool's Finisher, which group-commits the finishes arriving
  together, as ``deployq worker`` does; also N separate one-slot claimers each finishing
  on its own, the worst case for the claim lock); and 4 worker processes x 4 slots (each
  process its own pool and Finisher, as four ``deployq worker --slots 4`` would; pgqueuer:
  four processes with batch size and concurrency limit 4);
- latency: idle workers woken by LISTEN/NOTIFY; time from the enqueue call to the claim
  (deployq) or to the start of the task (peers), one job at a time.
pgqueuer uses its asyncpg driver when asyncpg is installed (its psycopg driver shares the
LISTEN connection with its queries), with batch size and
entrypoint concurrency limit = concurrency; it acknowledges finished jobs in batches.
Prints JSON, with deployq's rates as ratios to each peer's.
Targets (issue 3): enqueue→claim p99 ≤ 25 ms; claim+finish ≥ the faster peer's rate;
(issue 15) 4 processes x 4 slots ≥ pgqueuer's 4 x 4. Method and figures: bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
from _database import database
from psycopg.conninfo import conninfo_to_dict

from deployq.config import Settings
from deployq.db.migrate import migrate
from deployq.models import AppSpec, JobStatus, Trigger, TriggerKind
from deployq.store import CHANNEL_JOBS, Finisher, Listener, Outcome, Store

CONCURRENCY = (1, 4, 16)
#: worker processes x slots each, the multi-process row
PROCESSES, PROCESS_SLOTS = 4, 4
SUCCESS = Outcome(JobStatus.SUCCEEDED)
TRIGGER = Trigger(kind=TriggerKind.MANUAL, app="bench", ref="refs/heads/main")
#: pause between latency samples, so each job meets idle workers
SAMPLE_GAP_S = 0.005

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def as_url(dsn: str) -> str:
    """A postgresql:// URL (asyncpg takes no key=value DSN)."""
    if dsn.startswith("postgres"):
        return dsn
    p = conninfo_to_dict(dsn)
    host = p.get("host", "")
    auth = p.get("user", "") + (f":{p['password']}" if p.get("password") else "")
    query = f"?host={host}" if host.startswith("/") else ""
    netloc = "" if query else f"{host}:{p.get('port', 5432)}"
    return f"postgresql://{auth}@{netloc}/{p.get('dbname', '')}{query}"


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)

    def at(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": round(1000 * ordered[-1], 2)}


async def timed_rate(n: int, run: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    await run()
    return round(n / (time.perf_counter() - start), 1)


# -- deployq ---------------------------------------------------------------------------------


async def deployq_store(dsn: str, pool: int) -> Store:
    await migrate(dsn)
    settings = Settings(
        database_url=dsn,
        data_dir=Path(tempfile.gettempdir()) / "deployq-bench",
        db_pool_min=pool,
        db_pool_max=pool,
    )
    return await Store.open(settings, dsn, min_size=pool)


async def add_bench_app(store: Store) -> None:
    """The server (1024 slots) and the app (64 at once, no supersede) the jobs run for."""
    await store.servers.add("bench", "unix:///var/run/docker.sock", capacity=1024)
    await store.apps.add(
        AppSpec(
            name="bench",
            repo_url="https://example.invalid/bench.git",
            concurrency=64,
            supersede_policy="queue",
        )
    )


async def deployq_bench(dsn: str, jobs: int, samples: int) -> dict[str, Any]:
    store = await deployq_store(dsn, max(CONCURRENCY) + 2)
    try:
        await add_bench_app(store)

        async def enqueue_all() -> None:
            for _ in range(jobs):
                await store.queue.enqueue(TRIGGER)

        out: dict[str, Any] = {"enqueue_per_s": await timed_rate(jobs, enqueue_all)}
        await drain_deployq(store)  # the enqueued jobs, not timed: the queue starts empty
        for workers in CONCURRENCY:
            for _ in range(jobs):
                await store.queue.enqueue(TRIGGER)
            out[f"drain_c{workers}_per_s"] = await timed_rate(
                jobs,
                lambda w=workers: drain_deployq(store, w),  # type: ignore[misc]
            )
        for workers in CONCURRENCY[1:]:
            for _ in range(jobs):
                await store.queue.enqueue(TRIGGER)
            out[f"drain_{workers}_separate_claimers_per_s"] = await timed_rate(
                jobs,
                lambda w=workers: drain_separately(store, w),  # type: ignore[misc]
            )
        for _ in range(jobs):
            await store.queue.enqueue(TRIGGER)
        out[f"drain_{PROCESSES}_processes_x{PROCESS_SLOTS}_per_s"] = processes_rate(
            jobs, _deployq_process, dsn
        )
        out["latency"] = await deployq_latency(store, samples)
        return out
    finally:
        await store.close()


def processes_rate(jobs: int, target: Callable[..., None], dsn: str) -> float:
    """Jobs per second of PROCESSES processes running ``target(dsn, slots, ready, go,
    finished)``: timed from the moment all of them are ready to the last one's end."""
    ctx = multiprocessing.get_context("spawn")
    ready, finished = ctx.Queue(), ctx.Queue()
    go = ctx.Event()
    procs = [
        ctx.Process(target=target, args=(dsn, PROCESS_SLOTS, ready, go, finished))
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=120)
    start = time.monotonic()
    go.set()
    ends = [finished.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join(60)
    return round(jobs / (max(ends) - start), 1)


def _deployq_process(dsn: str, slots: int, ready: Any, go: Any, finished: Any) -> None:
    """One worker process: its own store (pool) and Finisher, ``slots`` slots."""

    async def run() -> None:
        settings = Settings(
            database_url=dsn,
            data_dir=Path(tempfile.gettempdir()) / "deployq-bench",
            db_pool_min=slots + 1,
            db_pool_max=slots + 1,
        )
        store = await Store.open(settings, dsn, min_size=slots + 1)
        try:
            ready.put(os.getpid())
            await asyncio.to_thread(go.wait)
            await drain_deployq(store, slots, name=f"pool{os.getpid()}")
            finished.put(time.monotonic())
        finally:
            await store.close()

    asyncio.run(run())


async def drain_deployq(store: Store, slots: int = 4, name: str = "pool") -> None:
    """A worker pool with ``slots`` build slots, as ``deployq worker`` runs: one claim for
    every free slot at once, a task per job, finishes through the pool's Finisher (group
    commits). As in the pool, a job leaves its slot once built (a no-op: at once) and keeps
    its lease until its finish commits; at most ``slots`` finishes wait at once."""
    finisher = Finisher(store)
    finishing: set[asyncio.Task[Any]] = set()
    freed = asyncio.Event()

    def done(task: asyncio.Task[Any]) -> None:
        finishing.discard(task)
        freed.set()

    while True:
        freed.clear()
        free = min(slots, 2 * slots - len(finishing))  # WorkerPool.free_slots
        leases = await store.leases.claim(name, limit=free) if free > 0 else []
        for lease in leases:
            task = asyncio.create_task(finisher.finish(lease, SUCCESS))
            finishing.add(task)
            task.add_done_callback(done)
        if not leases and not finishing:
            return
        if not leases or len(finishing) > slots:
            await freed.wait()


async def drain_separately(store: Store, workers: int) -> None:
    """``workers`` independent claimers, one job at a time each (many one-slot workers)."""

    async def worker(name: str) -> None:
        while leases := await store.leases.claim(name, limit=1):
            for lease in leases:
                await store.leases.finish(lease, SUCCESS)

    await asyncio.gather(*(worker(f"w{i}") for i in range(workers)))


async def deployq_latency(store: Store, samples: int) -> dict[str, float]:
    """Idle workers: one LISTEN connection; each enqueue NOTIFY starts a claim at once."""
    claimed: asyncio.Queue[float] = asyncio.Queue()
    listener = Listener(store.dsn, [CHANNEL_JOBS])

    async def on_enqueued() -> None:
        for lease in await store.leases.claim("idle", limit=1):
            claimed.put_nowait(time.perf_counter())
            await store.leases.finish(lease, SUCCESS)

    async def listen() -> None:
        pending: set[asyncio.Task[None]] = set()
        async for notice in listener:
            if notice.payload.get("kind") == "enqueued":
                task = asyncio.create_task(on_enqueued())
                pending.add(task)
                task.add_done_callback(pending.discard)

    listening = asyncio.create_task(listen())
    await asyncio.wait_for(listener.connected.wait(), 30)
    latencies = []
    try:
        for _ in range(samples):
            start = time.perf_counter()
            await store.queue.enqueue(TRIGGER)
            latencies.append(await asyncio.wait_for(claimed.get(), 10) - start)
            await asyncio.sleep(SAMPLE_GAP_S)
    finally:
        await listener.close()
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
    return percentiles(latencies)


# -- procrastinate ---------------------------------------------------------------------------


async def procrastinate_bench(dsn: str, jobs: int, samples: int) -> dict[str, Any]:
    import procrastinate

    started: asyncio.Queue[float] = asyncio.Queue()
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=dsn, min_size=4, max_size=20)
    )

    @app.task(name="noop")
    async def noop() -> None:
        return None

    @app.task(name="mark")
    async def mark() -> None:
        started.put_nowait(time.perf_counter())

    async with app.open_async():
        await app.schema_manager.apply_schema_async()

        async def enqueue_all() -> None:
            for _ in range(jobs):
                await noop.defer_async()

        out: dict[str, Any] = {"enqueue_per_s": await timed_rate(jobs, enqueue_all)}
        await app.run_worker_async(concurrency=4, wait=False, install_signal_handlers=False)
        for workers in CONCURRENCY:
            for _ in range(jobs):
                await noop.defer_async()
            out[f"drain_c{workers}_per_s"] = await timed_rate(
                jobs,
                lambda w=workers: app.run_worker_async(  # type: ignore[misc]
                    concurrency=w, wait=False, install_signal_handlers=False
                ),
            )
        worker = asyncio.create_task(
            app.run_worker_async(concurrency=4, install_signal_handlers=False, listen_notify=True)
        )
        await asyncio.sleep(1)  # let the worker start listening
        latencies = []
        for _ in range(samples):
            start = time.perf_counter()
            await mark.defer_async()
            latencies.append(await asyncio.wait_for(started.get(), 10) - start)
            await asyncio.sleep(SAMPLE_GAP_S)
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        out["latency"] = percentiles(latencies)
    return out


# -- pgqueuer --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def pgqueuer_driver(dsn: str) -> AsyncIterator[tuple[Any, str]]:
    try:
        import asyncpg
    except ImportError:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        from pgqueuer.db import PsycopgDriver

        try:
            yield PsycopgDriver(conn), "psycopg"
        finally:
            await conn.close()
        return
    from pgqueuer.db import AsyncpgDriver

    aconn = await asyncpg.connect(as_url(dsn))
    try:
        yield AsyncpgDriver(aconn), "asyncpg"
    finally:
        await aconn.close()


async def pgqueuer_bench(dsn: str, jobs: int, samples: int) -> dict[str, Any]:
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries

    async with pgqueuer_driver(dsn) as (driver, driver_name):
        queries = Queries(driver)
        await queries.install()

        async def enqueue_all() -> None:
            for _ in range(jobs):
                await queries.enqueue("noop", None)

        out: dict[str, Any] = {
            "driver": driver_name,
            "enqueue_per_s": await timed_rate(jobs, enqueue_all),
        }

    def drain(batch: int) -> Awaitable[None]:
        return pgqueuer_drain(dsn, batch)

    await drain(4)
    for workers in CONCURRENCY:
        async with pgqueuer_driver(dsn) as (driver, _):
            queries = Queries(driver)
            for _ in range(jobs):
                await queries.enqueue("noop", None)
        out[f"drain_c{workers}_per_s"] = await timed_rate(
            jobs,
            lambda w=workers: drain(w),  # type: ignore[misc]
        )

    async with pgqueuer_driver(dsn) as (driver, _):
        queries = Queries(driver)
        for _ in range(jobs):
            await queries.enqueue("noop", None)
    out[f"drain_{PROCESSES}_processes_x{PROCESS_SLOTS}_per_s"] = processes_rate(
        jobs, _pgqueuer_process, dsn
    )

    started: asyncio.Queue[float] = asyncio.Queue()
    async with pgqueuer_driver(dsn) as (wdriver, _), pgqueuer_driver(dsn) as (edriver, _):
        qm = QueueManager(Queries(wdriver))

        @qm.entrypoint("mark")
        async def mark(job: Any) -> None:
            started.put_nowait(time.perf_counter())

        worker = asyncio.create_task(qm.run(batch_size=1))
        await asyncio.sleep(1)  # let the worker start listening
        equeries = Queries(edriver)
        latencies = []
        for _ in range(samples):
            start = time.perf_counter()
            await equeries.enqueue("mark", None)
            latencies.append(await asyncio.wait_for(started.get(), 10) - start)
            await asyncio.sleep(SAMPLE_GAP_S)
        qm.shutdown.set()
        await asyncio.wait_for(worker, 30)
        out["latency"] = percentiles(latencies)
    return out


async def pgqueuer_drain(dsn: str, batch: int) -> None:
    """pgqueuer draining its queue with batch size = entrypoint concurrency limit = batch."""
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    async with pgqueuer_driver(dsn) as (driver, _):
        qm = QueueManager(Queries(driver))

        # the entrypoint limit caps the jobs in flight (batch_size alone does not)
        @qm.entrypoint("noop", concurrency_limit=batch)
        async def noop(job: Any) -> None:
            return None

        await qm.run(batch_size=batch, mode=QueueExecutionMode.drain)


async def duel(server_dsn: str, jobs: int, rounds: int, slots: int) -> dict[str, Any]:
    """deployq's ``slots``-slot pool against pgqueuer (batch = limit = ``slots``), the two
    drains one right after the other, in alternating order (ABBA...): on a machine whose
    load moves, each round's ratio compares like with like."""
    from pgqueuer.queries import Queries

    ours: list[float] = []
    theirs: list[float] = []
    with (
        database(f"bench_duel_dq_{uuid.uuid4().hex[:8]}", server_dsn) as dq_dsn,
        database(f"bench_duel_pgq_{uuid.uuid4().hex[:8]}", server_dsn) as pgq_dsn,
    ):
        store = await deployq_store(dq_dsn, slots + 2)
        try:
            await add_bench_app(store)
            async with pgqueuer_driver(pgq_dsn) as (driver, _):
                await Queries(driver).install()

            async def deployq_round() -> None:
                for _ in range(jobs):
                    await store.queue.enqueue(TRIGGER)
                ours.append(await timed_rate(jobs, lambda: drain_deployq(store, slots)))

            async def pgqueuer_round() -> None:
                async with pgqueuer_driver(pgq_dsn) as (driver, _):
                    queries = Queries(driver)
                    for _ in range(jobs):
                        await queries.enqueue("noop", None)
                theirs.append(await timed_rate(jobs, lambda: pgqueuer_drain(pgq_dsn, slots)))

            for n in range(rounds):
                pair = (deployq_round, pgqueuer_round)
                for measure in pair if n % 2 == 0 else pair[::-1]:
                    await measure()
        finally:
            await store.close()
    ratios = sorted(round(a / b, 2) for a, b in zip(ours, theirs, strict=True))
    return {
        "slots": slots,
        "deployq_per_s": ours,
        "pgqueuer_per_s": theirs,
        "ratio_per_round": [round(a / b, 2) for a, b in zip(ours, theirs, strict=True)],
        "ratio_median": ratios[len(ratios) // 2],
        "load_average": list(os.getloadavg()),
    }


def _pgqueuer_process(dsn: str, slots: int, ready: Any, go: Any, finished: Any) -> None:
    """One pgqueuer worker process draining with batch size = concurrency limit = slots."""
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    async def run() -> None:
        async with pgqueuer_driver(dsn) as (driver, _):
            qm = QueueManager(Queries(driver))

            @qm.entrypoint("noop", concurrency_limit=slots)
            async def noop(job: Any) -> None:
                return None

            ready.put(os.getpid())
            await asyncio.to_thread(go.wait)
            await qm.run(batch_size=slots, mode=QueueExecutionMode.drain)
            finished.put(time.monotonic())

    asyncio.run(run())


# -- main ------------------------------------------------------------------------------------


def ratios(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float]:
    keys = [
        "enqueue_per_s",
        *(f"drain_c{c}_per_s" for c in CONCURRENCY),
        f"drain_{PROCESSES}_processes_x{PROCESS_SLOTS}_per_s",
    ]
    return {k: round(ours[k] / theirs[k], 2) for k in keys if theirs.get(k)}


@contextlib.contextmanager
def server() -> Any:
    url = os.environ.get("DEPLOYQ_DATABASE_URL")
    if url:
        yield url
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="deployq-bench-") as tmp:
        pg = pgserver.get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        try:
            yield pg.get_uri("postgres")
        finally:
            pg.cleanup()


async def main_async(args: argparse.Namespace, server_dsn: str) -> dict[str, Any]:
    if args.duel:
        return {"jobs": args.jobs, "duel": await duel(server_dsn, args.jobs, args.duel, 16)}
    result: dict[str, Any] = {"jobs": args.jobs, "latency_samples": args.samples}
    with database(f"bench_deployq_{uuid.uuid4().hex[:8]}", server_dsn) as dsn:
        result["deployq"] = await deployq_bench(dsn, args.jobs, args.samples)
    if args.skip_peers:
        return result
    peers = {"procrastinate": procrastinate_bench, "pgqueuer": pgqueuer_bench}
    for name, bench in peers.items():
        with database(f"bench_{name}_{uuid.uuid4().hex[:8]}", server_dsn) as dsn:
            result[name] = await bench(dsn, args.jobs, args.samples)
        result[f"deployq_vs_{name}"] = ratios(result["deployq"], result[name])
    ours = result["deployq"]
    fastest = {
        f"drain_c{c}_per_s": max(result[p][f"drain_c{c}_per_s"] for p in peers) for c in CONCURRENCY
    }
    procs = f"drain_{PROCESSES}_processes_x{PROCESS_SLOTS}_per_s"
    result["targets"] = {
        "latency_p99_le_25ms": ours["latency"]["p99_ms"] <= 25,
        **{f"{k}_ge_faster_peer": ours[k] >= fastest[k] for k in fastest},
        # issue 15: 16 slots at least as fast as pgqueuer, in one process or in four
        f"{procs}_ge_pgqueuer": ours[procs] >= result["pgqueuer"][procs],
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per rate measure")
    parser.add_argument("--samples", type=int, default=200, help="latency samples")
    parser.add_argument("--skip-peers", action="store_true", help="measure deployq only")
    parser.add_argument(
        "--duel",
        type=int,
        metavar="ROUNDS",
        default=0,
        help="only deployq's 16 slots against pgqueuer's, alternated for ROUNDS rounds",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with server() as server_dsn:
        result = asyncio.run(main_async(args, server_dsn))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
