"""Migrations: sql/NNN_name.sql applied in order, once, with checksums, one process at a time."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg

from deployq.db.pool import connect
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


_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate(dsn: str, directory: Path | None = None) -> list[str]:
    """Apply what is missing; return the names applied (empty when up to date)."""
    migrations = load_migrations(directory)
    conn = await connect(dsn, autocommit=True)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            await conn.execute(_CREATE_TABLE)
            rows = await (
                await conn.execute("SELECT version, name, checksum FROM schema_migrations")
            ).fetchall()
            applied = {int(str(r["version"])): r for r in rows}
            for migration in migrations:
                row = applied.get(migration.version)
                if row is not None:
                    if row["checksum"] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.name} was changed after it was applied "
                            f"(as {row['name']}); restore the file and add a new migration "
                            "for the change"
                        )
                    continue
                log.info("applying migration %s", migration.name)
                try:
                    async with conn.transaction():
                        await conn.execute(migration.sql.encode())
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) "
                            "VALUES (%s, %s, %s)",
                            (migration.version, migration.name, migration.checksum),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {migration.name} failed: {exc}") from exc
                applied_now.append(migration.name)
            unknown = sorted(set(applied) - {m.version for m in migrations})
            if unknown:
                raise MigrationError(
                    f"the database has migrations this deployq does not know ({unknown}); "
                    "it was migrated by a newer deployq: upgrade this one"
                )
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    finally:
        await conn.close()
    return applied_now


async def pending_migrations(dsn: str, directory: Path | None = None) -> list[str]:
    """Names not yet applied (for /readyz and doctor)."""
    migrations = load_migrations(directory)
    conn = await connect(dsn)
    try:
        exists = await (
            await conn.execute("SELECT to_regclass('schema_migrations') AS t")
        ).fetchone()
        if exists is None or exists["t"] is None:
            return [m.name for m in migrations]
        rows = await (await conn.execute("SELECT version FROM schema_migrations")).fetchall()
        done = {r["version"] for r in rows}
        return [m.name for m in migrations if m.version not in done]
    finally:
        await conn.close()
