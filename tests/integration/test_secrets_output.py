"""Secrets never in output: every path that shows an app or a job is grepped for the secrets
the test configured (CLI text and --json, the API to a read token, the notification e-mail and
outgoing webhook). A repository URL with credentials is refused by `app add`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from webhook_helpers import token

from deployq.config import Settings
from deployq.models import AppSpec, NotifyEvent, TokenScope, Trigger, TriggerKind
from deployq.notify.render import render, webhook_text
from deployq.store import Store
from deployq.webhooks.app import create_app


def _secret(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


@pytest.fixture
def secrets() -> dict[str, str]:
    return {
        name: _secret(name)
        for name in (
            "url_password", "webhook", "build", "notify", "notify_url_password", "forge", "git",
            "registry",
        )
    }  # fmt: skip


def deployq(database_url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    env.update(DEPLOYQ_DATABASE_URL=database_url, DEPLOYQ_DATA_DIR=str(data_dir))
    return subprocess.run(
        [sys.executable, "-m", "deployq", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def assert_clean(where: str, text: str, secrets: dict[str, str]) -> None:
    leaked = [name for name, value in secrets.items() if value in text]
    assert not leaked, f"{where} shows {leaked}: {text[:2000]}"


async def test_a_repository_url_with_credentials_is_refused_by_app_add(
    database_url: str, tmp_path: Path
) -> None:
    password = _secret("pw")
    result = deployq(
        database_url,
        tmp_path,
        "app",
        "add",
        "web",
        "--repo",
        f"https://robot:{password}@git.example.com/team/web.git",
    )
    assert result.returncode == 1
    assert "DEPLOYQ_GIT_TOKEN" in result.stderr and "refused" in result.stderr
    assert password not in result.stdout + result.stderr
    token_only = deployq(
        database_url,
        tmp_path,
        "app",
        "add",
        "web",
        "--repo",
        f"https://{password}@git.example.com/team/web.git",
    )
    assert token_only.returncode == 1 and password not in token_only.stderr


@pytest.mark.slow
async def test_no_output_path_shows_a_configured_secret(
    store: Store,
    settings: Settings,
    database_url: str,
    aiohttp_client: Any,
    secrets: dict[str, str],
) -> None:
    await store.servers.add("local", "unix:///var/run/docker.sock", capacity=1)
    # an app stored before credentials in URLs were refused
    legacy = AppSpec.model_construct(
        **{
            **AppSpec(name="web", repo_url="https://git.example.com/team/web.git").model_dump(),
            "repo_url": f"https://robot:{secrets['url_password']}@git.example.com/team/web.git",
            "webhook_secret": secrets["webhook"],
            "build_secrets": {"NPM_TOKEN": secrets["build"]},
            "notify_webhook_secret": secrets["notify"],
            "forge_token": secrets["forge"],
            "git_token": secrets["git"],
            "registry_username": "robot$deployq+web",
            "registry_password": secrets["registry"],
            "notify_webhook_url": (
                f"https://hook:{secrets['notify_url_password']}@chat.example.com/hook"
            ),
            "notify_emails": ["ops@example.com"],
            "notify_events": [NotifyEvent.QUEUED],
        }
    )
    await store.apps.add(legacy)
    [job] = (
        await store.queue.enqueue(
            Trigger(kind=TriggerKind.MANUAL, app="web", ref="refs/heads/main", actor="ops")
        )
    ).jobs

    for args in (
        ("app", "list"),
        ("app", "list", "--json"),
        ("app", "show", "web"),
        ("app", "show", "web", "--json"),
        ("jobs",),
        ("jobs", "--json"),
        ("job", "show", str(job.id)),
        ("job", "show", str(job.id), "--json"),
    ):
        result = deployq(database_url, settings.data_dir, *args)  # the store's key file
        assert result.returncode == 0, (args, result.stderr)
        assert_clean(" ".join(args), result.stdout + result.stderr, secrets)
    listed = json.loads(deployq(database_url, settings.data_dir, "app", "list", "--json").stdout)
    assert listed[0]["webhook_secret"] == "**********"
    assert listed[0]["build_secrets"] == {"NPM_TOKEN": "**********"}
    assert listed[0]["git_token"] == "**********"
    shown = deployq(database_url, settings.data_dir, "app", "show", "web").stdout
    assert "--git-token **********" in shown

    client = await aiohttp_client(create_app(store))
    read = await token(store, TokenScope.READ)
    for path in ("/api/v1/apps", "/api/v1/apps/web", "/api/v1/jobs", f"/api/v1/jobs/{job.id}"):
        resp = await client.get(path, headers=read)
        assert resp.status == 200
        assert_clean(path, await resp.text(), secrets)
    shown = await (await client.get("/api/v1/apps/web", headers=read)).json()
    assert shown["has_git_token"] is True and "git_token" not in shown

    notifications = await store.notifications.recent(job_id=job.id)
    assert notifications
    for notification in notifications:  # one per channel: e-mail and outgoing webhook
        mail = render(notification.payload)
        assert_clean("the e-mail", mail.subject + mail.text + mail.html, secrets)
        assert_clean("the outgoing webhook", webhook_text(notification.payload), secrets)
        assert_clean("the outbox payload", json.dumps(notification.payload), secrets)
