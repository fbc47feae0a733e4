"""deployq stats: wait and build times, success rate, per app and day."""

from __future__ import annotations

from datetime import UTC, timedelta

import click

from deployq.cli.common import CliState, common_options, emit, table, with_store
from deployq.durations import elapsed, parse_duration, setting
from deployq.errors import InvalidInput
from deployq.models import BuildFigures, BuildStats
from deployq.store import Store

DEFAULT_WINDOW = "7d"


@click.command("stats")
@click.option("--app", help="Only this app.")
@click.option(
    "--since",
    default=DEFAULT_WINDOW,
    show_default=True,
    help="How far back: 24h, 7d, 30d, seconds.",
)
@common_options
@with_store
async def stats_cmd(state: CliState, store: Store, app: str | None, since: str) -> None:
    """Wait and build times (average, p95), success rate, the queue now, and per app and day."""
    try:
        window = parse_duration(since)
    except ValueError as exc:
        raise InvalidInput(f"--since {since!r}: {exc}") from exc
    if window <= 0:
        raise InvalidInput(f"--since {since!r}: give a duration above zero, e.g. 7d")
    if app is not None:
        await store.apps.get(app)  # a typo says so instead of printing zeros
    stats = await store.stats.summary(app=app, window=timedelta(seconds=window))
    emit(state, stats, lambda: describe(stats, setting(window)))


def _secs(value: float | None) -> str:
    return elapsed(value) if value is not None else "-"


def _rate(figures: BuildFigures) -> str:
    return f"{figures.success_rate:.0%}" if figures.success_rate is not None else "-"


def describe(s: BuildStats, window: str) -> str:
    """The text form of ``deployq stats``."""
    who = f"app {s.app}" if s.app else "all apps"
    oldest = f" (oldest waiting {elapsed(s.oldest_wait_s)})" if s.oldest_wait_s is not None else ""
    lines = [
        f"last {window}, {who} (since {s.since.astimezone(UTC):%Y-%m-%d %H:%M} UTC)",
        f"jobs      {s.jobs} ended: {s.succeeded} succeeded, {s.failed} failed, "
        f"{s.cancelled} cancelled or superseded; success rate {_rate(s)}",
        f"wait      avg {_secs(s.avg_wait_s)}, p95 {_secs(s.p95_wait_s)}",
        f"build     avg {_secs(s.avg_build_s)}, p95 {_secs(s.p95_build_s)}",
        f"now       {s.queued} queued{oldest}, {s.running} running",
    ]
    if s.days:
        rows = [
            [
                str(d.day),
                d.app,
                d.jobs,
                d.succeeded,
                d.failed,
                _rate(d),
                _secs(d.avg_wait_s),
                _secs(d.p95_wait_s),
                _secs(d.avg_build_s),
                _secs(d.p95_build_s),
            ]
            for d in s.days
        ]
        headers = ["DAY", "APP", "JOBS", "OK", "FAILED", "RATE", "WAIT", "P95", "BUILD", "P95"]
        lines += ["", table(headers, rows)]
    return "\n".join(lines)


def register(main: click.Group) -> None:
    main.add_command(stats_cmd)
