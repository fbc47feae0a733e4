"""POST /webhooks/github against a real database: signed payload fixtures become jobs."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient
from webhook_helpers import (
    SECRET,
    add_app,
    body_of,
    github_headers,
    payload,
    post_github,
)

from deployq.models import App, JobStatus, RefType, TokenScope
from deployq.store import Store
from deployq.webhooks.app import STATE_KEY, create_app

Client = TestClient[Any, Any]


@pytest.fixture
async def client(store: Store, aiohttp_client: Any) -> Client:
    result: Client = await aiohttp_client(create_app(store))
    return result


async def test_push_to_a_branch_becomes_one_job_with_the_head_commit(
    store: Store, client: Client
) -> None:
    await add_app(store)
    data = payload("github_push_branch")
    status, reply = await post_github(client, "push", data, delivery="d-1")
    assert status == 202
    assert reply["result"] == "accepted"
    [job] = await store.jobs.recent()
    assert reply["jobs"][0]["id"] == job.id
    assert job.app_name == "web"
    assert job.delivery_id == "d-1"
    assert job.provider == "github"
    assert job.ref == "refs/heads/main"
    assert job.commit_sha == data["head_commit"]["id"]
    assert job.commit_message == "Add the api service"
    assert job.pusher == "Codertocat"
    assert job.repo_url == "https://github.com/octo-org/octo-repo.git"


async def test_the_form_encoded_payload_is_accepted_too(store: Store, client: Client) -> None:
    await add_app(store)
    body = urlencode({"payload": json.dumps(payload("github_push_branch"))}).encode()
    headers = github_headers("push", body, content_type="application/x-www-form-urlencoded")
    resp = await client.post("/webhooks/github", data=body, headers=headers)
    assert resp.status == 202, await resp.text()
    assert len(await store.jobs.recent()) == 1


async def test_the_global_secret_verifies_apps_without_their_own(
    store: Store, settings_factory: Any, aiohttp_client: Any
) -> None:
    settings = settings_factory(github_webhook_secret="global-secret")
    scoped = Store(store.pool, settings, store.dsn)
    await add_app(scoped, webhook_secret=None)
    client = await aiohttp_client(create_app(scoped))
    status, _ = await post_github(
        client, "push", payload("github_push_branch"), secret="global-secret"
    )
    assert status == 202
    status, _ = await post_github(client, "push", payload("github_push_branch"), secret=SECRET)
    assert status == 401


async def test_a_delivery_builds_only_the_apps_whose_secret_signed_it(
    store: Store, settings_factory: Any, aiohttp_client: Any
) -> None:
    # one repository, one hook per app, each hook with the secret of its app
    scoped = Store(store.pool, settings_factory(github_webhook_secret="global"), store.dsn)
    client = await aiohttp_client(create_app(scoped))
    await add_app(store, "web", webhook_secret="secret-web")
    await add_app(store, "api", webhook_secret="secret-api")
    await add_app(store, "docs", webhook_secret=None)
    data = payload("github_push_branch")
    status, reply = await post_github(client, "push", data, secret="secret-api", delivery="h1")
    assert status == 202
    assert [j["app"] for j in reply["jobs"]] == ["api"]
    status, reply = await post_github(client, "push", data, secret="global", delivery="h2")
    assert [j["app"] for j in reply["jobs"]] == ["docs"]
    [first, *_] = [d for d in await store.deliveries.recent() if d.delivery_id == "h1"]
    admin = await scoped.tokens.create("admin", TokenScope.ADMIN)
    resp = await client.post(
        f"/api/v1/deliveries/{first.id}/replay", headers={"Authorization": f"Bearer {admin[1]}"}
    )
    assert (await resp.json())["result"] == "duplicate"  # still only api's job
    assert sorted(j.app_name for j in await store.jobs.recent()) == ["api", "docs"]


@pytest.mark.parametrize("secret", ["forged-secret", None])
async def test_a_forged_or_missing_signature_is_401_and_creates_nothing(
    store: Store, client: Client, secret: str | None
) -> None:
    await add_app(store)
    status, reply = await post_github(client, "push", payload("github_push_branch"), secret=secret)
    assert status == 401
    assert reply["error"]["code"] == "bad_signature"
    assert await store.jobs.recent() == []
    [delivery] = await store.deliveries.recent()
    assert (delivery.result, delivery.status_code) == ("refused", 401)
    assert (await store.deliveries.get(delivery.id)).body is None


async def test_a_signature_of_another_body_is_401(store: Store, client: Client) -> None:
    await add_app(store)
    body = body_of(payload("github_push_branch"))
    headers = github_headers("push", body)
    tampered = body.replace(b"Add the api service", b"Add the evil service")
    resp = await client.post("/webhooks/github", data=tampered, headers=headers)
    assert resp.status == 401


async def test_a_redelivery_returns_the_first_jobs_and_creates_nothing(
    store: Store, client: Client
) -> None:
    await add_app(store)
    data = payload("github_push_branch")
    _, first = await post_github(client, "push", data, delivery="same-id")
    status, again = await post_github(client, "push", data, delivery="same-id")
    assert status == 200
    assert again["result"] == "duplicate"
    assert [j["id"] for j in again["jobs"]] == [j["id"] for j in first["jobs"]]
    assert len(await store.jobs.recent()) == 1
    results = [d.result for d in await store.deliveries.recent()]
    assert results == ["duplicate", "accepted"]


async def test_fifty_concurrent_redeliveries_make_one_job(store: Store, client: Client) -> None:
    await add_app(store)
    data = payload("github_push_branch")
    replies = await asyncio.gather(
        *(post_github(client, "push", data, delivery="storm") for _ in range(50))
    )
    assert {status for status, _ in replies} <= {200, 202}
    [job] = await store.jobs.recent()
    assert {r["jobs"][0]["id"] for _, r in replies} == {job.id}
    assert sum(1 for _, r in replies if r["result"] == "accepted") == 1


async def test_a_tag_push_builds_only_apps_with_tag_builds(store: Store, client: Client) -> None:
    await add_app(store, "web", build_tags=True)
    await add_app(store, "docs")
    status, reply = await post_github(client, "push", payload("github_push_tag"))
    assert status == 202
    [job] = await store.jobs.recent()
    assert (job.app_name, job.ref_type, job.branch) == ("web", RefType.TAG, "v1.0.0")
    assert reply["skipped"]["docs"] == "app docs does not build tags (app add --tags turns them on)"


async def test_a_tag_push_with_no_app_building_tags_is_ignored_with_the_reason(
    store: Store, client: Client
) -> None:
    await add_app(store)
    status, reply = await post_github(client, "push", payload("github_push_tag"))
    assert status == 202
    assert "app web does not build tags (app add --tags turns them on)" in reply["ignored"]
    assert await store.jobs.recent() == []


async def test_a_branch_deletion_is_acknowledged_and_ignored(store: Store, client: Client) -> None:
    await add_app(store)
    status, reply = await post_github(client, "push", payload("github_push_delete"))
    assert status == 202
    assert reply == {"ignored": "the push deleted branch feature/old: there is nothing to build"}
    assert await store.jobs.recent() == []
    [delivery] = await store.deliveries.recent()
    assert delivery.result == "ignored"


async def test_a_push_touching_no_path_of_the_app_is_skipped(store: Store, client: Client) -> None:
    await add_app(store, "api", paths=["services/api/**"])
    await add_app(store, "worker", paths=["services/worker/**"])
    status, reply = await post_github(client, "push", payload("github_push_branch"))
    assert status == 202
    assert [j["app"] for j in reply["jobs"]] == ["api"]
    assert reply["skipped"]["worker"] == (
        "no file changed under services/worker/**, the paths app worker builds for"
    )


async def test_skip_ci_in_the_head_commit_builds_nothing(store: Store, client: Client) -> None:
    await add_app(store)
    data = payload("github_push_branch")
    data["head_commit"]["message"] = "Fix typo [skip ci]"
    status, reply = await post_github(client, "push", data)
    assert status == 202
    assert "skip CI" in reply["ignored"]


@pytest.mark.parametrize(
    "fixture", ["github_pull_request_opened", "github_pull_request_synchronize"]
)
async def test_a_pull_request_builds_its_head_when_the_app_enables_pr_builds(
    store: Store, client: Client, fixture: str
) -> None:
    await add_app(store, build_prs=True)
    data = payload(fixture)
    status, _ = await post_github(client, "pull_request", data)
    assert status == 202
    [job] = await store.jobs.recent()
    assert job.ref == "refs/pull/2/head"
    assert (job.ref_type, job.branch) == (RefType.PULL_REQUEST, "pr-2")
    assert job.commit_sha == data["pull_request"]["head"]["sha"]
    assert job.status is JobStatus.QUEUED


async def test_a_pull_request_is_ignored_when_pr_builds_are_off(
    store: Store, client: Client
) -> None:
    await add_app(store)
    status, reply = await post_github(client, "pull_request", payload("github_pull_request_opened"))
    assert status == 202
    assert "does not build pull requests (app add --prs turns them on)" in reply["ignored"]


async def test_a_closed_pull_request_is_ignored(store: Store, client: Client) -> None:
    await add_app(store, build_prs=True)
    data = payload("github_pull_request_opened")
    data["action"] = "closed"
    status, reply = await post_github(client, "pull_request", data)
    assert status == 202
    assert reply == {
        "ignored": "pull request #2 was closed: only opened, reopened and updated pull "
        "requests are built"
    }


async def test_ping_is_answered_with_pong(store: Store, client: Client) -> None:
    await add_app(store)
    status, reply = await post_github(client, "ping", payload("github_ping"))
    assert (status, reply) == (200, {"pong": True})


async def test_an_unknown_repository_is_acknowledged_and_ignored(client: Client) -> None:
    status, reply = await post_github(client, "push", payload("github_push_branch"))
    assert status == 202
    assert reply == {"ignored": "no app is configured for repository github.com/octo-org/octo-repo"}


async def test_an_unknown_repository_can_be_a_404(
    store: Store, settings_factory: Any, aiohttp_client: Any
) -> None:
    scoped = Store(store.pool, settings_factory(unknown_repo_status=404), store.dsn)
    client = await aiohttp_client(create_app(scoped))
    status, reply = await post_github(client, "push", payload("github_push_branch"))
    assert status == 404
    assert reply["error"]["code"] == "unknown_repository"


async def test_apps_match_by_identity_whatever_url_form_they_were_added_with(
    store: Store, client: Client
) -> None:
    await add_app(store, repo_url="git@github.com:Octo-Org/octo-repo")
    status, _ = await post_github(client, "push", payload("github_push_branch"))
    assert status == 202
    assert len(await store.jobs.recent()) == 1


async def test_malformed_json_is_400(store: Store, client: Client) -> None:
    await add_app(store)
    body = b'{"ref": "refs/heads/main", '
    resp = await client.post("/webhooks/github", data=body, headers=github_headers("push", body))
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "bad_payload"


async def test_a_payload_of_the_wrong_shape_is_400_not_500(store: Store, client: Client) -> None:
    await add_app(store)
    for body in (b"[]", b'{"ref": 7}', b'{"action": "opened", "pull_request": "x"}'):
        event = "pull_request" if b"action" in body else "push"
        resp = await client.post("/webhooks/github", data=body, headers=github_headers(event, body))
        assert resp.status == 400, body


async def test_a_wrong_content_type_is_415(client: Client) -> None:
    body = b"ref=main"
    resp = await client.post(
        "/webhooks/github",
        data=body,
        headers=github_headers("push", body, content_type="text/plain"),
    )
    assert resp.status == 415
    assert (await resp.json())["error"]["code"] == "unsupported_media_type"


async def test_a_body_over_the_limit_is_413(
    store: Store, settings_factory: Any, aiohttp_client: Any
) -> None:
    scoped = Store(store.pool, settings_factory(webhook_max_body_bytes=4096), store.dsn)
    client = await aiohttp_client(create_app(scoped))
    body = b'{"pad": "' + b"x" * 5000 + b'"}'
    resp = await client.post("/webhooks/github", data=body, headers=github_headers("push", body))
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "payload_too_large"


async def test_every_delivery_is_recorded_and_verified_ones_keep_their_body(
    store: Store, client: Client
) -> None:
    await add_app(store)
    data = payload("github_push_branch")
    await post_github(client, "push", data, delivery="kept")
    [delivery] = await store.deliveries.recent()
    assert (delivery.provider, delivery.event, delivery.delivery_id) == ("github", "push", "kept")
    assert (delivery.repo, delivery.ref) == ("github.com/octo-org/octo-repo", "refs/heads/main")
    stored = await store.deliveries.get(delivery.id)
    assert stored.body == body_of(data)
    assert "X-Hub-Signature-256" not in stored.headers
    assert stored.headers["X-GitHub-Event"] == "push"


async def test_a_new_app_secret_verifies_at_once_despite_the_cache(
    store: Store, client: Client
) -> None:
    app = await add_app(store, webhook_secret="old-secret")
    status, _ = await post_github(
        client, "push", payload("github_push_branch"), secret="old-secret"
    )
    assert status == 202  # the old secret is now cached
    await store.apps.update(app.model_copy(update={"webhook_secret": "new-secret"}))
    status, _ = await post_github(
        client, "push", payload("github_push_branch"), secret="new-secret"
    )
    assert status == 202


async def test_deliveries_that_find_the_cached_apps_stale_at_once_share_one_read(
    store: Store, aiohttp_client: Any
) -> None:
    await add_app(store)
    web_app = create_app(store)
    client = await aiohttp_client(web_app)
    reads: list[list[str]] = []
    read_apps = store.apps.by_repos

    async def counted(identities: list[str]) -> list[App]:  # the real read, counted
        reads.append(identities)
        return await read_apps(identities)

    store.apps.by_repos = counted  # type: ignore[method-assign]
    web_app[STATE_KEY].apps.seen_at.clear()  # every entry stale, as when the TTL runs out
    data = payload("github_push_branch")
    answers = await asyncio.gather(*(post_github(client, "push", data) for _ in range(20)))
    assert [status for status, _ in answers] == [202] * 20
    assert len(reads) == 1


async def test_an_organisation_hook_ping_without_repository_is_answered(
    store: Store, settings_factory: Any, aiohttp_client: Any
) -> None:
    scoped = Store(store.pool, settings_factory(github_webhook_secret="org-secret"), store.dsn)
    client = await aiohttp_client(create_app(scoped))
    data = payload("github_ping")
    del data["repository"]
    status, reply = await post_github(client, "ping", data, secret="org-secret")
    assert (status, reply) == (200, {"pong": True})
    status, _ = await post_github(client, "ping", data, secret="not-it")
    assert status == 401
