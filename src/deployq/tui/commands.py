"""The command palette lists every action of the current view (and the app's), with its key.

Built from the active bindings, so it shows exactly what the keys do: remapped keys appear
as remapped, and a read-only console lists no action that changes anything.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.dom import DOMNode

from deployq.tui.keys import MUTATING_ACTIONS


class DeployqCommands(Provider):
    """Every bound action of the screen the palette was opened on."""

    def _commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        seen: set[str] = set()
        commands: list[tuple[str, str, Callable[[], object]]] = []
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if not active.enabled or not binding.description or binding.action in seen:
                continue
            if binding.action == "command_palette" or binding.id is None:
                continue  # the palette itself; Textual's own keys (cursor, focus, copy)
            if getattr(self.app, "read_only", False) and binding.action in MUTATING_ACTIONS:
                continue
            seen.add(binding.action)
            node: DOMNode = active.node
            display_key = self.app.get_key_display(binding) or key
            title = f"{binding.description} ({display_key})"
            help_text = binding.tooltip or f"key: {display_key}"
            commands.append((title, help_text, partial(self.app.run_action, binding.action, node)))
        return commands

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, text=title, help=help_text)
