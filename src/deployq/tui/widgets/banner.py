"""The red line at the top of every view while the database is unreachable."""

from __future__ import annotations

from textual.widgets import Static


class Banner(Static):
    """Shows the app's ``db_problem`` (hidden while there is none)."""

    DEFAULT_CSS = """
    Banner { display: none; }
    Banner.-visible { display: block; }
    """

    def __init__(self) -> None:
        super().__init__("", classes="banner")

    def on_mount(self) -> None:
        self.watch(self.app, "db_problem", self._show)

    def _show(self, problem: str | None) -> None:
        if problem:
            self.update(f"database unavailable: {problem} — reconnecting…")
        self.set_class(bool(problem), "-visible")
