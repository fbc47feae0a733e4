"""deployq secrets new-key, deployq secrets rotate-key (docs/secrets.md)."""

from __future__ import annotations

import click

from deployq.cli.common import CliState, common_options, emit, pass_state, with_store
from deployq.sealing import new_key, write_key_file
from deployq.store import Store


@click.group("secrets")
def secrets_group() -> None:
    """The key that seals app secrets in the database."""


@secrets_group.command("new-key")
@common_options
@pass_state
def new_key_cmd(state: CliState) -> None:
    """Print a new key for DEPLOYQ_SECRET_KEY."""
    key = new_key()
    emit(state, {"key": key}, key)


@secrets_group.command("rotate-key")
@common_options
@with_store
async def rotate_key_cmd(state: CliState, store: Store) -> None:
    """Re-encrypt every secret under a new key, while deployq runs.

    With the key file: a new key is generated and written first, the old one kept beside it
    until every secret is re-encrypted. With DEPLOYQ_SECRET_KEY: put the new key first
    (NEW,OLD), run this, then drop OLD everywhere.
    """
    box = store.secrets.box
    if state.settings.secret_key is None:
        old = box.key_texts()
        new = new_key()
        path = state.settings.secret_key_file
        write_key_file(path, [new, *old])  # processes that re-read it can open both
        box.reload()
        count = await store.secrets.rotate()
        write_key_file(path, [new])
        where = f"a new key in {path}"
    else:
        count = await store.secrets.rotate()
        where = "the first key of DEPLOYQ_SECRET_KEY; the others may now be removed"
    emit(
        state,
        {"apps": count},
        f"re-encrypted the secrets of {count} app(s) under {where}",
    )


def register(main: click.Group) -> None:
    main.add_command(secrets_group)
