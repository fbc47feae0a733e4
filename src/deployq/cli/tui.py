"""deployq tui: the operator console."""

from __future__ import annotations

import click

from deployq.cli.common import CliState, config_option, open_store, pass_state, run


@click.command("tui")
@config_option
@click.option("--read-only", is_flag=True, help="Look only: hide and refuse every action.")
@click.option("--user", help="Name written to job events (default: your login name).")
@pass_state
def tui_cmd(state: CliState, read_only: bool, user: str | None) -> None:
    """The operator console: live queue, job logs, build servers, webhook deliveries.

    Connects to the same database as the service (the embedded one is found the same way;
    `deployq db-url` shows it). `?` lists the keys.
    """
    from deployq.tui import DeployqApp

    settings = state.settings

    async def main() -> None:
        store = await open_store(settings)
        try:
            await DeployqApp(store, read_only=read_only, user=user).run_async()
        finally:
            await store.close()

    run(main())


def register(main: click.Group) -> None:
    main.add_command(tui_cmd)
