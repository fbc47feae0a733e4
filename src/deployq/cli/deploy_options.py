"""The run settings of ``deployq app add`` (where and how the built image runs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from deployq.durations import DURATION_HINT, parse_duration
from deployq.errors import InvalidInput
from deployq.models import DeploySettings, DeployStrategy

F = TypeVar("F", bound=Callable[..., Any])

#: app add's option -> DeploySettings field (``app show`` reads them back through it)
OPTION_FIELDS = _FIELDS = {
    "deploy_targets": "targets",
    "deploy_webhook": "webhook_url",
    "deploy_webhook_secret": "webhook_secret",
    "ports": "ports",
    "env": "env",
    "volumes": "volumes",
    "network": "network",
    "network_aliases": "network_aliases",
    "health_path": "health_path",
    "health_port": "health_port",
    "health_cmd": "health_cmd",
    "health_timeout": "health_timeout_s",
    "strategy": "strategy",
    "keep_releases": "keep_releases",
}


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: {DURATION_HINT}") from None


_OPTIONS = [
    click.option(
        "--deploy-target",
        "deploy_targets",
        multiple=True,
        help="Run the image on this deploy target after verify (repeat; `deployq target add`).",
    ),
    click.option("--deploy-webhook", help="POST a signed JSON here to deploy, and wait for a 2xx."),
    click.option("--deploy-webhook-secret", help="HMAC secret that signs the deploy webhook."),
    click.option(
        "--port", "ports", multiple=True, help="Publish [IP:]HOST:CONTAINER as docker run -p."
    ),
    click.option("--env", "env", multiple=True, help="KEY=VALUE in the container (secret)."),
    click.option("--volume", "volumes", multiple=True, help="NAME:/path[:ro] (repeat)."),
    click.option("--network", help="Docker network the container joins (created if missing)."),
    click.option(
        "--network-alias",
        "network_aliases",
        multiple=True,
        help="Name clients on --network use for the app (repeat).",
    ),
    click.option("--health-path", help="HTTP path that answers 2xx/3xx when healthy."),
    click.option("--health-port", type=click.IntRange(1, 65535), help="Container port to probe."),
    click.option("--health-cmd", help="Command in the container that exits 0 when healthy."),
    click.option(
        "--health-timeout",
        callback=_duration,
        help="How long a new release may take to be healthy (default 60s).",
    ),
    click.option(
        "--strategy",
        type=click.Choice([s.value for s in DeployStrategy]),
        help="recreate (default; needed with a host port) or start-first (no gap).",
    ),
    click.option(
        "--keep-releases",
        type=click.IntRange(1, 100),
        help="Stopped earlier releases kept per target for rollback (default 3).",
    ),
]


def deploy_options(func: F) -> F:
    """Add the run-settings options to a command."""
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


def pop_deploy_settings(options: dict[str, Any]) -> DeploySettings | None:
    """Take the run-settings options out of ``options``; None when none was given."""
    given: dict[str, Any] = {}
    for option, field in _FIELDS.items():
        value = options.pop(option)
        if value is None or value == ():
            continue
        given[field] = list(value) if isinstance(value, tuple) else value
    if "env" in given:
        given["env"] = _env(given["env"])
    if not given:
        return None
    try:
        settings = DeploySettings(**given)
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise InvalidInput(f"invalid run settings: {problems}") from exc
    if not settings.enabled:
        raise InvalidInput(
            "run settings without a place to run: add --deploy-target NAME "
            "(or --deploy-webhook URL)"
        )
    return settings


def _env(values: list[str]) -> dict[str, str]:
    env = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            # the value may be a secret: never echo it
            raise click.BadParameter("expected KEY=VALUE", param_hint="--env")
        env[key] = val
    return env
