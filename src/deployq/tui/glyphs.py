"""The characters the console draws with, in Unicode or plain ASCII.

ASCII mode is for terminals whose encoding cannot show box and block characters (the
console then printed ``\\u2588`` escapes): ``--ascii`` forces it and ``wants_ascii`` turns it
on when the output encoding cannot encode them. The console's own marks come from ``Glyphs``;
``AsciiFilter`` replaces whatever Textual draws (borders, scrollbars, ellipses) cell for cell,
so nothing non-ASCII reaches the terminal and no line changes width.
"""

from __future__ import annotations

import codecs
import unicodedata
from dataclasses import dataclass

from rich.cells import cell_len
from rich.segment import Segment
from textual.color import Color
from textual.filter import LineFilter


@dataclass(frozen=True)
class Glyphs:
    bar_full: str
    bar_empty: str
    shown: str
    hidden: str
    running: str
    failed: str
    arrow: str
    ellipsis: str
    dot: str
    none: str


UNICODE = Glyphs("█", "░", "■", "□", "▶", "✗", "→", "…", "·", "–")
ASCII = Glyphs("#", "-", "+", "-", ">", "x", ">", "~", ".", "-")

#: what the box and block characters of borders, scrollbars and marks become in ASCII mode
_ASCII_FOR = {
    "…": "~",
    "·": ".",
    "–": "-",
    "—": "-",
    "→": ">",
    "←": "<",
    "↑": "^",
    "↓": "v",
    "▶": ">",
    "▼": "v",
    "✗": "x",
    "✓": "v",
    "■": "+",
    "□": "-",
    "█": "#",
    "░": "-",
    "▒": "-",
    "▓": "#",
    "•": "*",
    "⏎": "<",
}
#: the terminal's encoding must be able to show these for the Unicode glyphs
_PROBE = "█░■─│┌…→▶"


def wants_ascii(encoding: str | None) -> bool:
    """True when text in ``encoding`` cannot carry the Unicode glyphs (or it is unknown)."""
    if not encoding:
        return True
    try:
        codecs.lookup(encoding)
        _PROBE.encode(encoding)
    except (LookupError, UnicodeEncodeError):
        return True
    return False


def to_ascii(char: str) -> str:
    """One character as ASCII of the same width."""
    if char.isascii():
        return char
    mapped = _ASCII_FOR.get(char)
    if mapped is not None:
        return mapped
    name = unicodedata.name(char, "")
    if name.startswith("BOX DRAWINGS"):
        if "VERTICAL" in name and "HORIZONTAL" not in name:
            return "|"
        if "HORIZONTAL" in name and "VERTICAL" not in name:
            return "-"
        return "+"
    if name.startswith(("LOWER ", "UPPER ", "LEFT ", "RIGHT ")) and "BLOCK" in name:
        return " "  # the partial blocks at the ends of scrollbar thumbs
    plain = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
    if len(plain) == 1 and cell_len(char) == 1:
        return plain  # é -> e
    return "?" * max(1, cell_len(char))


class AsciiFilter(LineFilter):
    """Replaces every non-ASCII character of a line with ASCII of the same width."""

    def __init__(self, enabled: bool = True) -> None:
        super().__init__(enabled)
        self._cache: dict[str, str] = {}

    def apply(self, segments: list[Segment], background: Color) -> list[Segment]:
        out: list[Segment] = []
        for segment in segments:
            text = segment.text
            if text.isascii():
                out.append(segment)
                continue
            cached = self._cache.get(text)
            if cached is None:
                cached = "".join(to_ascii(c) for c in text)
                if len(self._cache) < 4096:
                    self._cache[text] = cached
            out.append(Segment(cached, segment.style, segment.control))
        return out
