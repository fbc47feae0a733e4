"""Webhook authenticity: GitHub's HMAC-SHA256 signature and GitLab's shared token.

Every comparison is constant-time (:func:`hmac.compare_digest`), and each candidate secret is
tried in turn, since the secret depends on the app the repository matches.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

SIGNATURE_PREFIX = "sha256="


def github_signature(secret: str, body: bytes) -> str:
    """The value GitHub sends in X-Hub-Signature-256 for this body."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_github(signature: str | None, body: bytes, secrets: Iterable[str]) -> bool:
    """True when ``signature`` is the HMAC of ``body`` under one of ``secrets``."""
    if not signature or not signature.startswith(SIGNATURE_PREFIX):
        return False
    given = signature.strip().encode()
    matched = False
    for secret in secrets:
        # no early exit: the time taken does not tell which secret (if any) matched
        matched |= hmac.compare_digest(github_signature(secret, body).encode(), given)
    return matched


def verify_gitlab(token: str | None, secrets: Iterable[str]) -> bool:
    """True when the X-Gitlab-Token header equals one of ``secrets``."""
    if not token:
        return False
    given = token.encode()
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(secret.encode(), given)
    return matched
