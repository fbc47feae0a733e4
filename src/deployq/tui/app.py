"""The operator console: ``DeployqApp(store)``, a client of deployq.store only.

One LISTEN connection feeds every view. Job notifications are coalesced: the ids that changed
during ``COALESCE_S`` are fetched in one query and posted to the views as a ``JobsChanged``
message, and each view updates its rows in place. A lost connection shows a banner; on
reconnection every view reloads (``Resync``), since notifications sent meanwhile are gone.

The app imports the views; the views know only ``messages`` and ``context``: they ask for
another view with ``OpenView`` and reach the store through ``console_of(self)``.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar

from textual import on, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.command import Provider
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer

from deployq.store import (
    CHANNEL_DELIVERIES,
    CHANNEL_JOBS,
    CHANNEL_LOGS,
    CHANNEL_SERVERS,
    Listener,
    Notice,
    Store,
)
from deployq.tui.commands import DeployqCommands
from deployq.tui.context import Console
from deployq.tui.glyphs import ASCII, UNICODE, AsciiFilter
from deployq.tui.messages import (
    Broadcast,
    ClockTick,
    DatabaseProblem,
    DeliveriesChanged,
    JobsChanged,
    LogsAppended,
    OpenView,
    Resync,
    ServersChanged,
    StatsDue,
)
from deployq.tui.screens.base import LiveScreen
from deployq.tui.screens.deliveries import DeliveriesScreen
from deployq.tui.screens.help import HelpScreen
from deployq.tui.screens.job import JobScreen
from deployq.tui.screens.queue import QueueScreen
from deployq.tui.screens.servers import ServersScreen

log = logging.getLogger(__name__)

StoreFactory = Callable[[], Awaitable[Store]]

#: job notifications arriving within this time of the previous fetch are fetched together
COALESCE_S = 0.025
#: the header figures are re-read at most this often while jobs change
STATS_MIN_INTERVAL_S = 1.0
LISTEN_CHANNELS = (CHANNEL_JOBS, CHANNEL_LOGS, CHANNEL_SERVERS, CHANNEL_DELIVERIES)
#: the views by name (keys 1-4, ``OpenView``); the queue is the base under every other one
VIEWS: dict[str, type[LiveScreen]] = {
    "queue": QueueScreen,
    "job": JobScreen,
    "servers": ServersScreen,
    "deliveries": DeliveriesScreen,
}

VIEW_GROUP = Binding.Group("View", compact=True)


def utc_now() -> datetime:
    return datetime.now(UTC)


class DeployqApp(App[None]):
    """The console. ``store`` is an open Store, or an async factory the app calls (and whose
    store it closes) when it starts in its own event loop. ``ascii`` draws with ASCII only
    (``deployq tui`` turns it on when the terminal's encoding needs it)."""

    CSS_PATH = "deployq.tcss"
    TITLE = "deployq"
    #: the palette lists the console's own commands only (Textual's theme, screenshot and
    #: maximize commands came first and pushed them off an 80×24 screen)
    COMMANDS: ClassVar[set[type[Provider] | Callable[[], type[Provider]]]] = {DeployqCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", id="quit", tooltip="leave the console"),
        Binding("1", "view('queue')", "Queue", id="view_queue", group=VIEW_GROUP),
        Binding("2", "view('job')", "Job", id="view_job", group=VIEW_GROUP),
        Binding("3", "view('servers')", "Servers", id="view_servers", group=VIEW_GROUP),
        Binding("4", "view('deliveries')", "Deliveries", id="view_deliveries", group=VIEW_GROUP),
        # Textual adds its ctrl+p only when no binding runs the palette: bind both keys
        # (ctrl+p with priority, so it works from the filter field too)
        Binding("ctrl+p", "command_palette", "Cmds", id="palette", show=False, priority=True),
        Binding("colon", "command_palette", "Cmds", id="command", tooltip="every command"),
    ]

    db_problem: reactive[str | None] = reactive(None)

    def __init__(
        self,
        store: Store | StoreFactory,
        *,
        read_only: bool = False,
        user: str | None = None,
        clock: Callable[[], datetime] = utc_now,
        ascii: bool = False,
    ) -> None:
        super().__init__()
        self._store: Store | None = store if isinstance(store, Store) else None
        self._store_factory = None if isinstance(store, Store) else store
        self.read_only = read_only
        self.user = user or getpass.getuser()
        self.clock = clock
        self.ascii = ascii
        if ascii:
            self._filters.append(AsciiFilter())
        self.listening = asyncio.Event()
        self.jobs_applied = asyncio.Event()
        """Set once the next burst of job changes has been posted to the views (then replaced
        by a new event): ``await app.jobs_applied.wait()``."""
        self._pending_jobs: set[int] = set()
        self._jobs_dirty = asyncio.Event()
        self._listener: Listener | None = None
        self._last_stats = 0.0
        self._stats_timer: Timer | None = None
        self._console: Console | None = None
        self._unhook: Callable[[], None] = lambda: None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the store is not open yet")
        return self._store

    @property
    def console_context(self) -> Console:
        """What the views share (``deployq.tui.context.console_of``)."""
        if self._console is None:
            self._console = Console(
                app=self,
                store=self.store,
                user=self.user,
                clock=self.clock,
                glyphs=ASCII if self.ascii else UNICODE,
                read_only=self.read_only,
                listening=self.listening,
            )
        return self._console

    # -- lifecycle -------------------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        return QueueScreen()

    async def on_load(self) -> None:
        if self._store is None and self._store_factory is not None:
            self._store = await self._store_factory()

    def on_mount(self) -> None:
        self.set_keymap(dict(self.store.settings.tui_keys))
        self._listen()
        self._flush_jobs()
        self.set_interval(1.0, self._tick)
        self._unhook = self.store.health.on_reconnect(self._database_back)

    async def _database_back(self) -> None:
        """The pool answers again: reads that failed meanwhile (the views' reloads after the
        live feed came back, say) are made again, and the banner goes once both are back."""
        if self.listening.is_set():
            self.console_context.set_problem(None)
        self.resync_views()

    async def on_unmount(self) -> None:
        self._unhook()
        if self._listener is not None:
            await self._listener.close()
        if self._store_factory is not None and self._store is not None:
            await self._store.close()

    # -- live updates ----------------------------------------------------------------------

    def live_screens(self) -> Iterable[LiveScreen]:
        return [s for s in self.screen_stack if isinstance(s, LiveScreen)]

    def broadcast(self, make: Callable[[], Broadcast]) -> None:
        """Post a fresh message to every view on the stack."""
        for screen in self.live_screens():
            screen.post_message(make())

    def resync_views(self) -> None:
        """Every view reloads what it shows."""
        self.broadcast(Resync)

    @work(group="listen", exit_on_error=False)
    async def _listen(self) -> None:
        listener = Listener(
            self.store.dsn,
            LISTEN_CHANNELS,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
        )
        self._listener = listener
        try:
            async for notice in listener:
                self._dispatch(notice)
        except Exception as exc:  # the console must outlive any failure of its feed
            log.exception("live updates stopped")
            self.console_context.set_problem(f"live updates stopped: {exc}")

    async def _on_connect(self) -> None:
        self.console_context.set_problem(None)
        self.resync_views()
        self.listening.set()

    async def _on_disconnect(self, reason: str) -> None:
        self.listening.clear()
        self.console_context.set_problem(reason)

    def _dispatch(self, notice: Notice) -> None:
        payload = notice.payload
        if notice.channel == CHANNEL_JOBS and isinstance(payload.get("id"), int):
            self._pending_jobs.add(payload["id"])
            self._jobs_dirty.set()
        elif notice.channel == CHANNEL_LOGS and isinstance(payload.get("job"), int):
            job_id, seq = payload["job"], int(payload.get("seq") or 0)
            self.broadcast(partial(LogsAppended, job_id, seq))
        elif notice.channel == CHANNEL_SERVERS:
            self.broadcast(ServersChanged)
        elif notice.channel == CHANNEL_DELIVERIES:
            self.broadcast(DeliveriesChanged)

    @work(group="flush", exit_on_error=False)
    async def _flush_jobs(self) -> None:
        """Wait for changed ids, let a burst gather, fetch them in one query, post them."""
        last_flush = 0.0
        console = self.console_context
        while True:
            await self._jobs_dirty.wait()
            # an isolated change is shown at once; a burst is gathered for up to COALESCE_S
            # after the previous fetch, so a storm costs at most one query per COALESCE_S
            await asyncio.sleep(max(0.0, COALESCE_S - (time.monotonic() - last_flush)))
            last_flush = time.monotonic()
            self._jobs_dirty.clear()
            ids, self._pending_jobs = self._pending_jobs, set()
            jobs = await console.attempt(self.store.console.jobs_by_ids(ids))
            if jobs is None:
                continue
            self.broadcast(partial(JobsChanged, jobs))
            # a fresh event per batch: whoever took the old one before this point wakes up,
            # even if its wait had not started yet (set-then-clear would lose that wake-up)
            applied, self.jobs_applied = self.jobs_applied, asyncio.Event()
            applied.set()
            self._refresh_stats_soon()

    def _refresh_stats_soon(self) -> None:
        """Re-read the header figures now, or once STATS_MIN_INTERVAL_S has passed."""
        if self._stats_timer is not None:
            return  # already due
        wait = STATS_MIN_INTERVAL_S - (time.monotonic() - self._last_stats)
        if wait <= 0:
            self._last_stats = time.monotonic()
            self.broadcast(StatsDue)
        else:
            self._stats_timer = self.set_timer(wait, self._stats_due, name="stats")

    def _stats_due(self) -> None:
        self._stats_timer = None
        self._refresh_stats_soon()

    def _tick(self) -> None:
        self.broadcast(ClockTick)

    @on(DatabaseProblem)
    def _database_problem(self, message: DatabaseProblem) -> None:
        self.db_problem = message.reason

    # -- navigation ------------------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def action_view(self, name: str) -> None:
        job_id = self.console_context.selected_job_id if name == "job" else None
        await self.show_view(name, job_id)

    @on(OpenView)
    async def _open_view(self, message: OpenView) -> None:
        await self.show_view(message.name, message.job_id)

    async def show_view(self, name: str, job_id: int | None = None) -> None:
        """Show a view: the queue is the base, every other view sits on top of it."""
        view = VIEWS.get(name)
        if view is None:
            self.notify(f"no view {name!r}", severity="warning")
            return
        if view.NEEDS_JOB and job_id is None:
            self.notify("no job selected: pick one in the queue (1) first", severity="warning")
            return
        if not view.NEEDS_JOB and type(self.screen) is view:
            return
        while len(self.screen_stack) > 1:
            self.pop_screen()
        if view is not type(self.screen_stack[0]):
            await self.push_screen(view.open(job_id))
