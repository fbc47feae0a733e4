"""The embedded PostgreSQL: a real server in <data_dir>/pgdata, shared by every process.

``pgserver`` starts the server once and leaves it running (cleanup_mode=None); every later
deployq process on the host finds it through postmaster.pid in the same data directory.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import psycopg
from psycopg import sql

from deployq.db.named_sql import sql as named
from deployq.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

DATABASE_NAME = "deployq"


def embedded_dsn(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or find) the embedded server and return the DSN of its deployq database."""
    try:
        import pgserver
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise DatabaseUnavailable(
            "the embedded PostgreSQL needs the 'pgserver' package; install it or set "
            "DEPLOYQ_DATABASE_URL"
        ) from exc
    pgdata = data_dir / "pgdata"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        server = pgserver.postgres_server.get_server(pgdata, cleanup_mode=None)
        admin_dsn: str = server.get_uri("postgres")
    except Exception as exc:
        raise DatabaseUnavailable(
            f"cannot start the embedded PostgreSQL in {pgdata}: {exc}; see {pgdata / 'log'}"
        ) from exc
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        exists = conn.execute(named("database_exists"), {"name": database})
        if exists.fetchone() is None:
            log.info("creating database %s in the embedded PostgreSQL", database)
            # another process may have created it a moment ago (`deployq up &` then a
            # command at once): PostgreSQL says so with either error, depending on timing
            with contextlib.suppress(
                psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation
            ):
                conn.execute(
                    sql.SQL(named("database_create")).format(name=sql.Identifier(database))
                )
    return admin_dsn.replace("/postgres?", f"/{database}?", 1)
