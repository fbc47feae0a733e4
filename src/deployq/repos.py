"""Repository identities: the normalised name by which a push is matched to apps.

A push is matched by *who the repository is* (host/owner/name), never by a URL to clone:
the clone URL always comes from the app's own configuration.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>(?!//).+)$")


def repo_identity(url_or_name: str) -> str:
    """``https://GitHub.com/Org/App.git``, ``git@github.com:org/app``, ``ssh://git@github.com:22/org/app``
    all become ``github.com/org/app``. A local path or file:// URL becomes ``file:<abs path>``."""
    text = url_or_name.strip()
    if text.startswith("/") or text.startswith("file://"):
        path = text.removeprefix("file://")
        return "file:" + path.rstrip("/").removesuffix(".git")
    if "://" in text:
        parts = urlsplit(text)
        host = (parts.hostname or "").lower()
        path = parts.path
    elif ":" not in text and "/" in text:  # host/owner/name, as payloads name repositories
        host, _, path = text.partition("/")
        host = host.lower()
    else:
        match = _SCP_LIKE.match(text)
        if match is None:
            raise ValueError(f"not a repository URL: {url_or_name!r}")
        host, path = match.group("host").lower(), match.group("path")
    path = path.strip("/").removesuffix(".git").lower()
    if not host or not path:
        raise ValueError(f"not a repository URL: {url_or_name!r}")
    return f"{host}/{path}"


def absolute_clone_url(url: str) -> str:
    """A relative local path (``./hello-app``) as an absolute one: workers clone it from their
    own workspace, not from the directory ``app add`` ran in. Other URLs are unchanged."""
    text = url.strip()
    if "://" in text or text.startswith("/") or _SCP_LIKE.match(text):
        return text
    path = Path(text)
    return str(path.resolve()) if path.exists() else text
