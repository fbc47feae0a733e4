"""What a claim reads does not grow with the queue (sql/022_claim_by_primary_key.sql).

Every claimer waits for the claim lock, so a claim that reads the whole queue slows every
worker. A young table (no statistics yet: a fresh install, a burst of pushes before
autovacuum's next ANALYZE) once made two of its plans read every queued job: the UPDATE of
the chosen jobs (sql/021) and the search for jobs of no app.

Known and left: on a young table with roughly 500 to 1,000 queued jobs of one app, the
search for that app's first jobs may read them all and sort them (the same plan as
f239fd2's; seen on PostgreSQL 15); from about 1,500, or once analyzed, it reads one."""

from __future__ import annotations

import psycopg

from deployq.models import SupersedePolicy
from deployq.store import Store
from integration.queue_helpers import add_app, add_server, push

QUEUED = 1500
#: a claim of one job reads a few rows of each kind (the servers' running jobs, the app's
#: first queued job, the job it takes); reading the queue would be thousands
MOST_ROWS = 40


async def rows_read_by_one_claim(store: Store) -> int:
    """Rows of jobs (heap and indexes) that one claim of one job read; rolled back."""
    async with await psycopg.AsyncConnection.connect(store.dsn) as conn:
        async with conn.transaction(force_rollback=True):
            claimed = await (
                await conn.execute(
                    "SELECT count(*) FROM deployq_claim('w', 1, interval '1 minute',"
                    " NULL, '{}', 1000)"
                )
            ).fetchone()
            assert claimed == (1,)
            row = await (
                await conn.execute(
                    "SELECT pg_stat_get_xact_tuples_returned('jobs'::regclass)"
                    " + (SELECT sum(pg_stat_get_xact_tuples_returned(i.indexrelid))"
                    "    FROM pg_index i WHERE i.indrelid = 'jobs'::regclass)"
                )
            ).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_one_job_claim_reads_a_handful_of_rows_with_a_long_queue(store: Store) -> None:
    await add_server(store, "one", capacity=4)
    await add_app(store, "busy", concurrency=64, supersede_policy=SupersedePolicy.QUEUE)
    await store.queue.enqueue_many([push("busy") for _ in range(QUEUED)])
    # a job running keeps the claim's counts honest (they read running jobs, not queued)
    assert len(await store.leases.claim("w0", limit=1)) == 1

    young = await rows_read_by_one_claim(store)
    async with store.connection() as conn:
        await conn.execute("ANALYZE jobs")
    analyzed = await rows_read_by_one_claim(store)

    assert young <= MOST_ROWS, f"a claim on the young table read {young} rows of jobs"
    assert analyzed <= MOST_ROWS, f"a claim on the analyzed table read {analyzed} rows"
