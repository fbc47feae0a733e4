"""The queue view against a real database: rows, live updates, filter, actions."""

from __future__ import annotations

from tui_helpers import OPERATOR, add_app, manual, wait_until

from deployq.config import Settings
from deployq.store import Store
from deployq.tui import DeployqApp
from deployq.tui.screens.queue import QueueScreen


async def test_the_table_shows_enqueued_jobs_newest_first(store: Store) -> None:
    await add_app(store, "web")
    first = (await store.jobs.enqueue(manual("web", "refs/heads/a"))).jobs[0]
    second = (await store.jobs.enqueue(manual("web", "refs/heads/b"))).jobs[0]
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(120, 40)):
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await screen.loaded.wait()
        keys = [row.key.value for row in screen.table.ordered_rows]
        assert keys == [str(second.id), str(first.id)]
        assert screen.table.get_cell(str(first.id), "ref") == "a"


async def test_a_job_enqueued_elsewhere_appears_without_a_key_press(
    store: Store, settings: Settings, database_url: str
) -> None:
    await add_app(store, "web")
    old = (await store.jobs.enqueue(manual("web", "refs/heads/old"))).jobs[0]
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(120, 40)):
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await screen.loaded.wait()
        await app.listening.wait()
        other = await Store.open(settings, database_url, min_size=1)
        try:
            new = (await other.jobs.enqueue(manual("web", "refs/heads/new"))).jobs[0]
        finally:
            await other.close()
        await wait_until(app, lambda: str(new.id) in screen.table.rows, what="the new row")
        assert screen.table.ordered_rows[0].key.value == str(new.id)
        assert screen.cursor_job_id() == old.id, "the cursor stays on the same job"


async def test_a_status_change_updates_the_row_in_place(store: Store) -> None:
    await add_app(store, "web")
    job = (await store.jobs.enqueue(manual("web"))).jobs[0]
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await screen.loaded.wait()
        await app.listening.wait()
        await pilot.pause()
        assert "cancelled" not in app.export_screenshot()
        await store.jobs.cancel(job.id, actor="bob")
        await wait_until(
            app,
            lambda: screen.table.get_cell(str(job.id), "status").plain == "cancelled",
            what="the cancelled status",
        )
        await pilot.pause()
        assert screen.table.row_count == 1
        assert "cancelled" in app.export_screenshot(), "the new status is drawn"


async def test_the_filter_narrows_the_table(store: Store) -> None:
    await add_app(store, "web")
    await add_app(store, "api")
    web = (await store.jobs.enqueue(manual("web", "refs/heads/main"))).jobs[0]
    api = (await store.jobs.enqueue(manual("api", "refs/heads/feature-x"))).jobs[0]
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await screen.loaded.wait()
        await pilot.press("slash", *"app:api")
        await pilot.pause()
        assert [r.key.value for r in screen.table.ordered_rows] == [str(api.id)]
        await pilot.press("escape")
        await pilot.pause()
        assert screen.table.row_count == 2
        await pilot.press("slash", *"feature", "enter")
        await pilot.pause()
        assert [r.key.value for r in screen.table.ordered_rows] == [str(api.id)]
        await pilot.press("escape", "a")  # clear the text, hide the active group
        await pilot.pause()
        assert screen.table.row_count == 0
        await pilot.press("a")
        await pilot.pause()
        assert {r.key.value for r in screen.table.ordered_rows} == {str(web.id), str(api.id)}
