"""Releases, rollbacks and targets through the store and /api/v1, on a real database (the
deploys themselves run for real in tests/e2e/test_deploy_e2e.py)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from queue_helpers import add_app, add_server, claim_one, enqueue
from webhook_helpers import token

from deployq.errors import Conflict, NotFound
from deployq.models import DeploySettings, Job, JobStatus, TokenScope
from deployq.store import Outcome, Store
from deployq.webhooks.app import create_app
from deployq.worker.targets import probe_targets

Client = TestClient[Any, Any]
RUN = DeploySettings(targets=["prod"], env={"API_KEY": "k-very-secret"})


@pytest.fixture
async def client(store: Store, aiohttp_client: Any) -> Client:
    result: Client = await aiohttp_client(create_app(store))
    return result


async def built(store: Store, app: str, digit: str) -> Job:
    """A succeeded job of ``app`` that pushed ``sha256:<digit * 64>`` and now runs on prod."""
    await enqueue(store, app)
    lease = await claim_one(store)
    digest = "sha256:" + digit * 64
    job = await store.leases.finish(
        lease,
        Outcome(JobStatus.SUCCEEDED, image_ref=f"reg/{app}:{digit * 7}", image_digest=digest),
    )
    await store.deploy.record_release(
        job,
        target="prod",
        image_ref=job.image_ref or "",
        digest=digest,
        commit_sha=job.commit_sha,
        container=f"deployq-{app}-{job.id}-1",
    )
    return job


async def test_each_release_replaces_the_current_one_and_a_rollback_takes_the_one_before(
    store: Store,
) -> None:
    await add_server(store, "b1")
    await store.deploy.add_target("prod", "unix:///var/run/docker.sock")
    await add_app(store, "web", deploy=RUN)
    first = await built(store, "web", "1")
    second = await built(store, "web", "2")

    [now] = await store.deploy.current_releases("web")
    assert (now.job_id, now.digest) == (second.id, second.image_digest)
    releases = await store.deploy.releases("web")
    assert [(r.job_id, r.current) for r in releases] == [(second.id, True), (first.id, False)]

    source = await store.deploy.rollback_source("web")
    assert source.id == first.id
    assert (await store.deploy.rollback_source("web", digest="1" * 12)).id == first.id
    rollback = await store.deploy.enqueue_rollback("web", source, actor="alice")
    assert rollback.deploy_only and rollback.trigger.value == "rollback"
    assert (rollback.image_digest, rollback.commit_sha) == (first.image_digest, first.commit_sha)
    assert rollback.status is JobStatus.QUEUED

    # the rollback is a job of the app like a build: claimed in order, one at a time
    lease = await claim_one(store)
    assert lease.id == rollback.id and lease.job.deploy_only

    with pytest.raises(NotFound, match="no succeeded job of web with an image sha256:9"):
        await store.deploy.rollback_source("web", digest="sha256:" + "9" * 64)
    with pytest.raises(Conflict, match="is running and pushed no image"):
        await store.deploy.rollback_source("web", job_id=rollback.id)


async def test_the_api_lists_releases_and_queues_rollbacks_with_scopes(
    store: Store, client: Client
) -> None:
    await add_server(store, "b1")
    await store.deploy.add_target("prod", "unix:///var/run/docker.sock")
    await add_app(store, "web", deploy=RUN)
    first = await built(store, "web", "1")
    second = await built(store, "web", "2")
    read = await token(store, TokenScope.READ)
    deploy = await token(store, TokenScope.DEPLOY)

    resp = await client.get("/api/v1/apps/web/releases", headers=read)
    assert resp.status == 200
    body = await resp.json()
    assert [r["job_id"] for r in body["current"]] == [second.id]
    assert [r["job_id"] for r in body["releases"]] == [second.id, first.id]

    app = await (await client.get("/api/v1/apps/web", headers=read)).json()
    assert app["deploy"]["env"] == ["API_KEY"]  # names only, never the values
    assert "k-very-secret" not in str(app)

    assert (await client.post("/api/v1/apps/web/rollbacks", headers=read)).status == 403
    resp = await client.post("/api/v1/apps/web/rollbacks", json={"to": first.id}, headers=deploy)
    assert resp.status == 202, await resp.text()
    job = (await resp.json())["job"]
    assert (job["deploy_only"], job["image_digest"]) == (True, first.image_digest)

    bad = await client.post(
        "/api/v1/apps/web/rollbacks", json={"to": first.id, "digest": "x"}, headers=deploy
    )
    assert bad.status == 400
    missing = await client.post("/api/v1/apps/nope/rollbacks", json={}, headers=deploy)
    assert missing.status == 404
    targets = await (await client.get("/api/v1/targets", headers=read)).json()
    assert [t["name"] for t in targets["targets"]] == ["prod"]


@pytest.mark.docker
async def test_workers_probe_targets_and_record_what_answered(
    store: Store, docker_host: str, tmp_path: Any
) -> None:
    await store.deploy.add_target("here", docker_host)
    await store.deploy.add_target("gone", f"unix://{tmp_path}/no-docker.sock")
    await probe_targets(store)
    here, gone = await store.deploy.target("here"), await store.deploy.target("gone")
    assert here.healthy and here.engine_version and here.last_error is None
    assert not gone.healthy and gone.last_probe_at is not None
    assert gone.last_error is not None and "does not answer" in gone.last_error
