"""Snapshots of every view at 80×24 and 120×40, from fixed data and a frozen clock.

The app runs in its own event loop here (pytest-textual-snapshot drives it), so these tests
are synchronous: the data goes in with plain psycopg and the app opens its own store.
Update the baselines with ``pytest tests/tui/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from tui_helpers import OPERATOR, frozen_clock, seed_fixed

from deployq.config import Settings
from deployq.store import Store
from deployq.tui import DeployqApp
from deployq.tui.screens.base import LiveScreen
from deployq.tui.screens.job import JobScreen
from deployq.tui.screens.queue import QueueScreen

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


def _app(settings: Settings, database_url: str) -> DeployqApp:
    async def open_store() -> Store:
        return await Store.open(settings, database_url, min_size=1)

    return DeployqApp(open_store, user=OPERATOR, clock=frozen_clock)


async def _settle(pilot: Pilot[Any]) -> None:
    """Wait until the live feed is connected and the view on top has loaded."""
    app = pilot.app
    assert isinstance(app, DeployqApp)
    await app.listening.wait()
    for screen in app.screen_stack:
        if isinstance(screen, LiveScreen):
            await screen.loaded.wait()
        if isinstance(screen, QueueScreen):
            await screen.estimated.wait()
    await pilot.pause()


def _then(*steps: Callable[[Pilot[Any]], Awaitable[None]]) -> Callable[[Pilot[Any]], Any]:
    async def run(pilot: Pilot[Any]) -> None:
        await _settle(pilot)
        for step in steps:
            await step(pilot)
            await _settle(pilot)

    return run


def _view(name: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def step(pilot: Pilot[Any]) -> None:
        await pilot.app.run_action(f"view({name!r})")

    return step


@pytest.mark.parametrize("size", SIZES)
def test_queue_view(snap_compare: Any, settings: Settings, database_url: str, size: Any) -> None:
    seed_fixed(database_url)
    assert snap_compare(_app(settings, database_url), terminal_size=size, run_before=_then())


@pytest.mark.parametrize("size", SIZES)
def test_job_view_of_a_failed_job(
    snap_compare: Any, settings: Settings, database_url: str, size: Any
) -> None:
    ids = seed_fixed(database_url)

    async def open_failed(pilot: Pilot[Any]) -> None:
        await pilot.app.push_screen(JobScreen(ids["failed"]))

    assert snap_compare(
        _app(settings, database_url), terminal_size=size, run_before=_then(open_failed)
    )


@pytest.mark.parametrize("size", SIZES)
def test_servers_view(snap_compare: Any, settings: Settings, database_url: str, size: Any) -> None:
    seed_fixed(database_url)
    assert snap_compare(
        _app(settings, database_url), terminal_size=size, run_before=_then(_view("servers"))
    )


@pytest.mark.parametrize("size", SIZES)
def test_deliveries_view(
    snap_compare: Any, settings: Settings, database_url: str, size: Any
) -> None:
    seed_fixed(database_url)
    assert snap_compare(
        _app(settings, database_url), terminal_size=size, run_before=_then(_view("deliveries"))
    )


@pytest.mark.parametrize("size", SIZES)
def test_help_over_the_queue(
    snap_compare: Any, settings: Settings, database_url: str, size: Any
) -> None:
    seed_fixed(database_url)

    async def help_(pilot: Pilot[Any]) -> None:
        await pilot.press("question_mark")

    assert snap_compare(_app(settings, database_url), terminal_size=size, run_before=_then(help_))


@pytest.mark.parametrize("size", SIZES)
def test_deploy_dialog(snap_compare: Any, settings: Settings, database_url: str, size: Any) -> None:
    seed_fixed(database_url)

    async def deploy(pilot: Pilot[Any]) -> None:
        await pilot.press("d")
        for _ in range(100):  # the dialog opens after the apps are read
            if type(pilot.app.screen).__name__ == "DeployScreen":
                break
            await pilot.pause(0.01)

    assert snap_compare(_app(settings, database_url), terminal_size=size, run_before=_then(deploy))
