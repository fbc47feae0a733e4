"""Registry clients: the OCI distribution v2 HTTP API and Harbor's REST API (aiohttp).

:class:`RegistryClient` checks credentials, reads manifest digests and adds tags to pushed
manifests; it speaks both the Basic and the token (``Bearer realm=...``) authentication flows,
the latter being Harbor's. Used as ``async with`` it keeps one HTTP session (connections and
tokens) for all its calls.
:class:`HarborClient` creates projects and robot accounts, requests vulnerability scans and
reads their results through /api/v2.0.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp

from deployq.config import Settings
from deployq.errors import ConfigError, RegistryError
from deployq.models import App
from deployq.scans import HARBOR_PENDING, SEVERITIES, ScanState, unavailable

log = logging.getLogger(__name__)

#: seconds for one HTTP request to the registry
REQUEST_TIMEOUT_S = 30.0
#: a request the registry failed for a moment (a 5xx, a 429, a dropped connection) is sent
#: again after each of these pauses; a ``Retry-After`` the registry gives is honoured up
#: to RETRY_AFTER_MAX_S. A registry under load answers an odd 500: that must not cost the
#: job a rebuild and a second push.
RETRY_PAUSES_S = (0.25, 1.0)
RETRY_AFTER_MAX_S = 5.0
_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
#: seconds between two looks at a running Harbor scan
SCAN_POLL_INTERVAL_S = 2.0
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
#: tags asked for per page of /tags/list
TAGS_PAGE = 500
#: largest manifest read back to tag it (registries refuse more than 4 MiB anyway)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


def registry_login(settings: Settings, app: App | None = None) -> tuple[str | None, str | None]:
    """``(username, password)`` for the registry: the app's own login when it has one (e.g.
    a robot of ``deployq harbor robot create --app``), else DEPLOYQ_REGISTRY_USERNAME's."""
    if app is not None and app.registry_username:
        return app.registry_username, app.registry_password
    password = settings.registry_password
    return settings.registry_username, password.get_secret_value() if password else None


def harbor_admin(settings: Settings) -> HarborClient:
    """Harbor's API with DEPLOYQ_HARBOR_ADMIN_USERNAME's login, else the registry login."""
    if not (settings.harbor_url or settings.registry_url):
        raise ConfigError("no Harbor configured: set DEPLOYQ_HARBOR_URL or DEPLOYQ_REGISTRY_URL")
    username, password = registry_login(settings)
    if settings.harbor_admin_username:
        admin = settings.harbor_admin_password
        username = settings.harbor_admin_username
        password = admin.get_secret_value() if admin is not None else None
    return HarborClient(harbor_api_url(settings), username, password)


def harbor_api_url(settings: Settings) -> str:
    """Where Harbor's REST API answers: DEPLOYQ_HARBOR_URL, else the registry's host."""
    return normalize_url(
        settings.harbor_url or settings.registry_url, insecure=settings.registry_insecure
    )


def basic_auth(username: str, password: str | None) -> str:
    """The value of an ``Authorization: Basic`` header."""
    pair = f"{username}:{password or ''}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def normalize_url(base_url: str, *, insecure: bool = False) -> str:
    """``host:5000`` -> ``https://host:5000`` (``http://`` when insecure); no trailing /."""
    url = base_url.strip().rstrip("/")
    if "://" not in url:
        url = ("http://" if insecure else "https://") + url
    return url


@dataclass(frozen=True)
class Manifest:
    """A manifest as a registry serves it: its media type and exact bytes."""

    media_type: str
    body: bytes = field(repr=False)

    @property
    def digest(self) -> str:
        """``sha256:…`` of the bytes: the digest the registry names them by."""
        return "sha256:" + hashlib.sha256(self.body).hexdigest()


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: dict[str, str]
    body: bytes = field(default=b"", repr=False)


