"""An app shown the way ``deployq app add`` takes it: one option per line, secrets masked.

Read off ``app add``'s own options, so a new option shows up here by itself; the lines can be
pasted back into ``deployq app add NAME ... --replace``.
"""

from __future__ import annotations

import json
import shlex
from enum import Enum
from pathlib import Path
from typing import Any

import click

from deployq.config import Settings
from deployq.durations import setting
from deployq.errors import InvalidInput
from deployq.imageref import qualify
from deployq.models import App, AppSpec, Priority
from deployq.redact import MASK, SECRET_FIELDS, redact_urls

#: options of ``app add`` that are not part of the app
_NOT_SHOWN = frozenset({"name", "replace", "no_check", "json_", "config"})
#: fields whose values are secrets: shown as MASK (dicts: their keys, values masked)
_SECRETS = frozenset({*SECRET_FIELDS, "env"})
#: URLs that may carry credentials: shown redacted
_URLS = frozenset({"repo_url", "notify_webhook_url", "deploy_webhook"})
_SECRET_SUFFIX = "_secret"
#: long defaults, shown only when the app changes them
_SHOWN_WHEN_CHANGED = frozenset({"notify_events"})


def registry_host(settings: Settings) -> str | None:
    """The registry image references start with: DEPLOYQ_REGISTRY_URL's, or the embedded
    registry's when it has been set up (without starting it)."""
    if settings.registry_url:
        return settings.registry_url
    path = settings.data_dir / "registry" / "credentials.json"
    try:
        return str(json.loads(Path(path).read_text())["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def image_reference(app: App, settings: Settings) -> str:
    """The app's image as pushed (registry host included when known), without a tag."""
    image = app.image or f"{settings.registry_project}/{app.name}"
    registry = registry_host(settings)
    if registry is None:
        return image
    try:
        return qualify(image, registry).name
    except InvalidInput:
        return image  # on another registry: shown as stored; the worker says why it refuses


def describe(
    app: App, command: click.Command, settings: Settings, deploy_fields: dict[str, str]
) -> str:
    """``app web (identity)`` and then one ``--option value`` line per configured option.
    ``deploy_fields`` maps run-settings options to the fields of ``app.deploy``."""
    lines = [f"app {app.name} ({app.repo_identity})"]
    for param in command.params:
        if not isinstance(param, click.Option) or param.name in _NOT_SHOWN or param.name is None:
            continue
        value = _value(app, param.name, deploy_fields)
        if param.name in _SHOWN_WHEN_CHANGED and value == _default(param.name):
            continue
        if param.name == "image":
            value = image_reference(app, settings)
        elif param.name in _URLS and value:
            value = redact_urls(str(value))
        lines += [f"  {text}" for text in _option_lines(param, param.name, value)]
    return "\n".join(lines)


def _default(name: str) -> Any:
    return AppSpec.model_fields[name].get_default(call_default_factory=True)


def _value(app: App, name: str, deploy_fields: dict[str, str]) -> Any:
    if name in ("scan_policy", "max_critical"):  # two options, one field
        policy = app.scan_policy
        if policy is None:
            return None
        return policy.action if name == "scan_policy" else policy.max_critical
    if name in type(app).model_fields:
        return getattr(app, name)
    if app.deploy is not None and name in deploy_fields:
        return getattr(app.deploy, deploy_fields[name], None)
    return None


def _option_lines(param: click.Option, name: str, value: Any) -> list[str]:
    if value is None or value == "" or value == [] or value == {}:
        return []
    flag = param.opts[0]
    if param.is_flag:  # --submodules, --tags/--no-tags: shown only when on
        return [flag] if value else []
    secret = name in _SECRETS or name.endswith(_SECRET_SUFFIX)
    if isinstance(value, dict):
        items = [f"{k}={MASK if secret else v}" for k, v in value.items()]
        return [" ".join(f"{flag} {shlex.quote(item)}" for item in items)]
    if isinstance(value, list | tuple):
        shown = [_scalar(v) for v in value]
        return [" ".join(f"{flag} {shlex.quote(item)}" for item in shown)]
    if secret:
        return [f"{flag} {MASK}"]
    if name.endswith("_s") or name in ("timeout", "health_timeout"):
        return [f"{flag} {setting(float(value))}"]
    return [f"{flag} {shlex.quote(_scalar(value))}"]


def _scalar(value: Any) -> str:
    if isinstance(value, Priority):
        return value.name.lower()
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)
