"""One job: details, step timeline, events, and its log following live."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Input, Static

from deployq.durations import elapsed
from deployq.imageref import pull_reference
from deployq.logfollow import LogFollower
from deployq.models import Estimate, Job, JobEvent, JobStatus, Release, Step
from deployq.scans import ScanState, scan_text, state_of
from deployq.tui import format as fmt
from deployq.tui.messages import ClockTick, JobsChanged, LogsAppended, Resync
from deployq.tui.screens.actions import JobActionsScreen
from deployq.tui.widgets.banner import Banner
from deployq.tui.widgets.keybar import KeyBar
from deployq.tui.widgets.logview import LogView
from deployq.tui.widgets.statusbar import READ_ONLY_MARK

#: lines the view keeps; older ones are dropped (memory stays bounded however long the log)
LOG_MAX_LINES = 10_000
#: lines read per query while catching up
LOG_BATCH = 5_000
#: events shown under the timeline
EVENTS_SHOWN = 3


class JobScreen(JobActionsScreen):
    NEEDS_JOB = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="back", tooltip="to the queue"),
        Binding("f,end,G", "follow", "Follow", id="follow", tooltip="follow the end of the log"),
        Binding("home,g", "top", "Top", id="log_top", show=False, tooltip="the first line"),
        Binding("w", "wrap", "Wrap", id="wrap", tooltip="wrap long lines (again: cut them)"),
        Binding("e", "first_error", "Error", id="first_error", tooltip="the first error line"),
        Binding("slash", "search", "Search", id="search", tooltip="search the log"),
        Binding("n", "next_match", "Next", id="next_match", show=False, tooltip="next match"),
        Binding(
            "N", "previous_match", "Prev", id="previous_match", show=False, tooltip="previous match"
        ),
    ]

    def __init__(self, job_id: int) -> None:
        super().__init__()
        self.job_id = job_id
        self.job: Job | None = None
        self.events: list[JobEvent] = []
        self.seq = 0
        """Last log line shown."""
        self._follower: LogFollower[str] | None = None
        self._match: int | None = None
        self.waiting: str | None = None
        self.estimate: Estimate | None = None
        """how long the job should take and when it should start and end (store.estimates)"""
        """Queue position and wait reason, while queued."""
        self.releases: list[Release] = []
        """What runs now on each deploy target of the job's app."""

    def compose(self) -> ComposeResult:
        yield Banner()
        yield Static(f"job #{self.job_id}", id="job-head")
        yield Static("", id="job-error")
        yield Static("", id="timeline")
        yield Input(placeholder="search the log (enter: find, n/N: next/previous)", id="search")
        yield LogView(max_lines=LOG_MAX_LINES, id="log")
        yield KeyBar()

    @property
    def log_view(self) -> LogView:
        return self.query_one("#log", LogView)

    def on_mount(self) -> None:
        self.query_one("#search", Input).display = False
        self.query_one("#job-error", Static).display = False
        self.log_view.focus()
        self.ctx.selected_job_id = self.job_id
        self.resync()

    def current_job(self) -> Job | None:
        return self.job

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def open(cls, job_id: int | None) -> JobScreen:
        assert job_id is not None
        return cls(job_id)

    @on(Resync)
    def resync(self) -> None:
        self.load_job()

    @work(exclusive=True, group="job-load", exit_on_error=False)
    async def load_job(self) -> None:
        store = self.ctx.store
        job = await self.ctx.attempt(store.jobs.get(self.job_id))
        if job is None:
            return
        self.job = job
        self.refresh_bindings()
        await self._load_extras()
        if self.seq == 0:
            tail = await self.ctx.attempt(
                store.console.log_lines(self.job_id, limit=LOG_MAX_LINES, last=True)
            )
            if tail is not None and tail[1]:
                self.seq = tail[0]
                self.log_view.write_lines(tail[1])
        self.loaded.set()
        self._follower = LogFollower.text(
            store, self.job_id, after=self.seq, keep_last=LOG_MAX_LINES, batch=LOG_BATCH
        )
        self._follow(self._follower)
        # lines written while the tail was read, or while disconnected
        last = await self.ctx.attempt(store.logs.last_seq(self.job_id))
        if last is not None:
            self.logs_appended(self.job_id, last)

    @on(LogsAppended)
    def _logs_appended(self, message: LogsAppended) -> None:
        self.logs_appended(message.job_id, message.seq)

    def logs_appended(self, job_id: int, seq: int) -> None:
        if job_id == self.job_id and self._follower is not None:
            self._follower.wake(seq)

    @work(exclusive=True, group="job-log", exit_on_error=False)
    async def _follow(self, follower: LogFollower[str]) -> None:
        """Show new lines as the follower reads them (woken by the app's LISTEN through
        :meth:`logs_appended`; it skips what the view would not keep) until the job ends.
        A lost database shows in the banner; the reload after reconnecting follows again."""
        await self.ctx.attempt(self._show(follower))

    async def _show(self, follower: LogFollower[str]) -> None:
        async for lines in follower:
            self.seq = follower.after
            self.log_view.write_lines(lines)

    @on(JobsChanged)
    def _jobs_changed(self, message: JobsChanged) -> None:
        for job in message.jobs:
            if job.id == self.job_id:
                self.job = job
                self.refresh_bindings()
                self._render_job()
                self._reload_extras()

    @work(exclusive=True, group="job-events", exit_on_error=False)
    async def _reload_extras(self) -> None:
        await self._load_extras()

    async def _load_extras(self) -> None:
        """Events, and while queued the position and the reason it waits."""
        store = self.ctx.store
        events = await self.ctx.attempt(store.jobs.events(self.job_id))
        if events is not None:
            self.events = events
        if self.job is not None:
            releases = await self.ctx.attempt(store.deploy.current_releases(self.job.app_name))
            self.releases = releases if releases is not None else self.releases
        self.waiting = None
        self.estimate = None
        if self.job is not None and not self.job.status.is_final:
            now = self.ctx.clock()
            found = await self.ctx.attempt(store.estimates.for_jobs([self.job_id], now=now))
            self.estimate = (found or {}).get(self.job_id)
        if self.job is not None and self.job.status is JobStatus.QUEUED:
            position = await self.ctx.attempt(store.jobs.queue_position(self.job_id))
            reason = await self.ctx.attempt(store.waits.reason(self.job_id))
            parts = []
            if position is not None:
                parts.append(f"position {position.position} ({position.ahead} ahead)")
            estimate = self.estimate
            if estimate is not None and estimate.expected_start is not None:
                start = (estimate.expected_start - self.ctx.clock()).total_seconds()
                parts.append(f"starts in ~{elapsed(start)}" if start >= 1 else "starts next")
            if estimate is not None:
                parts.append(f"takes ~{elapsed(estimate.expected_duration_s)}")
            if reason:
                parts.append(reason)
            self.waiting = f" {self.ctx.glyphs.dot} ".join(parts) or None
        self._render_job()

    @on(ClockTick)
    def clock_tick(self) -> None:
        if self.job is not None and not self.job.status.is_final:
            self._render_job()

    # -- rendering -------------------------------------------------------------------------

    def _render_job(self) -> None:
        job = self.job
        if job is None:
            return
        now = self.ctx.clock()
        head = Text.assemble(
            (READ_ONLY_MARK, "bold reverse") if self.ctx.read_only else "",
            " " if self.ctx.read_only else "",
            (f"#{job.id} ", "bold"),
            (job.app_name, "bold"),
            f" {job.branch}",
            (f"@{job.short_sha}" if job.commit_sha else "", "dim"),
            "  ",
            fmt.status_text(job.status, cancel_requested=job.cancel_requested),
            f"  {fmt.job_progress(job, self.ctx.glyphs)}  {job.step or ''}".rstrip(),
            "\n",
            (
                f"{job.trigger.value} by {job.pusher or '–'} · priority "
                f"{fmt.priority_name(int(job.priority))} · attempt {job.attempt}/"
                f"{job.max_attempts} · server {job.server_name or '–'} · "
                f"time {fmt.job_time(job, now) or '–'}"
            ),
            "\n",
            (fmt.one_line(job.commit_message, 200) or "(no commit message)", "italic"),
            no_wrap=True,
            overflow="ellipsis",
        )
        if job.status is JobStatus.QUEUED and self.waiting:
            head.append(f"\nwaiting: {self.waiting}", style=fmt.YELLOW)
        estimate = self.estimate
        if job.status is JobStatus.RUNNING and estimate is not None:
            left = (
                (estimate.expected_finish - now).total_seconds()
                if estimate.expected_finish is not None
                else None
            )
            ends = f", ends in ~{elapsed(left)}" if left is not None and left >= 1 else ""
            head.append(
                f"\nexpected: takes ~{elapsed(estimate.expected_duration_s)}{ends}", style="dim"
            )
        pull = pull_reference(job.image_ref, job.image_digest)
        if pull:  # what was pushed, as docker pull takes it (nothing for a job that pushed none)
            head.append(f"\nimage {pull}", style=fmt.GREEN)
        scan = scan_text(job.scan_summary)
        if scan:  # Harbor's vulnerability scan (docs/harbor.md), attached when it arrives
            clean = state_of(job.scan_summary) is ScanState.DONE and not (
                job.scan_summary or {}
            ).get("critical")
            head.append(f"\nscan: {scan}", style=fmt.GREEN if clean else fmt.YELLOW)
        if self.releases:
            runs = ", ".join(
                f"{r.target} #{r.job_id} {(r.commit_sha or '')[:7]} ({r.digest[:19]})"
                for r in self.releases
            )
            head.append(f"\nruns now: {runs}", style=fmt.GREEN)
        self.query_one("#job-head", Static).update(head)
        error = self.query_one("#job-error", Static)
        error.display = bool(job.error) and job.status is not JobStatus.SUCCEEDED
        if job.error:
            error.update(Text(job.error, style=f"bold {fmt.RED}"))
        self.query_one("#timeline", Static).update(self._timeline(job))

    def _deploys(self, job: Job) -> bool:
        """Whether the job has (or had) a deploy step: its app runs somewhere."""
        return (
            bool(self.releases)
            or job.deploy_only
            or Step.DEPLOY.value
            in {
                job.step,
                *job.step_durations,
            }
        )

    def _timeline(self, job: Job) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        glyphs = self.ctx.glyphs
        steps = [s for s in Step if s is not Step.DEPLOY or self._deploys(job)]
        for index, step in enumerate(steps):
            name = step.value
            if index:
                text.append(f" {glyphs.arrow} ", style="dim")
            if name in job.step_durations:
                text.append(f"{name} {elapsed(job.step_durations[name])}", style=fmt.GREEN)
            elif name == job.step and job.status is JobStatus.RUNNING:
                text.append(f"{glyphs.running} {name}", style=f"bold {fmt.CYAN}")
            elif name == job.step and job.status.is_final:
                text.append(f"{glyphs.failed} {name}", style=f"bold {fmt.RED}")
            else:
                text.append(name, style="dim")
        for event in self.events[-EVENTS_SHOWN:]:
            at = event.at.astimezone(self.ctx.clock().tzinfo).strftime("%H:%M:%S")
            who = f" by {event.actor}" if event.actor else ""
            message = f": {fmt.one_line(event.message, 60)}" if event.message else ""
            text.append(f"\n{at} {event.kind}{who}{message}", style="dim")
        return text

    # -- keys ------------------------------------------------------------------------------

    def action_back(self) -> None:
        search = self.query_one("#search", Input)
        if search.has_focus:
            search.display = False
            self.log_view.focus()
            return
        self.app.pop_screen()

    def action_follow(self) -> None:
        self.log_view.follow()

    def action_top(self) -> None:
        self.log_view.show_line(0)

    def action_wrap(self) -> None:
        self.log_view.set_wrap(not self.log_view.wrap)

    def action_first_error(self) -> None:
        index = self.log_view.first_error()
        if index is None:
            self.notify("no error line in the log shown", severity="warning")
            return
        self.log_view.show_line(index)

    def key_applies(self, action: str) -> bool:
        if action == "deploy":
            return False  # from the queue; the key still works here
        return super().key_applies(action)

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.display = True
        search.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        term = event.value.strip()
        self.log_view.set_term(term)
        self._match = None
        self.log_view.focus()
        if term:
            self._find(backwards=False)

    def action_next_match(self) -> None:
        self._find(backwards=False)

    def action_previous_match(self) -> None:
        self._find(backwards=True)

    def _find(self, *, backwards: bool) -> None:
        term = self.log_view.marker.term
        if not term:
            self.action_search()
            return
        start = self._match if self._match is not None else self.log_view.scroll_offset.y
        if self._match is None and not backwards:
            start -= 1
        found = self.log_view.find(term, start=start, backwards=backwards)
        if found is None:
            self.notify(f"{term!r} is not in the last {LOG_MAX_LINES:,} lines", severity="warning")
            return
        self._match = found
        self.log_view.show_line(found)
