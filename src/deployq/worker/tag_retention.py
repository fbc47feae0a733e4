"""Registry tag retention (``deployq prune``): per app, the newest N image tags of each branch
stay in the registry, older ones are deleted through the registry API. docs/retention.md.

A build pushes ``<sha7>`` and ``<branch>`` (``worker.pipeline.image_names``). Per branch the
``<sha7>`` tags are ranked by the newest job that pushed them; the first N stay, and every
``<branch>`` tag stays (it names the branch's newest image). Never deleted:

- a tag no job of the app pushed (other tools' tags);
- a build cache tag ``cache-<branch>--<stage>`` (docs/cache.md) of the default branch, or of
  a branch built within DEPLOYQ_RETENTION (older ones go: the branch is gone or idle);
- an image a target runs, one of the ``keep_releases`` releases before it (rollback), one a
  queued or running job will deploy, or the ``<sha7>`` a queued or running build will push
  again (``store.retention.images_in_use``);
- an image another kept tag names: the registry deletes a manifest by digest, and every tag
  naming that digest goes with it.

:func:`plan_tags` decides (pure); :func:`prune_app_tags` reads the registry and the store,
and deletes unless it is a dry run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from deployq.buildcache import CacheTag, branch_slug, parse_cache_tag
from deployq.config import Settings
from deployq.errors import DeployqError, RegistryError
from deployq.imageref import ImageRef, InvalidImageRef, docker_tag, parse, same_host
from deployq.manual import default_branch
from deployq.models import App, PushedImage
from deployq.registry import RegistryClient
from deployq.store import Store
from deployq.worker.pipeline import image_target

#: manifest HEAD requests in flight at once while reading a repository's tags
HEAD_CONCURRENCY = 8
#: releases kept per target for rollback when the app has no deploy settings
DEFAULT_KEEP_RELEASES = 3


@dataclass
class TagPlan:
    """What retention does with a repository's tags: ``keep`` tag -> why, ``delete`` digest ->
    the tags naming it, ``spared`` tag -> why a tag beyond N stays anyway."""

    keep: dict[str, str] = field(default_factory=dict)
    delete: dict[str, list[str]] = field(default_factory=dict)
    spared: dict[str, str] = field(default_factory=dict)

    @property
    def deleted_tags(self) -> list[str]:
        return sorted(t for tags in self.delete.values() for t in tags)


def plan_tags(
    tags: Mapping[str, str],
    pushed: Sequence[PushedImage],
    *,
    keep: int,
    in_use_digests: set[str],
    in_use_tags: set[str],
    cache_idle_before: datetime | None = None,
    default_branch: str | None = None,
) -> TagPlan:
    """Decide, for the repository's ``tags`` (tag -> digest), what goes.

    ``pushed``: the app's builds into this repository, newest first; ``keep``: ``<sha7>`` tags
    kept per branch; ``in_use_*``: images that must stay (digests, and tags by name). Build
    cache tags (``cache-<branch>--<stage>``) go when their branch's newest build is older
    than ``cache_idle_before`` (None: they all stay), never the ``default_branch``'s."""
    plan = TagPlan()
    branch_tags = {docker_tag(p.branch) for p in pushed}
    last_build: dict[str, datetime] = {}  # branch slug of cache tags -> its newest build
    for image in pushed:
        slug = branch_slug(image.branch)
        last_build[slug] = max(image.at, last_build.get(slug, image.at))
    ranked: dict[str, list[str]] = {}  # branch -> its sha7 tags present, newest first
    for image in pushed:
        sha7 = image.commit_sha[:7]
        mine = ranked.setdefault(image.branch, [])
        if sha7 in tags and sha7 not in mine:
            mine.append(sha7)
    ours = {t for mine in ranked.values() for t in mine}
    for branch, mine in ranked.items():
        for sha7 in mine[:keep]:
            plan.keep.setdefault(sha7, f"one of the newest {keep} of {branch}")
    for tag in tags:
        if tag in plan.keep:
            continue
        cache = parse_cache_tag(tag)
        if tag in branch_tags:
            plan.keep[tag] = "a branch's newest image"
        elif cache is not None:
            why = _cache_kept(cache, last_build, cache_idle_before, default_branch)
            if why is not None:
                plan.keep[tag] = why
        elif tag not in ours:
            plan.keep[tag] = "not pushed by deployq"
        elif tag in in_use_tags:
            plan.keep[tag] = "in use: a release, a rollback or a queued job"
    candidates = [t for t in tags if t not in plan.keep]
    kept_digests = {tags[t]: t for t in plan.keep}
    for tag in sorted(candidates):
        digest = tags[tag]
        if digest in in_use_digests:
            plan.spared[tag] = "its image is in use: a release, a rollback or a queued job"
        elif digest in kept_digests:
            plan.spared[tag] = f"its image is also tagged {kept_digests[digest]}, which stays"
        else:
            plan.delete.setdefault(digest, []).append(tag)
    return plan


def _cache_kept(
    cache: CacheTag,
    last_build: Mapping[str, datetime],
    idle_before: datetime | None,
    default_branch: str | None,
) -> str | None:
    """Why a build cache tag stays, or None when its branch is idle (docs/cache.md)."""
    if default_branch is not None and cache.branch == branch_slug(default_branch):
        return "the default branch's build cache"
    built = last_build.get(cache.branch)
    if built is None:
        return "build cache of a branch no build of this app names"
    if idle_before is None or built >= idle_before:
        return f"build cache of a branch built {built:%Y-%m-%d}"
    return None


