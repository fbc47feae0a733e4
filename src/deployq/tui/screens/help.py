"""``?``: every key of the view below and of the app, as currently mapped."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

NAVIGATION = (
    "Arrows, PgUp/PgDn, Home/End move; Enter opens the job under the cursor; the mouse works too."
)
FILTER_HELP = (
    "Filter (/): app:NAME ref:BRANCH status:STATUS server:NAME and free text; "
    "every term must match. a s e o show/hide active, succeeded, failed, other jobs."
)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "Close", id="help_close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Static(self._keys())
            yield Static(Text(NAVIGATION, style="dim"))
            yield Static(Text(FILTER_HELP, style="dim"))
            yield Static(Text("esc closes · ctrl+p or : lists every command", style="dim"))

    def _keys(self) -> Table:
        stack = self.app.screen_stack
        below: Screen[Any] = stack[-2] if len(stack) > 1 else self
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        table.add_column(style="dim")
        table.add_column(style="dim italic")  # the id to remap it with (settings tui_keys)
        seen: set[tuple[str, str]] = set()
        for key, active in below.active_bindings.items():
            binding = active.binding
            if not active.enabled or not binding.description:
                continue
            if binding.id is None:
                continue  # Textual's own keys (movement, focus, copy): see NAVIGATION
            shown = self.app.get_key_display(binding) or key
            if (shown, binding.action) in seen:
                continue
            seen.add((shown, binding.action))
            table.add_row(shown, binding.description, binding.tooltip, binding.id)
        return table

    def action_close(self) -> None:
        self.dismiss(None)
