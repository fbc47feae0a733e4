"""Operator verbs change the database, name the operator in job_events, and a read-only
console refuses every one of them."""

from __future__ import annotations

from typing import Any

from textual.widgets import Input, Static
from tui_helpers import OPERATOR, add_app, manual, wait_until

from deployq.models import AppSpec, JobEvent, JobStatus, Priority
from deployq.store import Store
from deployq.tui import DeployqApp
from deployq.tui.screens.confirm import ConfirmScreen
from deployq.tui.screens.deploy import DeployScreen
from deployq.tui.screens.queue import QueueScreen
from deployq.tui.screens.servers import ServersScreen
from deployq.tui.widgets.keybar import KeyBar
from fixtures.git import git


async def _events(store: Store, job_id: int) -> list[JobEvent]:
    return await store.jobs.events(job_id)


async def _queue(app: DeployqApp) -> QueueScreen:
    screen = app.screen
    assert isinstance(screen, QueueScreen)
    await screen.loaded.wait()
    await app.listening.wait()
    return screen


async def test_cancel_asks_then_cancels_as_the_operator(store: Store) -> None:
    await add_app(store, "web")
    job = (await store.queue.enqueue(manual("web"))).jobs[0]
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _queue(app)
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert (await store.jobs.get(job.id)).status is JobStatus.QUEUED
        await pilot.press("c")
        await pilot.pause()
        await pilot.press("y")
        await wait_until(
            app, lambda: screen.jobs[job.id].status is JobStatus.CANCELLED, what="cancelled"
        )
    cancelled = await store.jobs.get(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert any(e.kind == "cancelled" and e.actor == OPERATOR for e in await _events(store, job.id))


async def test_priority_keys_raise_and_lower_a_queued_job(store: Store) -> None:
    await add_app(store, "web")
    job = (await store.queue.enqueue(manual("web"))).jobs[0]
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _queue(app)
        await pilot.press("plus")
        await wait_until(
            app, lambda: screen.jobs[job.id].priority is Priority.HIGH, what="priority high"
        )
        await pilot.press("plus")
        await wait_until(
            app, lambda: screen.jobs[job.id].priority is Priority.CRITICAL, what="critical"
        )
        await pilot.press("minus", "minus", "minus")
        await wait_until(app, lambda: screen.jobs[job.id].priority is Priority.LOW, what="low")
    assert (await store.jobs.get(job.id)).priority is Priority.LOW
    changes = [e for e in await _events(store, job.id) if e.kind == "priority"]
    assert len(changes) == 5
    assert {e.actor for e in changes} == {OPERATOR}


async def test_retry_queues_a_new_attempt_of_a_finished_job(store: Store) -> None:
    await add_app(store, "web")
    job = (await store.queue.enqueue(manual("web"))).jobs[0]
    await store.jobs.cancel(job.id, actor="bob")
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _queue(app)
        await pilot.press("r")
        await wait_until(app, lambda: len(screen.jobs) == 2, what="the retry row")
    retries = await store.jobs.recent(status=[JobStatus.QUEUED])
    assert len(retries) == 1 and retries[0].retry_of == job.id
    assert (await _events(store, retries[0].id))[0].actor == OPERATOR


async def test_the_deploy_dialog_starts_on_the_app_and_refuses_a_ref_the_repo_lacks(
    store: Store, git_repo_factory: Any
) -> None:
    repo = git_repo_factory({"index.html": "hi"})
    git(repo.path, "branch", "release-1")
    await store.apps.add(AppSpec(name="web", repo_url=repo.url))
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _queue(app)
        await pilot.press("d")
        await wait_until(app, lambda: isinstance(app.screen, DeployScreen), what="the dialog")
        dialog = app.screen
        assert isinstance(dialog, DeployScreen)
        assert app.focused is dialog.query_one("#deploy-app"), "Enter must not deploy at once"
        await pilot.press("tab", "ctrl+a", "ctrl+k", *"nosuchbranch", "enter")
        await pilot.pause()
        assert app.focused is dialog.query_one("#deploy"), "Enter in the ref moves to Deploy"
        await pilot.press("enter")
        problem = dialog.query_one("#deploy-problem", Static)
        await wait_until(
            app, lambda: "has no refs/heads/nosuchbranch" in str(problem.render()), what="refusal"
        )
        assert app.screen is dialog and not screen.jobs
        dialog.query_one("#deploy-ref", Input).value = "release-1"
        await pilot.press("ctrl+s")
        await wait_until(app, lambda: len(screen.jobs) == 1, what="the deployed job")
    (job,) = await store.jobs.recent()
    assert (job.app_name, job.ref, job.status) == ("web", "refs/heads/release-1", JobStatus.QUEUED)
    assert (await _events(store, job.id))[0].actor == OPERATOR


async def test_read_only_console_refuses_every_action(store: Store) -> None:
    await add_app(store, "web")
    queued = (await store.queue.enqueue(manual("web", "refs/heads/a"))).jobs[0]
    app = DeployqApp(store, user=OPERATOR, read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _queue(app)
        shown = " ".join(label for _, label in screen.query_one(KeyBar).items())
        assert not {"cancel", "kill", "retry", "prio", "deploy"} & set(shown.split())
        await pilot.press("c", "y", "C", "y", "r", "plus", "minus", "d")
        await pilot.pause()
        assert app.screen is screen, "no dialog opened"
        await screen.action_retry()
        await screen.action_priority_up()
        await screen.action_deploy()
        await pilot.pause()
    assert await store.jobs.recent() == [await store.jobs.get(queued.id)]
    job = await store.jobs.get(queued.id)
    assert (job.status, job.priority) == (JobStatus.QUEUED, Priority.NORMAL)
    assert [e.kind for e in await _events(store, queued.id)] == ["enqueued"]


async def test_drain_asks_then_drains_and_undrain_restores(store: Store) -> None:
    await store.servers.add("builder-1", "unix:///var/run/docker.sock")
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(120, 40)) as pilot:
        await _queue(app)
        await pilot.press("3")
        servers = app.screen
        assert isinstance(servers, ServersScreen)
        await servers.loaded.wait()
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until(
            app, lambda: any(s.draining for s in servers.servers), what="the drained server"
        )
        assert (await store.servers.get("builder-1")).draining
        await pilot.press("u")
        await wait_until(
            app, lambda: not any(s.draining for s in servers.servers), what="the undrained server"
        )
    assert not (await store.servers.get("builder-1")).draining


async def test_read_only_console_cannot_drain(store: Store) -> None:
    await store.servers.add("builder-1", "unix:///var/run/docker.sock")
    app = DeployqApp(store, user=OPERATOR, read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await _queue(app)
        await pilot.press("3")
        servers = app.screen
        assert isinstance(servers, ServersScreen)
        await servers.loaded.wait()
        await pilot.press("d", "y")
        await servers.action_undrain()
        servers.action_drain()
        await pilot.pause()
        assert app.screen is servers
    assert not (await store.servers.get("builder-1")).draining
