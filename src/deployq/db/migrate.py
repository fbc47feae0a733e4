"""Migrations: sql/NNN_name.sql applied in order, once, with checksums, one process at a time."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg

from deployq.db.named_sql import sql
from deployq.db.pool import Connection, connect
from deployq.errors import MigrationError

log = logging.getLogger(__name__)

#: pg_advisory_lock key that serialises migrating processes ("deployq" in ASCII)
MIGRATION_LOCK_KEY = 0x6465706C6F7971
_NAME_RE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations_dir() -> Path:
    return Path(str(resources.files("deployq") / "sql"))


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Every sql/NNN_name.sql, in version order; a gap or a duplicate number is an error."""
    directory = directory or migrations_dir()
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME_RE.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: migration files are named NNN_lower_case_name.sql")
        found.append(Migration(int(match.group(1)), path.name, path.read_text()))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(
                f"migration {migration.name}: expected number {expected:03d} "
                "(migrations are numbered without gaps or duplicates)"
            )
    return found


async def migrate(dsn: str, directory: Path | None = None) -> list[str]:
    """Apply what is missing; return the names applied (empty when up to date).

    A database that is up to date is only read, never written or locked, so read-only
    roles (console operators) pass through here.
    """
    migrations = load_migrations(directory)
    conn = await connect(dsn, autocommit=True)
    try:
        applied = await _applied(conn)
        if applied is not None and not _missing(migrations, applied):
            return []
        await conn.execute(sql("migrations_lock"), {"key": MIGRATION_LOCK_KEY})
        try:
            await conn.execute(sql("migrations_table"))
            return await _apply_missing(conn, migrations, await _applied(conn) or {})
        finally:
            await conn.execute(sql("migrations_unlock"), {"key": MIGRATION_LOCK_KEY})
    except psycopg.errors.InsufficientPrivilege as exc:
        raise MigrationError(
            f"this database role may not apply migrations ({exc}); run `deployq migrate` "
            "as the owner of the database"
        ) from exc
    finally:
        await conn.close()


async def _applied(conn: Connection) -> dict[int, dict[str, Any]] | None:
    """version -> row of schema_migrations, or None when the table does not exist."""
    exists = await (await conn.execute(sql("migrations_table_exists"))).fetchone()
    if exists is None or exists["t"] is None:
        return None
    rows = await (await conn.execute(sql("migrations_applied"))).fetchall()
    return {int(r["version"]): dict(r) for r in rows}


def _missing(migrations: list[Migration], applied: dict[int, dict[str, Any]]) -> list[Migration]:
    """Migrations not applied yet; refuse edited or unknown ones."""
    for migration in migrations:
        row = applied.get(migration.version)
        if row is not None and row["checksum"] != migration.checksum:
            raise MigrationError(
                f"migration {migration.name} was changed after it was applied "
                f"(as {row['name']}); restore the file and add a new migration for the change"
            )
    unknown = sorted(set(applied) - {m.version for m in migrations})
    if unknown:
        raise MigrationError(
            f"the database has migrations this deployq does not know ({unknown}); "
            "it was migrated by a newer deployq: upgrade this one"
        )
    return [m for m in migrations if m.version not in applied]


async def _apply_missing(
    conn: Connection, migrations: list[Migration], applied: dict[int, dict[str, Any]]
) -> list[str]:
    applied_now: list[str] = []
    for migration in _missing(migrations, applied):
        log.info("applying migration %s", migration.name)
        try:
            async with conn.transaction():
                await conn.execute(migration.sql.encode())
                await conn.execute(
                    sql("migration_record"),
                    {
                        "version": migration.version,
                        "name": migration.name,
                        "checksum": migration.checksum,
                    },
                )
        except psycopg.Error as exc:
            raise MigrationError(f"migration {migration.name} failed: {exc}") from exc
        applied_now.append(migration.name)
    return applied_now


async def pending_migrations(dsn: str, directory: Path | None = None) -> list[str]:
    """Names not yet applied (for doctor)."""
    conn = await connect(dsn)
    try:
        return await pending_on(conn, directory)
    finally:
        await conn.close()


async def pending_on(conn: Connection, directory: Path | None = None) -> list[str]:
    """Names not yet applied, asked on ``conn`` (a pooled one for /readyz)."""
    migrations = load_migrations(directory)
    applied = await _applied(conn)
    if applied is None:
        return [m.name for m in migrations]
    return [m.name for m in migrations if m.version not in applied]
