"""The pool on a multi-host DSN follows a promoted standby (deployq.db.pool).

A primary and a synchronous streaming standby of the embedded server's binaries
(deployq.testing.replication); the DSN lists both with target_session_attrs=read-write.
Either the pool sees the primary go (down: requests fail at once, the probe waits) and then
the promotion (up, on the standby's port), or the standby is promoted before the pool uses a
connection again (no outage at all, but the reconnect hooks run). Either way the hooks run
once, the pool's connections go to the new primary, and what was committed is there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from deployq.db import Pool
from deployq.db.pool import open_pool
from deployq.testing.replication import PostgresPair, start_pair


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[PostgresPair]:
    with start_pair(tmp_path / "pg") as running:
        yield running


class Reconnects(list[str]):
    """The pool's server each time the reconnect hooks ran; ``ran`` is set then."""

    def __init__(self) -> None:
        super().__init__()
        self.ran = asyncio.Event()


async def _pool(pair: PostgresPair) -> tuple[Pool, Reconnects]:
    """A pool on both servers, with a table written before anything fails."""
    pool = await open_pool(pair.dsn("postgres"), min_size=2, max_size=2, timeout_s=2)
    reconnects = Reconnects()

    async def hook() -> None:
        reconnects.append(pool.server or "")
        reconnects.ran.set()

    pool.health.on_reconnect(hook)
    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE kept (n int)")
        await conn.execute("INSERT INTO kept VALUES (1)")  # synchronous: on the standby too
    return pool, reconnects


async def _served_by(pool: Pool) -> tuple[int, bool, int]:
    async with pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT inet_server_port(), pg_is_in_recovery(), (SELECT count(*) FROM kept)"
            )
        ).fetchone()
    assert row is not None
    return row["inet_server_port"], row["pg_is_in_recovery"], row["count"]


async def test_an_outage_ends_on_the_promoted_standby(pair: PostgresPair) -> None:
    pool, reconnects = await _pool(pair)
    try:
        assert pool.server == f"127.0.0.1:{pair.primary.port}"
        await asyncio.to_thread(pair.stop_primary)
        with pytest.raises(psycopg.OperationalError):
            await _served_by(pool)
        # the standby refuses (read-only), the primary is gone: down, and said at once
        async with asyncio.timeout(10):
            await pool.health.wait_down()
        with pytest.raises(psycopg.OperationalError, match="is down"):
            await _served_by(pool)
        await asyncio.to_thread(pair.promote)
        assert await pool.health.wait_up(timeout_s=10)
        assert await _served_by(pool) == (pair.standby.port, False, 1)
        assert reconnects == [f"127.0.0.1:{pair.standby.port}"]
    finally:
        await pool.close()


async def test_a_failover_done_before_the_pool_noticed_reconnects_it(pair: PostgresPair) -> None:
    pool, reconnects = await _pool(pair)
    try:
        await asyncio.to_thread(pair.stop_primary)
        await asyncio.to_thread(pair.promote)
        with pytest.raises(psycopg.OperationalError):  # a connection to the old primary
            await _served_by(pool)
        async with asyncio.timeout(10):  # the probe runs in a task of the pool's own
            await reconnects.ran.wait()
        assert pool.health.outages == 0 and pool.health.up
        assert reconnects == [f"127.0.0.1:{pair.standby.port}"]
        assert await _served_by(pool) == (pair.standby.port, False, 1)
    finally:
        await pool.close()
