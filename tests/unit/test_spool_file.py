"""The webhook spool's file: records survive a write torn by a crash."""

from __future__ import annotations

import json
from pathlib import Path

from deployq.webhooks.spool import CURRENT, Spool, SpoolRecord


async def test_a_torn_last_line_is_skipped_and_later_records_survive(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first = SpoolRecord("github", "push", "a", {}, b"{}")
    await spool.append(first)
    with (tmp_path / CURRENT).open("ab") as handle:
        handle.write(b'{"provider": "github", "ev')  # a crash in the middle of a write
    await spool.append(SpoolRecord("github", "push", "b", {}, b"{}"))
    seen: list[str] = []

    async def process(record: SpoolRecord) -> None:
        seen.append(record.delivery_id)

    assert await spool.replay(process) == 2
    assert seen == ["a", "b"]
    assert not spool.pending()
    assert json.loads(first.to_line())["delivery_id"] == "a"
