"""The one place that knows the driver: pooled connections whose errors become deployq's.

Every query of the store runs inside ``async with db.connection() as conn``; whatever
psycopg raises there (or while taking or returning the connection) leaves as an error of
``deployq.errors``, so the worker, the web service and the console catch one thing:

- the server unreachable, the pool exhausted or closed -> ``DatabaseUnavailable``
- a deadlock or serialisation failure -> ``TransactionAborted`` (nothing was written)
- a unique or foreign-key violation -> ``Conflict``
- a value PostgreSQL refuses (a NUL byte, out of range, a CHECK) -> ``InvalidInput``
- a queue limit reached (SQLSTATE DQ429, see ``_backpressure``) -> ``QueueFull``
- anything else (a bug in a statement) -> ``DatabaseError``

Code inside the block may still catch a specific psycopg error first to say more (an app
name taken is a Conflict that names the app).
"""

from __future__ import annotations

from types import TracebackType

import psycopg
from psycopg import errors as pg

from deployq.db import Connection, Pool, describe_dsn
from deployq.errors import (
    Conflict,
    DatabaseError,
    DatabaseUnavailable,
    DeployqError,
    InvalidInput,
    TransactionAborted,
)
from deployq.store._backpressure import QUEUE_FULL_SQLSTATE, queue_full


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def translate(exc: psycopg.Error, dsn: str) -> DeployqError:
    """deployq's error for a driver error (see the module docstring)."""
    reason = _reason(exc)
    if exc.sqlstate == QUEUE_FULL_SQLSTATE:
        return queue_full(exc)
    if isinstance(exc, pg.TransactionRollback):  # before OperationalError: it is one
        return TransactionAborted(
            f"the transaction was aborted by the database ({reason}); nothing was written, "
            "try again"
        )
    if isinstance(exc, psycopg.OperationalError):
        return DatabaseUnavailable(
            f"the database at {describe_dsn(dsn)} does not answer ({reason}); try again shortly"
        )
    if isinstance(exc, pg.UniqueViolation | pg.ForeignKeyViolation):
        return Conflict(f"the database refused the change: {reason}")
    if isinstance(exc, psycopg.DataError | pg.CheckViolation | pg.NotNullViolation):
        return InvalidInput(f"a value cannot be stored or compared: {reason}")
    return DatabaseError(f"the database failed: {reason}")


class Database:
    """The pool, handing out connections whose errors are translated."""

    def __init__(self, pool: Pool, dsn: str) -> None:
        self.pool = pool
        self.dsn = dsn

    def connection(self, timeout: float | None = None) -> _Connection:
        """``async with db.connection() as conn``: a pooled connection (autocommit)."""
        return _Connection(self, timeout)


class _Connection:
    """The context manager of ``Database.connection`` (a class: it is on every hot path)."""

    __slots__ = ("_db", "_inner")

    def __init__(self, db: Database, timeout: float | None) -> None:
        self._db = db
        self._inner = db.pool.connection(timeout=timeout)

    async def __aenter__(self) -> Connection:
        try:
            return await self._inner.__aenter__()
        except psycopg.Error as exc:
            raise translate(exc, self._db.dsn) from exc

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            suppressed = await self._inner.__aexit__(exc_type, exc, tb)
        except psycopg.Error as error:
            raise translate(error, self._db.dsn) from error
        if isinstance(exc, psycopg.Error) and not suppressed:
            raise translate(exc, self._db.dsn) from exc
        return suppressed
