"""What the console looks like on real terminals: status colours that keep their meaning in
16 and 256 colours."""

from __future__ import annotations

import pytest
from rich.color import ColorSystem
from tui_helpers import OPERATOR, colour_of, frozen_clock, seed_fixed

from deployq.store import Store
from deployq.tui import DeployqApp
from deployq.tui.screens.queue import QueueScreen

#: palette numbers of the standard ANSI colours
RED, GREEN, YELLOW, CYAN = 1, 2, 3, 6


@pytest.mark.parametrize("system", [ColorSystem.STANDARD, ColorSystem.EIGHT_BIT])
async def test_status_colours_keep_their_meaning_in_16_and_256_colours(
    store: Store, database_url: str, system: ColorSystem
) -> None:
    ids = seed_fixed(database_url)
    app = DeployqApp(store, user=OPERATOR, clock=frozen_clock)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await screen.loaded.wait()
        table = screen.table
        table.move_cursor(row=table.get_row_index(str(ids["cancelled"])))  # off the rows read
        await pilot.pause()
        body = table.region.y + 1  # below the header line and the column labels
        colours = {
            word: colour_of(app, word, system, from_line=body)
            for word in ("queued", "running", "failed", "succeeded")
        }
    if system is ColorSystem.STANDARD:
        assert colours == {"queued": YELLOW, "running": CYAN, "failed": RED, "succeeded": GREEN}
    else:
        from rich.color import Color

        for word, ansi in (
            ("queued", YELLOW),
            ("running", CYAN),
            ("failed", RED),
            ("succeeded", GREEN),
        ):
            number = colours[word]
            assert number is not None
            triplet = Color.from_ansi(number).get_truecolor()
            assert Color.from_triplet(triplet).downgrade(ColorSystem.STANDARD).number == ansi, word
