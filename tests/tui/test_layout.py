"""What the console looks like on real terminals: every view at 80×24 and 120×40 in 256 and
16 colours and in ASCII, as the terminal receives it (snapshots of the ANSI text); no line
wider than the terminal, no table wider than the screen, status colours that keep their
meaning, and nothing but ASCII in ASCII mode.

Update the baselines with ``pytest tests/tui/test_layout.py --snapshot-update``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from rich.cells import cell_len
from rich.color import Color, ColorSystem
from textual.pilot import Pilot
from tui_helpers import (
    OPERATOR,
    colour_of,
    frozen_clock,
    manual,
    screen_rows,
    seed_fixed,
    wait_until,
)

from deployq.models import AppSpec
from deployq.store import Store
from deployq.tui import DeployqApp
from deployq.tui.screens.base import LiveScreen
from deployq.tui.screens.deploy import DeployScreen
from deployq.tui.screens.job import JobScreen
from deployq.tui.screens.queue import QueueScreen
from deployq.tui.widgets.table import Table

#: palette numbers of the standard ANSI colours
RED, GREEN, YELLOW, CYAN = 1, 2, 3, 6
SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]
COLOURS = [
    pytest.param(ColorSystem.EIGHT_BIT, id="256"),
    pytest.param(ColorSystem.STANDARD, id="16"),
]

Step = Callable[[Pilot[Any], dict[str, int]], Awaitable[None]]


async def _settle(app: DeployqApp, pilot: Pilot[Any]) -> None:
    await app.listening.wait()
    for screen in app.screen_stack:
        if isinstance(screen, LiveScreen):
            await screen.loaded.wait()
        if isinstance(screen, QueueScreen):
            await screen.estimated.wait()
    await pilot.pause()
    await pilot.pause()


async def _queue(pilot: Pilot[Any], ids: dict[str, int]) -> None:
    screen = pilot.app.screen
    assert isinstance(screen, QueueScreen)
    # the cursor off the rows whose colours are read
    screen.table.move_cursor(row=screen.table.get_row_index(str(ids["cancelled"])))


async def _job(pilot: Pilot[Any], ids: dict[str, int]) -> None:
    await pilot.app.push_screen(JobScreen(ids["failed"]))


async def _servers(pilot: Pilot[Any], ids: dict[str, int]) -> None:
    await pilot.press("3")


async def _deliveries(pilot: Pilot[Any], ids: dict[str, int]) -> None:
    await pilot.press("4")


async def _help(pilot: Pilot[Any], ids: dict[str, int]) -> None:
    await pilot.press("question_mark")


async def _deploy(pilot: Pilot[Any], ids: dict[str, int]) -> None:
    app = pilot.app
    assert isinstance(app, DeployqApp)
    await pilot.press("d")
    await wait_until(app, lambda: isinstance(app.screen, DeployScreen), what="the dialog")


VIEWS: dict[str, Step] = {
    "queue": _queue,
    "job": _job,
    "servers": _servers,
    "deliveries": _deliveries,
    "help": _help,
    "deploy": _deploy,
}


def _ansi(app: DeployqApp, system: ColorSystem) -> list[str]:
    """The lines as a terminal with ``system`` colours receives them."""
    return [
        "".join(
            seg.style.render(seg.text, color_system=system) if seg.style else seg.text
            for seg in row
        )
        for row in screen_rows(app)
    ]


def _check_fits(app: DeployqApp, width: int) -> None:
    for number, row in enumerate(screen_rows(app)):
        line = "".join(seg.text for seg in row)
        assert cell_len(line) <= width, f"line {number} is {cell_len(line)} cells: {line!r}"
    for table in app.screen.query(Table):
        assert table.virtual_size.width <= table.scrollable_content_region.width, (
            f"{table.id} is {table.virtual_size.width} cells in "
            f"{table.scrollable_content_region.width}"
        )


@pytest.mark.parametrize("system", COLOURS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("view", ["queue", "job", "help"])
async def test_views_fit_and_look_the_same(
    store: Store,
    database_url: str,
    snapshot: Any,
    view: str,
    size: tuple[int, int],
    system: ColorSystem,
) -> None:
    ids = seed_fixed(database_url)
    app = DeployqApp(store, user=OPERATOR, clock=frozen_clock)
    async with app.run_test(size=size) as pilot:
        await _settle(app, pilot)
        await VIEWS[view](pilot, ids)
        await _settle(app, pilot)
        _check_fits(app, size[0])
        lines = _ansi(app, system)
    assert "\n".join(lines) == snapshot


@pytest.mark.parametrize("view", ["servers", "deliveries", "deploy"])
async def test_other_views_fit_80x24_in_16_colours(
    store: Store, database_url: str, snapshot: Any, view: str
) -> None:
    ids = seed_fixed(database_url)
    app = DeployqApp(store, user=OPERATOR, clock=frozen_clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(app, pilot)
        await VIEWS[view](pilot, ids)
        await _settle(app, pilot)
        _check_fits(app, 80)
        lines = _ansi(app, ColorSystem.STANDARD)
    assert "\n".join(lines) == snapshot


@pytest.mark.parametrize("view", ["queue", "job", "help"])
async def test_ascii_mode_draws_nothing_but_ascii(
    store: Store, database_url: str, snapshot: Any, view: str
) -> None:
    ids = seed_fixed(database_url)
    app = DeployqApp(store, user=OPERATOR, clock=frozen_clock, ascii=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(app, pilot)
        await VIEWS[view](pilot, ids)
        await _settle(app, pilot)
        _check_fits(app, 80)
        text = ["".join(seg.text for seg in row) for row in screen_rows(app)]
    for line in text:
        assert line.isascii(), line
    if view == "queue":
        assert any("###--  60%" in line for line in text), "the progress bar in ASCII"
    assert "\n".join(text) == snapshot


@pytest.mark.parametrize("system", [ColorSystem.STANDARD, ColorSystem.EIGHT_BIT])
async def test_status_colours_keep_their_meaning_in_16_and_256_colours(
    store: Store, database_url: str, system: ColorSystem
) -> None:
    ids = seed_fixed(database_url)
    app = DeployqApp(store, user=OPERATOR, clock=frozen_clock)
    async with app.run_test(size=(120, 40)) as pilot:
        await _settle(app, pilot)
        await _queue(pilot, ids)
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        body = screen.table.region.y + 1  # below the column labels
        colours = {
            word: colour_of(app, word, system, from_line=body)
            for word in ("queued", "running", "failed", "succeeded")
        }
    expected = {"queued": YELLOW, "running": CYAN, "failed": RED, "succeeded": GREEN}
    for word, ansi in expected.items():
        number = colours[word]
        assert number is not None, word
        if system is ColorSystem.EIGHT_BIT:  # the 256-colour entry must look like that hue
            number = (
                Color.from_triplet(Color.from_ansi(number).get_truecolor())
                .downgrade(ColorSystem.STANDARD)
                .number
            )
        assert number == ansi, word


async def test_columns_fit_80_and_widen_at_120(store: Store, database_url: str) -> None:
    """A long ref, a job in checkout and a long server name stay inside 80 columns (cut with
    an ellipsis); at 120 the extra columns appear and use the width."""
    await store.apps.add(
        AppSpec(name="storefront-web", repo_url="https://example.invalid/shop/storefront-web.git")
    )
    long_ref = "refs/heads/feature/a-very-long-branch-name-for-the-login-page"
    job = (await store.queue.enqueue(manual("storefront-web", long_ref))).jobs[0]
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await _settle(app, pilot)
        _check_fits(app, 80)
        narrow = screen.table.shown
        text = "\n".join("".join(s.text for s in row) for row in screen_rows(app))
        assert "feature/a-" in text and "…" in text
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        await pilot.pause()
        _check_fits(app, 120)
        wide = screen.table.shown
        table = screen.table
        assert table.virtual_size.width >= table.scrollable_content_region.width - 2
        assert str(table.get_cell(str(job.id), "pos")) == "1"
    assert "server" not in narrow and "prio" not in narrow
    assert {"prio", "pos", "server", "sha", "attempt"} <= set(wide)


async def test_the_servers_view_shows_draining_in_full_at_80(store: Store) -> None:
    await store.servers.add("a-build-server-with-a-long-name", "unix:///var/run/docker.sock")
    await store.servers.set_draining("a-build-server-with-a-long-name", True)
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(app, pilot)
        await _servers(pilot, {})
        await _settle(app, pilot)
        _check_fits(app, 80)
        text = "\n".join("".join(s.text for s in row) for row in screen_rows(app))
    assert " draining " in text
