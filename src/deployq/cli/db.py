"""deployq migrate, deployq db-url."""

from __future__ import annotations

import asyncio

import click

from deployq.cli.common import CliState, common_options, emit, migrate_and_seal, pass_state, run
from deployq.db import resolve_dsn


@click.command("migrate")
@common_options
@pass_state
def migrate_cmd(state: CliState) -> None:
    """Apply the database migrations that are missing (safe to run at any time)."""

    async def main() -> list[str]:
        dsn = await asyncio.to_thread(resolve_dsn, state.settings)
        return await migrate_and_seal(state.settings, dsn)

    applied = run(main())
    emit(
        state,
        {"applied": applied},
        lambda: "\n".join(f"applied {name}" for name in applied) or "database is up to date",
    )


@click.command("db-url")
@common_options
@pass_state
def db_url_cmd(state: CliState) -> None:
    """Print the DSN in use, so psql, the TUI or a second worker can join (starts the
    embedded PostgreSQL when DEPLOYQ_DATABASE_URL is not set)."""
    dsn = run(asyncio.to_thread(resolve_dsn, state.settings))
    emit(state, {"database_url": dsn}, dsn)


def register(main: click.Group) -> None:
    main.add_command(migrate_cmd)
    main.add_command(db_url_cmd)
