"""deployq deploy | jobs | job show | logs | cancel | retry | stats | prune, as a subprocess."""

from __future__ import annotations

import asyncio
import getpass
import json
from datetime import timedelta
from pathlib import Path

import pytest

from deployq.models import JobStatus
from deployq.store import Outcome, Store
from fixtures.cli import AsyncCli as Cli
from integration.queue_helpers import FAILURE, SUCCESS, add_app, add_server, claim_one, enqueue


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Cli:
    return Cli(database_url, tmp_path)


async def test_deploy_queues_a_job_the_operator_asked_for(store: Store, cli: Cli) -> None:
    await add_app(store, "web", branches=["main"])

    code, out, err = await cli("deploy", "web", "--commit", "ABCDEF1234", "--priority", "high")

    assert code == 0, err
    [job] = await store.jobs.recent(app="web")
    assert out.strip() == f"queued job #{job.id} for web (main@abcdef1), position 1 in the queue"
    assert job.priority.name == "HIGH" and job.trigger.value == "manual"
    assert job.ref == "refs/heads/main" and job.pusher == getpass.getuser()
    events = await store.jobs.events(job.id)
    assert events[0].actor == getpass.getuser()


async def test_deploy_of_an_unknown_app_or_bad_sha_is_one_line(cli: Cli, store: Store) -> None:
    code, _, err = await cli("deploy", "nope")
    assert code == 1 and err.startswith("error: no app named 'nope'")
    await add_app(store, "web")
    code, _, err = await cli("deploy", "web", "--commit", "xyz")
    assert code == 1 and "is not a commit sha" in err and "Traceback" not in err


async def test_deploy_resolves_refs_as_the_api_and_console_do(cli: Cli, store: Store) -> None:
    await add_app(store, "web", branches=["release/*"])
    code, _, err = await cli("deploy", "web")
    assert code == 1 and "builds branches matching release/*, none of them one branch" in err
    code, _, err = await cli("deploy", "web", "--ref", "tags/v1.2")
    assert code == 0, err
    [job] = await store.jobs.recent(app="web")
    assert (job.ref, job.branch, job.ref_type.value) == ("refs/tags/v1.2", "v1.2", "tag")


async def test_jobs_lists_with_filters_and_wait_reasons(store: Store, cli: Cli) -> None:
    await add_server(store, "local", capacity=1)
    await add_app(store, "web")
    await add_app(store, "api")
    running = await enqueue(store, "web")
    await claim_one(store)
    waiting = await enqueue(store, "api")

    data = await cli.json("jobs", "--status", "queued")

    assert [(j["id"], j["wait_reason"]) for j in data] == [  # type: ignore[union-attr]
        (waiting, "all matching servers full")
    ]
    code, out, _ = await cli("jobs", "--app", "web")
    assert code == 0
    assert out.splitlines()[0].split() == [
        "ID", "APP", "REF", "STATUS", "SERVER", "TRY", "QUEUED", "NOTE"
    ]  # fmt: skip
    assert f"#{running}" in out and "running 0%" in out and f"#{waiting}" not in out


async def test_job_show_of_a_failed_build_shows_its_error_once_and_no_image(
    store: Store, cli: Cli
) -> None:
    await add_server(store, "local")
    await add_app(store, "web", max_attempts=1)
    await enqueue(store, "web")
    lease = await claim_one(store)
    error = "build failed on local: docker build failed (exit 1):\n#7 ERROR: exit code: 1"
    await store.leases.finish(
        lease, Outcome(JobStatus.FAILED, error=error, image_ref="127.0.0.1:5000/t/web:abc1234")
    )

    code, out, _ = await cli("job", "show", str(lease.id))

    assert code == 0
    assert "  trigger    manual\n" in out
    assert "  error      build failed on local: docker build failed (exit 1):\n" in out
    assert "\n             #7 ERROR: exit code: 1\n" in out
    assert out.count("#7 ERROR") == 1
    assert "failed: (error above)" in out
    assert "image" not in out
    data = await cli.json("job", "show", str(lease.id))
    assert data["image"] is None and data["pull"] is None


async def test_job_show_has_timeline_reason_and_position(store: Store, cli: Cli) -> None:
    await add_server(store, "local", capacity=1)
    await add_app(store, "web")
    first = await enqueue(store, "web")
    await claim_one(store)
    second = await enqueue(store, "web", branch="dev")

    data = await cli.json("job", "show", str(second))
    code, out, _ = await cli("job", "show", str(second))

    assert isinstance(data, dict)
    assert data["job"]["id"] == second
    assert data["wait_reason"] == f"app serialised behind #{first}"
    assert data["queue_position"]["position"] == 1
    assert [e["kind"] for e in data["events"]] == ["enqueued"]
    assert code == 0 and f"waiting    app serialised behind #{first}" in out
    assert "timeline" in out and "enqueued by tester: manual dev@" in out


