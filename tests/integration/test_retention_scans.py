"""Retention of Harbor scan rows (``job_scans``, the collector's worklist) on a real database:
prune deletes the finished scan rows of the jobs it prunes, keeps a scan still being
collected and the rows of recent jobs, and the job keeps its result (``scan_summary``);
migration 018 drops the finished scan rows of jobs an older deployq pruned."""

from __future__ import annotations

from datetime import timedelta

from deployq.db.migrate import migrations_dir
from deployq.models import AppSpec, JobStatus, Trigger, TriggerKind
from deployq.store import Outcome, Store

DIGEST = "sha256:" + "cd" * 32
DONE = {"state": "done", "critical": 1, "high": 2}
MIGRATION_018 = migrations_dir() / "018_prune_scans_of_pruned_jobs.sql"


async def job_with_scan(store: Store, summary: dict[str, object]) -> int:
    """A succeeded job whose image was sent to Harbor's scanner, its scan in ``summary``'s
    state (a final one as the collector leaves it)."""
    await store.queue.enqueue(Trigger(kind=TriggerKind.MANUAL, app="web", ref="refs/heads/main"))
    [lease] = await store.leases.claim("w", limit=1)
    await store.scans.record(
        lease,
        project="deployq",
        repository="web",
        digest=DIGEST,
        summary={"state": "requested"},
        first_poll_s=3600,
        deadline_s=7200,
    )
    job = await store.leases.finish(lease, Outcome(JobStatus.SUCCEEDED))
    if summary["state"] != "requested":
        assert await store.scans.finish(job.id, summary)
    return job.id


async def scan_rows(store: Store) -> set[int]:
    async with store.pool.connection() as conn:
        rows = await (await conn.execute("SELECT job_id FROM job_scans")).fetchall()
    return {row["job_id"] for row in rows}


async def test_prune_deletes_the_finished_scan_rows_of_the_jobs_it_prunes(store: Store) -> None:
    await store.servers.add("local", "unix:///var/run/docker.sock", capacity=4)
    await store.apps.add(AppSpec(name="web", repo_url="https://github.com/acme/web.git"))
    old_done = await job_with_scan(store, DONE)
    old_unavailable = await job_with_scan(store, {"state": "unavailable", "reason": "no scanner"})
    old_pending = await job_with_scan(store, {"state": "requested"})
    recent = await job_with_scan(store, DONE)
    async with store.pool.connection() as conn:
        await conn.execute(
            "UPDATE jobs SET finished_at = now() - %s WHERE id = ANY(%s)",
            (timedelta(days=40), [old_done, old_unavailable, old_pending]),
        )

    dry = await store.retention.prune(30 * 86400, dry_run=True)
    assert dry["jobs"] == 3 and dry["scans"] == 2
    assert await scan_rows(store) == {old_done, old_unavailable, old_pending, recent}

    counts = await store.retention.prune(30 * 86400, batch_size=2)

    assert counts["jobs"] == 3 and counts["scans"] == 2
    # a scan still being collected stays on the collector's worklist
    assert await scan_rows(store) == {old_pending, recent}
    job = await store.jobs.get(old_done)
    assert job.scan_summary is not None and job.scan_summary["critical"] == 1  # result stays
    assert (await store.retention.prune(30 * 86400))["scans"] == 0


async def test_migration_018_drops_the_scan_rows_an_older_prune_left_behind(
    store: Store,
) -> None:
    await store.servers.add("local", "unix:///var/run/docker.sock", capacity=4)
    await store.apps.add(AppSpec(name="web", repo_url="https://github.com/acme/web.git"))
    pruned_done = await job_with_scan(store, DONE)
    pruned_pending = await job_with_scan(store, {"state": "requested"})
    kept = await job_with_scan(store, DONE)
    async with store.pool.connection() as conn:  # as an older deployq's prune left them
        await conn.execute(
            "UPDATE jobs SET pruned_at = now() WHERE id = ANY(%s)",
            ([pruned_done, pruned_pending],),
        )
        # the migration's statement (it ran already, on an empty table, when the fixture
        # migrated the database)
        await conn.execute(MIGRATION_018.read_text())

    assert await scan_rows(store) == {pruned_pending, kept}
    assert (await store.jobs.get(pruned_done)).scan_summary is not None