class RegistryClient:
    """A client of an OCI distribution (v2) registry."""

    def __init__(
        self,
        base_url: str,
        username: str | None = None,
        password: str | None = None,
        insecure: bool = False,
        *,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.url = normalize_url(base_url, insecure=insecure)
        self.host = self.url.split("://", 1)[1]
        self.username = username
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._password = password
        self._tokens: dict[str, str] = {}
        self._held: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, app: App | None = None, *, timeout_s: float = REQUEST_TIMEOUT_S
    ) -> Self:
        """The client of DEPLOYQ_REGISTRY_URL with deployq's credentials (or ``app``'s own):
        the one the worker tags and verifies with, and ``deployq doctor`` logs in with."""
        username, password = registry_login(settings, app)
        return cls(
            settings.registry_url,
            username,
            password,
            settings.registry_insecure,
            timeout_s=timeout_s,
        )

    async def __aenter__(self) -> Self:
        self._held = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        held, self._held = self._held, None
        if held is not None:
            await held.close()

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[aiohttp.ClientSession]:
        """The session held by ``async with``, else one for this call only."""
        if self._held is not None:
            yield self._held
            return
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            yield session

    def image_ref(self, repository: str, tag: str) -> str:
        """The full reference docker uses: ``host:port/repository:tag``."""
        return f"{self.host}/{repository.strip('/')}:{tag}"

    def _basic(self) -> dict[str, str]:
        if self.username is None:
            return {}
        return {"Authorization": basic_auth(self.username, self._password)}

    async def login(self) -> int:
        """GET /v2/ with the credentials, answering a Basic or Bearer (token) challenge the
        way docker does; the final HTTP status (200 accepted, 401 refused). RegistryError
        when the registry or its token service cannot be reached."""
        async with self._session() as session:
            return (await self._request(session, "GET", "/v2/", scope=None)).status

    async def check_login(self) -> None:
        """:meth:`login`, raising RegistryError unless the registry accepted it."""
        status = await self.login()
        if status == 401:
            raise self._refused()
        if status >= 400:
            raise RegistryError(f"registry {self.url} answered HTTP {status} to GET /v2/")

    async def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The Docker-Content-Digest of a tag or digest; None when it does not exist."""
        async with self._session() as session:
            answer = await self._manifest_request(session, "HEAD", repository.strip("/"), reference)
        return None if answer is None else answer.headers.get("Docker-Content-Digest")

    async def manifest(
        self, repository: str, reference: str, *, push: bool = False
    ) -> Manifest | None:
        """The manifest a tag or digest names, as served (its exact bytes and media type; its
        ``digest`` is that of the bytes); None when it does not exist. Read once, it both
        verifies a push and gives the bytes to tag it with (:meth:`put_manifest`); ``push``:
        read with the push token those tags need (one token, not two, on a token registry).
        """
        async with self._session() as session:
            return await self._get_manifest(session, repository.strip("/"), reference, push=push)

    async def put_manifest(self, repository: str, new_tag: str, manifest: Manifest) -> str:
        """Store ``manifest``'s exact bytes under ``new_tag`` (no layer moves); raise
        RegistryError unless the registry stored them as ``manifest.digest``."""
        async with self._session() as session:
            return await self._put_manifest(session, repository.strip("/"), new_tag, manifest)

    async def tag(self, repository: str, source: str, new_tag: str) -> str:
        """Give the manifest ``source`` (a digest or tag) of ``repository`` the tag
        ``new_tag``, without moving any layer: GET the manifest, PUT its exact bytes under
        the new tag. Return the digest the registry stored, which is ``source``'s."""
        repository = repository.strip("/")
        async with self._session() as session:
            got = await self._get_manifest(session, repository, source, push=True)
            if got is None:
                raise RegistryError(
                    f"registry {self.url} has no manifest {repository}@{source} to tag "
                    f"{new_tag!r}: was the push removed? retry the job"
                )
            if source.startswith("sha256:") and got.digest != source:
                raise RegistryError(
                    f"registry {self.url} served {repository}@{source} as bytes of "
                    f"{got.digest}: retry the job"
                )
            return await self._put_manifest(session, repository, new_tag, got)

    async def _get_manifest(
        self, session: aiohttp.ClientSession, repository: str, reference: str, *, push: bool = False
    ) -> Manifest | None:
        """GET a manifest (``push``: with the token of the push that follows it)."""
        got = await self._manifest_request(session, "GET", repository, reference, push=push)
        if got is None:
            return None
        media_type = got.headers.get("Content-Type", "").split(";")[0].strip()
        if not media_type:
            raise RegistryError(
                f"registry {self.url} served {repository}@{reference} without a media type"
            )
        return Manifest(media_type, got.body)

    async def _manifest_request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        repository: str,
        reference: str,
        *,
        push: bool = False,
    ) -> _Answer | None:
        """HEAD or GET the manifest ``reference`` of ``repository`` (the body read for a
        GET); None when the registry has none (404), RegistryError on any other refusal."""
        path = f"/v2/{repository}/manifests/{reference}"
        answer = await self._request(
            session,
            method,
            path,
            scope=f"repository:{repository}:pull{',push' if push else ''}",
            headers={"Accept": MANIFEST_ACCEPT},
            read_body=method == "GET",
        )
        if answer.status == 404:
            return None
        self._check(answer, method, path)
        return answer

    async def _put_manifest(
        self, session: aiohttp.ClientSession, repository: str, new_tag: str, manifest: Manifest
    ) -> str:
        path = f"/v2/{repository}/manifests/{new_tag}"
        put = await self._request(
            session,
            "PUT",
            path,
            scope=f"repository:{repository}:pull,push",
            headers={"Content-Type": manifest.media_type},
            data=manifest.body,
        )
        self._check(put, "PUT", path)
        digest = put.headers.get("Docker-Content-Digest") or manifest.digest
        if digest != manifest.digest:
            raise RegistryError(
                f"registry {self.url} stored {repository}:{new_tag} as {digest}, "
                f"not {manifest.digest}: retry the job"
            )
        return digest

    async def tags(self, repository: str, *, page_size: int = TAGS_PAGE) -> list[str]:
        """Every tag of ``repository`` (``GET /v2/<name>/tags/list``, page by page along the
        ``Link: <...>; rel="next"`` header); [] when the repository does not exist."""
        repository = repository.strip("/")
        path: str | None = f"/v2/{repository}/tags/list?n={page_size}"
        found: list[str] = []
        async with self._session() as session:
            while path is not None:
                answer = await self._request(
                    session, "GET", path, scope=f"repository:{repository}:pull", read_body=True
                )
                if answer.status == 404:
                    return found
                self._check(answer, "GET", path)
                try:
                    page = json.loads(answer.body or b"{}")
                except ValueError as exc:
                    raise RegistryError(
                        f"registry {self.url} answered GET {path} with no JSON: {exc}"
                    ) from exc
                found += [str(t) for t in (page.get("tags") or [])]
                path = _next_page(answer.headers.get("Link", ""), self.url)
        return found

    async def delete_manifest(self, repository: str, digest: str) -> bool:
        """``DELETE /v2/<name>/manifests/<digest>``: the manifest and every tag naming it go
        (the registry's garbage collection frees the layers later). False when it was gone
        already. A registry that does not allow deletes (HTTP 405) raises RegistryError
        saying how to allow them."""
        repository = repository.strip("/")
        path = f"/v2/{repository}/manifests/{digest}"
        async with self._session() as session:
            answer = await self._request(
                session, "DELETE", path, scope=f"repository:{repository}:delete"
            )
        if answer.status == 404:
            return False
        if answer.status == 405:
            raise RegistryError(
                f"registry {self.url} does not allow deleting images (HTTP 405 UNSUPPORTED "
                f"for DELETE {path}): enable deletes (docker-registry: "
                "REGISTRY_STORAGE_DELETE_ENABLED=true, or storage: delete: enabled: true in "
                "its config.yml; Harbor: give the robot account delete rights)"
            )
        if answer.status in (401, 403):
            # token registries (Harbor) answer 401 when the token lacks the delete action
            raise RegistryError(
                f"registry {self.url} denied DELETE {path} to user {self.username!r} "
                f"(HTTP {answer.status}): give the account delete rights on the repository "
                "(Harbor: the repository delete permission), and check "
                "DEPLOYQ_REGISTRY_USERNAME and DEPLOYQ_REGISTRY_PASSWORD"
            )
        self._check(answer, "DELETE", path)
        return True

    def _check(self, answer: _Answer, method: str, path: str) -> None:
        """Raise RegistryError for a refused or failed request."""
        if answer.status == 401:
            raise self._refused()
        if answer.status == 403:
            raise RegistryError(
                f"registry {self.url} denied {method} {path} to user {self.username!r} "
                "(HTTP 403): give the account push and pull rights on the repository"
            )
        if answer.status >= 400:
            raise RegistryError(
                f"registry {self.url} answered HTTP {answer.status} to {method} {path}"
            )

    def _refused(self) -> RegistryError:
        who = f"user {self.username!r}" if self.username else "anonymous access"
        return RegistryError(
            f"registry {self.url} refused {who} (HTTP 401): check DEPLOYQ_REGISTRY_USERNAME "
            "and DEPLOYQ_REGISTRY_PASSWORD"
        )

    async def _request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        *,
        scope: str | None,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        read_body: bool = False,
    ) -> _Answer:
        """One request, answering a Basic or Bearer challenge once, and sent again when
        the registry failed it for a moment (RETRY_PAUSES_S)."""
        for pause in (*RETRY_PAUSES_S, None):
            try:
                answer = await self._exchange(
                    session, method, path, scope, headers or {}, data, read_body
                )
            except aiohttp.ClientConnectionError as exc:  # refused, reset, closed early
                if pause is None:
                    raise self._unreachable(exc) from exc
                reason = f"{type(exc).__name__}: {exc}"
            except TimeoutError as exc:  # the whole timeout went by: not worth another one
                raise self._unreachable(exc) from exc
            except aiohttp.ClientError as exc:
                raise self._unreachable(exc) from exc
            else:
                if answer.status not in _RETRIED_STATUSES or pause is None:
                    return answer
                reason = f"HTTP {answer.status}"
                pause = _retry_after(answer.headers, pause)
            log.info(
                "registry %s: %s %s failed (%s); again in %.2fs",
                self.url,
                method,
                path,
                reason,
                pause,
            )
            await asyncio.sleep(pause)
        raise AssertionError("unreachable: the last try returns or raises")

    def _unreachable(self, exc: BaseException) -> RegistryError:
        reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        return RegistryError(
            f"registry {self.url} is unreachable ({reason}): check DEPLOYQ_REGISTRY_URL "
            "(and DEPLOYQ_REGISTRY_INSECURE for a plain-HTTP registry) and that the "
            "registry is running"
        )

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        method: str,
        path: str,
        scope: str | None,
        headers: dict[str, str],
        data: bytes | None,
        read_body: bool,
    ) -> _Answer:
        """One try of a request; a Bearer challenge is answered once."""
        headers = dict(headers)
        token = self._tokens.get(scope or "")
        first = {**headers, **({"Authorization": f"Bearer {token}"} if token else self._basic())}

        async def send(sent: dict[str, str]) -> _Answer:
            async with session.request(method, self.url + path, headers=sent, data=data) as resp:
                body = b""
                if read_body and resp.status < 300:
                    body = await resp.content.read(MAX_MANIFEST_BYTES + 1)
                    if len(body) > MAX_MANIFEST_BYTES:
                        raise RegistryError(
                            f"registry {self.url} served more than {MAX_MANIFEST_BYTES} bytes "
                            f"for {path}: not a manifest"
                        )
                return _Answer(resp.status, dict(resp.headers), body)

        answer = await send(first)
        challenge = answer.headers.get("WWW-Authenticate", "")
        if answer.status != 401 or not challenge.lower().startswith("bearer"):
            return answer
        token = await self._fetch_token(session, challenge, scope)
        if token is None:
            return answer
        headers["Authorization"] = f"Bearer {token}"
        return await send(headers)

    async def _fetch_token(
        self, session: aiohttp.ClientSession, challenge: str, scope: str | None
    ) -> str | None:
        """The token flow: GET realm?service=...&scope=... with Basic credentials."""
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = params.pop("realm", None)
        if not realm:
            raise RegistryError(f"registry {self.url} sent a Bearer challenge without a realm")
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        if scope:
            query["scope"] = scope
        async with session.get(realm, params=query, headers=self._basic()) as resp:
            if resp.status in (401, 403):
                return None  # the credentials were refused: the caller sees the 401
            if resp.status >= 400:
                raise RegistryError(f"registry token service {realm} answered HTTP {resp.status}")
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                body = None
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not token:
            raise RegistryError(f"registry token service {realm} returned no token")
        self._tokens[scope or ""] = str(token)
        return str(token)


