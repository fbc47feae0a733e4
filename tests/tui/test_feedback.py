"""Every action says what became of it: done, refused (read-only, finished job) or failed
(database down: nothing is lost silently). The banner is one line that fits the setup."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from tui_helpers import OPERATOR, add_app, manual, screen_text, wait_until

from deployq.models import JobStatus
from deployq.store import Store
from deployq.tui import DeployqApp
from deployq.tui.screens.confirm import ConfirmScreen
from deployq.tui.screens.queue import QueueScreen
from deployq.tui.widgets.banner import Banner


async def _queue(app: DeployqApp) -> QueueScreen:
    screen = app.screen
    assert isinstance(screen, QueueScreen)
    await screen.loaded.wait()
    await app.listening.wait()
    return screen


def _toasts(app: DeployqApp) -> list[tuple[str, str]]:
    return [(str(n.message), n.severity) for n in app._notifications]


def _set_connections(pg_server_dsn: str, database_url: str, allow: bool) -> None:
    name = conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allow).lower()}')
        if not allow:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


async def test_a_cancel_confirmed_while_the_database_is_down_says_it_failed(
    store: Store, pg_server_dsn: str, database_url: str
) -> None:
    await add_app(store, "web")
    job = (await store.queue.enqueue(manual("web"))).jobs[0]
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(80, 24)) as pilot:
        await _queue(app)
        _set_connections(pg_server_dsn, database_url, allow=False)
        try:
            await wait_until(app, lambda: app.db_problem is not None, what="the banner")
            await pilot.press("c")
            await wait_until(app, lambda: isinstance(app.screen, ConfirmScreen), what="asked")
            await pilot.press("y")
            await wait_until(
                app,
                lambda: any(s == "error" for _, s in _toasts(app)),
                what="an error toast",
                timeout_s=20,
            )
        finally:
            _set_connections(pg_server_dsn, database_url, allow=True)
        message = next(m for m, s in _toasts(app) if s == "error")
    assert f"cancel #{job.id} failed" in message and "try again" in message
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT status FROM jobs WHERE id = %s", (job.id,)).fetchone()
    assert row == (JobStatus.QUEUED.value,)


async def test_a_read_only_console_says_so_and_refuses_every_verb_aloud(store: Store) -> None:
    await add_app(store, "web")
    job = (await store.queue.enqueue(manual("web"))).jobs[0]
    app = DeployqApp(store, user=OPERATOR, read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await _queue(app)
        assert "READ-ONLY" in screen_text(app)[0]
        for key in ("c", "r", "plus", "d", "C"):
            before = len(app._notifications)
            await pilot.press(key)
            await wait_until(
                app, lambda n=before: len(app._notifications) > n, what=f"{key} refused"
            )
            assert "read-only" in _toasts(app)[-1][0]
            assert not isinstance(app.screen, ConfirmScreen)
    assert (await store.jobs.get(job.id)).status is JobStatus.QUEUED
    assert (await store.jobs.get(job.id)).priority == job.priority


async def test_the_database_banner_is_one_line_without_the_url_hint_when_embedded(
    settings_factory: Any, database_url: str
) -> None:
    store = await Store.open(settings_factory(database_url=None), database_url, min_size=1)
    try:
        app = DeployqApp(store, user=OPERATOR)
        async with app.run_test(size=(80, 24)) as pilot:
            await _queue(app)
            app.db_problem = (
                "cannot connect to PostgreSQL at 127.0.0.1:5/x: connection failed: connection "
                "to server at 127.0.0.1, port 5 failed: Connection refused "
                "(check that the server runs and DEPLOYQ_DATABASE_URL is right)"
            )
            await pilot.pause()
            banner = app.screen.query_one(Banner)
            assert banner.display and banner.size.height == 1
            rendered = banner.render_line(0).text
            assert "DEPLOYQ_DATABASE_URL" not in str(banner.render())
            assert rendered.strip().startswith("database unavailable")
            assert "deployq db-url" in str(banner.render())
    finally:
        await store.close()
