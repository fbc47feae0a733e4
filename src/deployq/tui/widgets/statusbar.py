"""The top line of a view: what it shows, with a READ-ONLY marker on a read-only console."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

READ_ONLY_MARK = " READ-ONLY "


class StatusBar(Static):
    """One line; ``show(text)`` sets what follows the marker."""

    DEFAULT_CSS = """
    StatusBar { height: 1; padding: 0 1; background: $panel; text-wrap: nowrap;
                text-overflow: ellipsis; }
    """

    def __init__(self, text: str | Text = "", *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self._text = Text(text) if isinstance(text, str) else text

    def on_mount(self) -> None:
        self.show(self._text)

    def show(self, text: str | Text) -> None:
        self._text = Text(text) if isinstance(text, str) else text
        if getattr(self.app, "read_only", False):
            self.update(Text.assemble((READ_ONLY_MARK, "bold reverse"), " ", self._text))
        else:
            self.update(self._text)
