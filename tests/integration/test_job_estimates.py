"""Estimates: the expected duration is the median of the app's last 20 successful builds; the
expected start follows the app's serialisation and the servers' capacity; job show, the API
and the `started` e-mail show them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from deployq.models import AppSpec, JobStatus, NotifyEvent, TokenScope
from deployq.notify.render import render
from deployq.store import Outcome, Store
from deployq.webhooks.app import create_app
from integration.queue_helpers import SUCCESS, add_app, add_server, claim_one, enqueue
from integration.test_cli_jobs import Cli
from integration.webhook_helpers import token

Client = TestClient[Any, Any]
FINAL_FAILURE = Outcome(JobStatus.FAILED, error="exit 1", retryable=False)


async def _history(store: Store, app: str, durations: list[float], outcome: Outcome) -> None:
    """Finished builds of ``app`` that took ``durations`` seconds (oldest first)."""
    for n, seconds in enumerate(durations):
        job_id = await enqueue(store, app)
        lease = await claim_one(store)
        assert lease.id == job_id
        await store.leases.finish(lease, outcome)
        ended = len(durations) - n  # minutes ago: the last one is the newest
        async with store.pool.connection() as conn:
            await conn.execute(
                "UPDATE jobs SET started_at = now() - %s, finished_at = now() - %s WHERE id = %s",
                (
                    timedelta(minutes=ended, seconds=seconds),
                    timedelta(minutes=ended),
                    job_id,
                ),
            )


async def test_the_expected_duration_is_the_median_of_the_last_20_successful_builds(
    store: Store,
) -> None:
    await add_server(store, "local", capacity=1)
    await add_app(store, "web", branches=["*"])
    # 25 successes: the 5 oldest (1000 s) are beyond the last 20; failures do not count
    await _history(store, "web", [1000.0] * 5 + [10.0 * n for n in range(1, 21)], SUCCESS)
    await _history(store, "web", [5000.0], FINAL_FAILURE)
    queued = await enqueue(store, "web")

    estimate = (await store.estimates.for_jobs([queued]))[queued]

    assert estimate.expected_duration_s == pytest.approx(105.0)  # median of 10..200
    assert estimate.based_on == 20


async def test_the_expected_start_waits_for_the_app_and_for_a_free_slot(
    store: Store, client: Client
) -> None:
    await add_server(store, "local", capacity=2)
    await add_app(store, "web", branches=["*"], supersede_policy="queue")
    await add_app(store, "api")
    await _history(store, "web", [60.0, 60.0, 60.0], SUCCESS)
    await _history(store, "api", [30.0], SUCCESS)
    running = await enqueue(store, "web", branch="a")
    await claim_one(store)
    second_web = await enqueue(store, "web", branch="b")  # behind the running one: 60 s
    api = await enqueue(store, "api")  # a slot is free: now
    headers = await token(store, TokenScope.READ)

    web_json = await (await client.get(f"/api/v1/jobs/{second_web}", headers=headers)).json()
    api_json = await (await client.get(f"/api/v1/jobs/{api}", headers=headers)).json()
    run_json = await (await client.get(f"/api/v1/jobs/{running}", headers=headers)).json()

    assert 58 <= web_json["queue_position"]["estimated_wait_s"] <= 60
    assert web_json["estimate"]["expected_duration_s"] == 60.0
    assert web_json["estimate"]["based_on"] == 3
    assert api_json["queue_position"]["estimated_wait_s"] == 0.0
    assert api_json["estimate"]["expected_duration_s"] == 30.0
    assert run_json["estimate"]["expected_finish"] is not None
    assert "queue_position" not in run_json


async def test_job_show_says_how_long_it_should_take(
    store: Store, database_url: str, tmp_path: Any
) -> None:
    await add_server(store, "local")
    await add_app(store, "web")
    await _history(store, "web", [40.0, 50.0], SUCCESS)
    job_id = await enqueue(store, "web")

    code, out, err = await Cli(database_url, tmp_path)("job", "show", str(job_id))

    assert code == 0, err
    assert "expected   takes about 45s (median of its last 2 successful builds)" in out


async def test_the_started_email_carries_the_expected_duration(store: Store) -> None:
    await add_server(store, "local")
    await store.apps.add(
        AppSpec(
            name="web",
            repo_url="https://example.invalid/team/web.git",
            notify_emails=["ops@example.com"],
            notify_events=[NotifyEvent.STARTED],
        )
    )
    await _history(store, "web", [100.0, 140.0, 120.0], SUCCESS)
    await enqueue(store, "web")
    await claim_one(store)

    async with store.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT payload FROM notifications WHERE event = 'started' ORDER BY id DESC"
            )
        ).fetchone()
    assert row is not None
    mail = render(row["payload"])

    assert "Expected:  about 2m00s (median of the app's last 3 successful builds)" in mail.text
    assert "about 2m00s" in mail.html


async def test_an_app_without_history_is_expected_to_take_the_usual_time_of_all_apps(
    store: Store,
) -> None:
    await add_server(store, "local")
    await add_app(store, "old")
    await add_app(store, "new")
    await _history(store, "old", [30.0], SUCCESS)
    await _history(store, "old", [999.0], FINAL_FAILURE)
    job_id = await enqueue(store, "new")

    estimate = (await store.estimates.for_jobs([job_id]))[job_id]

    assert estimate.expected_duration_s == 30.0 and estimate.based_on == 0


@pytest.fixture
async def client(store: Store, aiohttp_client: Any) -> Client:
    result: Client = await aiohttp_client(create_app(store))
    return result
