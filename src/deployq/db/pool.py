"""Connections: a pool for queries that fails fast while the database is down, and single
connections for LISTEN and tools.

psycopg_pool alone waits up to its timeout for a connection while the server is gone, and
after an outage reconnects on an exponential backoff (40 s after a 45 s outage). This pool
puts :class:`~deployq.db.health.DatabaseHealth` in front of it: the first connection error
starts a probe (a direct connection every :data:`PROBE_INTERVAL_S`); while the probe fails,
every request for a connection fails at once; when it answers, a fresh inner pool replaces the
one stuck in backoff and the reconnect hooks run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Any

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from deployq.db.dsn import describe_dsn
from deployq.db.health import DatabaseHealth
from deployq.db.named_sql import sql
from deployq.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

APP_NAME = "deployq"
#: ``application_name`` of every connection this process opens (:func:`set_application_name`)
_application_name = APP_NAME


def set_application_name(role: str) -> None:
    """Connections opened from now on call themselves ``deployq <role>`` (``deployq worker``,
    ``deployq serve``, ``deployq tui``...), so pg_stat_activity tells the processes apart
    (docs/SCALING.md counts connections with it)."""
    global _application_name
    _application_name = f"{APP_NAME} {role}"


#: how often a database that is down is tried again
PROBE_INTERVAL_S = 0.25
#: how long one probe may take (connect and SELECT 1)
PROBE_TIMEOUT_S = 1.0

Connection = psycopg.AsyncConnection[DictRow]
RawPool = AsyncConnectionPool[Connection]


def unavailable(dsn: str, exc: BaseException) -> DatabaseUnavailable:
    """One readable line: where, and why (the first line of the server's reason)."""
    reason = _reason(exc)
    return DatabaseUnavailable(
        f"cannot connect to PostgreSQL at {describe_dsn(dsn)}: {reason} "
        "(check that the server runs and DEPLOYQ_DATABASE_URL is right)"
    )


def _lost_server(exc: BaseException) -> bool:
    """A failure that may mean the server is gone (not a deadlock or a cancelled query)."""
    if isinstance(exc, PoolTimeout):
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    # no SQLSTATE: the client lost the connection; 08: connection exception; 57P: shutdown
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


def _server_of(conn: psycopg.AsyncConnection[Any]) -> str:
    """``host:port`` of the server ``conn`` reached (of several in the DSN: the one libpq
    chose)."""
    host, port = conn.info.host, conn.info.port
    return host if host.startswith("/") else f"{host}:{port}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Pool:
    """``async with pool.connection() as conn``: a pooled autocommit connection, or at once
    ``psycopg.OperationalError`` while the database is known to be down."""

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int,
        max_size: int,
        timeout_s: float,
        kwargs: dict[str, Any],
    ) -> None:
        self.dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
        self.timeout_s = timeout_s
        self._kwargs = kwargs
        self.health = DatabaseHealth(describe_dsn(dsn))
        self._raw: RawPool | None = None
        self._probe: asyncio.Task[None] | None = None
        self._closed = False
        #: ``host:port`` of the server the last probe reached (after a failover: the new one)
        self._answered_by: str | None = None
        #: ``host:port`` of the server the inner pool's connections go to
        self.server: str | None = None

    def _new_raw(self) -> RawPool:
        return AsyncConnectionPool(
            self.dsn,
            min_size=self.min_size,
            max_size=self.max_size,
            open=False,
            kwargs=self._kwargs,
            timeout=self.timeout_s,
            name="deployq",
        )

    async def open(self) -> None:
        """Open and wait for the first connections, so a bad DSN fails here, clearly."""
        raw = self._new_raw()
        try:
            await raw.open(wait=True, timeout=self.timeout_s)
        except Exception as exc:
            await raw.close()
            try:  # the pool hides the server's reason; one direct attempt recovers it
                conn = await psycopg.AsyncConnection.connect(
                    self.dsn, connect_timeout=max(1, int(self.timeout_s))
                )
                await conn.close()
            except psycopg.Error as direct:
                raise unavailable(self.dsn, direct) from exc
            raise unavailable(self.dsn, exc) from exc
        self._raw = raw
        async with raw.connection() as first:
            self.server = _server_of(first)

    def connection(self, timeout: float | None = None) -> _PooledConnection:
        return _PooledConnection(self, timeout)

    async def close(self) -> None:
        self._closed = True
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        if self._raw is not None:
            await self._raw.close()

    # -- health ---------------------------------------------------------------------------

    def suspect(self, exc: BaseException) -> None:
        """A connection failed: find out whether the database is down (once at a time)."""
        if not _lost_server(exc):
            return
        if self._closed or (self._probe is not None and not self._probe.done()):
            return
        self._probe = asyncio.get_running_loop().create_task(
            self._watch(_reason(exc)), name="deployq-db-probe"
        )

    async def _answers(self) -> str | None:
        """None when a fresh connection runs SELECT 1, else why not."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                conn = await psycopg.AsyncConnection.connect(
                    self.dsn, connect_timeout=max(1, int(PROBE_TIMEOUT_S)), autocommit=True
                )
                try:
                    await conn.execute(sql("probe"))
                    self._answered_by = _server_of(conn)
                finally:
                    await conn.close()
        except (psycopg.Error, OSError) as exc:
            return _reason(exc)
        except TimeoutError:
            return f"no answer within {PROBE_TIMEOUT_S:g}s"
        return None

    async def _watch(self, first_reason: str) -> None:
        reason = await self._answers()
        if reason is None and self._answered_by != self.server:
            # the database moved (a promoted standby) before we noticed: every connection
            # of the inner pool is to the old server, a fresh pool replaces it
            before = self.server or "?"
            if await self._replace_raw():
                await self.health.moved(before, self.server or "?")
                return
            reason = "the new server did not take connections"
        if reason is None:  # one broken connection, not an outage: drop the broken ones
            if self._raw is not None:
                with contextlib.suppress(Exception):
                    await self._raw.check()
            return
        self.health.mark_down(reason or first_reason)
        # the old pool would only retry (and log) on its backoff: a fresh one replaces it
        old, self._raw = self._raw, None
        if old is not None:
            asyncio.get_running_loop().create_task(old.close(timeout=1.0))
        while not self._closed:
            await asyncio.sleep(PROBE_INTERVAL_S)
            if await self._answers() is not None:
                continue
            if await self._replace_raw():
                await self.health.mark_up(self._answered_by)
                return

    async def _replace_raw(self) -> bool:
        """A fresh inner pool (the old one may sleep in its reconnect backoff)."""
        raw = self._new_raw()
        try:
            await raw.open(wait=True, timeout=PROBE_TIMEOUT_S * 5)
        except Exception:
            await raw.close()
            return False
        old, self._raw = self._raw, raw
        self.server = self._answered_by
        if old is not None:  # connections still out are closed when they come back
            asyncio.get_running_loop().create_task(old.close(timeout=1.0))
        return True


class _PooledConnection:
    """The context manager of :meth:`Pool.connection` (a class: it is on every hot path)."""

    __slots__ = ("_inner", "_pool", "_timeout")

    def __init__(self, pool: Pool, timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._inner: Any = None

    async def __aenter__(self) -> Connection:
        pool = self._pool
        if not pool.health.up:
            raise psycopg.OperationalError(
                f"PostgreSQL at {pool.health.where} is down ({pool.health.reason}); "
                "deployq is waiting for it"
            )
        if pool._raw is None:
            raise psycopg.OperationalError("the connection pool is not open")
        self._inner = pool._raw.connection(timeout=self._timeout)
        try:
            conn: Connection = await self._inner.__aenter__()
        except psycopg.OperationalError as exc:
            pool.suspect(exc)
            raise
        return conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if isinstance(exc, psycopg.OperationalError):
            self._pool.suspect(exc)
        try:
            suppressed: bool | None = await self._inner.__aexit__(exc_type, exc, tb)
        except psycopg.OperationalError as error:
            self._pool.suspect(error)
            raise
        return suppressed


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
    kwargs: dict[str, Any] = {
        "row_factory": dict_row,
        "application_name": _application_name,
        "autocommit": True,
        "connect_timeout": max(1, int(timeout_s)),
    }
    if session:
        kwargs["options"] = " ".join(f"-c {name}={value}" for name, value in session.items())
    pool = Pool(dsn, min_size=min_size, max_size=max_size, timeout_s=timeout_s, kwargs=kwargs)
    await pool.open()
    return pool


async def connect(dsn: str, *, autocommit: bool = True, timeout_s: float = 10.0) -> Connection:
    """A single connection outside the pool (LISTEN, migrations, tools)."""
    try:
        return await psycopg.AsyncConnection.connect(
            dsn,
            autocommit=autocommit,
            row_factory=dict_row,
            application_name=_application_name,
            connect_timeout=max(1, int(timeout_s)),
        )
    except psycopg.Error as exc:
        raise unavailable(dsn, exc) from exc
