"""Recent webhook deliveries and what became of each (and why one was ignored)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from deployq.models import WebhookDelivery
from deployq.tui import format as fmt
from deployq.tui.columns import Column
from deployq.tui.messages import DeliveriesChanged, Resync
from deployq.tui.screens.base import LiveScreen
from deployq.tui.widgets.banner import Banner
from deployq.tui.widgets.keybar import KeyBar
from deployq.tui.widgets.statusbar import StatusBar
from deployq.tui.widgets.table import Table

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
    Column("id", "#", 5),
    Column("at", "received", 14),
    Column("provider", "from", 6),
    Column("event", "event", 6, flex=1),
    Column("repo", "repo", 6, flex=3),
    Column("ref", "ref", 6, flex=2),
    Column("result", "result", 9),
    Column("code", "http", 4),
    Column("jobs", "jobs", 5, flex=1, wide=True),
    Column("reason", "reason", 6, flex=3, wide=True),
)


class DeliveriesScreen(LiveScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="back", tooltip="to the queue")
    ]

    def __init__(self) -> None:
        super().__init__()
        self.deliveries: dict[str, WebhookDelivery] = {}

    def compose(self) -> ComposeResult:
        yield Banner()
        yield StatusBar("Webhook deliveries", id="title")
        yield Table(COLUMNS, id="deliveries")
        yield Static("", id="delivery-detail")
        yield KeyBar()

    @property
    def table(self) -> Table:
        return self.query_one("#deliveries", Table)

    def on_mount(self) -> None:
        self.table.focus()
        self.load()

    @on(Resync)
    @on(DeliveriesChanged)
    def _reload(self) -> None:
        self.load()

    @work(exclusive=True, group="deliveries-load", exit_on_error=False)
    async def load(self) -> None:
        rows = await self.ctx.attempt(self.ctx.store.deliveries.recent(limit=DELIVERIES_SHOWN))
        if rows is None:
            return
        table = self.table
        tz = self.ctx.clock().tzinfo
        fresh = {str(d.id): d for d in rows}
        with self.app.batch_update():
            for key in [k for k in table.keys() if k not in fresh]:
                table.drop(key)
            added = False
            for row_id, d in fresh.items():
                added = (
                    table.put(
                        row_id,
                        {
                            "id": d.id,
                            "at": d.received_at.astimezone(tz).strftime("%m-%d %H:%M:%S"),
                            "provider": d.provider,
                            "event": d.event or "",
                            "repo": d.repo,
                            "ref": d.ref,
                            "result": Text(d.result, style=RESULT_STYLE.get(d.result, "")),
                            "code": str(d.status_code),
                            "jobs": " ".join(f"#{j}" for j in d.job_ids),
                            "reason": fmt.one_line(d.reason, 200),
                        },
                    )
                    or added
                )
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
                (f"  {d.body_state}" if d.body_pruned_at is not None else "", fmt.GREY),
            )
        )

    def action_back(self) -> None:
        self.app.pop_screen()
