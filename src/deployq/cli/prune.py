"""deployq prune: retention of logs, events, webhook delivery bodies (docs/retention.md)."""

from __future__ import annotations

from typing import Any

import click

from deployq.cli.common import CliState, common_options, emit, with_store
from deployq.durations import parse_duration, setting
from deployq.errors import InvalidInput
from deployq.sizes import format_bytes
from deployq.store import Store


@click.command("prune")
@click.option(
    "--older-than",
    "older_than",
    help="Age of finished jobs to prune: 30d, 12h, seconds (default DEPLOYQ_RETENTION).",
)
@click.option(
    "--bodies-older-than",
    "bodies_older_than",
    help="Age of webhook delivery bodies to drop (default DEPLOYQ_DELIVERY_BODY_RETENTION).",
)
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@common_options
@with_store
async def prune_cmd(
    state: CliState,
    store: Store,
    older_than: str | None,
    bodies_older_than: str | None,
    dry_run: bool,
) -> None:
    """Delete logs, events and sent notifications of old finished jobs (job rows stay) and
    the bodies of old webhook deliveries (their rows stay)."""
    age = _age("--older-than", older_than, store.settings.retention)
    bodies_age = _age(
        "--bodies-older-than", bodies_older_than, store.settings.delivery_body_retention
    )
    counts: dict[str, Any] = dict(await store.retention.prune(age, dry_run=dry_run))
    bodies = await store.retention.prune_bodies(bodies_age, dry_run=dry_run)
    counts["bodies"] = bodies
    counts["dry_run"] = dry_run
    verb = "would prune" if dry_run else "pruned"
    emit(
        state,
        counts,
        f"{verb} {counts['jobs']} jobs finished over {setting(age)} ago: "
        f"{counts['log_lines']} log lines, {counts['events']} events, "
        f"{counts['notifications']} notifications\n"
        f"{verb} the bodies of {bodies['deliveries']} webhook deliveries received over "
        f"{setting(bodies_age)} ago ({format_bytes(bodies['bytes'])})",
    )


def _age(option: str, given: str | None, default: float) -> float:
    """A duration option's seconds, or ``default``; InvalidInput naming the option."""
    if not given:
        return default
    try:
        return parse_duration(given)
    except ValueError as exc:
        raise InvalidInput(f"{option} {given!r}: {exc}") from exc


def register(main: click.Group) -> None:
    main.add_command(prune_cmd)
