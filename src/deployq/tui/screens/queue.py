"""The queue (home view): live figures, and every job: running ones, then queued ones in the
order workers will claim them (with their position and estimated start), then the history.

Rows are keyed by job id and changed in place (never cleared), so the cursor stays on the
same job while the queue moves under it, except when the job under the cursor leaves its
part of the list (cancelled, finished): then the cursor stays at its place in the list, on
the next job, so cancelling several queued jobs is ``c y c y``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.timer import Timer
from textual.widgets import DataTable, Input, Static

from deployq.durations import elapsed
from deployq.models import Job, JobStatus
from deployq.store import HeaderStats
from deployq.tui import format as fmt
from deployq.tui.columns import Column
from deployq.tui.filters import GROUPS, JobFilter
from deployq.tui.messages import ClockTick, JobsChanged, OpenView, Resync, StatsDue
from deployq.tui.screens.actions import JobActionsScreen
from deployq.tui.widgets.banner import Banner
from deployq.tui.widgets.keybar import KeyBar
from deployq.tui.widgets.statusbar import StatusBar
from deployq.tui.widgets.table import Table

#: queued and running jobs loaded at most (running ones first, then the queued ones in claim
#: order; the header counts them all). Every table change costs time in proportion to its rows.
ACTIVE_ROWS = 2_000
#: finished jobs kept in the table, newest first
HISTORY_ROWS = 500
#: rows added per step on the first load (the first step fills the screen)
FILL_CHUNK_ROWS = 200
#: start estimates are recomputed at most this often (when jobs start, end or are queued)
ESTIMATE_MIN_INTERVAL_S = 2.0

SHOW = Binding.Group("Show", compact=True)

COLUMNS = (
    Column("id", "#", 6),
    Column("app", "app", 6, flex=2),
    Column("ref", "ref", 6, flex=3),
    Column("status", "status", 10),
    Column("progress", "progress", 10),
    Column("note", "step / wait", 6, flex=4),
    Column("time", "time", 6),
    Column("prio", "prio", 4, wide=True),
    Column("pos", "pos", 4, wide=True),
    Column("server", "server", 6, flex=2, wide=True),
    Column("sha", "sha", 7, wide=True),
    Column("attempt", "try", 3, wide=True),
)


def sort_key(job: Job) -> tuple[int, int, float, int]:
    """Running (newest first), then queued in claim order, then the rest (newest first)."""
    if job.status is JobStatus.RUNNING:
        return (0, 0, 0.0, -job.id)
    if job.status is JobStatus.QUEUED:
        return (1, -int(job.priority), job.run_after.timestamp(), job.id)
    return (2, 0, 0.0, -job.id)


class QueueScreen(JobActionsScreen):
    """Home: the header figures and the job table."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", id="filter", tooltip="app: ref: status: server: text"),
        Binding(
            "escape", "clear_filter", "Clear", id="clear_filter", show=False, tooltip="the filter"
        ),
        Binding("enter", "open", "Open", id="open", show=False, tooltip="the job view"),
        Binding("a", "toggle_group('active')", "Active", id="group_active", group=SHOW),
        Binding("s", "toggle_group('succeeded')", "Succeeded", id="group_succeeded", group=SHOW),
        Binding("e", "toggle_group('failed')", "Failed", id="group_failed", group=SHOW),
        Binding("o", "toggle_group('other')", "Other", id="group_other", group=SHOW),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[int, Job] = {}
        self.filter = JobFilter()
        self.stats: HeaderStats | None = None
        self.positions: dict[int, int] = {}
        """Queued job id -> its place in the claim order (1 = next)."""
        self.estimates: dict[int, float] = {}
        """Queued job id -> seconds until it should start, as of ``_estimated_at``."""
        self._estimated_at = 0.0
        self._estimate_timer: Timer | None = None
        self._early: dict[int, Job] = {}
        self.first_paint = asyncio.Event()
        """Set once the first screenful of rows is in the table."""
        self.estimated = asyncio.Event()
        """Set once the first start estimates were read (after the rows: a first paint does
        not wait for them)."""
        self.rows_applied = asyncio.Event()
        """Set once the next batch of job changes is in the table (then replaced)."""

    def compose(self) -> ComposeResult:
        yield Banner()
        yield StatusBar("queue", id="stats")
        yield Input(placeholder="filter: app:NAME ref:BRANCH status:failed text…", id="filter")
        yield Static("", id="groups")
        yield Table(COLUMNS, id="jobs")
        yield KeyBar()

    @property
    def table(self) -> Table:
        return self.query_one("#jobs", Table)

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.call_after_refresh(self._show_groups)  # the keys are known once the screen is active
        self.table.focus()
        self.watch(self.table, "scroll_y", self._scrolled, init=False)
        if self.ctx.listening.is_set():
            self.resync()

    # -- loading ---------------------------------------------------------------------------

    @on(Resync)
    def resync(self) -> None:
        self.load_jobs()  # the estimates follow the rows (they are not needed for a first paint)
        self.load_stats()

    @work(exclusive=True, group="queue-load", exit_on_error=False)
    async def load_jobs(self) -> None:
        console = self.ctx.store.console
        if not self.table.row_count:
            # first load: the top of the queue at once, so the screen fills quickly
            top = await self.ctx.attempt(
                console.queue_page(active_limit=FILL_CHUNK_ROWS, history_limit=FILL_CHUNK_ROWS)
            )
            if top is None:
                return
            self.jobs = {job.id: job for job in top}
            with self.app.batch_update():
                self._rebuild()
            await asyncio.sleep(0)
            self.first_paint.set()
        jobs = await self.ctx.attempt(
            console.queue_page(active_limit=ACTIVE_ROWS, history_limit=HISTORY_ROWS)
        )
        if jobs is None:
            return
        self.jobs = {job.id: job for job in jobs}
        await self._fill()
        self.loaded.set()
        self.load_estimates()
        early, self._early = self._early, {}
        if early:
            self.apply_jobs(list(early.values()))

    def _wanted(self) -> list[Job]:
        return [j for j in sorted(self.jobs.values(), key=sort_key) if self.filter.matches(j)]

    async def _fill(self) -> None:
        """Add the missing rows a chunk at a time (the view stays usable while thousands of
        rows go in), then make the table match exactly, in order."""
        self._number_queued()
        now = self.ctx.clock()
        table = self.table
        missing = [j for j in self._wanted() if str(j.id) not in table.cells]
        for start in range(0, len(missing), FILL_CHUNK_ROWS):
            with self.app.batch_update():
                for job in missing[start : start + FILL_CHUNK_ROWS]:
                    if str(job.id) not in table.cells:  # a live update may have added it
                        table.put(str(job.id), self.row_cells(job, now))
            await asyncio.sleep(0)
        with self.app.batch_update():
            self._rebuild()

    @on(StatsDue)
    def _stats_due(self) -> None:
        self.load_stats()

    @work(exclusive=True, group="queue-stats", exit_on_error=False)
    async def load_stats(self) -> None:
        """The header figures."""
        stats = await self.ctx.attempt(self.ctx.store.console.header_stats(self.ctx.clock()))
        if stats is not None:
            self.stats = stats
            self._show_stats()

    def _estimates_soon(self) -> None:
        """Re-estimate now, or once ESTIMATE_MIN_INTERVAL_S has passed since the last time
        (between two, the countdown runs on the clock: progress updates change nothing)."""
        if self._estimate_timer is not None:
            return
        wait = ESTIMATE_MIN_INTERVAL_S - (time.monotonic() - self._estimated_at)
        if wait <= 0:
            self.load_estimates()
        else:
            self._estimate_timer = self.set_timer(wait, self._estimates_due)

    def _estimates_due(self) -> None:
        self._estimate_timer = None
        self.load_estimates()

    @work(exclusive=True, group="queue-estimates", exit_on_error=False)
    async def load_estimates(self) -> None:
        """When each queued job should start (``store.console.start_estimates``)."""
        self._estimated_at = time.monotonic()
        estimates = await self.ctx.attempt(self.ctx.store.console.start_estimates(self.ctx.clock()))
        if estimates is not None:
            self.estimates, self._estimated_at = estimates, time.monotonic()
            self._refresh_visible()
        self.estimated.set()

    def _show_stats(self) -> None:
        stats = self.stats
        if stats is None:
            return
        now = self.ctx.clock()
        rate = stats.success_rate_24h
        none = self.ctx.glyphs.none
        oldest = (
            elapsed((now - stats.oldest_queued_at).total_seconds())
            if stats.oldest_queued_at
            else none
        )
        text = Text.assemble(
            ("queued ", "dim"),
            (str(stats.queued), f"bold {fmt.YELLOW}"),
            ("  running ", "dim"),
            (str(stats.running), f"bold {fmt.CYAN}"),
            ("  success 24h ", "dim"),
            (f"{rate:.0%}" if rate is not None else none, f"bold {fmt.GREEN}"),
            ("  p95 ", "dim"),
            (elapsed(stats.p95_duration_s) or none, "bold"),
            ("  oldest queued ", "dim"),
            (oldest, "bold"),
        )
        self.query_one("#stats", StatusBar).show(text)

    # -- rows ------------------------------------------------------------------------------

    def row_cells(self, job: Job, now: datetime) -> Mapping[str, Any]:
        glyphs = self.ctx.glyphs
        position = self.positions.get(job.id)
        return {
            "id": job.id,
            "app": job.app_name,
            "ref": job.branch or job.ref,
            "status": fmt.status_text(job.status, cancel_requested=job.cancel_requested),
            "progress": fmt.job_progress(job, glyphs),
            "note": self._note(job, position),
            "time": fmt.job_time(job, now),
            "prio": fmt.priority_short(int(job.priority)),
            "pos": str(position) if position is not None else "",
            "server": job.server_name or "",
            "sha": job.short_sha,
            "attempt": f"{job.attempt}/{job.max_attempts}",
        }

    def _note(self, job: Job, position: int | None) -> str:
        """The step while running; the place in the queue and the estimated start while
        queued; why it ended otherwise."""
        if job.status is JobStatus.RUNNING:
            return job.step or ""
        if job.status is JobStatus.QUEUED:
            parts = [f"pos {position}"] if position is not None else []
            estimate = self.estimates.get(job.id)
            if estimate is not None:
                left = max(0.0, estimate - (time.monotonic() - self._estimated_at))
                parts.append(f"in ~{elapsed(left)}" if left >= 1 else "next")
            if job.wait_reason:
                parts.append(job.wait_reason)
            return f" {self.ctx.glyphs.dot} ".join(parts)
        if job.status is JobStatus.SUCCEEDED:
            return ""
        return fmt.one_line(job.error, 200)

    def _number_queued(self) -> bool:
        """Number the loaded queued jobs in claim order; True when any place changed."""
        queued = sorted(
            (j for j in self.jobs.values() if j.status is JobStatus.QUEUED), key=sort_key
        )
        positions = {job.id: index for index, job in enumerate(queued, 1)}
        changed = positions != self.positions
        self.positions = positions
        return changed

    def _sort(self) -> None:
        jobs = self.jobs
        self.table.sort("id", key=lambda job_id: sort_key(jobs[job_id]))

    def _restore(self, key: str | None, index: int) -> None:
        table = self.table
        if key is not None and key in table.cells:
            target = table.get_row_index(key)
        else:
            target = min(index, table.row_count - 1)
        if target >= 0 and target != table.cursor_row:
            table.move_cursor(row=target, animate=False)

    def _rebuild(self) -> None:
        """Make the table show exactly the loaded jobs that pass the filter (in place)."""
        table = self.table
        key, index = table.cursor_key(), table.cursor_row
        self._number_queued()
        now = self.ctx.clock()
        wanted = self._wanted()
        wanted_keys = {str(j.id) for j in wanted}
        for stale in [k for k in table.keys() if k not in wanted_keys]:
            table.drop(stale)
        fresh = not table.row_count
        table.put_many({str(job.id): self.row_cells(job, now) for job in wanted})
        if not fresh:
            self._sort()
        self._restore(key, index)

    @on(JobsChanged)
    def _jobs_changed(self, message: JobsChanged) -> None:
        with self.app.batch_update():
            self.apply_jobs(message.jobs)
        applied, self.rows_applied = self.rows_applied, asyncio.Event()
        applied.set()

    def apply_jobs(self, jobs: list[Job]) -> None:
        """Put these changed jobs in the table."""
        if not self.loaded.is_set():
            self._early.update((job.id, job) for job in jobs)  # applied once loaded
            return
        table = self.table
        key, index = table.cursor_key(), table.cursor_row
        now = self.ctx.clock()
        resort = False
        for job in jobs:
            before = self.jobs.get(job.id)
            self.jobs[job.id] = job
            if (
                before is not None
                and str(job.id) == key
                and sort_key(before)[0] != sort_key(job)[0]
            ):
                key = None  # the job under the cursor left its part: keep the cursor's place
            resort = resort or before is None or sort_key(before) != sort_key(job)
        if resort:
            self._number_queued()
            self._estimates_soon()  # the queue or the running builds changed
        rows: dict[str, Mapping[str, Any]] = {}
        for job in jobs:
            if not self.filter.matches(job):
                table.drop(str(job.id))
                continue
            rows[str(job.id)] = self.row_cells(job, now)
        resort = table.put_many(rows) > 0 or resort
        if resort:  # only a new or finished job can make the history too long
            self._trim_history()
        if resort:
            self._sort()
            self._refresh_visible()
        self._restore(key, index)

    def _trim_history(self) -> bool:
        if len(self.jobs) <= ACTIVE_ROWS + HISTORY_ROWS:
            return False
        finished = [i for i, j in self.jobs.items() if j.status.is_final]
        if len(finished) <= HISTORY_ROWS:
            return False
        for job_id in sorted(finished)[: len(finished) - HISTORY_ROWS]:
            del self.jobs[job_id]
            self.table.drop(str(job_id))
        return True

    def _refresh_visible(self) -> None:
        """Bring the rows on screen up to date: times, places and estimates change without a
        notification. Only the visible rows, so the cost does not grow with the queue; rows
        scrolled into view catch up at once."""
        now = self.ctx.clock()
        table = self.table
        top = int(table.scroll_offset.y)
        rows: dict[str, Mapping[str, Any]] = {}
        for row in table.ordered_rows[top : top + table.size.height]:
            job = self.jobs.get(int(str(row.key.value)))
            if job is not None and not job.status.is_final:
                rows[str(job.id)] = self.row_cells(job, now)
        table.put_many(rows)

    def _scrolled(self, _value: float) -> None:
        self._refresh_visible()

    @on(ClockTick)
    def clock_tick(self) -> None:
        self._refresh_visible()
        self._show_stats()

    # -- current job, open, filter ---------------------------------------------------------

    def cursor_job_id(self) -> int | None:
        key = self.table.cursor_key()
        return int(key) if key is not None else None

    def current_job(self) -> Job | None:
        job_id = self.cursor_job_id()
        return self.jobs.get(job_id) if job_id is not None else None

    def on_data_table_row_highlighted(self) -> None:
        self.ctx.selected_job_id = self.cursor_job_id() or self.ctx.selected_job_id
        self.refresh_bindings()  # the key bar offers the verbs of the job under the cursor

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.post_message(OpenView("job", int(event.row_key.value)))

    def action_open(self) -> None:
        job_id = self.cursor_job_id()
        if job_id is not None:
            self.post_message(OpenView("job", job_id))

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.display = True
        field.focus()

    def action_clear_filter(self) -> None:
        field = self.query_one("#filter", Input)
        if field.value:
            field.value = ""
        field.display = False
        self.table.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.filter = self.filter.with_text(event.value)
            self._apply_filter()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            event.input.display = bool(event.value)
            self.table.focus()

    def action_toggle_group(self, group: str) -> None:
        self.filter = self.filter.toggled(group)
        self._show_groups()
        self._apply_filter()

    def _apply_filter(self) -> None:
        with self.app.batch_update():
            self._rebuild()

    def _show_groups(self) -> None:
        glyphs = self.ctx.glyphs
        parts: list[tuple[str, str] | str] = []
        keys = {
            active.binding.action: self.app.get_key_display(active.binding)
            for active in self.active_bindings.values()
        }
        for group in GROUPS:
            on = group not in self.filter.hidden
            key = keys.get(f"toggle_group('{group}')", "")
            mark = glyphs.shown if on else glyphs.hidden
            parts.append((f"{key}{mark} {group}  ", "bold" if on else "dim"))
        if self.filter.text:
            parts.append((f"filter: {self.filter.text}", "italic"))
        self.query_one("#groups", Static).update(Text.assemble(*parts))