async def test_cancel_and_retry(store: Store, cli: Cli) -> None:
    await add_app(store, "web")
    job_id = await enqueue(store, "web")

    code, out, _ = await cli("cancel", str(job_id))
    assert code == 0 and out.strip() == f"cancelled job #{job_id}"
    code, _, err = await cli("cancel", str(job_id))
    assert (
        code == 1 and err.strip() == f"error: job #{job_id} is cancelled already; nothing to cancel"
    )

    data = await cli.json("retry", str(job_id))
    assert isinstance(data, dict) and data["retry_of"] == job_id and data["status"] == "queued"
    events = await store.jobs.events(job_id)
    assert events[-1].actor == getpass.getuser()


async def test_logs_follow_prints_new_lines_until_the_job_ends(store: Store, cli: Cli) -> None:
    await add_server(store, "local")
    await add_app(store, "web")
    await enqueue(store, "web")
    lease = await claim_one(store)
    await store.logs.append(lease.id, ["step 1/3"], attempt=lease.attempt)

    proc = await cli.start("logs", str(lease.id), "-f")
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"step 1/3\n"
    await store.logs.append(lease.id, ["step 2/3", "step 3/3"], attempt=lease.attempt)
    assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"step 2/3\n"
    await store.leases.finish(lease, SUCCESS)

    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert out.decode() == "step 3/3\n"
    assert err.decode().strip().endswith(f"-- job #{lease.id} succeeded")


async def test_logs_follow_exits_1_with_the_error_when_the_job_fails(
    store: Store, cli: Cli
) -> None:
    await add_server(store, "local")
    await add_app(store, "web", max_attempts=1)
    await enqueue(store, "web")
    lease = await claim_one(store)
    proc = await cli.start("logs", str(lease.id), "-f")
    await store.logs.append(lease.id, ["building"], attempt=lease.attempt)
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"building\n"
    await store.leases.finish(lease, FAILURE)

    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert err.decode().strip() == f"error: job #{lease.id} failed: docker build exited with 1"


async def test_logs_without_follow_prints_what_is_there(store: Store, cli: Cli) -> None:
    await add_server(store, "local")
    await add_app(store, "web")
    await enqueue(store, "web")
    lease = await claim_one(store)
    await store.logs.append(lease.id, ["a", "b"], attempt=lease.attempt)

    code, out, _ = await cli("logs", str(lease.id))
    assert code == 0 and out == "a\nb\n"
    code, out, _ = await cli("logs", str(lease.id), "--json")
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [1, 2]


async def test_stats_and_prune(store: Store, cli: Cli) -> None:
    await add_server(store, "local")
    await add_app(store, "web")
    await enqueue(store, "web")
    lease = await claim_one(store)
    await store.logs.append(lease.id, ["x"], attempt=lease.attempt)
    done = await store.leases.finish(lease, SUCCESS)
    await enqueue(store, "web", branch="dev")

    stats = await cli.json("stats")
    code, out, _ = await cli("stats")

    assert isinstance(stats, dict) and stats["queued"] == 1 and stats["succeeded"] == 1
    assert stats["success_rate"] == 1.0 and stats["avg_build_s"] is not None
    assert code == 0 and out.startswith("last 7d, all apps (since ")
    assert "jobs      1 ended: 1 succeeded, 0 failed" in out
    assert "now       1 queued (oldest waiting " in out

    async with store.pool.connection() as conn:
        await conn.execute(
            "UPDATE jobs SET finished_at = now() - %s WHERE id = %s", (timedelta(days=31), done.id)
        )
    code, out, _ = await cli("prune", "--older-than", "30d", "--dry-run", "--no-registry")
    assert code == 0 and out.startswith("would prune 1 jobs finished over 30d ago: 1 log lines")
    assert "would prune the bodies of 0 webhook deliveries received over 14d ago (0 B)" in out
    assert len(await store.logs.read(done.id)) == 1  # a dry run deletes nothing
    assert await cli.json("prune", "--older-than", "30d", "--no-registry") == {
        "jobs": 1,
        "log_lines": 1,
        "events": 3,
        "notifications": 0,
        "scans": 0,
        "bodies": {"deliveries": 0, "bytes": 0},
        "registry": [],
        "keep_tags": 10,
        "dry_run": False,
    }
    assert (await store.jobs.get(done.id)).status is JobStatus.SUCCEEDED
    code, out, err = await cli("logs", str(done.id))
    assert code == 0 and out == ""
    assert err.strip() == f"the log of job #{done.id} was deleted by retention (prune)"
    code, _, err = await cli("prune", "--older-than", "soon")
    assert code == 1 and err.startswith("error: --older-than 'soon'")
    code, _, err = await cli("prune", "--bodies-older-than", "-3d")
    assert code == 1 and err.startswith("error: --bodies-older-than '-3d'")
