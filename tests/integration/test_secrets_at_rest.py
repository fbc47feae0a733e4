"""Secrets at rest (docs/secrets.md): sealed in app_secrets, never in a dump of the database,
kept usable across `deployq secrets rotate-key`, and sealed by the upgrade from plaintext."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pgserver
import psycopg
import pytest
from psycopg.types.json import Jsonb
from queue_helpers import claim_one, enqueue
from webhook_helpers import GITHUB_REPO_URL, payload, post_github

from deployq.cli.common import migrate_and_seal
from deployq.config import Settings
from deployq.db import with_dbname
from deployq.db.migrate import migrate, migrations_dir
from deployq.errors import ConfigError
from deployq.models import AppSpec, DeploySettings
from deployq.sealing import new_key
from deployq.store import Store
from deployq.webhooks.app import create_app

PG_DUMP = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"


def _secrets() -> dict[str, str]:
    kinds = (
        "webhook", "build", "notify", "deploy_webhook", "deploy_env", "forge", "git", "registry"
    )  # fmt: skip
    return {kind: f"{kind}-{uuid.uuid4().hex}" for kind in kinds}


def _spec(name: str, secrets: dict[str, str]) -> AppSpec:
    return AppSpec(
        name=name,
        repo_url=GITHUB_REPO_URL,
        webhook_secret=secrets["webhook"],
        build_secrets={"NPM_TOKEN": secrets["build"]},
        notify_webhook_url="https://chat.example.com/hook",
        notify_webhook_secret=secrets["notify"],
        forge_token=secrets["forge"],
        git_token=secrets.get("git"),
        registry_username="robot$deployq+web" if "registry" in secrets else None,
        registry_password=secrets.get("registry"),
        deploy=DeploySettings(
            webhook_url="https://deploy.example.com/hook",
            webhook_secret=secrets["deploy_webhook"],
            env={"DATABASE_PASSWORD": secrets["deploy_env"]},
        ),
    )


def _assert_all(app: Any, secrets: dict[str, str]) -> None:
    assert app.webhook_secret == secrets["webhook"]
    assert app.build_secrets == {"NPM_TOKEN": secrets["build"]}
    assert app.notify_webhook_secret == secrets["notify"]
    assert app.forge_token == secrets.get("forge")
    assert app.git_token == secrets.get("git")
    assert app.registry_password == secrets.get("registry")
    assert app.deploy.webhook_secret == secrets["deploy_webhook"]
    assert app.deploy.env == {"DATABASE_PASSWORD": secrets["deploy_env"]}


def _dump(database_url: str) -> str:
    return subprocess.run(
        [str(PG_DUMP), "--dbname", database_url],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


def deployq(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    assert settings.database_url is not None
    env.update(
        DEPLOYQ_DATABASE_URL=settings.database_url.get_secret_value(),
        DEPLOYQ_DATA_DIR=str(settings.data_dir),
    )
    if settings.secret_key is not None:
        env["DEPLOYQ_SECRET_KEY"] = settings.secret_key.get_secret_value()
    return subprocess.run(
        [sys.executable, "-m", "deployq", *args], capture_output=True, text=True, env=env
    )


async def test_a_dump_of_the_database_holds_no_secret(
    store: Store, settings: Settings, database_url: str
) -> None:
    secrets = _secrets()
    await store.apps.add(_spec("web", secrets))
    other = _secrets()
    await store.apps.update(_spec("web", other))  # the first ones are gone too
    await store.apps.add(_spec("api", secrets))

    key = "-----BEGIN OPENSSH PRIVATE KEY-----\n" + uuid.uuid4().hex + "\n-----END OPENSSH"
    ssh_app = AppSpec(name="ssh", repo_url="git@example.com:team/ssh.git", git_ssh_key=key)
    await store.apps.add(ssh_app)

    dump = _dump(database_url)

    assert "COPY public.app_secrets" in dump and "gAAAAA" in dump
    leaked = [v for v in (*secrets.values(), *other.values()) if v in dump]
    assert not leaked
    assert key.splitlines()[1] not in dump
    assert (await store.apps.get("ssh")).git_ssh_key == key
    _assert_all(await store.apps.get("web"), other)
    [api] = [a for a in await store.apps.all() if a.name == "api"]
    _assert_all(api, secrets)
    key_file = settings.secret_key_file
    assert key_file.stat().st_mode & 0o777 == 0o600


async def test_a_wrong_or_missing_key_is_one_line_naming_the_setting(
    store: Store, settings_factory: Any, tmp_path: Path
) -> None:
    await store.apps.add(_spec("web", _secrets()))

    wrong = await Store.open(settings_factory(secret_key=new_key()), min_size=1)
    try:
        with pytest.raises(ConfigError, match="DEPLOYQ_SECRET_KEY") as caught:
            await wrong.apps.get("web")
        assert "\n" not in caught.value.message
    finally:
        await wrong.close()

    elsewhere = settings_factory(data_dir=tmp_path / "elsewhere")  # its own (new) key file
    result = deployq(elsewhere, "app", "show", "web")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert "DEPLOYQ_SECRET_KEY" in line and "elsewhere/secret.key" in line

    garbled = deployq(settings_factory(secret_key="not-a-key"), "app", "show", "web")
    assert garbled.returncode == 1
    assert "DEPLOYQ_SECRET_KEY" in garbled.stderr and "not-a-key" not in garbled.stderr


async def test_rotate_key_keeps_every_secret_usable_while_deployq_runs(
    store: Store, settings: Settings, database_url: str, aiohttp_client: Any
) -> None:
    secrets = _secrets()
    await store.apps.add(_spec("web", secrets))
    old_key = settings.secret_key_file.read_text()
    before = _dump(database_url)

    result = deployq(settings, "secrets", "rotate-key")

    assert result.returncode == 0, result.stderr
    assert "re-encrypted the secrets of 1 app(s)" in result.stdout
    new_key_text = settings.secret_key_file.read_text()
    assert new_key_text != old_key and len(new_key_text.split()) == 1
    assert settings.secret_key_file.stat().st_mode & 0o777 == 0o600
    after = _dump(database_url)
    sealed_rows = [line for line in after.splitlines() if "gAAAAA" in line]
    assert sealed_rows and not any(row in before for row in sealed_rows)
    # this process still held the old key: it reads the key file again and goes on
    _assert_all(await store.apps.get("web"), secrets)
    # a worker claiming the app's job gets every secret for the build and the deploy
    await store.servers.add("local", "unix:///var/run/docker.sock", capacity=1)
    await enqueue(store, "web")
    lease = await claim_one(store)
    _assert_all(lease.app, secrets)
    # and a fresh process verifies a GitHub delivery signed with the app's secret
    fresh = await Store.open(settings, min_size=1)
    try:
        client = await aiohttp_client(create_app(fresh))
        status, body = await post_github(
            client, "push", payload("github_push_branch"), secret=secrets["webhook"]
        )
        assert status in (200, 202), body
        assert [job["app"] for job in body["jobs"]] == ["web"]
    finally:
        await fresh.close()


async def test_rotate_key_with_the_setting_reseals_under_the_first_key(
    store_factory: Any, settings_factory: Any
) -> None:
    old, new = new_key(), new_key()
    secrets = _secrets()
    first = await store_factory(secret_key=old)
    await first.apps.add(_spec("web", secrets))

    result = deployq(settings_factory(secret_key=f"{new},{old}"), "secrets", "rotate-key")

    assert result.returncode == 0, result.stderr
    only_new = await store_factory(secret_key=new)
    _assert_all(await only_new.apps.get("web"), secrets)


async def test_the_upgrade_moves_plaintext_secrets_out_of_apps_and_seals_them(
    pg_server_dsn: str, settings_factory: Any, tmp_path: Path
) -> None:
    # a database as deployq left it before secrets were sealed
    [sealing] = migrations_dir().glob("*_app_secrets.sql")
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = with_dbname(pg_server_dsn, name)
    old_dir = tmp_path / "sql-before"
    old_dir.mkdir()
    for path in sorted(migrations_dir().glob("*.sql")):
        if path.name < sealing.name:
            shutil.copy(path, old_dir)
    try:
        await migrate(dsn, old_dir)
        secrets = _secrets()
        del secrets["forge"], secrets["git"], secrets["registry"]  # these came after
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO apps (name, repo_url, repo_identity, webhook_secret, build_secrets,"
                " notify_webhook_secret, deploy)"
                " VALUES ('web', %s, 'github.com/octo-org/octo-repo', %s, %s, %s, %s)",
                (
                    GITHUB_REPO_URL,
                    secrets["webhook"],
                    Jsonb({"NPM_TOKEN": secrets["build"]}),
                    secrets["notify"],
                    Jsonb(
                        {
                            "targets": [],
                            "webhook_url": "https://deploy.example.com/hook",
                            "webhook_secret": secrets["deploy_webhook"],
                            "env": {"DATABASE_PASSWORD": secrets["deploy_env"]},
                        }
                    ),
                ),
            )
            conn.execute(
                "INSERT INTO apps (name, repo_url, repo_identity) VALUES ('plain', %s, 'x')",
                (GITHUB_REPO_URL,),
            )
        settings = settings_factory(database_url=dsn)

        applied = await migrate_and_seal(settings, dsn)

        assert sealing.name in applied
        dump = _dump(dsn)
        assert not [v for v in secrets.values() if v in dump]
        assert "plain:" not in dump
        store = await Store.open(settings, dsn, min_size=1)
        try:
            _assert_all(await store.apps.get("web"), secrets)
            assert (await store.apps.get("plain")).webhook_secret is None
        finally:
            await store.close()
    finally:
        with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_jobs_claimed_together_carry_their_own_apps_secrets(store: Store) -> None:
    # one claim statement brings every job's app and sealed secrets (claim.sql): jobs of one
    # app share its App, each app keeps its own secrets, an app without any has none
    web, api = _secrets(), _secrets()
    await store.apps.add(_spec("web", web).model_copy(update={"concurrency": 2}))
    await store.apps.add(_spec("api", api))
    await store.apps.add(AppSpec(name="plain", repo_url=GITHUB_REPO_URL))
    await store.servers.add("local", "unix:///var/run/docker.sock", capacity=8)
    for app in ("web", "api", "web", "plain"):
        await enqueue(store, app, branch=f"b-{uuid.uuid4().hex[:6]}")

    leases = await store.leases.claim("w1", limit=8)

    assert sorted(lease.job.app_name for lease in leases) == ["api", "plain", "web", "web"]
    for lease in leases:
        assert lease.app is not None and lease.app.name == lease.job.app_name
        if lease.app.name == "plain":
            assert lease.app.webhook_secret is None and lease.app.build_secrets == {}
        else:
            _assert_all(lease.app, web if lease.app.name == "web" else api)
