"""Recent webhook deliveries and what became of each (and why one was ignored)."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from deployq.models import WebhookDelivery
from deployq.tui import format as fmt
from deployq.tui.screens.base import LiveScreen
from deployq.tui.widgets.banner import Banner
from deployq.tui.widgets.jobtable import JobTable
from deployq.tui.widgets.keybar import KeyBar
from deployq.tui.widgets.statusbar import StatusBar

#: deliveries shown, newest first
DELIVERIES_SHOWN = 200

RESULT_STYLE = {
    "accepted": fmt.GREEN,
    "ignored": fmt.YELLOW,
    "duplicate": fmt.GREY,
    "refused": f"bold {fmt.RED}",
    "error": f"bold {fmt.RED}",
}

COLUMNS = (
    ("id", "#"),
    ("at", "received"),
    ("provider", "provider"),
    ("event", "event"),
    ("repo", "repo"),
    ("ref", "ref"),
    ("result", "result"),
    ("code", "http"),
    ("jobs", "jobs"),
    ("reason", "reason"),
)


class DeliveriesScreen(LiveScreen):
    VIEW = "deliveries"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="back", tooltip="to the queue")
    ]

    def __init__(self) -> None:
        super().__init__()
        self.deliveries: dict[str, WebhookDelivery] = {}

    def compose(self) -> ComposeResult:
        yield Banner()
        yield StatusBar("Webhook deliveries", id="title")
        table = JobTable(id="deliveries", cursor_type="row")
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Static("", id="delivery-detail")
        yield KeyBar()

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one("#deliveries", DataTable)

    def on_mount(self) -> None:
        self.table.focus()
        self.resync()

    def resync(self) -> None:
        self.load()

    def deliveries_changed(self) -> None:
        self.load()

    @work(exclusive=True, group="deliveries-load", exit_on_error=False)
    async def load(self) -> None:
        rows = await self.dq.attempt(self.dq.store.deliveries.list(limit=DELIVERIES_SHOWN))
        if rows is None:
            return
        table = self.table
        tz = self.dq.clock().tzinfo
        fresh = {str(d.id): d for d in rows}
        with self.app.batch_update():
            for key in [k for k in table.rows if k.value not in fresh]:
                table.remove_row(key)
            added = False
            for row_id, d in fresh.items():
                if row_id in self.deliveries:
                    continue
                table.add_row(
                    d.id,
                    d.received_at.astimezone(tz).strftime("%m-%d %H:%M:%S"),
                    d.provider,
                    d.event or "",
                    fmt.one_line(d.repo, 30),
                    fmt.one_line(d.ref, 20),
                    Text(d.result, style=RESULT_STYLE.get(d.result, "")),
                    d.status_code,
                    " ".join(f"#{j}" for j in d.job_ids),
                    fmt.one_line(d.reason, 60),
                    key=row_id,
                )
                added = True
            self.deliveries = fresh
            if added:
                table.sort("id", reverse=True)
        self._show_detail()
        self.loaded.set()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        table = self.table
        detail = self.query_one("#delivery-detail", Static)
        if table.row_count == 0:
            detail.update("no webhook deliveries yet")
            return
        key = table.ordered_rows[table.cursor_row].key.value
        d = self.deliveries.get(str(key))
        if d is None:
            return
        why = d.reason or ("built: " + ", ".join(f"#{j}" for j in d.job_ids) if d.job_ids else "")
        detail.update(
            Text.assemble(
                (f"{d.provider} {d.event or ''} {d.delivery_id or ''}  ", "bold"),
                (d.result, RESULT_STYLE.get(d.result, "")),
                f" ({d.status_code})  {why}",
            )
        )

    def action_back(self) -> None:
        self.app.pop_screen()
