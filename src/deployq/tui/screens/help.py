"""``?``: every key of the view below and of the app, as currently mapped, on one screen.

Keys of one group (views, show/hide, priority) share a row, so the whole list fits 80×24
without scrolling; "esc closes" is the first line.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from deployq.tui.format import CYAN
from deployq.tui.keys import MUTATING_ACTIONS

TITLE = "Keys · esc closes · ctrl+p or : lists every command"
NAVIGATION = "↑↓ PgUp/PgDn move, Home/End or g/G first/last, Enter opens; the mouse works too."
FILTER_HELP = "Filter /: app:NAME ref:BRANCH status:STATUS server:NAME text (all must match)."


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "Close", id="help_close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Static(Text(TITLE, style="bold"))
            yield Static(self._keys())
            yield Static(Text(NAVIGATION, style="dim"))
            yield Static(Text(FILTER_HELP, style="dim"))

    def rows(self) -> list[tuple[str, str, str]]:
        """(keys, what, details) of the view below, one row per binding or group."""
        stack = self.app.screen_stack
        below: Screen[Any] = stack[-2] if len(stack) > 1 else self
        read_only = getattr(self.app, "read_only", False)
        rows: dict[str, tuple[list[str], str, list[str]]] = {}
        for key, active in below.active_bindings.items():
            binding = active.binding
            if not binding.description or binding.id is None:
                continue  # Textual's own keys (movement, focus, copy): see NAVIGATION
            if read_only and binding.action in MUTATING_ACTIONS:
                continue
            shown = self.app.get_key_display(binding) or key
            group = binding.group.description if binding.group else ""
            name = group or binding.action
            keys, _what, details = rows.setdefault(name, ([], group or binding.description, []))
            if shown in keys:
                continue
            keys.append(shown)
            detail = (binding.tooltip or binding.description) if group else binding.tooltip
            if detail and detail not in details:
                details.append(detail)
        return [(" ".join(k), what, ", ".join(d)) for k, what, d in rows.values()]

    def _keys(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(style=f"bold {CYAN}", no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(style="dim")
        for keys, what, details in self.rows():
            table.add_row(keys, what, details)
        return table

    def action_close(self) -> None:
        self.dismiss(None)
