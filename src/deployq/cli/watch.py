"""deployq watch: the live feed in a terminal, the same events as GET /api/v1/events."""

from __future__ import annotations

import json
from datetime import UTC

import click

from deployq.cli.common import CliState, common_options, with_store
from deployq.feed import Dropped, FeedFilter, FeedHub
from deployq.models import JobStatus
from deployq.store import FeedEvent, Store


@click.command("watch")
@click.option("--app", "apps", multiple=True, help="Only this app (repeat for several).")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in JobStatus]),
    help="Only events leaving a job in this status (repeat).",
)
@click.option(
    "--after", type=int, help="Start after this event id (resume a watch; 0: every event kept)."
)
@common_options
@with_store
async def watch_cmd(
    state: CliState,
    store: Store,
    apps: tuple[str, ...],
    statuses: tuple[str, ...],
    after: int | None,
) -> None:
    """Print job state, step and progress changes and server changes as they happen, until
    Ctrl-C (with --json: one JSON object per line, as the API's event stream sends them)."""
    for app in apps:
        await store.apps.get(app)  # a typo says so instead of printing nothing forever
    flt = FeedFilter(
        apps=frozenset(apps) if apps else None, statuses=frozenset(statuses) if statuses else None
    )
    hub = FeedHub(store)
    try:
        async with hub.subscribe(flt, after=after) as sub:
            if sub.reset is not None:
                click.echo(f"note: {sub.reset}", err=True)
            click.echo("watching the live feed (Ctrl-C stops)", err=True)
            try:
                async for event in sub.events(store):
                    if event is not None:
                        click.echo(
                            json.dumps(event.as_json(), separators=(",", ":"), default=str)
                            if state.json
                            else line(event)
                        )
            except Dropped as exc:
                resume = f" --after {exc.last_id}" if exc.last_id is not None else ""
                raise Dropped(
                    f"this terminal fell more than {sub.buffer} events behind the feed; "
                    f"run `deployq watch{resume}` to go on from there",
                    last_id=exc.last_id,
                ) from None
    finally:
        await hub.close()


def line(event: FeedEvent) -> str:
    """One event as a terminal line: time, job, app, status, what happened."""
    at = event.at.astimezone(UTC).strftime("%H:%M:%S")
    if event.job_id is None:
        return f"{at}  {event.id:>8}  server  {event.message or event.kind}"
    what = event.kind
    if event.kind in ("step", "progress"):
        what = f"{event.data.get('step') or '-'} {event.data.get('progress', 0)}%"
    elif event.message:
        what = f"{event.kind}: {event.message}"
    return (
        f"{at}  {event.id:>8}  #{event.job_id:<6} {event.app or '-':<16} "
        f"{event.status or '-':<10} {what}"
    )


def register(main: click.Group) -> None:
    main.add_command(watch_cmd)
