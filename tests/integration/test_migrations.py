import asyncio
import shutil
from pathlib import Path

import psycopg
import pytest

from deployq.db.migrate import migrate, migrations_dir, pending_migrations
from deployq.errors import MigrationError


async def test_migrating_a_current_database_applies_nothing(database_url: str) -> None:
    assert await migrate(database_url) == []
    assert await pending_migrations(database_url) == []


async def test_an_edited_applied_migration_is_refused_by_name(
    database_url: str, tmp_path: Path
) -> None:
    edited = tmp_path / "sql"
    shutil.copytree(migrations_dir(), edited)
    first = sorted(edited.glob("001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- an innocent edit\n")
    with pytest.raises(MigrationError, match=f"{first.name} was changed after it was applied"):
        await migrate(database_url, edited)


async def test_concurrent_migrations_apply_each_file_once(
    pg_server_dsn: str, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    results = await asyncio.gather(*(migrate(database_url) for _ in range(4)))
    applied = [name for result in results for name in result]
    assert sorted(applied) == sorted(p.name for p in migrations_dir().glob("*.sql"))
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert rows is not None
    assert rows[0] == len(applied)


async def test_a_new_migration_is_applied_after_the_others(
    database_url: str, tmp_path: Path
) -> None:
    extended = tmp_path / "sql"
    shutil.copytree(migrations_dir(), extended)
    number = len(list(extended.glob("*.sql"))) + 1
    (extended / f"{number:03d}_extra.sql").write_text("CREATE TABLE extra (id int);")
    assert await migrate(database_url, extended) == [f"{number:03d}_extra.sql"]
    assert await migrate(database_url, extended) == []


async def test_a_gap_in_numbering_is_an_error(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "001_a.sql").write_text("SELECT 1;")
    (tmp_path / "003_c.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="expected number 002"):
        await migrate(database_url, tmp_path)


def test_schema_constraints_hold(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO apps (name, repo_url, repo_identity) VALUES ('a', 'r', 'r')")
        for bad in ("priority", "progress"):
            value = 7 if bad == "priority" else 101
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute(
                    f"INSERT INTO jobs (app_name, trigger, repo_url, ref, branch, {bad}) "
                    "VALUES ('a', 'manual', 'r', 'refs/heads/main', 'main', %s)",
                    (value,),
                )
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO jobs (app_name, trigger, repo_url, ref, branch, status) "
                "VALUES ('a', 'manual', 'r', 'refs/heads/main', 'main', 'exploded')"
            )
