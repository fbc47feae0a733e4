"""The queue view against a real database: rows, live updates, filter, actions."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from tui_helpers import FROZEN_NOW, OPERATOR, add_app, frozen_clock, manual, wait_until

from deployq.config import Settings
from deployq.models import JobStatus, Priority
from deployq.store import Store
from deployq.tui import DeployqApp
from deployq.tui.screens.queue import QueueScreen


async def test_queued_jobs_are_listed_in_claim_order_with_their_place(store: Store) -> None:
    await add_app(store, "web", concurrency=10)
    a = (await store.queue.enqueue(manual("web", "refs/heads/a"))).jobs[0]
    b = (await store.queue.enqueue(manual("web", "refs/heads/b"))).jobs[0]
    c = (await store.queue.enqueue(manual("web", "refs/heads/c", priority=Priority.HIGH))).jobs[0]
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await screen.loaded.wait()
        await app.listening.wait()
        table = screen.table

        def order() -> list[str]:
            return [str(row.key.value) for row in table.ordered_rows]

        def place(job_id: int) -> str:
            return str(table.get_cell(str(job_id), "pos"))

        assert order() == [str(c.id), str(a.id), str(b.id)]
        assert [place(c.id), place(a.id), place(b.id)] == ["1", "2", "3"]
        assert str(table.get_cell(str(c.id), "prio")) == "high"
        assert str(table.get_cell(str(a.id), "ref")) == "a"
        table.move_cursor(row=2)
        await pilot.press("plus")  # b becomes high too, and was pushed before c
        await wait_until(app, lambda: order()[0] == str(b.id), what="b first")
        assert [place(b.id), place(c.id), place(a.id)] == ["1", "2", "3"]
        assert screen.cursor_job_id() == b.id, "the cursor follows the job it acted on"


async def test_the_estimated_start_waits_for_a_running_build_of_the_same_app(
    store: Store, database_url: str
) -> None:
    await add_app(store, "web")
    await store.servers.add("builder-1", "unix:///var/run/docker.sock", capacity=4)
    done = (await store.queue.enqueue(manual("web", "refs/heads/done"))).jobs[0]
    running = (await store.queue.enqueue(manual("web", "refs/heads/running"))).jobs[0]
    waiting = (await store.queue.enqueue(manual("web", "refs/heads/waiting"))).jobs[0]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE jobs SET status = 'succeeded', started_at = %s, finished_at = %s WHERE id = %s",
            (
                FROZEN_NOW - timedelta(minutes=5, seconds=30),
                FROZEN_NOW - timedelta(minutes=5),
                done.id,
            ),
        )
        conn.execute(
            "UPDATE jobs SET status = 'running', started_at = %s, attempt = 1, "
            "worker_id = 'host:1:x', server_id = (SELECT id FROM build_servers), "
            "lease_expires_at = now() + interval '1 day' WHERE id = %s",
            (FROZEN_NOW - timedelta(seconds=10), running.id),
        )
        conn.execute(
            "UPDATE jobs SET run_after = %s, enqueued_at = %s WHERE id = %s",
            (FROZEN_NOW - timedelta(seconds=5), FROZEN_NOW - timedelta(seconds=5), waiting.id),
        )
    app = DeployqApp(store, user=OPERATOR, clock=frozen_clock)
    async with app.run_test(size=(120, 40)):
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await screen.loaded.wait()
        await wait_until(app, lambda: waiting.id in screen.estimates, what="the estimate")
        screen.clock_tick()
        note = str(screen.table.get_cell(str(waiting.id), "note"))
    # the app builds one push at a time and takes 30 s; the running build started 10 s ago
    assert note.startswith("pos 1")
    assert "in ~20s" in note or "in ~19s" in note, note


async def test_a_job_enqueued_elsewhere_appears_without_a_key_press(
    store: Store, settings: Settings, database_url: str
) -> None:
    await add_app(store, "web")
    old = (await store.queue.enqueue(manual("web", "refs/heads/old"))).jobs[0]
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(120, 40)):
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await screen.loaded.wait()
        await app.listening.wait()
        other = await Store.open(settings, database_url, min_size=1)
        try:
            new = (await other.queue.enqueue(manual("web", "refs/heads/new"))).jobs[0]
        finally:
            await other.close()
        await wait_until(app, lambda: str(new.id) in screen.table.rows, what="the new row")
        assert screen.table.ordered_rows[-1].key.value == str(new.id), "last to be claimed"
        assert screen.cursor_job_id() == old.id, "the cursor stays on the same job"


async def test_a_status_change_updates_the_row_in_place(store: Store) -> None:
    await add_app(store, "web")
    job = (await store.queue.enqueue(manual("web"))).jobs[0]
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
            lambda: str(screen.table.get_cell(str(job.id), "status")) == "cancelled",
            what="the cancelled status",
        )
        await pilot.pause()
        assert screen.table.row_count == 1
        assert "cancelled" in app.export_screenshot(), "the new status is drawn"


async def test_the_filter_narrows_the_table(store: Store) -> None:
    await add_app(store, "web")
    await add_app(store, "api")
    web = (await store.queue.enqueue(manual("web", "refs/heads/main"))).jobs[0]
    api = (await store.queue.enqueue(manual("api", "refs/heads/feature-x"))).jobs[0]
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


async def test_cancelling_keeps_the_cursor_at_its_place_for_the_next_job(store: Store) -> None:
    await add_app(store, "web", concurrency=10)
    jobs = [(await store.queue.enqueue(manual("web", f"refs/heads/{n}"))).jobs[0] for n in "abc"]
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await screen.loaded.wait()
        await app.listening.wait()
        assert screen.cursor_job_id() == jobs[0].id
        for done, following in ((jobs[0], jobs[1]), (jobs[1], jobs[2])):
            await pilot.press("c", "y")
            await wait_until(
                app,
                lambda job=done: screen.jobs[job.id].status is JobStatus.CANCELLED,
                what="cancelled",
            )
            await pilot.pause()
            assert screen.table.cursor_row == 0
            assert screen.cursor_job_id() == following.id, "the cursor stays at its place"
