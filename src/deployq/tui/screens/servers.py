"""Build servers: capacity, running jobs, architecture, labels, health (shared, and as each
host sees it), heartbeat; drain."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType

from deployq.models import BuildServer
from deployq.tui import format as fmt
from deployq.tui.columns import Column
from deployq.tui.messages import ClockTick, JobsChanged, Resync, ServersChanged
from deployq.tui.screens.base import LiveScreen
from deployq.tui.screens.confirm import ConfirmScreen
from deployq.tui.widgets.banner import Banner
from deployq.tui.widgets.keybar import KeyBar
from deployq.tui.widgets.statusbar import StatusBar
from deployq.tui.widgets.table import Table

COLUMNS = (
    Column("name", "server", 8, flex=2),
    Column("state", "state", 9),
    Column("views", "seen by", 8, flex=4),
    Column("load", "running", 7),
    Column("arch", "arch", 7),
    Column("labels", "labels", 6, flex=1),
    Column("heartbeat", "heartbeat", 10),
    Column("error", "last error", 6, flex=1),
)


def server_state(server: BuildServer) -> Text:
    if not server.healthy:
        return Text("unhealthy", style=f"bold {fmt.RED}")
    if server.draining:
        return Text("draining", style=fmt.YELLOW)
    return Text("healthy", style=fmt.GREEN)


def seen_by(server: BuildServer) -> Text:
    """Each host's view: green where its workers build, red where they do not."""
    text = Text()
    for view in server.views:
        if text:
            text.append(", ")
        colour = fmt.GREEN if view.healthy else fmt.RED
        word = "ok" if view.healthy else "failed"
        text.append(f"{view.host_id} {word}", style=colour if view.recent else "dim")
    return text


class ServersScreen(LiveScreen):
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
        yield Table(COLUMNS, id="servers")
        yield KeyBar()

    @property
    def table(self) -> Table:
        return self.query_one("#servers", Table)

    def on_mount(self) -> None:
        self.table.focus()
        self.load()

    @on(Resync)
    @on(ServersChanged)
    @on(JobsChanged)  # running counts
    def _reload(self) -> None:
        self.load()

    @on(ClockTick)
    def clock_tick(self) -> None:
        now = self.ctx.clock()
        for server in self.servers:
            self.table.set_cell(server.name, "heartbeat", fmt.age(server.last_heartbeat_at, now))

    def key_applies(self, action: str) -> bool:
        server = self._selected_server()
        if action == "drain":
            return server is not None and not server.draining
        if action == "undrain":
            return server is not None and server.draining
        return True

    @work(exclusive=True, group="servers-load", exit_on_error=False)
    async def load(self) -> None:
        servers = await self.ctx.attempt(self.ctx.store.servers.all())
        if servers is None:
            return
        self.servers = servers
        table = self.table
        now = self.ctx.clock()
        names = {s.name for s in servers}
        with self.app.batch_update():
            for key in [k for k in table.keys() if k not in names]:
                table.drop(key)
            for server in servers:
                table.put(
                    server.name,
                    {
                        "name": server.name,
                        "state": server_state(server),
                        "views": seen_by(server),
                        "load": f"{server.running}/{server.capacity}",
                        "arch": server.arch,
                        "labels": ", ".join(server.labels),
                        "heartbeat": fmt.age(server.last_heartbeat_at, now),
                        "error": fmt.one_line(server.last_error, 200),
                    },
                )
        self.refresh_bindings()
        self.loaded.set()

    def on_data_table_row_highlighted(self) -> None:
        self.refresh_bindings()

    def _selected(self) -> str | None:
        return self.table.cursor_key()

    def _selected_server(self) -> BuildServer | None:
        name = self._selected()
        return next((s for s in self.servers if s.name == name), None)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_drain(self) -> None:
        if self.ctx.refuse_if_read_only():
            return
        name = self._selected()
        if name is None:
            self.notify("no build server selected", severity="warning")
            return

        async def answered(yes: bool | None) -> None:
            if yes:
                await self._set_draining(name, True)

        self.app.push_screen(
            ConfirmScreen(f"Drain {name}? It takes no new jobs; running ones end.", verb="Drain"),
            answered,
        )

    async def action_undrain(self) -> None:
        if self.ctx.refuse_if_read_only():
            return
        name = self._selected()
        if name is None:
            self.notify("no build server selected", severity="warning")
            return
        await self._set_draining(name, False)

    async def _set_draining(self, name: str, draining: bool) -> None:
        server = await self.ctx.act(
            self.ctx.store.servers.set_draining(name, draining),
            what=f"{'drain' if draining else 'undrain'} {name}",
        )
        if server is not None:
            self.notify(f"{name} {'draining' if draining else 'takes jobs again'}")
            self.load()
