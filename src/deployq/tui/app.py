"""The operator console: ``DeployqApp(store)``, a client of deployq.store only.

One LISTEN connection feeds every view. Job notifications are coalesced: the ids that changed
during ``COALESCE_S`` are fetched in one query and handed to the views, which update their
rows in place. A lost connection shows a banner; on reconnection every view reloads, since
notifications sent meanwhile are gone.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar, TypeVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer

from deployq.errors import DatabaseError, DeployqError
from deployq.models import Job
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
from deployq.tui.screens.base import LiveScreen

log = logging.getLogger(__name__)

T = TypeVar("T")
StoreFactory = Callable[[], Awaitable[Store]]

#: job notifications arriving within this time of the previous fetch are fetched together
COALESCE_S = 0.025
#: an operator's verb waits this long for the database before it is reported as failed
ACTION_TIMEOUT_S = 5.0
#: failed verbs stay on screen this long
ACTION_TOAST_S = 15.0
#: the header figures are re-read at most this often while jobs change
STATS_MIN_INTERVAL_S = 1.0
LISTEN_CHANNELS = (CHANNEL_JOBS, CHANNEL_LOGS, CHANNEL_SERVERS, CHANNEL_DELIVERIES)
VIEW_GROUP = Binding.Group("View", compact=True)


def _jobs_changed(jobs: list[Job], screen: LiveScreen) -> None:
    screen.jobs_changed(jobs)


def utc_now() -> datetime:
    return datetime.now(UTC)


class DeployqApp(App[None]):
    """The console. ``store`` is an open Store, or an async factory the app calls (and whose
    store it closes) when it starts in its own event loop."""

    CSS_PATH = "deployq.tcss"
    TITLE = "deployq"
    COMMANDS = App.COMMANDS | {DeployqCommands}
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
    ) -> None:
        super().__init__()
        self._store: Store | None = store if isinstance(store, Store) else None
        self._store_factory = None if isinstance(store, Store) else store
        self.read_only = read_only
        self.user = user or getpass.getuser()
        self.clock = clock
        self.listening = asyncio.Event()
        self.jobs_applied = asyncio.Event()
        """Set once the next burst of job changes has been handed to the views (then replaced
        by a new event): ``await app.jobs_applied.wait()``."""
        self._pending_jobs: set[int] = set()
        self._jobs_dirty = asyncio.Event()
        self._listener: Listener | None = None
        self._connected_once = False
        self._last_stats = 0.0
        self._stats_timer: Timer | None = None
        self.last_job_id: int | None = None
        self.sub_title = f"{self.user}" + (" · read-only" if read_only else "")

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the store is not open yet")
        return self._store

    # -- lifecycle -------------------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        from deployq.tui.screens.queue import QueueScreen

        return QueueScreen()

    async def on_load(self) -> None:
        if self._store is None and self._store_factory is not None:
            self._store = await self._store_factory()

    def on_mount(self) -> None:
        self.set_keymap(dict(self.store.settings.tui_keys))
        self._listen()
        self._flush_jobs()
        self.set_interval(1.0, self._tick)

    async def on_unmount(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        if self._store_factory is not None and self._store is not None:
            await self._store.close()

    # -- live updates ----------------------------------------------------------------------

    def live_screens(self) -> Iterable[LiveScreen]:
        return [s for s in self.screen_stack if isinstance(s, LiveScreen)]

    def resync_views(self) -> None:
        """Every view reloads what it shows."""
        self._tell(lambda screen: screen.resync())

    def _tell(self, hook: Callable[[LiveScreen], None]) -> None:
        """Call a live-update hook on every view on the stack."""
        for screen in self.live_screens():
            try:
                hook(screen)
            except NoMatches:
                pass  # the view is being torn down (quitting): nothing to update

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
            self.db_problem = f"live updates stopped: {exc}"

    async def _on_connect(self) -> None:
        self.db_problem = None
        self.resync_views()
        self._connected_once = True
        self.listening.set()

    async def _on_disconnect(self, reason: str) -> None:
        self.listening.clear()
        self.db_problem = reason

    def _dispatch(self, notice: Notice) -> None:
        payload = notice.payload
        if notice.channel == CHANNEL_JOBS and isinstance(payload.get("id"), int):
            self._pending_jobs.add(payload["id"])
            self._jobs_dirty.set()
        elif notice.channel == CHANNEL_LOGS and isinstance(payload.get("job"), int):
            job_id, seq = payload["job"], int(payload.get("seq") or 0)
            self._tell(lambda screen: screen.logs_appended(job_id, seq))
        elif notice.channel == CHANNEL_SERVERS:
            self._tell(lambda screen: screen.servers_changed())
        elif notice.channel == CHANNEL_DELIVERIES:
            self._tell(lambda screen: screen.deliveries_changed())

    @work(group="flush", exit_on_error=False)
    async def _flush_jobs(self) -> None:
        """Wait for changed ids, let a burst gather, fetch them in one query, hand them over."""
        last_flush = 0.0
        while True:
            await self._jobs_dirty.wait()
            # an isolated change is shown at once; a burst is gathered for up to COALESCE_S
            # after the previous fetch, so a storm costs at most one query per COALESCE_S
            await asyncio.sleep(max(0.0, COALESCE_S - (time.monotonic() - last_flush)))
            last_flush = time.monotonic()
            self._jobs_dirty.clear()
            ids, self._pending_jobs = self._pending_jobs, set()
            jobs = await self.attempt(self.store.console.jobs_by_ids(ids))
            if jobs is None:
                continue
            try:
                with self.batch_update():
                    self._tell(partial(_jobs_changed, jobs))
            except Exception:  # one bad update must not stop every later one
                log.exception("applying job changes failed")
                self.resync_views()
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
            self.refresh_stats()
        else:
            self._stats_timer = self.set_timer(wait, self._stats_due, name="stats")

    def _stats_due(self) -> None:
        self._stats_timer = None
        self._refresh_stats_soon()

    def refresh_stats(self) -> None:
        from deployq.tui.screens.queue import QueueScreen

        for screen in self.live_screens():
            if isinstance(screen, QueueScreen):
                screen.load_stats()

    def _tick(self) -> None:
        self._tell(lambda screen: screen.clock_tick())

    # -- errors ----------------------------------------------------------------------------

    async def attempt(self, call: Awaitable[T]) -> T | None:
        """Await a store read; show what went wrong instead of raising.

        A refusal (not found, wrong state) is a toast; a lost database is the banner.
        """
        try:
            result = await call
        except (DatabaseError, OSError) as exc:
            self._lost(exc)
            return None
        except DeployqError as exc:
            self.notify(exc.message, severity="warning")
            return None
        if self.db_problem and self.listening.is_set():
            self.db_problem = None
        return result

    async def act(self, call: Awaitable[T], *, what: str) -> T | None:
        """Await an operator's verb; it is never lost silently. A refusal is a warning toast;
        a lost or silent database is an error toast that says nothing changed and the verb
        can be retried (and the banner). Waits at most ``ACTION_TIMEOUT_S``."""
        try:
            async with asyncio.timeout(ACTION_TIMEOUT_S):
                result = await call
        except (DatabaseError, OSError, TimeoutError) as exc:
            reason = self._lost(exc)
            self.notify(
                f"{what} failed: database unavailable ({reason}). Nothing changed; "
                "try again once it is back.",
                severity="error",
                timeout=ACTION_TOAST_S,
            )
            return None
        except DeployqError as exc:
            self.notify(f"{what}: {exc.message}", severity="warning")
            return None
        if self.db_problem and self.listening.is_set():
            self.db_problem = None
        return result

    def _lost(self, exc: BaseException) -> str:
        """Show a lost database in the banner; return its one-line reason."""
        if isinstance(exc, TimeoutError):
            message = f"no answer within {ACTION_TIMEOUT_S:.0f}s"
        else:
            message = exc.message if isinstance(exc, DeployqError) else str(exc).strip()
        reason = message.splitlines()[0] if message else type(exc).__name__
        self.db_problem = reason
        return reason

    # -- navigation and actions ------------------------------------------------------------

    def refuse_if_read_only(self) -> bool:
        """True (and a toast saying so) when this console may not change anything."""
        if self.read_only:
            self.notify(
                "read-only console: this action is disabled (started with --read-only)",
                severity="warning",
            )
        return self.read_only

    def action_help(self) -> None:
        from deployq.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def action_view(self, name: str) -> None:
        """Switch to a view: the queue is the base, every other view sits on top of it."""
        from deployq.tui.screens.deliveries import DeliveriesScreen
        from deployq.tui.screens.job import JobScreen
        from deployq.tui.screens.servers import ServersScreen

        if name == "job":
            job_id = self.selected_job_id()
            if job_id is None:
                self.notify("no job selected: pick one in the queue (1) first")
                return
            target: Screen[Any] | None = JobScreen(job_id)
        elif name == "servers":
            target = ServersScreen()
        elif name == "deliveries":
            target = DeliveriesScreen()
        else:
            target = None
        if target is not None and type(self.screen) is type(target):
            if not isinstance(target, JobScreen):
                return
        while len(self.screen_stack) > 1:
            self.pop_screen()
        if target is not None:
            await self.push_screen(target)

    def selected_job_id(self) -> int | None:
        """The job under the cursor of the current view, else the last one opened."""
        from deployq.tui.screens.queue import QueueScreen

        for screen in reversed(self.screen_stack):
            if isinstance(screen, QueueScreen):
                return screen.cursor_job_id() or self.last_job_id
        return self.last_job_id

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        for command in super().get_system_commands(screen):
            if command.title not in {"Keys", "Screenshot"}:
                yield command
