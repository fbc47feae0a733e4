"""The one red line at the top of every view while the database is unreachable."""

from __future__ import annotations

import re

from textual.widgets import Static

#: the connection hint of ``db.pool.unavailable``: right for a server, wrong for the embedded
#: database, and too long for one line
_DSN_HINT = re.compile(r"\s*\([^()]*DEPLOYQ_DATABASE_URL[^()]*\)\s*$")


def banner_text(problem: str, *, embedded: bool) -> str:
    """``problem`` as one line, with the hint that fits where the database is."""
    first = problem.strip().splitlines()[0] if problem.strip() else "connection lost"
    reason = _DSN_HINT.sub("", first)
    hint = (
        "embedded database: `deployq db-url` shows it" if embedded else "check DEPLOYQ_DATABASE_URL"
    )
    return f"database unavailable, reconnecting… {reason} ({hint})"


class Banner(Static):
    """Shows the app's ``db_problem`` on one line (hidden while there is none)."""

    DEFAULT_CSS = """
    Banner { display: none; height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    Banner.-visible { display: block; }
    """

    def __init__(self) -> None:
        super().__init__("", classes="banner")

    def on_mount(self) -> None:
        self.watch(self.app, "db_problem", self._show)

    def _show(self, problem: str | None) -> None:
        if problem:
            settings = getattr(getattr(self.app, "store", None), "settings", None)
            embedded = settings is not None and settings.database_url is None
            self.update(banner_text(problem, embedded=embedded))
        self.set_class(bool(problem), "-visible")
