"""A DataTable whose cells change without re-rendering the whole screenful.

``DataTable.update_cell`` bumps one counter that every render cache is keyed on, so one
changed cell re-renders every visible cell (tens of milliseconds per update at 120×40).
``set_cell`` drops only the cached renders of the changed row. It relies on DataTable's
caches as of Textual 8 (pinned ``<9`` in pyproject.toml); tests cover the rendered result.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey, RowKey


class JobTable(DataTable[Any]):
    """A row-cursor table: Home/End and g/G move to the first and last row (DataTable's
    Home/End scroll sideways, which the console's columns never need)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("home,g", "scroll_top", "Top", show=False),
        Binding("end,G", "scroll_bottom", "Bottom", show=False),
    ]

    def set_cell(self, row_key: str, column_key: str, value: Any) -> None:
        """Set one cell and repaint its row only (everything, when its column must grow)."""
        row, column = RowKey(row_key), ColumnKey(column_key)
        index = self._row_locations.get(row)
        if index is None or column not in self._column_locations:
            raise CellDoesNotExist(f"no cell at row {row_key!r}, column {column_key!r}")
        text = value.plain if isinstance(value, Text) else str(value)
        if cell_len(text) > self.columns[column].content_width:
            # the column must grow: the slow path measures and re-renders everything
            self.update_cell(row, column, value, update_width=True)
            return
        self._data[row][column] = value
        for key in [k for k in self._cell_render_cache.keys() if k[0] == row]:
            self._cell_render_cache.discard(key)
        for row_cache_key in [k for k in self._row_render_cache.keys() if k[0] == row]:
            self._row_render_cache.discard(row_cache_key)
        for renderable_key in [k for k in self._row_renderable_cache.keys() if k[1] == index]:
            self._row_renderable_cache.discard(renderable_key)
        self._line_cache.clear()
        self.refresh_row(index)
