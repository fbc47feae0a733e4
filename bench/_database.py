"""A throwaway database for a benchmark (the other services: deployq.testing.services).

On DEPLOYQ_DATABASE_URL's server when it is set, else on the test suite's embedded
PostgreSQL (.pytest-data); created empty and dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg

from deployq.db import with_dbname
from deployq.db.embedded import embedded_dsn

ROOT = Path(__file__).resolve().parents[1]


def server_dsn() -> str:
    """DEPLOYQ_DATABASE_URL, else the maintenance database of the tests' embedded server."""
    return os.environ.get("DEPLOYQ_DATABASE_URL") or embedded_dsn(
        ROOT / ".pytest-data", database="postgres"
    )


@contextlib.contextmanager
def database(name: str, admin: str | None = None) -> Iterator[str]:
    """A fresh database ``name`` on the server of ``admin`` (default :func:`server_dsn`);
    dropped afterwards."""
    admin = admin or server_dsn()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_dbname(admin, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
