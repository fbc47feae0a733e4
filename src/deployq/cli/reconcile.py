"""deployq reconcile [APP], deployq deliveries: missed and received webhook deliveries."""

from __future__ import annotations

import click

from deployq.cli.common import CliState, common_options, emit, table, with_store
from deployq.reconcile import reconcile
from deployq.store import Store


@click.command("reconcile")
@click.argument("app", required=False)
@common_options
@with_store
async def reconcile_cmd(state: CliState, store: Store, app: str | None) -> None:
    """Enqueue the branch heads (git ls-remote) of APP, or of every app, that have no job
    yet: pushes whose webhook delivery was lost. Apps that build tags: new tags too (the
    first run records the existing ones without building them)."""
    results = await reconcile(store, app)
    failed = [r for r in results if r.error]
    emit(
        state,
        [r.__dict__ for r in results],
        lambda: (
            table(
                ["APP", "HEADS", "TAGS", "ENQUEUED", "ERROR"],
                [
                    [
                        r.app,
                        r.heads,
                        r.tags,
                        ", ".join(f"#{j}" for j in r.enqueued) or "-",
                        r.error or "",
                    ]
                    for r in results
                ],
            )
            if results
            else "no apps"
        ),
    )
    if failed:
        raise SystemExit(1)


@click.command("deliveries")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@common_options
@with_store
async def deliveries_cmd(state: CliState, store: Store, limit: int) -> None:
    """The last webhook deliveries: what came in and what became of it."""
    rows = await store.deliveries.recent(limit=limit)
    emit(
        state,
        rows,
        lambda: table(
            ["ID", "RECEIVED", "PROVIDER", "EVENT", "REF", "RESULT", "JOBS", "REASON"],
            [
                [
                    d.id,
                    f"{d.received_at:%Y-%m-%d %H:%M:%S}",
                    d.provider,
                    d.event or "",
                    d.ref or "",
                    f"{d.result} {d.status_code}" + (" (spooled)" if d.spooled else ""),
                    ",".join(f"#{j}" for j in d.job_ids),
                    (d.reason or "")[:60]
                    + (f" ({d.body_state})" if d.body_pruned_at is not None else ""),
                ]
                for d in rows
            ],
        ),
    )


def register(main: click.Group) -> None:
    main.add_command(reconcile_cmd)
    main.add_command(deliveries_cmd)
