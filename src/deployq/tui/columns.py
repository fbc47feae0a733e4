"""Column widths that fit the terminal: fixed columns keep their width, flexible ones share
what is left (their text is cut with an ellipsis), and wide terminals get extra columns.

Widths are computed, never grown from the content, so one long ref cannot push the table
past the screen's edge, and a wider terminal uses its width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: from this many columns up, the ``wide`` columns are shown too
WIDE_AT = 120
#: DataTable's padding on each side of a cell
CELL_PADDING = 1
#: the vertical scrollbar's width (``scrollbar-size-vertical`` in deployq.tcss)
SCROLLBAR = 1


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    """Fixed width, or the least width of a flexible column."""
    flex: int = 0
    """Share of the width left over (0: fixed)."""
    wide: bool = False
    """Shown only from ``WIDE_AT`` columns up."""


def layout(columns: Sequence[Column], width: int) -> list[tuple[Column, int]]:
    """The columns shown at ``width`` cells, each with its content width."""
    shown = [c for c in columns if not c.wide or width >= WIDE_AT]
    used = sum(c.width + 2 * CELL_PADDING for c in shown) + SCROLLBAR
    room = max(0, width - used)
    flex_total = sum(c.flex for c in shown)
    widths = {c.key: c.width for c in shown}
    if flex_total:
        given = 0
        flexible = [c for c in shown if c.flex]
        for column in flexible:
            extra = room * column.flex // flex_total
            widths[column.key] += extra
            given += extra
        widths[flexible[0].key] += room - given  # the rounding remainder
    return [(c, widths[c.key]) for c in shown]
