"""The key line at the bottom: only the keys that apply now, always ``? help`` and ``q quit``.

Textual's Footer lists every shown binding and is cut at 80 columns. This bar asks the view
which verbs apply to the row under the cursor (no Cancel on a finished job), shows only the
filter's keys while the filter is being typed, hides the verbs of a read-only console, and
drops keys from the end (never help and quit) until the line fits.
"""

from __future__ import annotations

from typing import Any, Protocol

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Input, Static

from deployq.tui.keys import MUTATING_ACTIONS

#: always shown, last
FIXED = (("?", "help"), ("q", "quit"))
KEY_STYLE = "bold"
LABEL_STYLE = "dim"


class KeyedView(Protocol):
    def key_applies(self, action: str) -> bool: ...


def _label(binding: Binding) -> str:
    return (binding.group.description if binding.group else binding.description).lower()


class KeyBar(Static):
    """The keys of the screen it is on."""

    DEFAULT_CSS = """
    KeyBar { dock: bottom; height: 1; padding: 0 1; background: $panel; text-wrap: nowrap; }
    """

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._changed)
        self.call_after_refresh(self.refresh_keys)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def on_resize(self) -> None:
        self.refresh_keys()

    def _changed(self, screen: Screen[Any]) -> None:
        if screen is self.screen:
            self.refresh_keys()

    def items(self) -> list[tuple[str, str]]:
        """(keys, label) of the keys that apply now, in binding order, groups merged."""
        screen = self.screen
        focused = self.app.focused
        if isinstance(focused, Input):
            return [("enter", "done"), ("esc", "clear")]
        read_only = bool(getattr(self.app, "read_only", False))
        applies = getattr(screen, "key_applies", None)
        items: dict[str, tuple[list[str], str]] = {}
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if not binding.show or binding.id is None or not binding.description:
                continue
            if binding.action in {"app.help", "quit", "app.quit"}:
                continue  # always shown, at the end
            if not active.enabled:
                continue
            if read_only and binding.action in MUTATING_ACTIONS:
                continue
            if applies is not None and not applies(binding.action):
                continue
            shown = self.app.get_key_display(binding) or key
            name = binding.group.description if binding.group else binding.action
            keys, _ = items.setdefault(name, ([], _label(binding)))
            if shown not in keys and (binding.group or not keys):
                keys.append(shown)  # one key per verb; a group shows all of its keys
        return [(_join(keys), label) for keys, label in items.values()]

    def refresh_keys(self) -> None:
        width = max(0, self.size.width - 2) or 78
        fixed = Text()
        for key, label in FIXED:
            fixed.append(f" {key}", KEY_STYLE).append(f" {label}", LABEL_STYLE)
        room = width - cell_len(fixed.plain)
        line = Text()
        for keys, label in self.items():
            item = Text.assemble((f" {keys}", KEY_STYLE), (f" {label}", LABEL_STYLE))
            if cell_len(line.plain) + cell_len(item.plain) > room:
                break
            line.append_text(item)
        line.append_text(fixed)
        self.update(line[1:] if line.plain.startswith(" ") else line)


def _join(keys: list[str]) -> str:
    """``1 2 3 4`` -> ``1-4``; ``+ -`` -> ``+-``; else as they are."""
    if len(keys) > 2 and all(k.isdigit() and len(k) == 1 for k in keys):
        return f"{keys[0]}-{keys[-1]}"
    if all(len(k) == 1 for k in keys):
        return "".join(keys)
    return "/".join(keys)
