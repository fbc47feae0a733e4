"""Helpers shared by the webhook, API and spool tests: payload fixtures, signing, clients."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from deployq.models import App, AppSpec, TokenScope
from deployq.store import Store
from deployq.webhooks.signatures import github_signature

PAYLOADS = Path(__file__).resolve().parents[1] / "fixtures" / "payloads"
GITHUB_REPO_URL = "https://github.com/octo-org/octo-repo.git"
GITLAB_REPO_URL = "git@gitlab.example.com:mike/diaspora.git"
SECRET = "app-secret-1"


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text())
    return data


def body_of(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


async def add_app(store: Store, name: str = "web", **spec: Any) -> App:
    values: dict[str, Any] = {"repo_url": GITHUB_REPO_URL, "webhook_secret": SECRET}
    values.update(spec)
    return await store.apps.add(AppSpec(name=name, **values))


def github_headers(
    event: str,
    body: bytes,
    *,
    secret: str | None = SECRET,
    delivery: str | None = None,
    content_type: str = "application/json",
) -> dict[str, str]:
    headers = {
        "Content-Type": content_type,
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "User-Agent": "GitHub-Hookshot/044aadd",
    }
    if secret is not None:
        headers["X-Hub-Signature-256"] = github_signature(secret, body)
    return headers


async def post_github(
    client: TestClient[Any, Any],
    event: str,
    data: dict[str, Any] | bytes,
    **kwargs: Any,
) -> tuple[int, Any]:
    body = data if isinstance(data, bytes) else body_of(data)
    resp = await client.post(
        "/webhooks/github", data=body, headers=github_headers(event, body, **kwargs)
    )
    return resp.status, await resp.json()


def push_of(clone_url: str, sha: str, ref: str = "refs/heads/main") -> dict[str, Any]:
    """A GitHub push of ``sha`` to ``ref`` of the repository at ``clone_url`` (one the
    worker really clones: no web URLs to prefer over it)."""
    data = payload("github_push_branch")
    data.update(ref=ref, after=sha)
    data["head_commit"]["id"] = sha
    data["commits"] = [{**data["head_commit"], "added": [], "removed": [], "modified": []}]
    repo = data["repository"]
    repo.update(clone_url=clone_url, html_url=None, ssh_url=None, git_url=None, full_name=None)
    return data


async def send_github(
    session: aiohttp.ClientSession, base: str, event: str, data: dict[str, Any], *, secret: str
) -> tuple[str, int, float]:
    """POST a signed delivery to a running deployq at ``base``: (its delivery id, the
    answer's status, seconds until the answer was read)."""
    body = body_of(data)
    headers = github_headers(event, body, secret=secret)
    sent = time.monotonic()
    async with session.post(f"{base}/webhooks/github", data=body, headers=headers) as resp:
        await resp.read()
    return headers["X-GitHub-Delivery"], resp.status, time.monotonic() - sent


def gitlab_headers(
    event: str, *, token: str | None = SECRET, uuid_: str | None = None
) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "X-Gitlab-Event": event,
        "X-Gitlab-Event-UUID": uuid_ or str(uuid.uuid4()),
        "X-Gitlab-Instance": "https://gitlab.example.com",
    }
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return headers


async def token(store: Store, scope: TokenScope) -> dict[str, str]:
    _, plain = await store.tokens.create(f"test-{scope.value}", scope)
    return {"Authorization": f"Bearer {plain}"}
