"""What every view shares: the live-update hooks and a typed handle on the app."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, ClassVar

from textual.binding import Binding, BindingType
from textual.screen import Screen

from deployq.models import Job

if TYPE_CHECKING:
    from deployq.tui.app import DeployqApp


class LiveScreen(Screen[None]):
    """A view fed by the app's one LISTEN connection.

    The app calls these hooks on every view on the stack; each view reads only what it shows.
    ``loaded`` is set after the first complete load, so tests and benchmarks wait on it.
    """

    #: name used by ``action_view`` and the help screen
    VIEW = ""
    # first, so the footer shows it first even at 80 columns
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "app.help", "Help", id="help", tooltip="this list"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.loaded = asyncio.Event()

    @property
    def dq(self) -> DeployqApp:
        from deployq.tui.app import DeployqApp

        app = self.app
        if not isinstance(app, DeployqApp):
            raise RuntimeError("deployq views run inside DeployqApp")
        return app

    def jobs_changed(self, jobs: list[Job]) -> None:
        """These jobs changed (fetched in one query after a burst of notifications)."""

    def logs_appended(self, job_id: int, seq: int) -> None:
        """Job ``job_id`` has log lines up to ``seq``."""

    def servers_changed(self) -> None:
        """A build server changed (drain, health, capacity)."""

    def deliveries_changed(self) -> None:
        """A webhook delivery was recorded."""

    def clock_tick(self) -> None:
        """A second passed: refresh ages and elapsed times (never re-query)."""

    def resync(self) -> None:
        """(Re)connected: notifications may have been lost, reload what is shown."""
