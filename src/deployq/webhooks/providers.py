"""The forges deployq receives webhooks from: how each names, signs and shapes deliveries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deployq.webhooks import github, gitlab
from deployq.webhooks.bodies import decode_form_payload, decode_json
from deployq.webhooks.events import Parsed
from deployq.webhooks.signatures import verify_github, verify_gitlab
from deployq.webhooks.state import WebState


@dataclass(frozen=True)
class Provider:
    """How one forge signs, names and shapes its deliveries."""

    name: str
    event_header: str
    delivery_header: str
    content_types: tuple[str, ...]
    parse: Callable[[str, Any], Parsed]
    verify: Callable[[dict[str, str], bytes, list[str]], bool]
    global_secret: Callable[[WebState], str | None]


def _verify_github(headers: dict[str, str], body: bytes, secrets: list[str]) -> bool:
    return verify_github(headers.get(github.SIGNATURE_HEADER.lower()), body, secrets)


def _verify_gitlab(headers: dict[str, str], body: bytes, secrets: list[str]) -> bool:
    return verify_gitlab(headers.get(gitlab.TOKEN_HEADER.lower()), secrets)


def _github_secret(state: WebState) -> str | None:
    secret = state.settings.github_webhook_secret
    return secret.get_secret_value() if secret else None


def _gitlab_secret(state: WebState) -> str | None:
    secret = state.settings.gitlab_webhook_token
    return secret.get_secret_value() if secret else None


GITHUB = Provider(
    github.PROVIDER,
    github.EVENT_HEADER,
    github.DELIVERY_HEADER,
    github.CONTENT_TYPES,
    github.parse,
    _verify_github,
    _github_secret,
)
GITLAB = Provider(
    gitlab.PROVIDER,
    gitlab.EVENT_HEADER,
    gitlab.DELIVERY_HEADER,
    gitlab.CONTENT_TYPES,
    gitlab.parse,
    _verify_gitlab,
    _gitlab_secret,
)
PROVIDERS = {p.name: p for p in (GITHUB, GITLAB)}


def decode_body(body: bytes, content_type: str) -> Any:
    """JSON, or GitHub's form encoding (``payload=<json>``); BadJson otherwise."""
    if content_type == "application/x-www-form-urlencoded":
        return decode_form_payload(body)
    return decode_json(body)
