"""Which database to use, and how to describe it without leaking a password.

A DSN may name several servers (``postgresql://h1:5432,h2:5433/deployq?target_session_attrs=
read-write``): libpq tries them in order and, with ``target_session_attrs=read-write``, takes
the one that accepts writes, so after a standby is promoted every new connection finds it.
deployq passes the DSN through unchanged; only its description lists every host.
"""

from __future__ import annotations

from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from deployq.config import Settings
from deployq.db.embedded import embedded_dsn

DEFAULT_PORT = "5432"


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


def dsn_servers(dsn: str) -> list[str]:
    """Every server ``dsn`` names, in libpq's order: ``host:port`` (or a socket directory).

    libpq's rules: ``host`` and ``port`` are comma-separated lists of the same length, or a
    single port for every host; an empty entry is the default."""
    params = conninfo_to_dict(dsn)
    hosts = str(params.get("host") or params.get("hostaddr") or "localhost").split(",")
    ports = str(params.get("port") or "").split(",")
    if len(ports) == 1:
        ports = ports * len(hosts)
    servers = []
    for index, host in enumerate(hosts):
        host = host or "localhost"
        port = (ports[index] if index < len(ports) else "") or DEFAULT_PORT
        if host.startswith("/"):
            servers.append(host)
        elif ":" in host:  # an IPv6 address
            servers.append(f"[{host}]:{port}")
        else:
            servers.append(f"{host}:{port}")
    return servers


def describe_dsn(dsn: str) -> str:
    """``host:port/dbname`` (``h1:p1,h2:p2/dbname`` for several servers, a socket directory
    as itself), never the password."""
    try:
        servers = dsn_servers(dsn)
        dbname = conninfo_to_dict(dsn).get("dbname", "")
    except Exception:
        return "(unparseable DSN)"
    return f"{','.join(servers)}/{dbname}"


def with_dbname(dsn: str, dbname: str) -> str:
    """``dsn`` pointing at database ``dbname`` instead (same servers, user and options)."""
    params: dict[str, Any] = conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)
