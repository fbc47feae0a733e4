"""The operations guide's commands, run for real.

The README blocks preceded by ``<!-- test: NAME -->`` are extracted and executed here against
the test PostgreSQL server, with only the host-specific parts substituted (the venv, the env
file, the DSN, ``sudo -u deployq``), so the guide cannot drift from what works.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pgserver
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parents[2]
#: the operations guide is a section of README.md
GUIDES = (ROOT / "README.md",)
VENV = sys.prefix
PG_BIN = Path(pgserver.__file__).parent / "pginstall" / "bin"
GUIDE_DSN = "postgresql://deployq:change-me@127.0.0.1:5432/deployq"


def guide_block(name: str) -> str:
    marker = f"<!-- test: {name} -->"
    for path in GUIDES:
        if path.is_file() and marker in (text := path.read_text()):
            match = re.search(re.escape(marker) + r"\n```\w*\n(.*?)\n```", text, re.DOTALL)
            assert match, f"{marker} is not followed by a code block in {path}"
            return match.group(1)
    raise AssertionError(f"the operations guide (block {marker}) is missing from README.md")


def bash(script: str, *, cwd: Path, env: dict[str, str] | None = None) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    clean["PATH"] = f"{PG_BIN}:{clean['PATH']}"
    clean.update(env or {})
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean,
        timeout=120,
    )
    assert result.returncode == 0, f"{script}\n--- stdout\n{result.stdout}\n--- {result.stderr}"
    return result.stdout


def as_user(dsn: str, user: str, password: str, dbname: str) -> str:
    params = conninfo_to_dict(dsn)
    params.update(user=user, password=password, dbname=dbname)
    return make_conninfo(**params)


@pytest.fixture
def role_prefix(pg_server_dsn: str) -> Iterator[str]:
    """Unique names for the guide's `deployq` role/database; dropped afterwards."""
    prefix = f"dq_{uuid.uuid4().hex[:10]}"
    yield prefix
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{prefix}" WITH (FORCE)')
        conn.execute(f'DROP ROLE IF EXISTS "{prefix}_console"')
        conn.execute(f'DROP ROLE IF EXISTS "{prefix}"')


def test_guide_roles_sql_gives_a_read_only_console_role(
    pg_server_dsn: str, role_prefix: str, tmp_path: Path
) -> None:
    sql = re.sub(r"\bdeployq\b", role_prefix, guide_block("roles.sql"))
    sql = sql.replace("deployq_console", f"{role_prefix}_console")
    (tmp_path / "deployq-roles.sql").write_text(sql + "\n")
    owner = as_user(pg_server_dsn, role_prefix, "change-me", role_prefix)
    console = as_user(pg_server_dsn, f"{role_prefix}_console", "change-me-too", role_prefix)

    bash(
        f'psql "{pg_server_dsn}" -v ON_ERROR_STOP=1 -q -f deployq-roles.sql',
        cwd=tmp_path,
    )
    bash(f'"{VENV}/bin/deployq" migrate', cwd=tmp_path, env={"DEPLOYQ_DATABASE_URL": owner})

    with psycopg.connect(console, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() != (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE jobs SET priority = 3")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM apps")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE intruder (id int)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # sealed, and not even that
            conn.execute("SELECT sealed FROM app_secrets")


def test_guide_dq_helper_runs_deployq_with_the_env_file(database_url: str, tmp_path: Path) -> None:
    env_file = tmp_path / "deployq.env"
    env_file.write_text(
        # quoted: the test DSN may be in key=value form, with spaces
        f"DEPLOYQ_DATABASE_URL='{database_url}'\nDEPLOYQ_DATA_DIR={tmp_path / 'data'}\n"
    )
    dq = (
        guide_block("dq")
        .replace("sudo -u deployq ", "")
        .replace("/etc/deployq/deployq.env", str(env_file))
        .replace("/opt/deployq/venv", VENV)
    )

    out = bash(dq + "\n" + guide_block("servers") + "\ndq server list --json", cwd=tmp_path)

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT name, docker_host, capacity, arch, labels, draining FROM build_servers "
            "ORDER BY name"
        ).fetchall()
    assert rows == [
        ("gpu1", "ssh://builder@gpu1.example.com", 2, "amd64", ["gpu"], True),
        ("local", "unix:///var/run/docker.sock", 4, "amd64", [], False),
    ]
    assert '"gpu1"' in out


def test_guide_backup_and_restore_round_trip(database_url: str, tmp_path: Path) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO build_servers (name, docker_host) VALUES ('kept', 'unix:///x.sock')"
        )
    commands = guide_block("backup").replace(GUIDE_DSN, database_url).splitlines()
    assert [c.split()[0] for c in commands] == ["pg_dump", "pg_restore"]

    bash(commands[0], cwd=tmp_path)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM build_servers")
    bash(commands[1], cwd=tmp_path)

    with psycopg.connect(database_url) as conn:
        names = conn.execute("SELECT name FROM build_servers").fetchall()
    assert names == [("kept",)]


def test_guide_embedded_backup_uses_the_bundled_pg_dump(database_url: str, tmp_path: Path) -> None:
    script = (
        guide_block("backup-embedded")
        .replace("/opt/deployq/venv", VENV)
        .replace("$(deployq db-url)", f'$("{VENV}/bin/deployq" db-url)')
    )

    bash(script, cwd=tmp_path, env={"DEPLOYQ_DATABASE_URL": database_url})

    listing = bash(f'"{PG_BIN}/pg_restore" --list deployq.dump', cwd=tmp_path)
    assert "TABLE public jobs" in listing
