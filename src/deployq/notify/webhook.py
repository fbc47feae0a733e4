"""Outgoing webhooks: a signed JSON POST per event, readable by Slack/Mattermost/Discord.

The body is ``{"event", "job": {...}, "app": {...}, "text": "..."}``; ``text`` is what chat
incoming-webhooks display (Discord reads ``content``, so it is sent too). Receivers verify
``X-Deployq-Signature-256: sha256=<hex hmac of the body>`` with the app's secret and may
dedupe on ``X-Deployq-Delivery``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

import aiohttp

from deployq.durations import setting
from deployq.errors import NotifyError
from deployq.notify.render import webhook_text
from deployq.redact import scrub_url, url_origin

SIGNATURE_HEADER = "X-Deployq-Signature-256"
EVENT_HEADER = "X-Deployq-Event"
DELIVERY_HEADER = "X-Deployq-Delivery"
#: characters of a refusing receiver's answer kept in the error
ERROR_BODY_CHARS = 200


def webhook_body(payload: dict[str, Any]) -> bytes:
    """The JSON document sent for a notification payload."""
    text = webhook_text(payload)
    document = {
        "event": payload["event"],
        "job": payload["job"],
        "app": payload["app"],
        "text": text,
        "content": text,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def sign(secret: str, body: bytes) -> str:
    """The signature header value: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post_webhook(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    event: str,
    delivery: str,
    secret: str | None,
    timeout_s: float,
) -> None:
    """POST the body; any 2xx is delivered, anything else raises NotifyError."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "deployq-webhook",
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery,
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    where = url_origin(url)
    try:
        async with session.post(
            url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
        ) as response:
            if 200 <= response.status < 300:
                return
            answer = (await response.text(errors="replace"))[:ERROR_BODY_CHARS].strip()
            raise NotifyError(
                f"the webhook {where} answered {response.status}"
                + (f": {answer}" if answer else "")
            )
    except aiohttp.InvalidURL as exc:
        raise NotifyError(
            "the app's notify_webhook_url is not a valid URL; change it with "
            "`deployq app add NAME --replace --notify-webhook URL ...`",
            permanent=True,
        ) from exc
    except aiohttp.ClientSSLError as exc:
        reason = scrub_url(str(getattr(exc, "certificate_error", None) or exc), url)
        raise NotifyError(f"TLS with the webhook {where} failed: {reason}") from exc
    except aiohttp.ClientConnectorError as exc:
        errno = exc.os_error.errno
        reason = os.strerror(errno) if errno else str(exc.os_error) or "connection failed"
        raise NotifyError(f"cannot connect to the webhook {where}: {reason}") from exc
    except aiohttp.ClientError as exc:
        reason = scrub_url(str(exc) or type(exc).__name__, url)
        raise NotifyError(f"cannot POST to the webhook {where}: {reason}") from exc
    except TimeoutError as exc:
        raise NotifyError(
            f"the webhook {where} did not answer within {setting(timeout_s)}"
        ) from exc
