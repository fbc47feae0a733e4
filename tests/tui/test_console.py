"""Keys from settings, the command palette, and a database that goes away and comes back."""

from __future__ import annotations

from typing import Any

import psycopg
from click.testing import CliRunner
from psycopg.conninfo import conninfo_to_dict
from textual.command import CommandList
from tui_helpers import OPERATOR, add_app, manual, wait_until

from deployq.cli import main
from deployq.models import JobStatus
from deployq.store import Store
from deployq.tui import DeployqApp
from deployq.tui.screens.confirm import ConfirmScreen
from deployq.tui.screens.deploy import DeployScreen
from deployq.tui.screens.queue import QueueScreen


async def _queue(app: DeployqApp) -> QueueScreen:
    screen = app.screen
    assert isinstance(screen, QueueScreen)
    await screen.loaded.wait()
    await app.listening.wait()
    return screen


async def test_keys_are_remapped_from_settings(settings_factory: Any, database_url: str) -> None:
    store = await Store.open(
        settings_factory(tui_keys={"cancel": "x", "view_servers": "S"}), database_url, min_size=1
    )
    try:
        await add_app(store, "web")
        await store.queue.enqueue(manual("web"))
        app = DeployqApp(store, user=OPERATOR)
        async with app.run_test(size=(120, 40)) as pilot:
            await _queue(app)
            await pilot.press("c")
            await pilot.pause()
            assert not isinstance(app.screen, ConfirmScreen), "c no longer cancels"
            await pilot.press("x")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n", "S")
            await pilot.pause()
            assert type(app.screen).__name__ == "ServersScreen"
    finally:
        await store.close()


async def test_the_command_palette_runs_actions(store: Store) -> None:
    await add_app(store, "web")
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(120, 40)) as pilot:
        await _queue(app)
        await pilot.press("colon", *"Deploy")
        await wait_until(
            app,
            lambda: any(list_.option_count for list_ in app.screen.query(CommandList)),
            what="hits",
        )
        await pilot.press("enter")
        await wait_until(app, lambda: isinstance(app.screen, DeployScreen), what="the dialog")


async def test_the_palette_of_a_read_only_console_has_no_actions(store: Store) -> None:
    from deployq.tui.commands import DeployqCommands

    app = DeployqApp(store, user=OPERATOR, read_only=True)
    async with app.run_test(size=(120, 40)):
        screen = await _queue(app)
        titles = [title for title, _, _ in DeployqCommands(screen)._commands()]
        assert any(t.startswith("Filter") for t in titles)
        assert not any(t.startswith(("Cancel", "Retry", "Deploy", "Kill")) for t in titles)


def _set_connections(pg_server_dsn: str, database_url: str, allow: bool) -> None:
    name = conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allow).lower()}')
        if not allow:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


async def test_a_lost_database_shows_a_banner_and_the_console_recovers(
    store: Store, pg_server_dsn: str, database_url: str
) -> None:
    await add_app(store, "web")
    job = (await store.queue.enqueue(manual("web"))).jobs[0]
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _queue(app)
        _set_connections(pg_server_dsn, database_url, allow=False)
        try:
            await wait_until(app, lambda: app.db_problem is not None, what="the banner")
            assert screen.query_one("Banner").display
            await pilot.press("c", "y")  # an action while down is refused, not a crash
            await pilot.pause()
        finally:
            _set_connections(pg_server_dsn, database_url, allow=True)
        await wait_until(
            app, lambda: app.db_problem is None and app.listening.is_set(), what="recovery"
        )
        assert not screen.query_one("Banner").display
        await store.jobs.cancel(job.id, actor="bob")
        await wait_until(
            app, lambda: screen.jobs[job.id].status is JobStatus.CANCELLED, what="live again"
        )


def test_cli_offers_the_console() -> None:
    result = CliRunner().invoke(main, ["tui", "--help"])
    assert result.exit_code == 0
    assert "--read-only" in result.output and "--config" in result.output