@dataclass
class AppTags:
    """The outcome for one app (``prune --json``'s ``registry`` entries). ``tags``: how many
    the repository has (None: not looked at, ``note`` says why)."""

    app: str
    keep: int
    repository: str = ""
    tags: int | None = None
    deleted: list[str] = field(default_factory=list)
    spared: dict[str, str] = field(default_factory=dict)
    note: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "keep": self.keep,
            "repository": self.repository,
            "tags": self.tags,
            "deleted": self.deleted,
            "spared": self.spared,
            "note": self.note,
            "error": self.error,
        }


#: the settings naming the registry in use, made when first needed (the embedded registry is
#: started only when an app has pushed images)
RegistrySettings = Callable[[], Awaitable[Settings]]


async def prune_tags(
    store: Store,
    apps: Sequence[App],
    registry_settings: RegistrySettings,
    *,
    keep: int | None,
    dry_run: bool,
) -> list[AppTags]:
    """:func:`prune_app_tags` for each app that pushed images; an app that fails is
    reported, the others go on. ``keep``: tags per branch for every app; None: each app's
    ``keep_tags``, else DEPLOYQ_REGISTRY_KEEP_TAGS."""
    results: list[AppTags] = []
    settings: Settings | None = None
    for app in apps:
        result = AppTags(app.name, keep or app.keep_tags or store.settings.registry_keep_tags)
        results.append(result)
        try:
            pushed = await store.retention.pushed_images(app.id)
            if not pushed:
                result.note = "no build pushed an image yet"
                continue
            settings = settings or await registry_settings()
            # the login the app's images are pushed with (its own, or deployq's)
            async with RegistryClient.from_settings(settings, app) as registry:
                await prune_app_tags(
                    store, registry, settings, app, pushed, result, dry_run=dry_run
                )
        except DeployqError as exc:
            result.error = exc.message
    return results


async def prune_app_tags(
    store: Store,
    registry: RegistryClient,
    settings: Settings,
    app: App,
    pushed: Sequence[PushedImage],
    result: AppTags,
    *,
    dry_run: bool,
) -> None:
    """Plan the app's tags (``result.keep`` per branch), then (unless ``dry_run``) delete
    what the plan names, checking just before that no kept tag has come to name a doomed
    image meanwhile (a new push). ``pushed``: ``store.retention.pushed_images(app.id)``."""
    target = image_target(app, settings)
    result.repository = target.name
    if target.domain is None or not same_host(target.domain, registry.host):
        raise RegistryError(
            f"the image {target.name} is not on the registry {registry.url}: its tags are left "
            "alone"
        )
    tags = await _digests(registry, target.path, await registry.tags(target.path))
    result.tags = len(tags)
    keep_releases = app.deploy.keep_releases if app.deploy else DEFAULT_KEEP_RELEASES
    in_use = await store.retention.images_in_use(app.name, keep_releases=keep_releases)
    in_use_refs = [_in_repository(image.image_ref, target) for image in in_use]
    plan = plan_tags(
        tags,
        [p for p in pushed if _in_repository(p.image_ref, target)],
        cache_idle_before=datetime.now(UTC) - timedelta(seconds=store.settings.retention),
        default_branch=_default_branch(app),
        keep=result.keep,
        in_use_digests={image.digest for image in in_use if image.digest},
        in_use_tags={ref.tag for ref in in_use_refs if ref is not None and ref.tag}
        | {image.commit_sha[:7] for image in in_use if image.commit_sha},
    )
    result.spared = plan.spared
    if dry_run or not plan.delete:
        result.deleted = plan.deleted_tags
        return
    now = await _digests(registry, target.path, list(plan.keep))
    for digest, doomed in plan.delete.items():
        if digest in now.values():
            for tag in doomed:
                result.spared[tag] = "a kept tag came to name its image while pruning"
            continue
        await registry.delete_manifest(target.path, digest)
        result.deleted += doomed
    result.deleted.sort()


async def _digests(registry: RegistryClient, repository: str, tags: list[str]) -> dict[str, str]:
    """tag -> digest for the tags that (still) exist; HEAD_CONCURRENCY requests at a time
    (one held session: a repository of thousands of tags takes seconds, not minutes)."""
    gate = asyncio.Semaphore(HEAD_CONCURRENCY)

    async def head(tag: str) -> str | None:
        async with gate:
            return await registry.manifest_digest(repository, tag)

    digests = await asyncio.gather(*(head(tag) for tag in tags))
    return {tag: digest for tag, digest in zip(tags, digests, strict=True) if digest}


def _default_branch(app: App) -> str | None:
    try:
        return default_branch(app)
    except DeployqError:  # the app builds only branch patterns
        return None


def _in_repository(image_ref: str | None, target: ImageRef) -> ImageRef | None:
    """``image_ref`` parsed, when it names ``target``'s repository (same host and path)."""
    if not image_ref:
        return None
    try:
        ref = parse(image_ref)
    except InvalidImageRef:
        return None
    if ref.path != target.path or ref.domain is None or target.domain is None:
        return None
    return ref if same_host(ref.domain, target.domain) else None
