"""The job log: Textual's Log (only visible lines are rendered, at most ``max_lines`` kept),
with error lines in red and search matches marked."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Self

from rich.highlighter import Highlighter
from rich.text import Text
from textual.widgets import Log

from deployq.tui.format import RED

#: lines that look like the reason a build failed
ERROR_RE = re.compile(r"\b(error|failed|failure|fatal|exception|traceback|denied)\b", re.I)


class LogHighlighter(Highlighter):
    """Red for error lines, reverse yellow for the search term."""

    def __init__(self) -> None:
        self.term = ""

    def highlight(self, text: Text) -> None:
        plain = text.plain
        if ERROR_RE.search(plain):
            text.stylize(f"bold {RED}")
        if self.term:
            for match in re.finditer(re.escape(self.term), plain, re.I):
                text.stylize("black on yellow", match.start(), match.end())


class LogView(Log):
    """Follows the end until the user scrolls up; ``follow()`` (f, End) resumes.

    Following is a mode, not a position: the view keeps to the end when lines arrive or when
    the layout around it changes its height.
    """

    def __init__(self, *, max_lines: int, id: str | None = None) -> None:
        super().__init__(highlight=True, max_lines=max_lines, auto_scroll=False, id=id)
        self.marker = LogHighlighter()
        self.highlighter = self.marker
        self.following = True

    def write_lines(self, lines: Iterable[str], scroll_end: bool | None = None) -> Self:
        super().write_lines(lines, scroll_end=False)
        if self.following:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        return self

    def follow(self) -> None:
        self.following = True
        self.scroll_end(animate=False, immediate=True, x_axis=False)

    def on_resize(self) -> None:
        if self.following:
            self.call_after_refresh(self.scroll_end, animate=False, x_axis=False)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value >= self.max_scroll_y:
            self.following = True
        elif new_value < old_value:
            self.following = False

    def set_term(self, term: str) -> None:
        self.marker.term = term
        self._render_line_cache.clear()
        self.refresh()

    def find(self, term: str, *, start: int, backwards: bool = False) -> int | None:
        """Index of the next line containing ``term`` after (or before) ``start``, wrapping."""
        lines = self.lines
        count = len(lines)
        if not term or not count:
            return None
        needle = term.lower()
        step = -1 if backwards else 1
        for offset in range(1, count + 1):
            index = (start + step * offset) % count
            if needle in lines[index].lower():
                return index
        return None

    def show_line(self, index: int) -> None:
        """Scroll so line ``index`` is in the middle (this pauses following)."""
        self.following = False
        self.scroll_to(y=max(0, index - self.size.height // 2), animate=False, immediate=True)
