"""Render a notification payload into a subject, plain text, HTML and a one-line summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from deployq.durations import elapsed

_ENV = Environment(
    loader=PackageLoader("deployq.notify", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


_ENV.filters["duration"] = elapsed


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def _context(payload: dict[str, Any]) -> dict[str, Any]:
    job = payload["job"]
    where = job["branch"] + (f"@{job['short_sha']}" if job.get("short_sha") else "")
    return {**payload, "where": where}


def headline(payload: dict[str, Any]) -> str:
    """``myapp main@abc1234 succeeded in 1m42s``: the subject without its prefix."""
    return _ENV.get_template("headline.txt.j2").render(_context(payload)).strip()


def render(payload: dict[str, Any]) -> Rendered:
    """The e-mail for a notification payload (as written by the outbox)."""
    context = {**_context(payload), "headline": headline(payload)}
    return Rendered(
        subject=_ENV.get_template("subject.txt.j2").render(context).strip(),
        text=_ENV.get_template("email.txt.j2").render(context),
        html=_ENV.get_template("email.html.j2").render(context),
    )


def webhook_text(payload: dict[str, Any]) -> str:
    """The readable ``text`` of an outgoing webhook (what Slack or Mattermost shows)."""
    context = {**_context(payload), "headline": headline(payload)}
    return _ENV.get_template("webhook.txt.j2").render(context).strip()
