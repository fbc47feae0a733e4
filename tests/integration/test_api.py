"""The REST API /api/v1 on a real database: tokens and scopes, deployments, jobs, logs (plain
and live over SSE), deliveries and their replay, metrics, the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from webhook_helpers import add_app, payload, post_github, token

from deployq.models import JobStatus, TokenScope, Trigger, TriggerKind
from deployq.store import Store
from deployq.webhooks.api import ROUTES
from deployq.webhooks.app import create_app
from deployq.webhooks.openapi import openapi_document

Client = TestClient[Any, Any]


@pytest.fixture
async def client(store: Store, aiohttp_client: Any) -> Client:
    result: Client = await aiohttp_client(create_app(store))
    return result


async def manual_job(store: Store, app: str = "web") -> int:
    result = await store.queue.enqueue(
        Trigger(kind=TriggerKind.MANUAL, app=app, ref="refs/heads/main", actor="test")
    )
    return result.jobs[0].id


async def test_without_a_token_the_api_is_401(client: Client) -> None:
    resp = await client.get("/api/v1/jobs")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await resp.json())["error"]["code"] == "unauthorized"
    resp = await client.get("/api/v1/jobs", headers={"Authorization": "Bearer dq_unknown"})
    assert resp.status == 401


async def test_a_revoked_token_is_401(store: Store, client: Client) -> None:
    created, plain = await store.tokens.create("gone", TokenScope.ADMIN)
    await store.tokens.revoke(created.id)
    resp = await client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {plain}"})
    assert resp.status == 401


async def test_a_read_token_cannot_deploy_and_a_deploy_token_cannot_replay(
    store: Store, client: Client
) -> None:
    await add_app(store)
    read = await token(store, TokenScope.READ)
    deploy = await token(store, TokenScope.DEPLOY)
    resp = await client.post("/api/v1/apps/web/deployments", json={}, headers=read)
    assert resp.status == 403
    assert "scope deploy" in (await resp.json())["error"]["message"]
    resp = await client.post("/api/v1/deliveries/1/replay", headers=deploy)
    assert resp.status == 403
    assert (await client.get("/api/v1/jobs", headers=deploy)).status == 200


async def test_a_manual_deployment_is_202_with_its_job(store: Store, client: Client) -> None:
    await add_app(store)
    headers = await token(store, TokenScope.DEPLOY)
    body = {"ref": "release", "commit": "ABCDEF1", "priority": "high"}
    resp = await client.post("/api/v1/apps/web/deployments", json=body, headers=headers)
    assert resp.status == 202, await resp.text()
    [job] = (await resp.json())["jobs"]
    assert job["priority"] == "high"
    assert job["pusher"] == "test-deploy"  # the token's name
    assert (job["ref"], job["branch"], job["ref_type"]) == (
        "refs/heads/release",
        "release",
        "branch",
    )
    stored = await store.jobs.get(job["id"])
    assert (stored.ref, stored.commit_sha, stored.priority.name) == (
        "refs/heads/release",
        "abcdef1",
        "HIGH",
    )
    assert stored.trigger is TriggerKind.MANUAL
    events = await store.jobs.events(stored.id)
    assert events[0].actor == "token:test-deploy"


@pytest.mark.parametrize(
    "body",
    [
        {"commit": "not-a-sha"},
        {"priority": "urgent"},
        {"priority": "\u00b2"},
        {"ref": 3},
        {"ref": "release/*"},
        {"ref": "a..b"},
        {"ref": "refs/remotes/origin/main"},
        {"commit": "abc"},
        {"priority": True},
        {"branch": "main"},
        [1],
    ],
)
async def test_a_bad_deployment_request_is_400(store: Store, client: Client, body: Any) -> None:
    await add_app(store)
    headers = await token(store, TokenScope.DEPLOY)
    resp = await client.post("/api/v1/apps/web/deployments", json=body, headers=headers)
    assert resp.status == 400
    assert await store.jobs.recent() == []


@pytest.mark.parametrize("job_id", ["\u00b9", "\u0663", "0", "99999999999999999999"])
async def test_ids_no_job_can_have_are_404(store: Store, client: Client, job_id: str) -> None:
    # "¹" is a digit to str.isdigit() but not to int() (found by schemathesis); ids are ASCII
    headers = await token(store, TokenScope.READ)
    resp = await client.get(f"/api/v1/jobs/{job_id}", headers=headers)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_deploying_an_unknown_app_is_404(store: Store, client: Client) -> None:
    headers = await token(store, TokenScope.DEPLOY)
    resp = await client.post("/api/v1/apps/nope/deployments", json={}, headers=headers)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


async def test_apps_are_listed_without_their_secrets(store: Store, client: Client) -> None:
    await add_app(store, build_secrets={"NPM_TOKEN": "s3cret-npm"})
    headers = await token(store, TokenScope.READ)
    resp = await client.get("/api/v1/apps", headers=headers)
    text = await resp.text()
    assert "app-secret-1" not in text and "s3cret-npm" not in text
    [app] = json.loads(text)["apps"]
    assert app["has_webhook_secret"] is True
    assert app["build_secrets"] == ["NPM_TOKEN"]
    one = await (await client.get("/api/v1/apps/web", headers=headers)).json()
    assert one["name"] == "web" and "webhook_secret" not in one


async def test_jobs_are_listed_filtered_and_paged(store: Store, client: Client) -> None:
    await add_app(store)
    await add_app(store, "api")
    ids = [await manual_job(store, "web"), await manual_job(store, "api")]
    headers = await token(store, TokenScope.READ)
    listed = await (await client.get("/api/v1/jobs?app=api", headers=headers)).json()
    assert [j["id"] for j in listed["jobs"]] == [ids[1]]
    paged = await (await client.get(f"/api/v1/jobs?before={ids[1]}", headers=headers)).json()
    assert [j["id"] for j in paged["jobs"]] == [ids[0]]
    resp = await client.get("/api/v1/jobs?status=bogus", headers=headers)
    assert resp.status == 400
    resp = await client.get("/api/v1/jobs?limit=0", headers=headers)
    assert resp.status == 400
    one = await (await client.get(f"/api/v1/jobs/{ids[0]}", headers=headers)).json()
    assert one["status"] == "queued" and one["events"][0]["kind"] == "enqueued"
    assert one["wait_reason"]  # no build server registered: it says why it waits
    assert one["queue_position"]["position"] == 1
    stats = await (await client.get("/api/v1/queue/stats", headers=headers)).json()
    assert stats["queued"] == 2
    assert (await client.get("/api/v1/jobs/99999999999999999999", headers=headers)).status == 404


async def test_cancel_and_retry(store: Store, client: Client) -> None:
    await add_app(store)
    job_id = await manual_job(store)
    headers = await token(store, TokenScope.DEPLOY)
    resp = await client.post(f"/api/v1/jobs/{job_id}/cancel", headers=headers)
    assert (resp.status, (await resp.json())["status"]) == (200, "cancelled")
    resp = await client.post(f"/api/v1/jobs/{job_id}/cancel", headers=headers)
    assert resp.status == 409
    resp = await client.post(f"/api/v1/jobs/{job_id}/retry", headers=headers)
    assert resp.status == 202
    retried = await resp.json()
    assert (retried["retry_of"], retried["status"]) == (job_id, "queued")


async def test_plain_logs(store: Store, client: Client) -> None:
    await add_app(store)
    job_id = await manual_job(store)
    await store.logs.append(job_id, ["step 1", "step 2"])
    headers = await token(store, TokenScope.READ)
    resp = await client.get(f"/api/v1/jobs/{job_id}/logs", headers=headers)
    assert resp.content_type == "text/plain"
    assert await resp.text() == "step 1\nstep 2\n"


async def read_event(resp: ClientResponse) -> dict[str, str]:
    """The next server-sent event (comments such as pings skipped)."""
    event: dict[str, str] = {}
    while True:
        line = (await resp.content.readline()).decode().rstrip("\r\n")
        if not line:
            if event:
                return event
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(": ")
        event[key] = event[key] + "\n" + value if key in event else value


async def test_sse_resumes_after_last_event_id_follows_live_and_ends(
    store: Store, client: Client
) -> None:
    await add_app(store)
    job_id = await manual_job(store)
    await store.logs.append(job_id, ["one", "two", "three"])
    headers = {**await token(store, TokenScope.READ), "Accept": "text/event-stream"}
    resp = await client.get(
        f"/api/v1/jobs/{job_id}/logs", headers={**headers, "Last-Event-ID": "1"}
    )
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    async with asyncio.timeout(20):
        assert await read_event(resp) == {"id": "2", "data": "two"}
        assert await read_event(resp) == {"id": "3", "data": "three"}
        await store.logs.append(job_id, ["four"])
        assert await read_event(resp) == {"id": "4", "data": "four"}
        await store.jobs.cancel(job_id, actor="test")
        end = await read_event(resp)
    assert end["event"] == "end"
    assert json.loads(end["data"])["status"] == JobStatus.CANCELLED.value
    resp.close()


async def test_log_followers_share_one_listen_connection(store: Store, client: Client) -> None:
    await add_app(store)
    jobs = [await manual_job(store), await manual_job(store)]
    headers = {**await token(store, TokenScope.READ), "Accept": "text/event-stream"}
    streams = []
    for job_id in jobs:
        await store.logs.append(job_id, [f"hello {job_id}"])
        resp = await client.get(f"/api/v1/jobs/{job_id}/logs", headers=headers)
        async with asyncio.timeout(20):
            assert (await read_event(resp))["data"] == f"hello {job_id}"
        streams.append(resp)
    async with store.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'LISTEN%%'"
            )
        ).fetchone()
    assert row is not None and row["n"] == 1
    for resp in streams:
        resp.close()


async def test_deliveries_are_listed_and_an_admin_can_replay_one(
    store: Store, client: Client
) -> None:
    status, _ = await post_github(client, "push", payload("github_push_branch"), secret=None)
    assert status == 202  # no app yet: ignored, and unverifiable, so not kept
    await add_app(store, webhook_secret=None)
    settings = store.settings.model_copy(update={})
    assert settings.github_webhook_secret is None
    admin = await token(store, TokenScope.ADMIN)
    [first] = (await (await client.get("/api/v1/deliveries", headers=admin)).json())["deliveries"]
    assert first["result"] == "ignored"
    resp = await client.post(f"/api/v1/deliveries/{first['id']}/replay", headers=admin)
    assert resp.status == 409  # it was never verified, so its body was not kept


async def test_replaying_a_verified_delivery_builds_an_app_added_since(
    store: Store, client: Client
) -> None:
    await add_app(store, "web")
    await post_github(client, "push", payload("github_push_branch"), delivery="r-1")
    await add_app(store, "api")
    admin = await token(store, TokenScope.ADMIN)
    [first] = (await (await client.get("/api/v1/deliveries", headers=admin)).json())["deliveries"]
    resp = await client.post(f"/api/v1/deliveries/{first['id']}/replay", headers=admin)
    assert resp.status in (200, 202)
    apps = sorted(j.app_name for j in await store.jobs.recent())
    assert apps == ["api", "web"]
    again = await client.post(f"/api/v1/deliveries/{first['id']}/replay", headers=admin)
    assert (await again.json())["result"] == "duplicate"
    assert len(await store.jobs.recent()) == 2
    [latest, *_] = await store.deliveries.recent()
    assert latest.replay_of == first["id"]


async def test_metrics_count_webhooks_and_jobs(store: Store, client: Client) -> None:
    await add_app(store)
    await post_github(client, "push", payload("github_push_branch"))
    await post_github(client, "push", payload("github_push_branch"), secret="forged")
    text = await (await client.get("/metrics")).text()
    assert 'deployq_webhooks_total{provider="github",result="accepted"} 1.0' in text
    assert 'deployq_webhooks_total{provider="github",result="refused"} 1.0' in text
    assert 'deployq_jobs{status="queued"} 1.0' in text
    assert "deployq_queue_depth 1.0" in text
    assert 'deployq_build_duration_seconds_bucket{le="+Inf"} 0.0' in text


async def test_openapi_describes_every_route(client: Client) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    assert doc == json.loads(json.dumps(openapi_document()))
    for route in ROUTES:
        assert route.method.lower() in doc["paths"][route.path], route.path
    for path in ("/webhooks/github", "/webhooks/gitlab", "/healthz", "/readyz", "/metrics"):
        assert path in doc["paths"]


async def test_unknown_routes_and_methods_are_json_errors(client: Client) -> None:
    resp = await client.get("/nowhere")
    assert (resp.status, (await resp.json())["error"]["code"]) == (404, "not_found")
    resp = await client.get("/webhooks/github")
    assert (resp.status, (await resp.json())["error"]["code"]) == (405, "method_not_allowed")
