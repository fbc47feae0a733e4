"""The job log: Textual's Log (only visible lines are rendered, at most ``max_lines`` kept),
with error lines in red, search matches marked, long lines wrapped on request (``w``), a
marker that says whether it follows the end, and the first build's harmless cache miss
labelled as such."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Self

from rich.cells import chop_cells
from rich.highlighter import Highlighter
from rich.text import Text
from textual.widgets import Log

from deployq.tui.format import RED, YELLOW

#: lines that look like the reason a build failed
ERROR_RE = re.compile(r"\b(error|failed|failure|fatal|exception|traceback|denied)\b", re.I)
#: BuildKit's answer when ``--cache-from`` names a cache that does not exist yet (the first
#: build of a branch): ``#5 ERROR: registry/app:main: not found``
CACHE_MISS_RE = re.compile(r"^(?:#\d+\s+)?ERROR:\s+\S+: not found\s*$")
CACHE_MISS_NOTE = "  [cache miss: nothing cached yet for this ref; harmless]"


def is_cache_miss(line: str) -> bool:
    return bool(CACHE_MISS_RE.match(line)) or CACHE_MISS_NOTE[:13] in line


def is_error(line: str) -> bool:
    """A line that looks like why a build failed (a cache miss is not one)."""
    return bool(ERROR_RE.search(line)) and not is_cache_miss(line)


class LogHighlighter(Highlighter):
    """Red for error lines, dim yellow for a cache miss, reverse yellow for the search term."""

    def __init__(self) -> None:
        self.term = ""

    def highlight(self, text: Text) -> None:
        plain = text.plain
        if is_cache_miss(plain):
            text.stylize(f"dim {YELLOW}")
        elif ERROR_RE.search(plain):
            text.stylize(f"bold {RED}")
        if self.term:
            for match in re.finditer(re.escape(self.term), plain, re.I):
                text.stylize("black on yellow", match.start(), match.end())


class LogView(Log):
    """Follows the end until the user scrolls up; ``follow()`` (f, End, G) resumes.

    Following is a mode, not a position: the view keeps to the end when lines arrive or when
    the layout around it changes its height. The border title says which mode it is in.
    """

    def __init__(self, *, max_lines: int, id: str | None = None) -> None:
        super().__init__(highlight=True, max_lines=max_lines, auto_scroll=False, id=id)
        self.marker = LogHighlighter()
        self.highlighter = self.marker
        self.raw: deque[str] = deque(maxlen=max_lines)
        """The lines as written (the view shows them cut into pieces while wrapping)."""
        self.wrap = False
        self._wrapped_at = 0
        self.following = True
        self._show_mode()

    def write_lines(self, lines: Iterable[str], scroll_end: bool | None = None) -> Self:
        labelled = [line + CACHE_MISS_NOTE if CACHE_MISS_RE.match(line) else line for line in lines]
        self.raw.extend(labelled)
        super().write_lines(self._pieces(labelled) if self.wrap else labelled, scroll_end=False)
        if self.following:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        return self

    def _wrap_width(self) -> int:
        return max(10, self.scrollable_content_region.width or self.size.width or 80)

    def _pieces(self, lines: Iterable[str]) -> list[str]:
        width = self._wrapped_at = self._wrap_width()
        out: list[str] = []
        for line in lines:
            out.extend(chop_cells(line, width) or [""])
        return out

    def set_wrap(self, wrap: bool) -> None:
        """Wrap long lines (or cut them, scrolling sideways); keeps following if it was."""
        self.wrap = wrap
        self._redraw()

    def _redraw(self) -> None:
        following = self.following
        super().clear()
        lines = list(self.raw)
        super().write_lines(self._pieces(lines) if self.wrap else lines, scroll_end=False)
        self.following = following
        if following:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self._show_mode()

    def follow(self) -> None:
        self.following = True
        self.scroll_end(animate=False, immediate=True, x_axis=False)
        self._show_mode()

    def on_resize(self) -> None:
        if self.wrap and self._wrap_width() != self._wrapped_at:
            self.call_after_refresh(self._redraw)
        elif self.following:
            self.call_after_refresh(self.scroll_end, animate=False, x_axis=False)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value >= self.max_scroll_y:
            self.following = True
        elif new_value < old_value:
            self.following = False
        self._show_mode()

    def _show_mode(self) -> None:
        mode = "following" if self.following else "PAUSED (f follows)"
        title = f"log {mode}" + (" · wrap" if self.wrap else "")
        if title != self.border_title:
            self.border_title = title

    def set_term(self, term: str) -> None:
        self.marker.term = term
        self._render_line_cache.clear()
        self.refresh()

    def find(self, term: str, *, start: int, backwards: bool = False) -> int | None:
        """Index of the next line containing ``term`` after (or before) ``start``, wrapping."""
        if not term:
            return None
        needle = term.lower()
        return _find(self.lines, lambda line: needle in line.lower(), start, backwards)

    def first_error(self) -> int | None:
        """Index (in the lines shown) of the first line that looks like an error, not a
        cache miss."""
        found = next((i for i, line in enumerate(self.raw) if is_error(line)), None)
        if found is None or not self.wrap:
            return found
        width = self._wrap_width()
        shown = sum(len(chop_cells(line, width) or [""]) for line in list(self.raw)[:found])
        return min(shown, max(0, self.line_count - 1))

    def show_line(self, index: int) -> None:
        """Scroll so line ``index`` is in the middle (this pauses following)."""
        self.following = False
        self.scroll_to(y=max(0, index - self.size.height // 2), animate=False, immediate=True)
        self._show_mode()


def _find(
    lines: Sequence[str], match: Callable[[str], bool], start: int, backwards: bool
) -> int | None:
    count = len(lines)
    if not count:
        return None
    step = -1 if backwards else 1
    for offset in range(1, count + 1):
        index = (start + step * offset) % count
        if match(lines[index]):
            return index
    return None
