"""The shared build cache of one attempt: what it builds from, and the stage images it pushes.

The final image carries its own stage's cache inline (``BUILDKIT_INLINE_CACHE=1``); each
intermediate stage the target needs is built on its own and pushed as
``<repository>:cache-<branch>--<stage>`` (names: :mod:`deployq.buildcache`). Every build
``--cache-from``s the branch's images and the default branch's, so a build on another server,
or a new branch's first build, reuses what any server pushed before. A cache image that
cannot be pushed costs the next build time, never this job: it is a warning in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field, replace

from deployq.buildcache import cache_stages, cache_tag
from deployq.builders import Builder, BuildRequest, LogSink, RegistryAuth
from deployq.errors import DeployqError
from deployq.imageref import docker_tag


@dataclass(frozen=True)
class CachePlan:
    """``stages``: stage -> the cache image this build pushes for it, in build order;
    ``sources``: stage -> the images its build may reuse (this branch's, then the default
    branch's); ``final``: what the target's build may reuse (every stage's and the
    previous images of both branches)."""

    stages: dict[str, str] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)
    final: list[str] = field(default_factory=list)


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
            await self.builder.push(ref, self.auth, lambda line: None)
        except DeployqError as exc:
            self.log(f"WARNING: cache image {ref} not pushed: {exc.message}")
        else:
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
