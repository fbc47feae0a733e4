"""Git credentials, one home: which token or SSH key git uses for an app, how they reach git,
and what a refusal says.

An app's own credential (``app add --git-token`` / ``--git-ssh-key``, ``deployq app
credentials``, sealed in ``app_secrets``) wins over the global one of its kind
(DEPLOYQ_GIT_TOKEN, DEPLOYQ_GIT_SSH_KEY). Credentials never reach argv, the remote URL, logs
or errors:

- an HTTPS token travels in an ``http.<url>.extraHeader`` scoped to the repository's host,
  set through git's GIT_CONFIG_* environment; the global token goes only to
  DEPLOYQ_GIT_TOKEN_HOSTS (when set), an app's token only to its repository's host;
- an SSH key is a file named in GIT_SSH_COMMAND; an app's key is written for the length of
  one git operation into a 0600 file of a 0700 temporary directory (a worker's scratch) and
  removed after it. Host keys are checked strictly against DEPLOYQ_GIT_KNOWN_HOSTS (default
  DEPLOYQ_SSH_KNOWN_HOSTS, else ssh's own known_hosts files).

A refusal names the app and the credential to fix (``app web's git token``), never its value.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit, urlunsplit

from deployq.errors import CheckoutError, InvalidInput
from deployq.models import PRIVATE_KEY_RE
from deployq.redact import Redactor, redact_urls

if TYPE_CHECKING:
    from deployq.config import Settings
    from deployq.models import AppSpec

#: how long one ``git ls-remote`` may take
LS_REMOTE_TIMEOUT_S = 60.0
#: environment variables of ours that would change how git authenticates
_DROP_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_ASKPASS", "SSH_ASKPASS", "GIT_SSH_COMMAND", "GIT_SSH")
_HTTP_REFUSED = re.compile(
    r"Authentication failed for|could not read (Username|Password)|terminal prompts disabled|"
    r"requested URL returned error: 40[13]",
    re.IGNORECASE,
)
_SSH_REFUSED = re.compile(r"Permission denied \(", re.IGNORECASE)
_HOST_KEY = re.compile(
    r"Host key verification failed|host key is known for|HOST IDENTIFICATION HAS CHANGED",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class GitAuth:
    """The credentials git is given for one app (or for none: the global ones)."""

    app: str | None = None
    token: str | None = None
    token_is_apps: bool = False
    token_hosts: str | None = None
    """Hosts the token may go to (the global token's DEPLOYQ_GIT_TOKEN_HOSTS); None: the
    repository's own host."""
    ssh_key: Path | None = None
    ssh_key_is_apps: bool = False
    known_hosts: Path | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.token,) if self.token else ()

    def env(self, url: str) -> tuple[str, dict[str, str]]:
        """(the URL to give git, git's environment carrying the credentials), never prompting."""
        remote = _remote(url, self.token, self.token_hosts)
        return remote.url, self._env(remote)

    def redactor(self, url: str) -> Redactor:
        """Masks every credential git may echo for ``url``."""
        return Redactor(_remote(url, self.token, self.token_hosts).secrets)

    def _env(self, remote: _Remote) -> dict[str, str]:
        extra = {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "true",  # never prompt: fail with a message instead
            "LC_ALL": "C",  # error messages we recognise
        }
        configs: list[tuple[str, str]] = [
            # a fetched pack is kept as one file instead of loose objects, no maintenance
            ("fetch.unpackLimit", "1"),
            ("maintenance.auto", "false"),
            ("gc.auto", "0"),
        ]
        if remote.basic is not None and remote.scope is not None:
            basic = base64.b64encode(remote.basic.encode()).decode()
            configs.append((f"http.{remote.scope}.extraHeader", f"Authorization: Basic {basic}"))
        for index, (key, value) in enumerate(configs):
            extra[f"GIT_CONFIG_KEY_{index}"] = key
            extra[f"GIT_CONFIG_VALUE_{index}"] = value
        extra["GIT_CONFIG_COUNT"] = str(len(configs))
        extra["GIT_SSH_COMMAND"] = self.ssh_command()
        env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
        env.update(extra)
        return env

    def ssh_command(self) -> str:
        """ssh as git runs it: no prompt, host keys checked strictly, only our key offered."""
        parts = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
        if self.known_hosts is not None:
            parts += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        if self.ssh_key is not None:
            parts += ["-i", str(self.ssh_key), "-o", "IdentitiesOnly=yes"]
        return shlex.join(parts)

    def advice(self, url: str, output: str) -> str | None:
        """What to fix when git's ``output`` says a credential or host key was refused
        (naming the app and the credential, never its value); None for other failures."""
        app = self.app or "the app"
        cli = f"deployq app credentials {self.app or 'APP'}"
        if _HOST_KEY.search(output):
            return self._host_key_advice(url)
        if _SSH_REFUSED.search(output):
            if self.ssh_key_is_apps:
                return (
                    f"the SSH server refused app {app}'s deploy key: set the right one with "
                    f"`{cli} --git-ssh-key FILE` (its public key must be a deploy key of the "
                    "repository)"
                )
            if self.ssh_key is not None:
                return (
                    f"the SSH server refused DEPLOYQ_GIT_SSH_KEY (app {app} has no deploy key "
                    f"of its own): fix the setting, or give the app one with "
                    f"`{cli} --git-ssh-key FILE`"
                )
            return (
                f"the SSH server refused the login and app {app} has no deploy key: give it "
                f"one with `{cli} --git-ssh-key FILE` (or set DEPLOYQ_GIT_SSH_KEY)"
            )
        if _HTTP_REFUSED.search(output):
            if self.token_is_apps:
                return (
                    f"the repository refused app {app}'s git token: set the right one with "
                    f"`{cli} --git-token -`"
                )
            if self.token is not None and _remote(url, self.token, self.token_hosts).basic:
                return (
                    f"the repository refused DEPLOYQ_GIT_TOKEN (app {app} has no token of "
                    f"its own): fix the setting, or give the app one with `{cli} --git-token -`"
                )
            return (
                f"the repository asks for credentials and app {app} has none for it: give it "
                f"a token with `{cli} --git-token -` (or set DEPLOYQ_GIT_TOKEN and "
                "DEPLOYQ_GIT_TOKEN_HOSTS)"
            )
        return None

    def _host_key_advice(self, url: str) -> str:
        host, port = _ssh_host(url)
        where = str(self.known_hosts) if self.known_hosts else "~/.ssh/known_hosts"
        scan = f"ssh-keyscan {f'-p {port} ' if port else ''}{host} >> {where}"
        return (
            f"the SSH host key of {host}{f':{port}' if port else ''} is unknown or changed in "
            f"{where} (DEPLOYQ_GIT_KNOWN_HOSTS): check its fingerprint, then add it "
            f"(`{scan}`)"
        )


