"""The console's tables: columns laid out for the table's width, rows kept by key.

``DataTable`` sizes columns from their content and only ever grows them: one long ref pushed
the queue past 80 columns while a wide terminal stayed empty. Here every column has a
computed width (``deployq.tui.columns``), cells are cut with an ellipsis, and a resize lays
the columns out again (adding the wide-only ones from 120 columns up).

``set_cell`` repaints one row: ``DataTable.update_cell`` bumps one counter that every render
cache is keyed on, so one changed cell re-rendered every visible cell (tens of milliseconds
per update at 120×40). Both rely on DataTable's caches as of Textual 8 (pinned ``<9`` in
pyproject.toml); tests cover the rendered result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.geometry import Size
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey, RowKey

from deployq.tui.columns import Column, layout


class Cell:
    """One line of text in one style, cut with an ellipsis at its column's width.

    A small object instead of a ``Text`` per cell (thousands of rows): the ``Text`` is made
    when the cell is drawn, and only rows on screen are drawn. Never parsed as markup.
    """

    __slots__ = ("style", "text")

    def __init__(self, text: str, style: str = "") -> None:
        self.text = text
        self.style = style

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cell) and (self.text, self.style) == (other.text, other.style)

    def __hash__(self) -> int:
        return hash((self.text, self.style))

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Cell({self.text!r}, {self.style!r})"

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Text(self.text, style=self.style, overflow="ellipsis", no_wrap=True, end="")


def cell(value: Any) -> Any:
    """What the table stores for ``value``: a Cell for text (one style), else the value."""
    if isinstance(value, Cell):
        return value
    if isinstance(value, str):
        return Cell(value)
    if isinstance(value, Text):
        if not value.spans:
            return Cell(value.plain, str(value.style or ""))
        if value.overflow != "ellipsis" or not value.no_wrap:
            value = value.copy()
            value.overflow, value.no_wrap = "ellipsis", True
    return value


class Table(DataTable[Any]):
    """Rows keyed by a string, cells given by column key; Home/End and g/G move to the first
    and last row (DataTable's Home/End scroll sideways, which these tables never need)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("home,g", "scroll_top", "Top", show=False),
        Binding("end,G", "scroll_bottom", "Bottom", show=False),
    ]

    def __init__(self, columns: Sequence[Column], *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self.spec = tuple(columns)
        self.shown: tuple[str, ...] = ()
        self.cells: dict[str, Mapping[str, Any]] = {}
        """Every row's cells by column key, including the columns not shown."""

    def on_mount(self) -> None:
        self.relayout()

    def on_resize(self) -> None:
        self.relayout()

    def relayout(self) -> None:
        """Lay the columns out for the current width (a no-op when nothing changes)."""
        width = self.size.width or self.app.size.width
        planned = layout(self.spec, width)
        keys = tuple(c.key for c, _ in planned)
        if keys != self.shown:
            self._rebuild(planned)
            return
        changed = False
        for column, w in planned:
            current = self.columns[ColumnKey(column.key)]
            if current.width != w:
                current.width = w
                changed = True
        if changed:
            self._clear_caches()
            self._require_update_dimensions = True
            self.refresh()

    def _rebuild(self, planned: list[tuple[Column, int]]) -> None:
        """Show another set of columns: the rows are added again in the same order."""
        order = [str(row.key.value) for row in self.ordered_rows]
        cursor = self.cursor_row
        self.clear(columns=True)
        self.shown = tuple(c.key for c, _ in planned)
        for column, w in planned:
            self.add_column(column.label, width=w, key=column.key)
        for key in order:
            self._add(key, self.cells[key])
        if order:
            self.move_cursor(row=min(cursor, len(order) - 1), animate=False)

    def _add(self, key: str, cells: Mapping[str, Any]) -> None:
        self.add_row(*(cells[k] for k in self.shown), key=key)

    def put(self, key: str, cells: Mapping[str, Any]) -> bool:
        """Add or update the row ``key``; True when it was added."""
        return bool(self.put_many({key: cells}))

    def put_many(self, rows: Mapping[str, Mapping[str, Any]]) -> int:
        """Add or update these rows (the changed ones repainted together); the number added."""
        added = 0
        changed: dict[str, dict[str, Any]] = {}
        for key, given in rows.items():
            cells = {column: cell(value) for column, value in given.items()}  # shared by _data
            old = self.cells.get(key)
            self.cells[key] = cells
            if old is None:
                self._add(key, cells)
                added += 1
                continue
            diff = {c: cells[c] for c in self.shown if old[c] != cells[c]}
            if diff:
                changed[key] = diff
        if changed:
            self._set_cells(changed)
        return added

    def drop(self, key: str) -> None:
        if self.cells.pop(key, None) is not None:
            self.remove_row(key)

    def keys(self) -> Iterable[str]:
        return self.cells.keys()

    def cursor_key(self) -> str | None:
        if self.row_count == 0:
            return None
        value = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value
        return None if value is None else str(value)

    def set_cell(self, row_key: str, column_key: str, value: Any) -> None:
        """Set one cell and repaint its row only."""
        self._set_cells({row_key: {column_key: value}})

    def _set_cells(self, changes: Mapping[str, Mapping[str, Any]]) -> None:
        """Set cells of some rows and drop the cached renders of those rows only, in one pass
        over each cache (a pass costs milliseconds: one per row would add up every second)."""
        rows: set[RowKey] = set()
        indexes: set[int] = set()
        for row_key, cells in changes.items():
            row = RowKey(row_key)
            index = self._row_locations.get(row)
            if index is None:
                raise CellDoesNotExist(f"no row {row_key!r}")
            for column_key, value in cells.items():
                column = ColumnKey(column_key)
                if column not in self._column_locations:
                    raise CellDoesNotExist(f"no column {column_key!r}")
                self._data[row][column] = cell(value)
            rows.add(row)
            indexes.add(index)
        for key in [k for k in self._cell_render_cache.keys() if k[0] in rows]:
            self._cell_render_cache.discard(key)
        for row_cache_key in [k for k in self._row_render_cache.keys() if k[0] in rows]:
            self._row_render_cache.discard(row_cache_key)
        for renderable_key in [k for k in self._row_renderable_cache.keys() if k[1] in indexes]:
            self._row_renderable_cache.discard(renderable_key)
        self._line_cache.clear()
        for index in indexes:
            self.refresh_row(index)

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        """Columns have computed widths and rows one line: nothing to measure (DataTable
        renders every cell of every new row to measure it, the bulk of a first load)."""
        width = sum(c.get_render_width(self) for c in self.columns.values())
        header = self.header_height if self.show_header else 0
        self.virtual_size = Size(width, self._total_row_height + header)
