"""`deployq doctor` against real services: PostgreSQL, dockerd, docker-registry, aiosmtpd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from deployq.config import Settings
from deployq.db import with_dbname
from deployq.doctor import Check, check_registry, check_smtp, run_checks
from deployq.embedded_registry import stop_registry
from deployq.store import Store
from deployq.testing.services import LocalRegistry, free_port
from fixtures.smtp import SmtpFactory

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / "systemd" / "deployq.env.example"


@pytest.fixture(autouse=True)
def _no_registry_left_behind(tmp_path: Path) -> Iterator[None]:
    """doctor starts the embedded registry of its data dir: stop it after each test."""
    yield
    for data_dir in (tmp_path, tmp_path / "data"):
        stop_registry(data_dir)


def doctor(
    env: dict[str, str], *args: str, shell_prefix: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run the real command; ``shell_prefix`` runs in bash before it (e.g. sourcing a file)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    clean.pop("DOCKER_HOST", None)
    clean.update(env)
    command = " ".join([f'"{sys.executable}"', "-m", "deployq", "doctor", *args])
    return subprocess.run(
        ["bash", "-c", f"{shell_prefix}{command}"],
        capture_output=True,
        text=True,
        env=clean,
        timeout=120,
    )


def by_name(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    data = json.loads(result.stdout)
    return {check["name"]: check for check in data["checks"]}


def named(checks: list[Check], name: str) -> Check:
    return next(c for c in checks if c.name == name)


@pytest.mark.docker
def test_doctor_passes_with_the_test_database_and_local_engine(
    database_url: str, tmp_path: Path, docker_host: str
) -> None:
    result = doctor(
        {"DEPLOYQ_DATABASE_URL": database_url, "DEPLOYQ_DATA_DIR": str(tmp_path / "data")},
        "--json",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    checks = by_name(result)
    assert checks["database"]["ok"] and "PostgreSQL" in checks["database"]["detail"]
    assert checks["migrations"]["ok"]
    engine = checks["engine (default)"]
    assert engine["ok"] and "unix:///var/run/docker.sock" in engine["detail"]
    assert checks["buildkit"]["ok"]
    registry = checks["registry"]
    assert registry["ok"] and not registry["skipped"]
    assert registry["detail"].startswith(f"embedded registry in {tmp_path / 'data' / 'registry'}")
    assert "logged in to http://127.0.0.1:" in registry["detail"]
    assert checks["smtp"]["skipped"]
    assert checks["workspace"]["ok"] and (tmp_path / "data" / "workspaces").is_dir()


def test_unreachable_database_is_one_failed_line_and_exit_1(tmp_path: Path) -> None:
    result = doctor(
        {
            "DEPLOYQ_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x",
            "DEPLOYQ_DATA_DIR": str(tmp_path),
        }
    )

    assert result.returncode == 1
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    database = [line for line in lines if line.split()[1:2] == ["database"]]
    assert len(database) == 1 and database[0].startswith("✘")
    assert "127.0.0.1:1/x" in database[0] and "refused" in database[0].lower()
    fix = lines[lines.index(database[0]) + 1]
    assert fix.strip().startswith("fix:") and "DEPLOYQ_DATABASE_URL" in fix
    assert any(line.startswith("- migrations") for line in lines)
    assert lines[-1] == f"1 of {len(lines) - 2} checks failed"


def test_invalid_configuration_is_reported_by_setting_name(tmp_path: Path) -> None:
    result = doctor({"DEPLOYQ_LEASE_TTL": "soon", "DEPLOYQ_DATA_DIR": str(tmp_path)}, "--json")

    assert result.returncode == 1
    checks = json.loads(result.stdout)["checks"]
    assert [c["name"] for c in checks] == ["configuration"]
    assert "DEPLOYQ_LEASE_TTL='soon'" in checks[0]["detail"] and checks[0]["fix"]


@pytest.fixture
def empty_database(pg_server_dsn: str) -> Iterator[str]:
    name = f"t_empty_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield with_dbname(pg_server_dsn, name)
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_unmigrated_database_fails_with_the_migrate_fix(
    empty_database: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=empty_database, data_dir=tmp_path, min_free_disk_mb=0)

    checks = await run_checks(settings=settings)

    assert named(checks, "database").ok
    migrations = named(checks, "migrations")
    assert not migrations.ok and "001_initial.sql" in migrations.detail
    assert "deployq migrate" in migrations.fix


@pytest.mark.docker
async def test_each_registered_build_server_is_checked(
    store: Store, settings: Settings, docker_host: str, tmp_path: Path
) -> None:
    await store.servers.add("main", docker_host)
    await store.servers.add("gone", f"unix://{tmp_path}/no-docker.sock")

    checks = await run_checks(settings=settings)

    assert named(checks, "engine main").ok
    gone = named(checks, "engine gone")
    assert not gone.ok and "no-docker.sock does not answer" in gone.detail
    assert "dockerd" in gone.fix
    assert not any(c.name == "engine (default)" for c in checks)


async def test_low_disk_and_unwritable_workspace_fail(
    settings_factory: Any, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = settings_factory(data_dir=blocker / "data", min_free_disk_mb=10**9)

    checks = await run_checks(settings=settings)

    disk = named(checks, "disk")
    assert not disk.ok and "minimum 1000000000 MB" in disk.detail
    assert "DEPLOYQ_MIN_FREE_DISK_MB" in disk.fix
    workspace = named(checks, "workspace")
    assert not workspace.ok and "not writable" in workspace.detail


# -- registry -----------------------------------------------------------------------------------


def registry_settings(registry: LocalRegistry, password: str | None) -> Settings:
    return Settings(
        registry_url=registry.url,
        registry_insecure=True,
        registry_username=registry.username,
        registry_password=password,
    )


async def test_registry_login_with_the_right_password_passes(
    registry: LocalRegistry,
) -> None:
    check = await check_registry(registry_settings(registry, registry.password))

    assert check.ok and not check.skipped
    assert check.detail == f"logged in to http://{registry.url} as {registry.username}"


async def test_registry_login_with_a_wrong_password_fails_without_showing_it(
    registry: LocalRegistry,
) -> None:
    check = await check_registry(registry_settings(registry, "wrong-password-123"))

    assert not check.ok
    assert "refused the login as deployq (401)" in check.detail
    assert "DEPLOYQ_REGISTRY_PASSWORD" in check.fix
    assert "wrong-password-123" not in check.detail + check.fix


@pytest.mark.parametrize(("password", "ok"), [("harbor-robot-secret", True), ("nope", False)])
async def test_registry_token_login_like_harbor(
    harbor_fake: tuple[Any, str], password: str, ok: bool
) -> None:
    # Harbor answers /v2/ with a Bearer challenge; the robot's credentials buy a token.
    # Harbor cannot run here: this is the FAKE Harbor of tests/fixtures/harbor_fake.py.
    fake, url = harbor_fake
    settings = Settings(
        registry_url=url, registry_username="robot$deployq", registry_password=password
    )

    check = await check_registry(settings)

    assert check.ok is ok, check.detail
    if ok:
        assert check.detail == f"logged in to {url} as robot$deployq"
        assert ("GET", "/service/token?service=harbor-registry") in fake.requests
    else:
        assert "refused the login as robot$deployq (401)" in check.detail


async def test_registry_that_is_down_fails_with_the_address() -> None:
    port = free_port()
    check = await check_registry(Settings(registry_url=f"127.0.0.1:{port}", registry_insecure=True))

    assert not check.ok and f"registry http://127.0.0.1:{port} is unreachable" in check.detail


async def test_registry_check_is_skipped_when_no_registry_is_configured() -> None:
    check = await check_registry(Settings())

    assert check.ok and check.skipped and "DEPLOYQ_REGISTRY_URL" in check.detail


# -- SMTP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tls", "password", "outcome"),
    [
        ("none", None, "answers (none)"),
        ("starttls", "mail-pw", "answers (starttls), logged in as deployq-mailer"),
        ("tls", None, "answers (tls)"),
    ],
)
async def test_smtp_check_passes(
    smtp_server_factory: SmtpFactory, tls: str, password: str | None, outcome: str
) -> None:
    server = await smtp_server_factory(tls=tls, password=password)

    check = await check_smtp(Settings(**server.settings()))

    assert check.ok, check.detail
    assert check.detail == f"127.0.0.1:{server.port} {outcome}"


async def test_smtp_wrong_password_fails(smtp_server_factory: SmtpFactory) -> None:
    server = await smtp_server_factory(tls="starttls", password="mail-pw")

    check = await check_smtp(Settings(**server.settings(smtp_password="not-it")))

    assert not check.ok and "refused the login as deployq-mailer" in check.detail
    assert "not-it" not in check.detail


async def test_smtp_closed_port_fails() -> None:
    port = free_port()

    check = await check_smtp(Settings(smtp_host="127.0.0.1", smtp_port=port, smtp_timeout=5))

    assert not check.ok and f"cannot connect to 127.0.0.1:{port}" in check.detail
    assert "DEPLOYQ_SMTP_PORT" in check.fix


# -- the shipped environment file -----------------------------------------------------------------


@pytest.mark.docker
def test_doctor_passes_on_the_shipped_env_file_with_only_database_and_data_dir_changed(
    database_url: str, tmp_path: Path, docker_host: str
) -> None:
    # what the operations guide tells operators to run, with the test's database and data dir
    result = doctor(
        {"TEST_DATABASE_URL": database_url, "TEST_DATA_DIR": str(tmp_path)},
        "--json",
        shell_prefix=(
            f"set -a; . {ENV_EXAMPLE}; DEPLOYQ_DATABASE_URL=$TEST_DATABASE_URL; "
            "DEPLOYQ_DATA_DIR=$TEST_DATA_DIR; set +a; "
        ),
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert all(c["ok"] for c in json.loads(result.stdout)["checks"])


async def test_smtp_tls_certificate_that_is_not_trusted_fails(
    smtp_server_factory: SmtpFactory,
) -> None:
    server = await smtp_server_factory(tls="tls")

    check = await check_smtp(Settings(**server.settings(smtp_ca_file=None)))

    assert not check.ok and "certificate" in check.detail.lower()


def test_missing_config_file_is_a_failed_configuration_check(tmp_path: Path) -> None:
    result = doctor({"DEPLOYQ_DATA_DIR": str(tmp_path)}, "--config", str(tmp_path / "no.toml"))

    assert result.returncode == 1 and result.stderr == ""
    first, fix, summary = result.stdout.splitlines()
    assert first.startswith("✘ configuration") and "no.toml does not exist" in first
    assert fix.strip().startswith("fix:")
    assert summary == "1 of 1 checks failed"


async def test_the_git_known_hosts_file_is_checked(settings_factory: Any, tmp_path: Path) -> None:
    missing = tmp_path / "missing_known_hosts"
    known = tmp_path / "known_hosts"
    known.write_text("# forges\n[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA\n")

    unset = named(await run_checks(settings=settings_factory()), "git known_hosts")
    gone = named(
        await run_checks(settings=settings_factory(git_known_hosts=missing)), "git known_hosts"
    )
    there = named(
        await run_checks(settings=settings_factory(ssh_known_hosts=known)), "git known_hosts"
    )

    assert unset.skipped
    assert not gone.ok and f"{missing} (DEPLOYQ_GIT_KNOWN_HOSTS) cannot be read" in gone.detail
    assert f"ssh-keyscan HOST >> {missing}" in gone.fix
    assert there.ok and there.detail == f"1 host key(s) in {known} (DEPLOYQ_SSH_KNOWN_HOSTS)"
