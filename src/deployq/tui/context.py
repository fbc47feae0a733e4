"""What every view needs of the console, without importing the app (which imports the views):
the store, who the operator is, the clock, the display mode, and one way to call the store
that shows every failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from textual.app import App
from textual.dom import DOMNode

from deployq.durations import setting
from deployq.errors import DatabaseError, DeployqError
from deployq.store import Store
from deployq.tui.glyphs import Glyphs
from deployq.tui.messages import DatabaseProblem

T = TypeVar("T")

#: an operator's verb waits this long for the database before it is reported as failed
ACTION_TIMEOUT_S = 5.0
#: a failed verb's toast stays on screen this long
ACTION_TOAST_S = 15.0


@dataclass
class Console:
    """The console's state shared by the app and its views (``console_of(widget)``)."""

    app: App[Any]
    store: Store
    user: str
    clock: Callable[[], datetime]
    glyphs: Glyphs
    read_only: bool = False
    listening: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while the live feed is connected."""
    problem: str | None = None
    """Why the database is unreachable, while it is."""
    selected_job_id: int | None = None
    """The job under the queue's cursor, else the last one opened (what ``2`` shows)."""

    @property
    def embedded(self) -> bool:
        """True when the database is the embedded one (no DEPLOYQ_DATABASE_URL)."""
        return self.store.settings.database_url is None

    def set_problem(self, reason: str | None) -> None:
        if reason != self.problem:
            self.problem = reason
            self.app.post_message(DatabaseProblem(reason))

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
            self.app.notify(exc.message, severity="warning")
            return None
        if self.problem and self.listening.is_set():
            self.set_problem(None)
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
            self.app.notify(
                f"{what} failed: database unavailable ({reason}). Nothing changed; "
                "try again once it is back.",
                severity="error",
                timeout=ACTION_TOAST_S,
            )
            return None
        except DeployqError as exc:
            self.app.notify(f"{what}: {exc.message}", severity="warning")
            return None
        if self.problem and self.listening.is_set():
            self.set_problem(None)
        return result

    def _lost(self, exc: BaseException) -> str:
        """Show a lost database in the banner; return its one-line reason."""
        if isinstance(exc, TimeoutError):
            message = f"no answer within {setting(ACTION_TIMEOUT_S)}"
        else:
            message = exc.message if isinstance(exc, DeployqError) else str(exc).strip()
        reason = message.splitlines()[0] if message else type(exc).__name__
        self.set_problem(reason)
        return reason

    def refuse_if_read_only(self) -> bool:
        """True (and a toast saying so) when this console may not change anything."""
        if self.read_only:
            self.app.notify(
                "read-only console: this action is disabled (started with --read-only)",
                severity="warning",
            )
        return self.read_only


def console_of(node: DOMNode) -> Console:
    """The Console of the app ``node`` runs in."""
    console = getattr(node.app, "console_context", None)
    if not isinstance(console, Console):
        raise RuntimeError("deployq views run inside DeployqApp")
    return console
