"""Fuzz every route of /api/v1/openapi.json with schemathesis and every check: the server
and its document agree (no 5xx, statuses, content types, headers and bodies as documented).
The seed is fixed and the example count bounded, so a run is repeatable and short."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from webhook_helpers import add_app

from deployq.models import TokenScope, Trigger, TriggerKind
from deployq.store import Store
from deployq.webhooks.app import create_app

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


@pytest.mark.slow
@pytest.mark.skipif(not SCHEMATHESIS.exists(), reason="schemathesis is not installed")
async def test_no_input_makes_the_service_fail(
    store: Store, aiohttp_server: Any, tmp_path: Path
) -> None:
    await add_app(store)
    await store.queue.enqueue(
        Trigger(kind=TriggerKind.MANUAL, app="web", ref="refs/heads/main", actor="fuzz")
    )
    _, admin = await store.tokens.create("fuzz", TokenScope.ADMIN)
    server = await aiohttp_server(create_app(store))
    proc = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "run",
        f"http://127.0.0.1:{server.port}/api/v1/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "12",
        "--max-time",
        "35",
        "--seed",
        os.environ.get("DEPLOYQ_TEST_FUZZ_SEED", "7"),
        "--workers",
        "2",
        "--generation-database",
        "none",
        "--header",
        f"Authorization: Bearer {admin}",
        "--report-dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
