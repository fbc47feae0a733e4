"""ASCII mode: when it turns on by itself, and what the filter makes of Textual's drawing."""

from __future__ import annotations

import pytest
from rich.segment import Segment
from textual.color import Color

from deployq.tui.glyphs import AsciiFilter, wants_ascii


@pytest.mark.parametrize(
    ("encoding", "ascii_only"),
    [
        ("utf-8", False),
        ("UTF-8", False),
        ("ascii", True),
        ("ANSI_X3.4-1968", True),  # what Python reports under LANG=C
        ("latin-1", True),
        (None, True),
        ("no-such-codec", True),
    ],
)
def test_ascii_mode_turns_on_when_the_encoding_cannot_draw_boxes(
    encoding: str | None, ascii_only: bool
) -> None:
    assert wants_ascii(encoding) is ascii_only


def test_the_filter_keeps_widths_and_leaves_only_ascii() -> None:
    line = [Segment("┏━━┓ "), Segment("███░░  60%"), Segment(" feature/lo…"), Segment("é漢")]
    out = AsciiFilter().apply(line, Color(0, 0, 0))
    texts = [s.text for s in out]
    assert texts == ["+--+ ", "###--  60%", " feature/lo~", "e??"]
    assert all(t.isascii() for t in texts)
