"""The queue (home view): live figures, and every job with running and queued pinned on top.

Rows are keyed by job id and changed in place (never cleared), so the cursor stays on the
same job while the queue moves under it.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Input, Static
from textual.widgets.data_table import RowKey

from deployq.durations import elapsed
from deployq.models import Job
from deployq.store import HeaderStats
from deployq.tui import format as fmt
from deployq.tui.filters import GROUPS, JobFilter
from deployq.tui.screens.actions import JobActionsScreen
from deployq.tui.widgets.banner import Banner
from deployq.tui.widgets.jobtable import JobTable
from deployq.tui.widgets.keybar import KeyBar
from deployq.tui.widgets.statusbar import StatusBar

#: queued and running jobs loaded at most (running ones first, then the newest queued; the
#: header counts them all). Every table change costs time in proportion to its rows.
ACTIVE_ROWS = 2_000
#: finished jobs kept in the table, newest first
HISTORY_ROWS = 500
#: rows added per step on the first load (the first step fills the screen)
FILL_CHUNK_ROWS = 200

SHOW = Binding.Group("Show", compact=True)

COLUMNS = (
    ("id", "#"),
    ("app", "app"),
    ("ref", "ref"),
    ("status", "status"),
    ("progress", "progress"),
    ("step", "step"),
    ("time", "time"),
    ("sha", "sha"),
    ("server", "server"),
    ("attempt", "try"),
)


def row_cells(job: Job, now: Any) -> tuple[Any, ...]:
    return (
        job.id,
        fmt.one_line(job.app_name, 16),
        fmt.one_line(job.branch, 16),
        fmt.status_text(job.status, cancel_requested=job.cancel_requested),
        fmt.job_progress(job),
        job.step or "",
        fmt.job_time(job, now),
        job.short_sha,
        job.server_name or "",
        f"{job.attempt}/{job.max_attempts}",
    )


def sort_key(job: Job) -> tuple[int, int]:
    return (fmt.STATUS_RANK.get(job.status, 2), -job.id)


class QueueScreen(JobActionsScreen):
    """Home: the header figures and the job table."""

    VIEW = "queue"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", id="filter", tooltip="app: ref: status: server: text"),
        Binding(
            "escape",
            "clear_filter",
            "Clear",
            id="clear_filter",
            show=False,
            tooltip="clear the filter",
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
        self._cells: dict[int, tuple[Any, ...]] = {}
        self._early: dict[int, Job] = {}
        self.first_paint = asyncio.Event()
        """Set once the first screenful of rows is in the table."""

    def compose(self) -> ComposeResult:
        yield Banner()
        yield StatusBar("queue", id="stats")
        yield Input(placeholder="filter: app:NAME ref:BRANCH status:failed text…", id="filter")
        yield Static("", id="groups")
        table = JobTable(id="jobs", cursor_type="row")
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield KeyBar()

    @property
    def table(self) -> JobTable:
        return self.query_one("#jobs", JobTable)

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.call_after_refresh(self._show_groups)  # the keys are known once the screen is active
        self.table.focus()
        if self.dq.listening.is_set():
            self.resync()

    # -- loading ---------------------------------------------------------------------------

    def resync(self) -> None:
        self.load_jobs()
        self.load_stats()

    @work(exclusive=True, group="queue-load", exit_on_error=False)
    async def load_jobs(self) -> None:
        console = self.dq.store.console
        if not self.table.row_count:
            # first load: the top of the queue at once, so the screen fills quickly
            top = await self.dq.attempt(
                console.queue_page(active_limit=FILL_CHUNK_ROWS, history_limit=FILL_CHUNK_ROWS)
            )
            if top is None:
                return
            self.jobs = {job.id: job for job in top}
            with self.app.batch_update():
                self._rebuild()
            await asyncio.sleep(0)
            self.first_paint.set()
        jobs = await self.dq.attempt(
            console.queue_page(active_limit=ACTIVE_ROWS, history_limit=HISTORY_ROWS)
        )
        if jobs is None:
            return
        self.jobs = {job.id: job for job in jobs}
        await self._fill()
        self.loaded.set()
        early, self._early = self._early, {}
        if early:
            self.jobs_changed(list(early.values()))

    async def _fill(self) -> None:
        """Add the missing rows a chunk at a time (the view stays usable while thousands of
        rows are measured), then make the table match exactly, in order."""
        now = self.dq.clock()
        wanted = [j for j in sorted(self.jobs.values(), key=sort_key) if self.filter.matches(j)]
        missing = [j for j in wanted if j.id not in self._cells]
        for start in range(0, len(missing), FILL_CHUNK_ROWS):
            with self.app.batch_update():
                for job in missing[start : start + FILL_CHUNK_ROWS]:
                    if job.id not in self._cells:  # a live update may have added it already
                        self._put(job, now)
            await asyncio.sleep(0)
        with self.app.batch_update():
            self._rebuild()

    @work(exclusive=True, group="queue-stats", exit_on_error=False)
    async def load_stats(self) -> None:
        stats = await self.dq.attempt(self.dq.store.console.header_stats(self.dq.clock()))
        if stats is not None:
            self.stats = stats
            self._show_stats()

    def _show_stats(self) -> None:
        stats = self.stats
        if stats is None:
            return
        now = self.dq.clock()
        rate = stats.success_rate_24h
        oldest = (
            elapsed((now - stats.oldest_queued_at).total_seconds())
            if stats.oldest_queued_at
            else "–"
        )
        text = Text.assemble(
            ("queued ", "dim"),
            (str(stats.queued), f"bold {fmt.YELLOW}"),
            ("  running ", "dim"),
            (str(stats.running), f"bold {fmt.CYAN}"),
            ("  success 24h ", "dim"),
            (f"{rate:.0%}" if rate is not None else "–", f"bold {fmt.GREEN}"),
            ("  p95 ", "dim"),
            (elapsed(stats.p95_duration_s) or "–", "bold"),
            ("  oldest queued ", "dim"),
            (oldest, "bold"),
        )
        self.query_one("#stats", StatusBar).show(text)

    # -- table maintenance -----------------------------------------------------------------

    def _cursor_key(self) -> RowKey | None:
        table = self.table
        if table.row_count == 0:
            return None
        return table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key

    def _restore_cursor(self, key: RowKey | None) -> None:
        table = self.table
        if key is not None and key in table.rows:
            index = table.get_row_index(key)
            if index != table.cursor_row:
                table.move_cursor(row=index, animate=False)

    def _sort(self) -> None:
        jobs = self.jobs
        self.table.sort("id", key=lambda job_id: sort_key(jobs[job_id]))

    def _rebuild(self) -> None:
        """Make the table show exactly the loaded jobs that pass the filter (in place)."""
        table = self.table
        cursor = self._cursor_key()
        now = self.dq.clock()
        wanted = [j for j in sorted(self.jobs.values(), key=sort_key) if self.filter.matches(j)]
        wanted_keys = {str(j.id) for j in wanted}
        for key in [k for k in table.rows if k.value not in wanted_keys]:
            table.remove_row(key)
            self._cells.pop(int(str(key.value)), None)
        fresh = not table.row_count
        for job in wanted:
            self._put(job, now)
        if not fresh:
            self._sort()
        self._restore_cursor(cursor)

    def _put(self, job: Job, now: Any) -> bool:
        """Add or update the row of ``job``; True when a row was added."""
        table = self.table
        cells = row_cells(job, now)
        old = self._cells.get(job.id)
        self._cells[job.id] = cells
        if old is None:
            table.add_row(*cells, key=str(job.id))
            return True
        for (column, _label), before, after in zip(COLUMNS, old, cells, strict=True):
            if before != after:
                table.set_cell(str(job.id), column, after)
        return False

    def _drop(self, job_id: int) -> None:
        if self._cells.pop(job_id, None) is not None:
            self.table.remove_row(str(job_id))

    def jobs_changed(self, jobs: list[Job]) -> None:
        if not self.loaded.is_set():
            self._early.update((job.id, job) for job in jobs)  # applied once loaded
            return
        cursor = self._cursor_key()
        now = self.dq.clock()
        resort = False
        for job in jobs:
            before = self.jobs.get(job.id)
            self.jobs[job.id] = job
            if not self.filter.matches(job):
                self._drop(job.id)
                continue
            added = self._put(job, now)
            resort = resort or added or before is None or sort_key(before) != sort_key(job)
        resort = self._trim_history() or resort
        if resort:
            self._sort()
        self._restore_cursor(cursor)

    def _trim_history(self) -> bool:
        if len(self.jobs) <= ACTIVE_ROWS + HISTORY_ROWS:
            return False
        finished = [i for i, j in self.jobs.items() if j.status.is_final]
        if len(finished) <= HISTORY_ROWS:
            return False
        for job_id in sorted(finished)[: len(finished) - HISTORY_ROWS]:
            del self.jobs[job_id]
            self._drop(job_id)
        return True

    def clock_tick(self) -> None:
        """Refresh the times of the rows on screen (rows scrolled into view catch up on the
        next tick), so the cost does not grow with the queue."""
        now = self.dq.clock()
        table = self.table
        top = int(table.scroll_offset.y)
        for row in table.ordered_rows[top : top + table.size.height]:
            job_id = int(str(row.key.value))
            job, cells = self.jobs.get(job_id), self._cells.get(job_id)
            if job is None or cells is None or job.status.is_final:
                continue
            text = fmt.job_time(job, now)
            if text != cells[6]:
                self._cells[job_id] = (*cells[:6], text, *cells[7:])
                table.set_cell(str(job_id), "time", text)
        self._show_stats()

    # -- current job, open, filter ---------------------------------------------------------

    def cursor_job_id(self) -> int | None:
        key = self._cursor_key()
        return int(str(key.value)) if key is not None else None

    def current_job(self) -> Job | None:
        job_id = self.cursor_job_id()
        return self.jobs.get(job_id) if job_id is not None else None

    def on_data_table_row_highlighted(self) -> None:
        self.refresh_bindings()  # the key bar offers the verbs of the job under the cursor

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self._open(int(event.row_key.value))

    def action_open(self) -> None:
        job_id = self.cursor_job_id()
        if job_id is not None:
            self._open(job_id)

    def _open(self, job_id: int) -> None:
        from deployq.tui.screens.job import JobScreen

        self.dq.last_job_id = job_id
        self.app.push_screen(JobScreen(job_id))

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
        parts: list[tuple[str, str] | str] = []
        keys = {
            active.binding.action: self.app.get_key_display(active.binding)
            for active in self.active_bindings.values()
        }
        for group in GROUPS:
            on = group not in self.filter.hidden
            key = keys.get(f"toggle_group('{group}')", "")
            parts.append((f"{key}{'■' if on else '□'} {group}  ", "bold" if on else "dim"))
        if self.filter.text:
            parts.append((f"filter: {self.filter.text}", "italic"))
        self.query_one("#groups", Static).update(Text.assemble(*parts))
