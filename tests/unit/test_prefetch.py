"""Which build servers the cache prefetch pulls onto (deployq.worker.prefetch)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from deployq.config import Settings
from deployq.models import BuildServer
from deployq.worker.prefetch import Prefetcher
from deployq.worker.servers import ServerState


def server(sid: int, docker_host: str, **fields: Any) -> BuildServer:
    values: dict[str, Any] = {
        "id": sid,
        "name": f"s{sid}",
        "docker_host": docker_host,
        "capacity": 2,
        "arch": "amd64",
        "labels": [],
        "draining": False,
        "healthy": True,
        "last_heartbeat_at": None,
        "last_error": None,
        "engine_version": None,
        "created_at": datetime.now(UTC),
    }
    return BuildServer(**(values | fields))


def prefetcher(
    servers: list[BuildServer], *, reasons: dict[int, str] | None = None, **settings: Any
) -> Prefetcher:
    """A Prefetcher over a monitor view of ``servers`` as host ``here`` sees them."""
    states = {s.id: ServerState(s, True, (reasons or {}).get(s.id), None, 0.0) for s in servers}
    monitor = SimpleNamespace(settings=Settings(**settings), states=states, host_id="here")
    return Prefetcher(monitor)  # type: ignore[arg-type]


def names(servers: list[BuildServer]) -> list[str]:
    return [s.name for s in servers]


def test_the_other_usable_servers_pull_what_one_pushed() -> None:
    source = server(1, "unix:///var/run/docker.sock", host_id="here")
    others = [
        server(2, "tcp://b:2376"),
        server(3, "tcp://c:2376", draining=True),
        server(4, "tcp://d:2376"),  # failed, as this host sees it
        server(5, "unix:///var/run/docker.sock", host_id="elsewhere"),
        server(6, "ssh://builder@f"),
        server(7, "tcp://g:2376", running=2),  # busy at capacity
        server(8, "unix:///run/other.sock", host_id="here"),
        server(9, "npipe:////./pipe/docker_engine"),  # no way to it from here
    ]
    chosen = prefetcher([source, *others], reasons={4: "engine down"}).targets(source)
    assert names(chosen) == ["s2", "s6", "s8"]


@pytest.mark.parametrize(
    ("setting", "count", "expected"), [(None, 1, 0), (None, 2, 1), (False, 2, 0), (True, 2, 1)]
)
def test_on_by_default_with_more_than_one_server(
    setting: bool | None, count: int, expected: int
) -> None:
    servers = [server(n, f"tcp://s{n}:2376") for n in range(1, count + 1)]
    assert len(prefetcher(servers, cache_prefetch=setting).targets(servers[0])) == expected


def test_the_setting_reads_an_empty_value_as_unset() -> None:
    assert Settings(cache_prefetch="").cache_prefetch is None  # type: ignore[arg-type]
    assert Settings(cache_prefetch="false").cache_prefetch is False  # type: ignore[arg-type]


async def test_a_failed_pull_is_an_info_line_and_a_newer_push_replaces_the_older_prefetch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An engine that refuses the connection (nothing listens on port 1): the job is not
    told, the worker's log says so once, at info; the older push's prefetch never runs."""
    source = server(1, "tcp://127.0.0.1:2")
    target = server(2, "tcp://127.0.0.1:1")
    fetcher = prefetcher([source, target])
    caplog.set_level("DEBUG", logger="deployq.worker.prefetch")

    fetcher.pushed("app", "main", source, ["reg/app@sha256:" + "1" * 64], None)
    older = fetcher._tasks[("app", "main", 2)]
    fetcher.pushed("app", "main", source, ["reg/app@sha256:" + "2" * 64], None)
    await fetcher.idle()

    assert older.cancelled()
    failed = [r for r in caplog.records if "prefetch of" in r.getMessage()]
    assert [(r.levelname, "2" * 64 in r.getMessage()) for r in failed] == [("INFO", True)]
    assert "onto s2 failed" in failed[0].getMessage()


async def test_the_pulls_start_once_the_job_that_pushed_has_written_its_outcome(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Until the job's run is over (``after`` set) the prefetch holds no slot and pulls
    nothing; idle() waits for it all the same; then it pulls (here: refused, logged)."""
    source = server(1, "tcp://127.0.0.1:2")
    target = server(2, "tcp://127.0.0.1:1")
    fetcher = prefetcher([source, target])
    caplog.set_level("DEBUG", logger="deployq.worker.prefetch")
    concluded = asyncio.Event()

    fetcher.pushed("app", "main", source, ["reg/app@sha256:" + "3" * 64], None, after=concluded)
    task = fetcher._tasks[("app", "main", 2)]
    await asyncio.sleep(0)  # one turn of the loop: the task starts and waits for the event
    idle = asyncio.create_task(fetcher.idle())
    await asyncio.sleep(0)

    assert not task.done() and not idle.done()
    assert fetcher._slots._value == 2  # no slot taken
    assert not [r for r in caplog.records if "prefetch of" in r.getMessage()]
    concluded.set()
    await idle
    assert [r.levelname for r in caplog.records if "prefetch of" in r.getMessage()] == ["INFO"]