def refusal_line(output: str) -> str | None:
    """The line of git's ``output`` that says a credential or host key was refused (ssh's
    ``Permission denied (publickey)``, not git's closing "make sure you have access")."""
    for line in output.splitlines():
        if _HOST_KEY.search(line) or _SSH_REFUSED.search(line) or _HTTP_REFUSED.search(line):
            return line.removeprefix("fatal: ").strip().rstrip(".")
    return None


def git_auth(app: AppSpec | None, settings: Settings, *, ssh_key: Path | None = None) -> GitAuth:
    """The credentials for ``app``: its own, else the global ones. An app's SSH key must
    first be written to a file (:func:`app_git_auth` does both)."""
    token: str | None = app.git_token if app is not None else None
    token_hosts: str | None = None  # an app's token goes to its repository's host only
    if token is None and settings.git_token is not None:
        token, token_hosts = settings.git_token.get_secret_value(), settings.git_token_hosts
    return GitAuth(
        app=app.name if app is not None else None,
        token=token,
        token_is_apps=app is not None and app.git_token is not None,
        token_hosts=token_hosts,
        ssh_key=ssh_key or settings.git_ssh_key,
        ssh_key_is_apps=ssh_key is not None,
        known_hosts=settings.git_known_hosts or settings.ssh_known_hosts,
    )


@contextlib.contextmanager
def app_git_auth(app: AppSpec | None, settings: Settings) -> Iterator[GitAuth]:
    """:func:`git_auth` for the block's length; an app's SSH key lives in a 0600 file of a
    0700 temporary directory (the worker's scratch, in a worker) removed at the end."""
    if app is None or app.git_ssh_key is None:
        yield git_auth(app, settings)
        return
    directory = Path(tempfile.mkdtemp(prefix="deployq-ssh-"))  # mode 0700
    try:
        key = directory / "key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(app.git_ssh_key)
        yield git_auth(app, settings, ssh_key=key)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class SshKey:
    """A checked private key: its text and its public key's fingerprint (for people)."""

    text: str
    fingerprint: str


