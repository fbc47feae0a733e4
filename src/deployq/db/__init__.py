"""Database access: the DSN (embedded PostgreSQL by default), the pool, migrations."""

from deployq.db.dsn import describe_dsn, dsn_password, resolve_dsn, with_dbname
from deployq.db.health import DatabaseHealth
from deployq.db.pool import Connection, Pool, connect, open_pool, set_application_name

__all__ = [
    "Connection",
    "DatabaseHealth",
    "Pool",
    "connect",
    "describe_dsn",
    "dsn_password",
    "open_pool",
    "resolve_dsn",
    "set_application_name",
    "with_dbname",
]
