"""deployq prune: retention of logs, events, webhook delivery bodies and registry tags
(docs/retention.md)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import click

from deployq.cli.common import CliState, common_options, emit, with_store
from deployq.config import Settings
from deployq.durations import parse_duration, setting
from deployq.embedded_registry import with_registry
from deployq.errors import InvalidInput
from deployq.models import App
from deployq.sizes import format_bytes
from deployq.store import Store

if TYPE_CHECKING:  # the worker's modules load the builders: only when prune runs
    from deployq.worker.tag_retention import AppTags


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
@click.option(
    "--keep-tags",
    type=click.IntRange(1),
    help="Image tags kept per branch of each app in the registry (default: the app's "
    "--keep-tags, else DEPLOYQ_REGISTRY_KEEP_TAGS).",
)
@click.option("--app", "app_names", multiple=True, help="Prune the registry tags of this app only.")
@click.option("--no-registry", is_flag=True, help="Leave the registry's tags alone.")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@common_options
@with_store
async def prune_cmd(
    state: CliState,
    store: Store,
    older_than: str | None,
    bodies_older_than: str | None,
    keep_tags: int | None,
    app_names: tuple[str, ...],
    no_registry: bool,
    dry_run: bool,
) -> None:
    """Delete logs, events and sent notifications of old finished jobs (job rows stay), the
    bodies of old webhook deliveries (their rows stay) and, per app, the registry's image
    tags beyond the newest N per branch (never one a release runs or keeps for rollback)."""
    age = _age("--older-than", older_than, store.settings.retention)
    bodies_age = _age(
        "--bodies-older-than", bodies_older_than, store.settings.delivery_body_retention
    )
    from deployq.worker.tag_retention import prune_tags

    apps = [] if no_registry else await _apps(store, app_names)
    counts: dict[str, Any] = dict(await store.retention.prune(age, dry_run=dry_run))
    bodies = await store.retention.prune_bodies(bodies_age, dry_run=dry_run)

    async def registry_settings() -> Settings:
        return await asyncio.to_thread(with_registry, state.settings)

    registry = await prune_tags(store, apps, registry_settings, keep=keep_tags, dry_run=dry_run)
    counts["bodies"] = bodies
    counts["registry"] = [r.to_json() for r in registry]
    counts["keep_tags"] = keep_tags or store.settings.registry_keep_tags
    counts["dry_run"] = dry_run
    verb = "would prune" if dry_run else "pruned"
    lines = [
        f"{verb} {counts['jobs']} jobs finished over {setting(age)} ago: "
        f"{counts['log_lines']} log lines, {counts['events']} events, "
        f"{counts['notifications']} notifications, {counts['scans']} scan records",
        f"{verb} the bodies of {bodies['deliveries']} webhook deliveries received over "
        f"{setting(bodies_age)} ago ({format_bytes(bodies['bytes'])})",
    ]
    lines += [_tags_line(r, dry_run) for r in registry]
    emit(state, counts, "\n".join(lines))
    if any(r.error for r in registry):
        raise SystemExit(1)


async def _apps(store: Store, names: tuple[str, ...]) -> list[App]:
    """The apps whose tags to prune: all, or those named (each must exist)."""
    if not names:
        return await store.apps.all()
    return [await store.apps.get(name) for name in dict.fromkeys(names)]


def _tags_line(result: AppTags, dry_run: bool) -> str:
    """``web (127.0.0.1:5000/deployq/web): deleted 3 of 17 tags (...)``, or its error."""
    where = f"{result.app} ({result.repository})" if result.repository else result.app
    if result.error:
        return f"{where}: ERROR {result.error}"
    if result.note:
        return f"{where}: registry tags left alone, {result.note}"
    verb = "would delete" if dry_run else "deleted"
    line = f"{where}: {verb} {len(result.deleted)} of {result.tags} tags"
    line += f", keeping {result.keep} per branch"
    if result.deleted:
        line += ": " + " ".join(result.deleted)
    for tag, why in result.spared.items():
        line += f"\n  kept {tag}: {why}"
    return line


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