def _retry_after(headers: dict[str, str], default: float) -> float:
    """The pause a ``Retry-After: <seconds>`` asks for (at most RETRY_AFTER_MAX_S), else
    ``default``."""
    raw = headers.get("Retry-After", "").strip()
    if not raw.isdigit():
        return default
    return min(float(raw), RETRY_AFTER_MAX_S)


class HarborClient:
    """Harbor's REST API (/api/v2.0): projects, vulnerability scans, robot accounts."""

    def __init__(
        self,
        base_url: str,
        username: str | None,
        password: str | None,
        *,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.url = normalize_url(base_url)
        self.username = username
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._headers = {"Authorization": basic_auth(username, password)} if username else {}

    @classmethod
    def from_settings(cls, settings: Settings, app: App | None = None) -> Self:
        """Harbor's API with the registry login deployq pushes ``app``'s images with."""
        return cls(harbor_api_url(settings), *registry_login(settings, app))

    async def _call(
        self, method: str, path: str, *, body: Any = None, ok: tuple[int, ...] = (200,)
    ) -> tuple[int, Any]:
        url = f"{self.url}/api/v2.0{path}"
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout, headers=self._headers) as session,
                session.request(method, url, json=body) as resp,
            ):
                answer = _parse(await resp.text())
                if resp.status not in ok:
                    raise HarborError(
                        f"Harbor {method} {path.split('?')[0]} answered HTTP {resp.status}: "
                        f"{_harbor_message(answer)}"
                        + (
                            f" — check the permissions of {self.username!r}"
                            if resp.status in (401, 403)
                            else ""
                        ),
                        status=resp.status,
                    )
                return resp.status, answer
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            raise HarborError(f"Harbor at {self.url} is unreachable: {reason}") from exc

    async def ensure_project(self, name: str) -> bool:
        """Create project ``name`` unless it exists; True when it was created."""
        status, _ = await self._call("HEAD", f"/projects?project_name={quote(name)}", ok=(200, 404))
        if status == 200:
            return False
        status, _ = await self._call(
            "POST",
            "/projects",
            body={"project_name": name, "metadata": {"public": "false"}},
            ok=(201, 409),
        )
        return status == 201

    def _artifact_path(self, project: str, repository: str, digest: str) -> str:
        # Harbor wants slashes inside a repository name encoded twice (a/b -> a%252Fb)
        repo = quote(quote(repository, safe=""), safe="")
        return f"/projects/{quote(project)}/repositories/{repo}/artifacts/{digest}"

    async def scan(self, project: str, repository: str, digest: str) -> None:
        """Ask Harbor to scan an artifact (answers at once; the scan runs in Harbor).
        HarborError says why it cannot: no scanner (HTTP 412), no such artifact (404), ..."""
        try:
            await self._call(
                "POST", self._artifact_path(project, repository, digest) + "/scan", ok=(202,)
            )
        except HarborError as exc:
            if exc.status == 412:  # PRECONDITION: no scanner, or a disabled one
                raise HarborError(
                    f"Harbor cannot scan images of project {project}: {exc.message} (an "
                    "administrator adds one under Interrogation Services)",
                    status=412,
                ) from exc
            raise

    async def scan_overview(self, project: str, repository: str, digest: str) -> dict[str, Any]:
        """One look at the artifact's scan: a summary (``deployq.scans``) whose state is
        ``running`` (not finished), ``done`` (with the counts) or ``unavailable`` (the scan
        ended without a report)."""
        path = self._artifact_path(project, repository, digest) + "?with_scan_overview=true"
        _, artifact = await self._call("GET", path)
        return summarize(artifact if isinstance(artifact, dict) else {})

    async def wait_for_scan(
        self,
        project: str,
        repository: str,
        digest: str,
        timeout_s: float,
        *,
        poll_interval_s: float = SCAN_POLL_INTERVAL_S,
    ) -> dict[str, Any]:
        """Look until the scan is final or ``timeout_s`` passed; the last summary (still
        ``running`` when the time ran out)."""
        deadline = time.monotonic() + timeout_s
        while True:
            summary = await self.scan_overview(project, repository, digest)
            if summary["state"] != ScanState.RUNNING.value or time.monotonic() >= deadline:
                return summary
            await asyncio.sleep(min(poll_interval_s, max(0.0, deadline - time.monotonic())))

    async def project_scanner(self, project: str) -> dict[str, Any] | None:
        """The scanner Harbor scans ``project``'s images with (its registration: name,
        url, ...), or None when it has none or a disabled one (scans then answer 412).
        HarborError when the project does not exist (status 404) or the API refuses."""
        _, found = await self._call("GET", f"/projects?name={quote(project)}")
        listed = found if isinstance(found, list) else []
        ids = [
            p.get("project_id") for p in listed if isinstance(p, dict) and p.get("name") == project
        ]
        if not ids:  # ``name`` is a fuzzy filter: only an exact match counts
            raise HarborError(f"Harbor has no project {project}", status=404)
        # by id: Harbor 2.0 takes only ids here (later versions take names too)
        status, scanner = await self._call("GET", f"/projects/{ids[0]}/scanner", ok=(200, 404))
        if status == 404 or not isinstance(scanner, dict) or not scanner or scanner.get("disabled"):
            return None
        return scanner

    async def create_robot(
        self,
        project: str,
        name: str,
        *,
        description: str,
        duration_days: int = -1,
        allow_delete: bool = False,
    ) -> tuple[str, str]:
        """A project robot account that may push and pull the project's repositories (and,
        with ``allow_delete``, delete their images: registry tag retention needs it), and
        nothing else; ``(full name, secret)``. Harbor shows the secret this once."""
        actions = ["push", "pull", *(["delete"] if allow_delete else [])]
        body = {
            "name": name,
            "description": description,
            "duration": duration_days,
            "level": "project",
            "disable": False,
            "permissions": [
                {
                    "kind": "project",
                    "namespace": project,
                    "access": [{"resource": "repository", "action": a} for a in actions],
                }
            ],
        }
        try:
            _, answer = await self._call("POST", "/robots", body=body, ok=(201,))
        except HarborError as exc:
            raise HarborError(_robot_refusal(exc, project, name), status=exc.status) from exc
        if not isinstance(answer, dict) or not answer.get("name") or not answer.get("secret"):
            raise HarborError("Harbor created the robot account but returned no name or secret")
        return str(answer["name"]), str(answer["secret"])


