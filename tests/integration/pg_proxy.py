"""A TCP proxy on loopback in front of the test PostgreSQL, to cut the database off from one
Store (and bring it back) without disturbing any other test."""

from __future__ import annotations

import asyncio
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo
from tcp_proxy import TcpProxy


class PgProxy(TcpProxy):
    """``await proxy.start()``; ``proxy.dsn``; ``await proxy.stop()`` drops every connection
    and refuses new ones; ``await proxy.start()`` again listens on the same port."""

    def __init__(self, target_dsn: str) -> None:
        self.params: dict[str, Any] = conninfo_to_dict(target_dsn)
        super().__init__(
            str(self.params.get("host") or "localhost"), int(self.params.get("port") or 5432)
        )

    @property
    def dsn(self) -> str:
        return make_conninfo(**{**self.params, "host": "127.0.0.1", "port": str(self.port)})

    async def _open_target(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = self.target
        if host.startswith("/"):  # the embedded server listens on a socket directory
            return await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        return await super()._open_target()
