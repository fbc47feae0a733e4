"""deployq tui: the operator console."""

from __future__ import annotations

import sys

import click

from deployq.cli.common import CliState, config_option, open_store, pass_state, run
from deployq.db import set_application_name


@click.command("tui")
@config_option
@click.option("--read-only", is_flag=True, help="Look only: hide and refuse every action.")
@click.option("--user", help="Name written to job events (default: your login name).")
@click.option(
    "--ascii",
    "ascii_only",
    is_flag=True,
    help="Draw with ASCII only (automatic when the terminal's encoding cannot show box and "
    "block characters, e.g. LANG=C).",
)
@pass_state
def tui_cmd(state: CliState, read_only: bool, user: str | None, ascii_only: bool) -> None:
    """The operator console: live queue, job logs, build servers, webhook deliveries.

    Connects to the same database as the service (the embedded one is found the same way;
    `deployq db-url` shows it). `?` lists the keys.
    """
    from deployq.tui import DeployqApp
    from deployq.tui.glyphs import wants_ascii

    # Textual draws on stderr
    ascii_only = ascii_only or wants_ascii(getattr(sys.__stderr__, "encoding", None))

    settings = state.settings
    set_application_name("tui")

    async def main() -> None:
        store = await open_store(settings)
        try:
            await DeployqApp(store, read_only=read_only, user=user, ascii=ascii_only).run_async()
        finally:
            await store.close()

    run(main())


def register(main: click.Group) -> None:
    main.add_command(tui_cmd)
