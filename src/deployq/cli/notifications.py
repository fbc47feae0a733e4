"""deployq notifications [--failed] [--job ID] | notifications retry ID."""

from __future__ import annotations

from typing import Any

import click

from deployq.cli.common import CliState, common_options, emit, table, with_store
from deployq.models import Notification
from deployq.redact import url_origin
from deployq.store import Store


def _public(notification: Notification) -> dict[str, Any]:
    data = notification.model_dump(mode="json", exclude={"payload"})
    data["target"] = _target(notification)
    return data


def _target(notification: Notification) -> str:
    # a chat webhook URL is a credential: its path and query stay in the database
    if notification.channel == "webhook":
        return url_origin(notification.target) + "/…"
    return notification.target


def _when(notification: Notification) -> str:
    if notification.sent_at is not None:
        return notification.sent_at.strftime("%Y-%m-%d %H:%M:%S")
    return notification.created_at.strftime("%Y-%m-%d %H:%M:%S")


@with_store
async def _list(
    state: CliState, store: Store, *, failed: bool, job_id: int | None, limit: int
) -> None:
    rows = await store.notifications.recent(failed_only=failed, job_id=job_id, limit=limit)
    emit(
        state,
        [_public(n) for n in rows],
        lambda: (
            table(
                ["ID", "JOB", "EVENT", "CHANNEL", "TARGET", "STATUS", "ATTEMPTS", "AT", "ERROR"],
                [
                    [
                        n.id,
                        n.job_id,
                        n.event,
                        n.channel,
                        _target(n),
                        n.status,
                        f"{n.attempts}/{n.max_attempts}",
                        _when(n),
                        (n.last_error or "")[:80],
                    ]
                    for n in rows
                ],
            )
            if rows
            else ("no failed notifications" if failed else "no notifications")
        ),
    )


@click.group("notifications", invoke_without_command=True)
@click.option("--failed", is_flag=True, help="Only those given up on.")
@click.option("--job", "job_id", type=int, help="Only those of this job.")
@click.option("--limit", type=int, default=100, show_default=True)
@common_options
@click.pass_context
def notifications_group(ctx: click.Context, failed: bool, job_id: int | None, limit: int) -> None:
    """E-mails and outgoing webhooks sent for jobs (newest first)."""
    if ctx.invoked_subcommand is None:
        _list(failed=failed, job_id=job_id, limit=limit)


@notifications_group.command("retry")
@click.argument("notification_id", type=int)
@common_options
@with_store
async def notifications_retry(state: CliState, store: Store, notification_id: int) -> None:
    """Send a failed notification again."""
    notification = await store.notifications.retry(notification_id)
    emit(
        state,
        _public(notification),
        f"notification #{notification.id} ({notification.channel} to {_target(notification)}) "
        "will be sent again",
    )


def register(main: click.Group) -> None:
    main.add_command(notifications_group)