def read_ssh_key(path: Path) -> SshKey:
    """The private key in ``path``, checked: an OpenSSH/PEM private key without a passphrase
    (workers cannot type one). InvalidInput says what is wrong."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise InvalidInput(f"cannot read the SSH key {path} ({reason})") from None
    if not PRIVATE_KEY_RE.search(text):
        raise InvalidInput(
            f"{path} is not an SSH private key (give the private key, e.g. id_ed25519, "
            "not the .pub file)"
        )
    text = text.replace("\r\n", "\n").strip() + "\n"  # ssh refuses a key without a last newline
    with tempfile.TemporaryDirectory(prefix="deployq-ssh-") as directory:
        copy = Path(directory) / "key"
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        result = subprocess.run(
            ["ssh-keygen", "-y", "-P", "", "-f", str(copy)],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    public = result.stdout.split()
    if result.returncode != 0 or len(public) < 2:
        raise InvalidInput(
            f"the SSH key {path} cannot be used: it has a passphrase or is damaged "
            "(workers cannot type a passphrase: give a deploy key without one, "
            "`ssh-keygen -t ed25519 -N '' -f deploy_key`)"
        )
    digest = hashlib.sha256(base64.b64decode(public[1])).digest()
    fingerprint = "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
    return SshKey(text, f"{public[0]} {fingerprint}")


async def ls_remote(
    url: str,
    *refs: str,
    auth: GitAuth | None = None,
    tags: bool = False,
    timeout_s: float = LS_REMOTE_TIMEOUT_S,
) -> dict[str, str]:
    """Branch heads of a repository, ``{"refs/heads/main": sha}`` (and, with ``tags``, its
    tags: ``refs/tags/v1`` with the commit an annotated tag points to), or with ``refs`` (full
    refs) those of them that exist. CheckoutError on failure, naming the credential to fix."""
    auth = auth or GitAuth()
    git_url, env = auth.env(url)
    redact = auth.redactor(url)
    shown = redact_urls(url)
    kinds = () if refs else ("--heads", "--tags") if tags else ("--heads",)
    proc = await asyncio.create_subprocess_exec(
        "git",
        "ls-remote",
        *kinds,
        "--",
        git_url,
        *refs,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise CheckoutError(
            f"git ls-remote {shown} took longer than {timeout_s:g}s; "
            "check that the repository host answers"
        ) from None
    if proc.returncode != 0:
        text = err.decode(errors="replace")
        lines = [line for line in text.strip().splitlines() if line.strip()]
        last = refusal_line(text) or (lines[-1] if lines else f"exit {proc.returncode}")
        reason = redact(last.replace(url, shown))
        advice = auth.advice(url, text) or "check the app's repository URL and credentials"
        raise CheckoutError(f"git ls-remote {shown} failed: {reason}; {advice}")
    return parse_ls_remote(out.decode(errors="replace"), refs, tags=tags)


def parse_ls_remote(text: str, refs: Sequence[str] = (), *, tags: bool = False) -> dict[str, str]:
    """``{ref: commit sha}`` of ``git ls-remote`` output: an annotated tag's ``^{}`` line (the
    commit) wins over the tag object's."""
    found: dict[str, str] = {}
    peeled: dict[str, str] = {}
    for line in text.splitlines():
        sha, _, ref = line.partition("\t")
        if len(sha) < 40:
            continue
        if ref.endswith("^{}"):
            peeled[ref.removesuffix("^{}")] = sha.lower()
            continue
        if refs:
            wanted = ref in refs
        else:
            wanted = ref.startswith("refs/heads/") or (tags and ref.startswith("refs/tags/"))
        if wanted:
            found[ref] = sha.lower()
    for ref, sha in peeled.items():
        if ref in found:
            found[ref] = sha
    return found


# -- where an HTTP credential may go ----------------------------------------------------------


@dataclass(frozen=True)
class _Remote:
    """The URL git is given (never with credentials) and the HTTP header that carries them."""

    url: str
    scope: str | None = None
    basic: str | None = None
    secrets: tuple[str, ...] = field(default=())


def _remote(url: str, token: str | None, token_hosts: str | None) -> _Remote:
    """Credentials travel in an ``http.<url>.extraHeader`` scoped to the repository's host
    (a redirect elsewhere does not carry them): the URL's own user and password, else the
    token when the host is one it may go to."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return _Remote(url, secrets=(token or "",))
    host = parts.hostname.lower()
    netloc = f"{host}:{parts.port}" if parts.port else host
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    scope = f"{parts.scheme.lower()}://{netloc}/"
    if parts.username is not None or parts.password is not None:
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        return _Remote(clean, scope, f"{user}:{password}", (password, parts.password or ""))
    if token and _token_may_go_to(host, netloc, token_hosts):
        return _Remote(clean, scope, _basic(token), (token, token.partition(":")[2]))
    return _Remote(clean, secrets=(token or "",))


def _basic(token: str) -> str:
    """The basic-auth pair of a token: ``USER:TOKEN`` as given (GitLab deploy tokens,
    Bitbucket app passwords), else ``x-access-token:TOKEN`` (GitHub; GitLab takes any user)."""
    return token if ":" in token else f"x-access-token:{token}"


def _token_may_go_to(host: str, netloc: str, token_hosts: str | None) -> bool:
    if token_hosts is None:
        return True  # the repository's own host (the header is scoped to it)
    allowed = {h.strip().lower() for h in token_hosts.split(",") if h.strip()}
    return host in allowed or netloc in allowed


def _ssh_host(url: str) -> tuple[str, int | None]:
    """Host and port of an ssh:// or scp-like (``git@host:path``) URL."""
    parts = urlsplit(url)
    if parts.scheme and parts.hostname:
        return parts.hostname, parts.port
    host = url.split(":", 1)[0].rpartition("@")[2]
    return host or url, None
