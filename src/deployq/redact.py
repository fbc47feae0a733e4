"""Secrets out of text, the one home: known secret values and credentials in URLs.

Everything deployq shows (job logs, error messages, apps and jobs in the CLI, the API, the
console and e-mails: :func:`public_app`) masks a secret as
:data:`MASK`, the way pydantic's ``SecretStr`` prints. URLs whose path is itself the secret
(chat incoming webhooks) are shown as their origin only (:func:`url_origin`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from yarl import URL

if TYPE_CHECKING:
    from deployq.models import App

MASK = "**********"
#: shorter values are not treated as secrets: redacting "ab" everywhere helps nobody
MIN_SECRET_CHARS = 4

_URL_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/\s:@]*)(?::(?P<password>[^/\s@]*))?@"
)
#: schemes whose user name alone may be a token (``https://ghp_xxx@github.com/...``)
_TOKEN_USER_SCHEMES = ("http://", "https://")


def _mask_userinfo(match: re.Match[str]) -> str:
    scheme, user = match["scheme"], match["user"]
    if match["password"] is not None:
        return f"{scheme}{user}:{MASK}@"
    if user and scheme.lower() in _TOKEN_USER_SCHEMES:
        return f"{scheme}{MASK}@"
    return match[0]  # ssh://git@host: a user name, not a secret


def redact_urls(text: str) -> str:
    """Mask the credentials of every URL in ``text``:
    ``https://bot:pw@host/x`` -> ``https://bot:**********@host/x``, and a token given as
    the user name (``https://TOKEN@host/x``) -> ``https://**********@host/x``."""
    if "@" not in text:
        return text
    return _URL_USERINFO.sub(_mask_userinfo, text)


class Redactor:
    """Replace every known secret (longest first) and any URL's credentials by :data:`MASK`."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        """Mask these values too (None and values shorter than MIN_SECRET_CHARS are ignored)."""
        values = set(self.secrets) | {s for s in secrets if s and len(s) >= MIN_SECRET_CHARS}
        self.secrets = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return redact_urls(text)


def url_origin(url: str) -> str:
    """Scheme, host and port only (``https://hooks.example.com``): chat webhook URLs carry
    their token in the path or query, so the rest is never shown or logged."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return "(invalid URL)"
    port = parsed.explicit_port
    return f"{parsed.scheme}://{parsed.host}{f':{port}' if port else ''}"


def scrub_url(text: str, url: str) -> str:
    """``text`` (a library's message, which may quote ``url``) with ``url`` shown as its
    origin and its path and query as ``…``."""
    text = text.replace(url, url_origin(url))
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return text
    for part in (str(parsed), parsed.raw_path_qs, parsed.path_qs):
        if len(part) > 1:
            text = text.replace(part, "…")
    return text


#: the fields of an app that hold secrets
SECRET_FIELDS = (
    "webhook_secret",
    "notify_webhook_secret",
    "build_secrets",
    "forge_token",
    "registry_password",
    "git_token",
    "git_ssh_key",
)


def url_credentials(url: str) -> str | None:
    """Why ``url`` carries a credential (a password, or a user name over HTTP), or None.

    ``ssh://git@host/x`` and ``git@host:x`` name a user, which is not a secret.
    """
    match = _URL_USERINFO.match(url)
    if match is None:
        return None
    if match["password"] is not None:
        return "it contains a password"
    if match["user"] and match["scheme"].lower() in _TOKEN_USER_SCHEMES:
        return "it contains a user name or token"
    return None


def public_app(app: App) -> dict[str, Any]:
    """An app as JSON for people (CLI, console): secrets masked, their names kept."""
    data = app.model_dump(mode="json")
    for key in SECRET_FIELDS:
        value = data.get(key)
        if isinstance(value, dict):
            data[key] = dict.fromkeys(value, MASK)
        elif value:
            data[key] = MASK
    data["repo_url"] = redact_urls(app.repo_url)
    if data.get("notify_webhook_url"):
        data["notify_webhook_url"] = redact_urls(str(data["notify_webhook_url"]))
    deploy = data.get("deploy")
    if deploy:
        deploy["env"] = dict.fromkeys(deploy.get("env") or {}, MASK)
        if deploy.get("webhook_secret"):
            deploy["webhook_secret"] = MASK
    return data
