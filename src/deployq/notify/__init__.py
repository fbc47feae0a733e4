"""Adapters that tell people what happened: e-mail (aiosmtplib) and outgoing webhooks.

They know nothing of the queue; the notifier (``deployq.worker.notifier``) reads the outbox
and drives them. Each notification's ``payload`` is rendered by :mod:`deployq.notify.render`
with the jinja2 templates shipped in ``notify/templates``.
"""

from deployq.notify.email import build_email, send_email
from deployq.notify.render import Rendered, render, webhook_text
from deployq.notify.webhook import SIGNATURE_HEADER, post_webhook, sign, webhook_body

__all__ = [
    "SIGNATURE_HEADER",
    "Rendered",
    "build_email",
    "post_webhook",
    "render",
    "send_email",
    "sign",
    "webhook_body",
    "webhook_text",
]
