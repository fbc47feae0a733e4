"""``docker push`` without the docker CLI: the Engine API's push, for the BuildKit backend.

The CLI's push is one Engine API call (``POST /images/{name}/push`` with the registry login in
``X-Registry-Auth``) wrapped in a process that starts, reads its config and pings the engine
first: ~40 ms of every push on an idle host, the CLI's share of a warm deploy's push. This
makes that call directly, over the engine's ``unix://`` socket or ``tcp://`` (with the build
server's mutual TLS), with the login the CLI would send: the one ``docker login`` stored in the
builder's DOCKER_CONFIG. So a push behaves as the CLI's (a stored login the registry refuses is
refused here too, and the builder logs in again) and prints the CLI's lines. ``ssh://``
engines, a login kept by a credential helper rather than in config.json (:func:`stored_login`
returns None), and a push without deployq's own login (the CLI then reads the user's
``~/.docker/config.json``) go through the CLI.

Cancelling the push closes the connection: the engine stops the push, as when the CLI is
killed.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from deployq.builders.base import LogSink, split_ref
from deployq.builders.process import ProcessResult
from deployq.builders.tls import EngineTLS
from deployq.redact import Redactor

#: seconds to wait for the engine to accept the connection
CONNECT_TIMEOUT_S = 20.0
#: longest line of the engine's answer (one JSON message)
_LINE_LIMIT = 1024 * 1024


def speaks_api(docker_host: str) -> bool:
    """Whether the push can go to ``docker_host`` without the CLI (not over ssh://)."""
    return docker_host.startswith(("unix://", "tcp://"))


def stored_login(config_dir: str, server: str) -> dict[str, str] | None:
    """The login ``docker login`` stored for ``server`` in ``config_dir/config.json``, as the
    CLI sends it to the engine (``{}``: none stored, the push goes anonymously and the
    registry says so); None when the CLI would ask a credential helper for it."""
    try:
        config = json.loads((Path(config_dir) / "config.json").read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    if config.get("credsStore") or (config.get("credHelpers") or {}).get(server):
        return None
    entry = (config.get("auths") or {}).get(server)
    if not isinstance(entry, dict) or not entry:
        return {}
    encoded = entry.get("auth")
    if not isinstance(encoded, str) or not encoded:
        return None
    try:
        username, sep, password = base64.b64decode(encoded).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    if not sep:
        return None
    login = {"username": username, "password": password, "serveraddress": server}
    if entry.get("identitytoken"):
        login["identitytoken"] = str(entry["identitytoken"])
    return login


def engine_endpoint(docker_host: str, tls: EngineTLS | None) -> tuple[str, aiohttp.BaseConnector]:
    """The base URL and the connector of the engine at ``docker_host``."""
    if docker_host.startswith("unix://"):
        return "http://docker", aiohttp.UnixConnector(path=docker_host.removeprefix("unix://"))
    address = docker_host.removeprefix("tcp://").rstrip("/")
    if tls is None:
        return f"http://{address}", aiohttp.TCPConnector()
    return f"https://{address}", aiohttp.TCPConnector(ssl=client_context(tls))


def client_context(tls: EngineTLS) -> ssl.SSLContext:
    """The TLS context of ``tls``'s files, made once per version of them: reading the CA,
    the certificate and the key costs ~1.5 ms, on every push and prefetch to a ``tcp://``
    engine otherwise. A file replaced on disk (a renewed certificate) makes a new one."""
    stats = [os.stat(path) for path in (tls.ca, tls.cert, tls.key)]
    versions = tuple((st.st_ino, st.st_mtime_ns, st.st_size) for st in stats)
    return _client_context(tls.ca, tls.cert, tls.key, versions)


@functools.lru_cache(maxsize=16)
def _client_context(
    ca: str, cert: str, key: str, versions: tuple[tuple[int, int, int], ...]
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    return context


async def push(
    docker_host: str,
    tls: EngineTLS | None,
    ref: str,
    login: dict[str, str],
    log: LogSink,
    redact: Redactor,
) -> ProcessResult:
    """Push ``ref`` through the engine's API; the result reads like the CLI's: exit code 0, or
    1 with the engine's error as the last line; the lines the CLI prints go to ``log``. A
    connection that fails gives the CLI's ``Cannot connect to the Docker daemon`` line."""
    repository, tag = split_ref(ref)
    header = base64.urlsafe_b64encode(json.dumps(login).encode()).decode()
    result = ProcessResult(returncode=1)

    def line(text: str) -> None:
        text = redact(text.rstrip())
        if text.strip():
            result.tail.append(text)
            log(text)

    try:
        base, connector = engine_endpoint(docker_host, tls)
    except (OSError, ssl.SSLError) as exc:
        result.tail.append(f"could not read the TLS files of {docker_host}: {exc}")
        return result
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S)
    url = f"{base}/images/{quote(repository, safe='/:')}/push"
    try:
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=timeout, read_bufsize=_LINE_LIMIT
            ) as session,
            session.post(url, params={"tag": tag}, headers={"X-Registry-Auth": header}) as response,
        ):
            if response.status != 200:
                body = await response.text(errors="replace")
                line(_engine_error(body) or f"engine answered HTTP {response.status}")
                return result
            failed = False
            async for raw in response.content:
                message = stream_message(raw)
                if message is None:
                    continue
                if message.get("error"):
                    line(str(message["error"]))
                    failed = True
                elif shown := _shown(message):
                    line(shown)
            result.returncode = 1 if failed else 0
    except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError) as exc:
        line(f"Cannot connect to the Docker daemon at {docker_host}: {exc}")
    return result


def stream_message(raw: bytes) -> dict[str, Any] | None:
    """One JSON message of the Engine API's progress stream (None for anything else)."""
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _shown(message: dict[str, Any]) -> str | None:
    """The line the CLI prints for one message when its output is not a terminal: none for
    progress bars and for aux (digest) messages."""
    if message.get("progress") or message.get("progressDetail") or "aux" in message:
        return None
    status = str(message.get("status") or "")
    if not status:
        return None
    return f"{message['id']}: {status}" if message.get("id") else status


def _engine_error(body: str) -> str | None:
    try:
        answer = json.loads(body)
    except ValueError:
        return body.strip() or None
    return str(answer.get("message")) if isinstance(answer, dict) else None
