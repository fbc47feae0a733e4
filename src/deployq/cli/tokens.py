"""deployq token create | list | revoke: bearer tokens of the REST API."""

from __future__ import annotations

import click

from deployq.cli.common import CliState, common_options, emit, table, with_store
from deployq.models import TokenScope
from deployq.store import Store


@click.group("token")
def token_group() -> None:
    """API tokens (stored hashed; scopes read < deploy < admin)."""


@token_group.command("create")
@click.option(
    "--scope",
    type=click.Choice([s.value for s in TokenScope]),
    required=True,
    help="read: look; deploy: also deploy, cancel, retry; admin: also replay deliveries.",
)
@click.option("--name", default="api", show_default=True, help="What the token is for.")
@common_options
@with_store
async def token_create(state: CliState, store: Store, scope: str, name: str) -> None:
    """Create a token and print it once (it cannot be shown again)."""
    token, plain = await store.tokens.create(name, TokenScope(scope))
    emit(
        state,
        {**token.model_dump(mode="json"), "token": plain},
        f"{plain}\n(token #{token.id} {token.name!r}, scope {token.scope.value}: "
        "keep it now, it is not shown again; send it as Authorization: Bearer <token>)",
    )


@token_group.command("list")
@common_options
@with_store
async def token_list(state: CliState, store: Store) -> None:
    """List tokens (never their text)."""
    tokens = await store.tokens.all()
    emit(
        state,
        tokens,
        lambda: table(
            ["ID", "NAME", "SCOPE", "CREATED", "LAST USED", "REVOKED"],
            [
                [
                    t.id,
                    t.name,
                    t.scope.value,
                    f"{t.created_at:%Y-%m-%d %H:%M}",
                    f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "-",
                    f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "",
                ]
                for t in tokens
            ],
        ),
    )


@token_group.command("revoke")
@click.argument("token_id", metavar="ID", type=int)
@common_options
@with_store
async def token_revoke(state: CliState, store: Store, token_id: int) -> None:
    """Revoke a token: requests with it get 401 from now on."""
    await store.tokens.revoke(token_id)
    emit(state, {"revoked": token_id}, f"revoked token #{token_id}")


def register(main: click.Group) -> None:
    main.add_command(token_group)
