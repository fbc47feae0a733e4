"""The shared build cache of one attempt: what it builds from, and the stage images it pushes.

The final image carries its own stage's cache inline (``BUILDKIT_INLINE_CACHE=1``); each
intermediate stage the target needs is built on its own and pushed as
``<repository>:cache-<branch>--<stage>`` (names: :mod:`deployq.buildcache`). Every build
``--cache-from``s the branch's images and the default branch's, so a build on another server,
or a new branch's first build, reuses what any server pushed before. A cache image that
cannot be pushed costs the next build time, never this job: it is a warning in the log.

With BuildKit the cache images are named by the digest the registry serves for their tag when
the build starts (:func:`pin_cache`): dockerd's BuildKit takes the cache of a ``--cache-from``
reference from a *local* image of that name when there is one, so a server that built the
branch before would build from its own stale ``:main`` instead of what another server pushed
since; an image named by digest is local only when it is that very image.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field, replace

from deployq.buildcache import cache_stages, cache_tag
from deployq.builders import Builder, BuildRequest, LogSink, RegistryAuth
from deployq.builders.base import split_ref
from deployq.errors import DeployqError, RegistryError
from deployq.imageref import docker_tag
from deployq.registry import RegistryClient


@dataclass(frozen=True)
class CachePlan:
    """``stages``: stage -> the cache image this build pushes for it, in build order;
    ``sources``: stage -> the images its build may reuse (this branch's, then the default
    branch's); ``final``: what the target's build may reuse (every stage's and the
    previous images of both branches)."""

    stages: dict[str, str] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)
    final: list[str] = field(default_factory=list)

    @property
    def reused(self) -> list[str]:
        """Every image some build of the plan may reuse, once each."""
        return list(dict.fromkeys(self.final + [r for refs in self.sources.values() for r in refs]))

    def pinned(self, digests: dict[str, str | None]) -> CachePlan:
        """The plan with each reused image named by its digest (``repo@sha256:…``) where
        ``digests`` has one, left out where it says None (no such tag), kept as it is where
        ``digests`` does not say."""

        def pin(refs: list[str]) -> list[str]:
            named = []
            for ref in refs:
                if ref not in digests:
                    named.append(ref)
                elif (digest := digests[ref]) is not None:
                    named.append(f"{split_ref(ref)[0]}@{digest}")
            return list(dict.fromkeys(named))

        sources = {stage: pin(refs) for stage, refs in self.sources.items()}
        return CachePlan(dict(self.stages), sources, pin(self.final))


def plan_cache(
    repository: str,
    *,
    branch: str,
    default_branch: str | None,
    dockerfile_text: str | None,
    target: str | None,
) -> CachePlan:
    """The cache plan of a build of ``branch`` to ``repository`` (``registry/path``)."""
    branches = list(dict.fromkeys(b for b in (branch, default_branch) if b))
    stages = cache_stages(dockerfile_text, target) if dockerfile_text else []
    pushed = {stage: f"{repository}:{cache_tag(branch, stage)}" for stage in stages}
    sources: dict[str, list[str]] = {}
    reusable: list[str] = []
    for stage in stages:
        reusable += [f"{repository}:{cache_tag(b, stage)}" for b in branches]
        sources[stage] = list(reusable)
    final = [f"{repository}:{docker_tag(b)}" for b in branches] + reusable
    return CachePlan(pushed, sources, final)


async def pin_cache(
    registry: RegistryClient, registry_host: str, refs: list[str]
) -> dict[str, str | None]:
    """The digest the registry serves now for each of ``refs`` (tags of ``registry_host``),
    None for a tag it does not have; asked all at once. A registry that does not answer
    leaves the refs out (the build then names them by tag, as before)."""
    prefix = f"{registry_host}/"

    async def one(ref: str) -> tuple[str, str | None] | None:
        repository, tag = split_ref(ref)
        if not repository.startswith(prefix) or tag.startswith("sha256:"):
            return None
        try:
            return ref, await registry.manifest_digest(repository.removeprefix(prefix), tag)
        except RegistryError:
            return None

    answers = await asyncio.gather(*(one(ref) for ref in refs))
    return dict(answer for answer in answers if answer is not None)


#: how long a digest this worker put under a cache tag names that tag without asking the
#: registry (KnownDigests)
KNOWN_DIGEST_TTL_S = 600.0


@dataclass(frozen=True)
class _Known:
    app: str
    digest: str
    server_id: int
    at: float


class KnownDigests:
    """The digests this worker itself last put under its apps' cache tags (the branch tags,
    the stage images), by the build server that built them: the next build of the app on
    that server names its cache by them without asking the registry (:func:`pin_cache`'s
    lookup, a registry request per tag). Forgotten for an app when a job of it that is not
    this worker's ends (it may have moved the tags: the pool sees its finished NOTIFY), for
    every app when the worker's listener reconnects (NOTIFYs sent meanwhile are lost), and
    after KNOWN_DIGEST_TTL_S. Should a tag have moved all the same (a push from outside
    deployq), the build reuses this server's own last build: a cache that is older, never
    a wrong image (BuildKit's cache keys are the content)."""

    def __init__(self, ttl_s: float = KNOWN_DIGEST_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._tags: dict[str, _Known] = {}

    def remember(self, app: str, server_id: int, tags: dict[str, str]) -> None:
        """``tags``: ``registry/repository:tag`` -> the digest this worker just put there."""
        now = time.monotonic()
        for ref, digest in tags.items():
            self._tags[ref] = _Known(app, digest, server_id, now)

    def digests(self, refs: list[str], server_id: int) -> dict[str, str | None] | None:
        """The digest of each of ``refs`` when this worker put every one of them there
        itself, from ``server_id``, recently; else None (ask the registry)."""
        now = time.monotonic()
        known = [self._tags.get(ref) for ref in refs]
        if not refs or any(
            k is None or k.server_id != server_id or now - k.at > self.ttl_s for k in known
        ):
            return None
        return {ref: k.digest for ref, k in zip(refs, known, strict=True) if k is not None}

    def forget(self, app: str | None = None) -> None:
        """Forget ``app``'s tags (None: every app's)."""
        if app is None:
            self._tags.clear()
        else:
            self._tags = {ref: k for ref, k in self._tags.items() if k.app != app}


def read_dockerfile(request: BuildRequest) -> str | None:
    """The Dockerfile's text: the generated one, else the repository's; None when it cannot
    be read or lies outside the repository (the build says why)."""
    if request.dockerfile_text is not None:
        return request.dockerfile_text
    path = request.dockerfile_path
    if not path.is_relative_to(request.workspace.resolve()):
        return None
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


@dataclass
class StageCache:
    """Builds the stage images of ``plan`` and pushes them while the rest goes on."""

    builder: Builder
    plan: CachePlan
    auth: RegistryAuth | None
    log: LogSink
    _pushes: list[asyncio.Task[None]] = field(default_factory=list)
    #: the stage images pushed, as ``repo@sha256:…`` (the cache prefetch pulls them)
    pushed: list[str] = field(default_factory=list)
    #: the same, by the tag each was pushed under
    tagged: dict[str, str] = field(default_factory=dict)

    async def build(self, request: BuildRequest) -> None:
        """Build each stage's image (``--target STAGE``, tagged with its cache name) and start
        its push; a failing stage fails the build, as the target's build would."""
        for stage, ref in self.plan.stages.items():
            self.log(f"==> stage {stage}: building its cache image {ref}")
            stage_request = replace(
                request,
                target=stage,
                tags=[ref],
                labels={},
                cache_from=self.plan.sources[stage],
            )
            await self.builder.build(stage_request, self.log, auth=self.auth)
            self._pushes.append(asyncio.create_task(self._push(ref)))

    async def _push(self, ref: str) -> None:
        try:
            digest = await self.builder.push(ref, self.auth, lambda line: None)
        except DeployqError as exc:
            self.log(f"WARNING: cache image {ref} not pushed: {exc.message}")
        else:
            self.pushed.append(f"{split_ref(ref)[0]}@{digest}")
            self.tagged[ref] = digest
            self.log(f"==> pushed cache image {ref}")

    async def wait(self) -> None:
        """Wait for the stage pushes started so far."""
        pushes, self._pushes = self._pushes, []
        await asyncio.gather(*pushes)

    async def cancel(self) -> None:
        """Stop the pushes still running (the job ended another way)."""
        pushes, self._pushes = self._pushes, []
        for task in pushes:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*pushes, return_exceptions=True)
