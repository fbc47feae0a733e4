"""Every connection of a process names the process's role in pg_stat_activity
(``deployq worker``, ``deployq serve``, ``deployq tui``): docs/SCALING.md counts with it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deployq.db import connect, open_pool, set_application_name
from deployq.db import pool as pool_module


@pytest.fixture
def role() -> Iterator[None]:
    before = pool_module._application_name
    set_application_name("worker")
    yield
    pool_module._application_name = before


async def test_pooled_and_single_connections_name_the_role(database_url: str, role: None) -> None:
    pool = await open_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.connection() as conn:
            row = await (await conn.execute("SHOW application_name")).fetchone()
        assert row == {"application_name": "deployq worker"}
    finally:
        await pool.close()
    single = await connect(database_url)
    async with single:
        row = await (await single.execute("SHOW application_name")).fetchone()
    assert row == {"application_name": "deployq worker"}
