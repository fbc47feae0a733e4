"""POST /webhooks/gitlab: Push Hook, Tag Push Hook, Merge Request Hook, X-Gitlab-Token."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from webhook_helpers import GITLAB_REPO_URL, add_app, gitlab_headers, payload

from deployq.models import RefType
from deployq.store import Store
from deployq.webhooks.app import create_app

Client = TestClient[Any, Any]


@pytest.fixture
async def client(store: Store, aiohttp_client: Any) -> Client:
    result: Client = await aiohttp_client(create_app(store))
    return result


async def post(client: Client, event: str, data: dict[str, Any], **kw: Any) -> tuple[int, Any]:
    resp = await client.post(
        "/webhooks/gitlab", data=json.dumps(data), headers=gitlab_headers(event, **kw)
    )
    return resp.status, await resp.json()


async def test_a_push_hook_becomes_a_job_for_the_checkout_sha(store: Store, client: Client) -> None:
    await add_app(store, "diaspora", repo_url=GITLAB_REPO_URL, branches=["master"])
    data = payload("gitlab_push")
    status, reply = await post(client, "Push Hook", data, uuid_="gl-1")
    assert status == 202, reply
    [job] = await store.jobs.recent()
    assert (job.provider, job.delivery_id, job.ref) == ("gitlab", "gl-1", "refs/heads/master")
    assert job.commit_sha == data["checkout_sha"]
    assert job.commit_message == "fixed readme"
    assert job.pusher == "jsmith"


async def test_a_tag_push_hook_builds_the_tag_when_tag_builds_are_on(
    store: Store, client: Client
) -> None:
    await add_app(store, "diaspora", repo_url=GITLAB_REPO_URL, build_tags=True)
    status, _ = await post(client, "Tag Push Hook", payload("gitlab_tag_push"))
    assert status == 202
    [job] = await store.jobs.recent()
    assert (job.ref_type, job.branch) == (RefType.TAG, "v1.0.0")


async def test_a_merge_request_hook_builds_the_last_commit_with_pr_builds(
    store: Store, client: Client
) -> None:
    await add_app(store, "diaspora", repo_url=GITLAB_REPO_URL, build_prs=True)
    status, _ = await post(client, "Merge Request Hook", payload("gitlab_merge_request"))
    assert status == 202
    [job] = await store.jobs.recent()
    assert job.ref == "refs/merge-requests/1/head"
    assert (job.ref_type, job.branch) == (RefType.PULL_REQUEST, "mr-1")
    assert job.commit_sha == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"


async def test_a_merge_request_update_without_new_commits_is_ignored(
    store: Store, client: Client
) -> None:
    await add_app(store, "diaspora", repo_url=GITLAB_REPO_URL, build_prs=True)
    data = payload("gitlab_merge_request")
    data["object_attributes"]["action"] = "update"
    status, reply = await post(client, "Merge Request Hook", data)
    assert status == 202
    assert reply == {"ignored": "the merge request update has no new commits"}


async def test_a_branch_deletion_is_ignored(store: Store, client: Client) -> None:
    await add_app(store, "diaspora", repo_url=GITLAB_REPO_URL, branches=["master"])
    data = payload("gitlab_push")
    data.update(after="0" * 40, checkout_sha=None, commits=[], total_commits_count=0)
    status, reply = await post(client, "Push Hook", data)
    assert status == 202
    assert reply == {"ignored": "the push deleted branch master: there is nothing to build"}


@pytest.mark.parametrize("token", ["wrong-token", None])
async def test_a_wrong_or_missing_token_is_401(
    store: Store, client: Client, token: str | None
) -> None:
    await add_app(store, "diaspora", repo_url=GITLAB_REPO_URL, branches=["master"])
    status, reply = await post(client, "Push Hook", payload("gitlab_push"), token=token)
    assert status == 401
    assert reply["error"]["code"] == "bad_signature"
    assert await store.jobs.recent() == []


async def test_a_redelivered_event_uuid_creates_nothing(store: Store, client: Client) -> None:
    await add_app(store, "diaspora", repo_url=GITLAB_REPO_URL, branches=["master"])
    await post(client, "Push Hook", payload("gitlab_push"), uuid_="same")
    status, reply = await post(client, "Push Hook", payload("gitlab_push"), uuid_="same")
    assert (status, reply["result"]) == (200, "duplicate")
    assert len(await store.jobs.recent()) == 1
