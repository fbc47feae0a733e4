"""Connections: an async pool for queries, single connections for LISTEN and tools."""

from __future__ import annotations

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from deployq.db.dsn import describe_dsn
from deployq.errors import DatabaseUnavailable

APP_NAME = "deployq"

Connection = psycopg.AsyncConnection[DictRow]
Pool = AsyncConnectionPool[Connection]


def unavailable(dsn: str, exc: BaseException) -> DatabaseUnavailable:
    """One readable line: where, and why (the first line of the server's reason)."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DatabaseUnavailable(
        f"cannot connect to PostgreSQL at {describe_dsn(dsn)}: {reason} "
        "(check that the server runs and DEPLOYQ_DATABASE_URL is right)"
    )


async def open_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    timeout_s: float = 10.0,
    session: dict[str, str] | None = None,
) -> Pool:
    """Open a pool and wait for its first connections, so a bad DSN fails here, clearly.

    ``session``: settings of every connection (``SET name = value``), e.g. the queue limit
    the enqueue trigger reads."""
    kwargs: dict[str, object] = {
        "row_factory": dict_row,
        "application_name": APP_NAME,
        "autocommit": True,
    }
    if session:
        kwargs["options"] = " ".join(f"-c {name}={value}" for name, value in session.items())
    pool: Pool = AsyncConnectionPool(
        dsn, min_size=min_size, max_size=max_size, open=False, kwargs=kwargs, name="deployq"
    )
    try:
        await pool.open(wait=True, timeout=timeout_s)
    except Exception as exc:
        await pool.close()
        try:  # the pool hides the server's reason; one direct attempt recovers it
            conn = await psycopg.AsyncConnection.connect(dsn, connect_timeout=int(timeout_s))
            await conn.close()
        except psycopg.Error as direct:
            raise unavailable(dsn, direct) from exc
        raise unavailable(dsn, exc) from exc
    return pool


async def connect(dsn: str, *, autocommit: bool = True, timeout_s: float = 10.0) -> Connection:
    """A single connection outside the pool (LISTEN, migrations, tools)."""
    try:
        return await psycopg.AsyncConnection.connect(
            dsn,
            autocommit=autocommit,
            row_factory=dict_row,
            application_name=APP_NAME,
            connect_timeout=max(1, int(timeout_s)),
        )
    except psycopg.Error as exc:
        raise unavailable(dsn, exc) from exc
