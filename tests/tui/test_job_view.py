"""The job view: details, and the log following appended lines live."""

from __future__ import annotations

from tui_helpers import OPERATOR, add_app, manual, screen_text, wait_until

from deployq.models import JobStatus
from deployq.store import Outcome, Store
from deployq.tui import DeployqApp
from deployq.tui.screens.job import JobScreen
from deployq.tui.screens.queue import QueueScreen


async def _open_job(app: DeployqApp, pilot: object) -> JobScreen:
    queue = app.screen
    assert isinstance(queue, QueueScreen)
    await queue.loaded.wait()
    await app.listening.wait()
    await app.run_action("view('job')")
    screen = app.screen
    assert isinstance(screen, JobScreen)
    await screen.loaded.wait()
    return screen


async def test_the_log_follows_appended_lines_and_pauses_when_scrolled_up(store: Store) -> None:
    await add_app(store, "web")
    job = (await store.queue.enqueue(manual("web"))).jobs[0]
    await store.logs.append(job.id, [f"early {n}" for n in range(5)])
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_job(app, pilot)
        log = screen.log_view
        assert list(log.lines) == [f"early {n}" for n in range(5)]

        await store.logs.append(job.id, [f"step {n}" for n in range(200)])
        await wait_until(app, lambda: log.line_count == 205, what="the appended lines")
        await pilot.pause()
        assert log.following, "a view at the end follows new lines"

        await pilot.press("pageup")
        await pilot.pause()
        paused_at = log.scroll_offset.y
        assert not log.following
        await store.logs.append(job.id, ["while scrolled up"])
        await wait_until(app, lambda: log.line_count == 206, what="the next line")
        await pilot.pause()
        assert log.scroll_offset.y == paused_at, "scrolling up pauses following"

        await pilot.press("f")
        await pilot.pause()
        assert log.following
        await store.logs.append(job.id, ["after f"])
        await wait_until(app, lambda: log.line_count == 207, what="the last line")
        await pilot.pause()
        assert log.following and log.lines[-1] == "after f"


async def test_search_finds_a_line_in_the_log(store: Store) -> None:
    await add_app(store, "web")
    job = (await store.queue.enqueue(manual("web"))).jobs[0]
    lines = [f"line {n}" for n in range(300)]
    lines[20] = "npm ERR! needle missing"
    await store.logs.append(job.id, lines)
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_job(app, pilot)
        log = screen.log_view
        await pilot.pause()
        assert log.following
        await pilot.press("slash", *"needle", "enter")
        await pilot.pause()
        top = log.scroll_offset.y
        assert top <= 20 < top + log.size.height, "the match is on screen"
        assert not log.following


async def test_job_view_shows_the_job_and_goes_back_with_escape(store: Store) -> None:
    await add_app(store, "web")
    job = (await store.queue.enqueue(manual("web", "refs/heads/feature-y"))).jobs[0]
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_job(app, pilot)
        head = str(screen.query_one("#job-head").render())
        assert f"#{job.id}" in head and "feature-y" in head and "position 1" in head
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, QueueScreen)


async def test_a_log_to_watch_a_build_in_wrap_paused_marker_first_error_cache_miss(
    store: Store,
) -> None:
    await add_app(store, "web")
    job = (await store.queue.enqueue(manual("web"))).jobs[0]
    long_line = "RUN pip install " + " ".join(f"package-{n}" for n in range(40))
    lines = ["#1 load build definition", "#5 importing cache manifest from reg.local/web:main"]
    lines += ["#5 ERROR: reg.local/web:main: not found", long_line]
    lines += [f"#7 step {n}" for n in range(60)]
    lines += ["npm ERR! code E404", "error: process exited with code 1"]
    lines += [f"#8 cleanup {n}" for n in range(40)]
    await store.logs.append(job.id, lines)
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await _open_job(app, pilot)
        log = screen.log_view
        await pilot.pause()
        width = log.scrollable_content_region.width
        assert "following" in str(log.border_title)
        assert long_line in log.lines, "cut, not wrapped, until w"
        miss = next(line for line in log.lines if "reg.local/web:main: not found" in line)
        assert "cache miss" in miss and "harmless" in miss

        await pilot.press("w")
        await pilot.pause()
        assert all(len(line) <= width for line in log.lines)
        assert long_line not in log.lines and long_line[:width] in log.lines
        assert log.following and "wrap" in str(log.border_title)

        await pilot.press("e")
        await pilot.pause()
        first = log.lines[int(log.scroll_offset.y) : int(log.scroll_offset.y) + log.size.height]
        assert "npm ERR! code E404" in first, "e shows the first real error, not the cache miss"
        assert not log.following and "PAUSED" in str(log.border_title)

        await pilot.press("w", "G")
        await pilot.pause()
        assert long_line in log.lines and log.following
        assert "PAUSED" not in str(log.border_title)


async def test_a_job_of_a_deployed_app_shows_the_deploy_step_and_what_runs_now(
    store: Store,
) -> None:
    await add_app(store, "web")
    job = (await store.queue.enqueue(manual("web", commit_sha="abcdef1" + "0" * 33))).jobs[0]
    await store.deploy.record_release(
        job,
        target="prod1",
        image_ref="reg/web:abcdef1",
        digest="sha256:" + "d" * 64,
        commit_sha=job.commit_sha,
        container=f"deployq-web-{job.id}-1",
    )
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await _open_job(app, pilot)
        await wait_until(app, lambda: bool(screen.releases), what="the current release")
        await pilot.pause()
        text = "\n".join(screen_text(app))
    assert f"runs now: prod1 #{job.id} abcdef1 (sha256:ddddddddddd" in text
    assert "verify → deploy" in text or "verify -> deploy" in text


async def test_job_view_says_how_long_a_job_should_take_and_when(store: Store) -> None:
    await store.servers.add("local", "unix:///var/run/docker.sock", capacity=1)
    await add_app(store, "web")
    done = (await store.queue.enqueue(manual("web"))).jobs[0]
    [lease] = await store.leases.claim("w1", limit=1)
    await store.leases.finish(lease, Outcome(JobStatus.SUCCEEDED))
    async with store.pool.connection() as conn:  # its one successful build took 90 s
        await conn.execute(
            "UPDATE jobs SET started_at = finished_at - interval '90 seconds' WHERE id = %s",
            (done.id,),
        )
    running = (await store.queue.enqueue(manual("web", "refs/heads/a"))).jobs[0]
    await store.leases.claim("w1", limit=1)
    queued = (await store.queue.enqueue(manual("web", "refs/heads/b"))).jobs[0]
    app = DeployqApp(store, user=OPERATOR)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_job(app, pilot)  # running jobs come first
        head = str(screen.query_one("#job-head").render())
        assert screen.job_id == running.id
        assert "expected: takes ~1m30s, ends in ~1m" in head
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("down")
        await app.run_action("view('job')")
        screen = app.screen
        assert isinstance(screen, JobScreen)
        await screen.loaded.wait()
        head = str(screen.query_one("#job-head").render())
        assert screen.job_id == queued.id
        assert "starts in ~1m" in head and "takes ~1m30s" in head