class HarborError(RegistryError):
    """Harbor's API refused or failed a call; ``status`` is its HTTP status (None: no answer)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _robot_refusal(exc: HarborError, project: str, name: str) -> str:
    if exc.status == 401:
        return (
            "Harbor refused the login (HTTP 401): set DEPLOYQ_HARBOR_ADMIN_USERNAME and "
            "DEPLOYQ_HARBOR_ADMIN_PASSWORD to a project or system administrator of Harbor"
        )
    if exc.status == 403:
        return (
            f"Harbor does not let this login create robot accounts in project {project} "
            "(HTTP 403): set DEPLOYQ_HARBOR_ADMIN_USERNAME to a project administrator"
        )
    if exc.status == 409:
        return (
            f"a robot account named {name!r} exists already in project {project} (HTTP 409): "
            "choose another --name, or delete the old one in Harbor"
        )
    if exc.status == 404 or (exc.status == 400 and "project" in exc.message.lower()):
        return f"Harbor has no project {project} (HTTP {exc.status}): create it first"
    return exc.message


def _next_page(link: str, base_url: str) -> str | None:
    """The path of the ``rel="next"`` page of a ``Link`` header, or None (last page).
    distribution sends a path (``</v2/x/tags/list?last=a&n=100>; rel="next"``); an absolute
    URL on the same registry is taken too, any other host is not followed."""
    match = _NEXT_LINK.search(link)
    if match is None:
        return None
    target = match.group(1)
    if target.startswith(base_url + "/"):
        target = target[len(base_url) :]
    return target if target.startswith("/v2/") else None


def summarize(artifact: dict[str, Any]) -> dict[str, Any]:
    """An artifact of ``?with_scan_overview=true`` as a scan summary (``deployq.scans``)."""
    overview: dict[str, Any] = artifact.get("scan_overview") or {}
    report: dict[str, Any] = next(iter(overview.values()), {}) if overview else {}
    status = str(report.get("scan_status") or "NotScanned")
    if status in HARBOR_PENDING:
        return {"state": ScanState.RUNNING.value, "status": status}
    if status != "Success":
        return unavailable(f"Harbor's scan ended with status {status}")
    totals = report.get("summary") or {}
    counts = totals.get("summary") or {}
    result: dict[str, Any] = {"state": ScanState.DONE.value, "status": status}
    result |= {s: int(counts.get(s.capitalize(), 0)) for s in SEVERITIES}
    result["total"] = int(totals.get("total", sum(result[s] for s in SEVERITIES)))
    result["fixable"] = int(totals.get("fixable", 0))
    result["severity"] = report.get("severity")
    return result


def _parse(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return text[:200]


def _harbor_message(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        return str(body["errors"][0].get("message", ""))
    return "no details"
