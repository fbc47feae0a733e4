"""What every view shares: the console context, a loaded event, and the help key.

A view handles the app's broadcasts (``deployq.tui.messages``) it cares about with ``@on``
and ignores the rest.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar, Self

from textual.binding import Binding, BindingType
from textual.screen import Screen

from deployq.tui.context import Console, console_of


class LiveScreen(Screen[None]):
    """A view fed by the app's one LISTEN connection.

    ``loaded`` is set after the first complete load, so tests and benchmarks wait on it.
    """

    #: the view shows one job, so opening it needs a job id
    NEEDS_JOB: ClassVar[bool] = False
    # first, so the key bar and the help show it first
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "app.help", "Help", id="help", tooltip="this list"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.loaded = asyncio.Event()

    @classmethod
    def open(cls, job_id: int | None) -> Self:
        """The view, for ``job_id`` when it ``NEEDS_JOB``."""
        return cls()

    @property
    def ctx(self) -> Console:
        return console_of(self)
