"""Keys do what the help says: ctrl+p opens the palette, Home/End and g/G move the cursor,
the palette and the help list the console's own commands, each with what it does."""

from __future__ import annotations

from textual.command import CommandList, CommandPalette
from tui_helpers import OPERATOR, add_app, manual, screen_text, seed_fixed, wait_until

from deployq.store import Store
from deployq.tui import DeployqApp
from deployq.tui.screens.help import HelpScreen
from deployq.tui.screens.queue import QueueScreen
from deployq.tui.widgets.keybar import KeyBar


async def _queue(app: DeployqApp) -> QueueScreen:
    screen = app.screen
    assert isinstance(screen, QueueScreen)
    await screen.loaded.wait()
    await app.listening.wait()
    return screen


async def test_ctrl_p_opens_the_palette_and_runs_a_command(store: Store) -> None:
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(80, 24)) as pilot:
        await _queue(app)
        await pilot.press("ctrl+p")
        await wait_until(app, lambda: CommandPalette.is_open(app), what="the palette")
        await pilot.press(*"servers")
        await wait_until(
            app,
            lambda: any(list_.option_count for list_ in app.screen.query(CommandList)),
            what="hits",
        )
        await pilot.press("enter")
        await wait_until(
            app, lambda: type(app.screen).__name__ == "ServersScreen", what="the servers view"
        )


async def test_home_end_and_g_G_move_to_the_first_and_last_row(store: Store) -> None:
    await add_app(store, "web", concurrency=50)
    for n in range(30):
        await store.queue.enqueue(manual("web", ref=f"refs/heads/b{n}"))
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _queue(app)
        table = screen.table
        assert table.row_count == 30
        for key, row in (("G", 29), ("g", 0), ("end", 29), ("home", 0)):
            await pilot.press(key)
            await pilot.pause()
            assert table.cursor_row == row, key
        assert table.scroll_x == 0


async def test_the_palette_lists_the_consoles_commands_not_cursor_keys(store: Store) -> None:
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(80, 24)) as pilot:
        await _queue(app)
        await pilot.press("ctrl+p")
        await wait_until(
            app,
            lambda: any(list_.option_count for list_ in app.screen.query(CommandList)),
            what="the command list",
        )
        commands = app.screen.query_one(CommandList)
        titles = [str(commands.get_option_at_index(i).prompt) for i in range(commands.option_count)]
    assert not any(t.startswith(("Cursor", "Page", "Scroll", "Top", "Bottom")) for t in titles)
    assert any(t.startswith("Filter") for t in titles)
    assert any(t.startswith("Deploy") for t in titles)


async def test_the_help_fits_80x24_and_says_what_every_key_does(store: Store) -> None:
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(80, 24)) as pilot:
        await _queue(app)
        await pilot.press("question_mark")
        await wait_until(app, lambda: isinstance(app.screen, HelpScreen), what="the help")
        await pilot.pause()
        help_ = app.screen
        assert isinstance(help_, HelpScreen)
        text = "\n".join(screen_text(app))
        rows = help_.rows()
        scroll = help_.query_one(".help")
        assert scroll.max_scroll_y == 0, "the help must fit without scrolling"
    assert "esc closes" in text
    for keys, what, details in rows:
        assert details, f"{keys} {what} says nothing about what it does"
    for what in ("Filter", "Clear", "Show", "Cancel", "Kill", "Quit", "View"):
        assert any(row[1] == what for row in rows), what
        assert what in text


async def test_the_key_bar_fits_80_columns_and_offers_only_what_applies(
    store: Store, database_url: str
) -> None:
    ids = seed_fixed(database_url)
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _queue(app)
        bar = screen.query_one(KeyBar)
        table = screen.table

        def line() -> str:
            return screen_text(app)[-1]

        table.move_cursor(row=table.get_row_index(str(ids["queued"])))
        await pilot.pause()
        queued = line()
        table.move_cursor(row=table.get_row_index(str(ids["ok"])))
        await pilot.pause()
        finished = line()
        await pilot.press("slash")
        await pilot.pause()
        typing = line()
        labels = {label for _, label in bar.items()}
    for shown in (queued, finished, typing):
        assert shown.rstrip().endswith("? help q quit"), shown
    assert "c cancel" in queued and "+- prio" in queued and "r retry" not in queued
    assert "1-4 view" in queued and ": cmds" in queued
    assert "cancel" not in finished and "prio" not in finished and "r retry" in finished
    assert "prio" not in typing and "esc clear" in typing
    assert labels == {"done", "clear"}
