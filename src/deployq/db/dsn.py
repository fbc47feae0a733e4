"""Which database to use, and how to describe it without leaking a password."""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from deployq.config import Settings
from deployq.db.embedded import embedded_dsn


def resolve_dsn(settings: Settings) -> str:
    """DEPLOYQ_DATABASE_URL, or the embedded server (started on first use)."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return embedded_dsn(settings.data_dir)


def dsn_password(dsn: str) -> str | None:
    """The password written in ``dsn`` (to keep it out of logs), None when there is none."""
    try:
        password = conninfo_to_dict(dsn).get("password")
    except Exception:
        return None
    return str(password) if password else None


def describe_dsn(dsn: str) -> str:
    """``host:port/dbname`` (or the socket directory), never the password."""
    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return "(unparseable DSN)"
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or "5432")
    where = host if host.startswith("/") else f"{host}:{port}"
    return f"{where}/{params.get('dbname', '')}"


def with_dbname(dsn: str, dbname: str) -> str:
    """``dsn`` pointing at database ``dbname`` instead (same server, user and options)."""
    params: dict[str, Any] = conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)
