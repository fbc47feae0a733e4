"""E-mail: build a multipart/alternative message and send it with aiosmtplib.

Plain SMTP, STARTTLS or implicit TLS and authentication come from the settings. The password
goes to the server only; it is never logged nor put in an error message.
"""

from __future__ import annotations

import os
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiosmtplib

from deployq.config import Settings, SmtpTls
from deployq.errors import NotifyError
from deployq.notify.render import render

#: domain part of our Message-IDs; the local part is the notification's idempotency key
MESSAGE_ID_DOMAIN = "deployq"


def message_id(key: str) -> str:
    """The Message-ID of a notification: the same for every resend of it."""
    return f"<{key}@{MESSAGE_ID_DOMAIN}>"


def build_email(payload: dict[str, Any], *, sender: str, recipient: str, key: str) -> EmailMessage:
    """The message for one recipient: plain text and HTML alternatives."""
    rendered = render(payload)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = rendered.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = message_id(key)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Deployq-Event"] = str(payload.get("event", ""))
    message["X-Deployq-Job"] = str(payload.get("job", {}).get("id", ""))
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Verifying (system CAs, or smtp_ca_file) unless smtp_verify_tls is off."""
    if not settings.smtp_verify_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    cafile = str(settings.smtp_ca_file) if settings.smtp_ca_file else None
    return ssl.create_default_context(cafile=cafile)


async def send_email(settings: Settings, message: EmailMessage) -> None:
    """Hand the message to the configured SMTP server; NotifyError says why it did not go."""
    if not settings.smtp_host:
        raise NotifyError(
            "no SMTP server is configured: set DEPLOYQ_SMTP_HOST (and DEPLOYQ_SMTP_PORT) "
            "to send e-mail, then `deployq notifications retry ID`",
            permanent=True,
        )
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    use_tls = settings.smtp_tls is SmtpTls.TLS
    start_tls = settings.smtp_tls is SmtpTls.STARTTLS
    try:
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=password,
            use_tls=use_tls,
            start_tls=start_tls,
            tls_context=tls_context(settings) if use_tls or start_tls else None,
            timeout=settings.smtp_timeout,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        reasons = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        permanent = all(r.code >= 500 for r in exc.recipients)
        raise NotifyError(
            f"the SMTP server {where} refused the recipient ({reasons})", permanent=permanent
        ) from exc
    except aiosmtplib.SMTPAuthenticationError as exc:
        raise NotifyError(
            f"the SMTP server {where} refused the login of {settings.smtp_username!r} "
            f"({exc.code} {exc.message}); check DEPLOYQ_SMTP_USERNAME and DEPLOYQ_SMTP_PASSWORD"
        ) from exc
    except aiosmtplib.SMTPSenderRefused as exc:
        raise NotifyError(
            f"the SMTP server {where} refused the sender {exc.sender!r} "
            f"({exc.code} {exc.message}); check DEPLOYQ_SMTP_FROM",
            permanent=exc.code >= 500,
        ) from exc
    except aiosmtplib.SMTPResponseException as exc:
        raise NotifyError(f"the SMTP server {where} answered {exc.code} {exc.message}") from exc
    except ssl.SSLError as exc:
        raise NotifyError(_tls_failure(where, exc)) from exc
    except aiosmtplib.SMTPConnectError as exc:
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLError):
            raise NotifyError(_tls_failure(where, cause)) from exc
        reason = os.strerror(cause.errno) if isinstance(cause, OSError) and cause.errno else exc
        raise NotifyError(
            f"cannot connect to the SMTP server {where}: {reason} "
            "(check DEPLOYQ_SMTP_HOST, DEPLOYQ_SMTP_PORT and DEPLOYQ_SMTP_TLS)"
        ) from exc
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        reason = str(exc).strip() or type(exc).__name__
        raise NotifyError(f"cannot send e-mail through {where}: {reason}") from exc


def _tls_failure(where: str, exc: ssl.SSLError) -> str:
    message = f"TLS with the SMTP server {where} failed: {exc.reason or exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        message += (
            f" ({exc.verify_message}); set DEPLOYQ_SMTP_CA_FILE to the CA that signed its "
            "certificate, or DEPLOYQ_SMTP_VERIFY_TLS=false"
        )
    return message
