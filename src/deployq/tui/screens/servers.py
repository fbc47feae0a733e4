"""Build servers: capacity, running jobs, architecture, labels, health, heartbeat; drain."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from deployq.models import BuildServer, Job
from deployq.tui import format as fmt
from deployq.tui.screens.base import LiveScreen
from deployq.tui.screens.confirm import ConfirmScreen
from deployq.tui.widgets.banner import Banner
from deployq.tui.widgets.jobtable import JobTable
from deployq.tui.widgets.keybar import KeyBar
from deployq.tui.widgets.statusbar import StatusBar

COLUMNS = (
    ("name", "server"),
    ("state", "state"),
    ("load", "running"),
    ("arch", "arch"),
    ("labels", "labels"),
    ("heartbeat", "heartbeat"),
    ("error", "last error"),
)


def server_state(server: BuildServer) -> Text:
    if not server.healthy:
        return Text("unhealthy", style=f"bold {fmt.RED}")
    if server.draining:
        return Text("draining", style=fmt.YELLOW)
    return Text("healthy", style=fmt.GREEN)


class ServersScreen(LiveScreen):
    VIEW = "servers"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="back", tooltip="to the queue"),
        Binding("d", "drain", "Drain", id="drain", tooltip="no new jobs (asks first)"),
        Binding("u", "undrain", "Undrain", id="undrain", tooltip="take jobs again"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.servers: list[BuildServer] = []

    def compose(self) -> ComposeResult:
        yield Banner()
        yield StatusBar("Build servers", id="title")
        table = JobTable(id="servers", cursor_type="row")
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield KeyBar()

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one("#servers", DataTable)

    def on_mount(self) -> None:
        self.table.focus()
        self.resync()

    def resync(self) -> None:
        self.load()

    def servers_changed(self) -> None:
        self.load()

    def jobs_changed(self, jobs: list[Job]) -> None:
        self.load()  # running counts

    def clock_tick(self) -> None:
        now = self.dq.clock()
        for server in self.servers:
            self.table.update_cell(server.name, "heartbeat", fmt.age(server.last_heartbeat_at, now))

    @work(exclusive=True, group="servers-load", exit_on_error=False)
    async def load(self) -> None:
        servers = await self.dq.attempt(self.dq.store.servers.list())
        if servers is None:
            return
        self.servers = servers
        table = self.table
        now = self.dq.clock()
        names = {s.name for s in servers}
        with self.app.batch_update():
            for key in [k for k in table.rows if k.value not in names]:
                table.remove_row(key)
            for server in servers:
                cells = (
                    server.name,
                    server_state(server),
                    f"{server.running}/{server.capacity}",
                    server.arch,
                    ", ".join(server.labels),
                    fmt.age(server.last_heartbeat_at, now),
                    fmt.one_line(server.last_error, 40),
                )
                if server.name in table.rows:
                    for (column, _), value in zip(COLUMNS, cells, strict=True):
                        table.update_cell(server.name, column, value)
                else:
                    table.add_row(*cells, key=server.name)
        self.loaded.set()

    def _selected(self) -> str | None:
        table = self.table
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key
        return str(key.value)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_drain(self) -> None:
        name = self._selected()
        if self.dq.refuse_if_read_only() or name is None:
            return

        async def answered(yes: bool | None) -> None:
            if yes:
                await self._set_draining(name, True)

        self.app.push_screen(
            ConfirmScreen(f"Drain {name}? It takes no new jobs; running ones end.", verb="Drain"),
            answered,
        )

    async def action_undrain(self) -> None:
        name = self._selected()
        if not self.dq.refuse_if_read_only() and name is not None:
            await self._set_draining(name, False)

    async def _set_draining(self, name: str, draining: bool) -> None:
        server = await self.dq.act(
            self.dq.store.servers.set_draining(name, draining),
            what=f"{'drain' if draining else 'undrain'} {name}",
        )
        if server is not None:
            self.notify(f"{name} {'draining' if draining else 'takes jobs again'}")
            self.load()
