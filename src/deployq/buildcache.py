"""The build cache every server shares: which Dockerfile stages get a cache image, and its name.

An image pushed with BuildKit's inline cache carries the cache of its own (final) stage only.
So every intermediate stage the target needs is also built on its own (``--target STAGE``)
and pushed as a tag of the app's repository, ``cache-<branch>--<stage>``; every build
``--cache-from``s all of them, its branch's and the default branch's, so a build on another
server, or the first build of a new branch, starts from what was built before (docs/cache.md).

Retention tells cache tags apart with :func:`parse_cache_tag`: ``<branch>`` is the branch's
docker tag with runs of ``-`` squeezed, so the first ``--`` ends it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from deployq.imageref import MAX_TAG_CHARS, docker_tag

CACHE_TAG_PREFIX = "cache-"
STAGE_SEPARATOR = "--"
#: room kept for the stage name when a branch name is long
MAX_STAGE_CHARS = 60

_DASHES = re.compile(r"-{2,}")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9._-]*$")
_ESCAPE_DIRECTIVE = re.compile(r"^#\s*escape\s*=\s*([\\`])\s*$", re.IGNORECASE)
_FROM_FLAG = re.compile(r"--from=(\S+)", re.IGNORECASE)
_MOUNT_FROM = re.compile(r"--mount=\S*?\bfrom=([^,\s]+)", re.IGNORECASE)
_HEREDOC = re.compile(r"<<-?\s*[\"']?([A-Za-z_][A-Za-z0-9_]*)[\"']?")


@dataclass(frozen=True)
class CacheTag:
    """What a cache tag names: the branch (as squeezed in the tag) and the stage."""

    branch: str
    stage: str


def branch_slug(branch: str) -> str:
    """The branch as it appears in cache tags: its docker tag, never containing ``--``."""
    return _DASHES.sub("-", docker_tag(branch)).strip("-") or "unnamed"


def cache_tag(branch: str, stage: str) -> str:
    """``cache-<branch>--<stage>``, at most 128 characters (a long branch name is cut)."""
    stage = stage.lower()[:MAX_STAGE_CHARS]
    room = MAX_TAG_CHARS - len(CACHE_TAG_PREFIX) - len(STAGE_SEPARATOR) - len(stage)
    slug = branch_slug(branch)[:room].rstrip("-") or "unnamed"
    return f"{CACHE_TAG_PREFIX}{slug}{STAGE_SEPARATOR}{stage}"


def parse_cache_tag(tag: str) -> CacheTag | None:
    """The branch and stage of a cache tag; None for any other tag (``<sha7>``, a branch)."""
    if not tag.startswith(CACHE_TAG_PREFIX):
        return None
    branch, sep, stage = tag.removeprefix(CACHE_TAG_PREFIX).partition(STAGE_SEPARATOR)
    if not sep or not branch or not stage:
        return None
    return CacheTag(branch, stage)


# -- the stages of a Dockerfile ----------------------------------------------------------------


@dataclass
class Stage:
    """One ``FROM`` of a Dockerfile: its index, its name (None when it has none), and the
    stages it reads from (``FROM <stage>``, ``COPY --from``, ``RUN --mount=...,from=``), by
    name or index as written."""

    index: int
    name: str | None
    uses: list[str] = field(default_factory=list)


def dockerfile_stages(text: str) -> list[Stage]:
    """The stages of a Dockerfile, in order."""
    stages: list[Stage] = []
    for instruction in _instructions(text):
        keyword, _, rest = instruction.partition(" ")
        keyword = keyword.upper()
        words = rest.split()
        if keyword == "FROM":
            words = [w for w in words if not w.startswith("--")]
            name = None
            if len(words) >= 3 and words[1].lower() == "as":
                name = words[2].lower()
            stage = Stage(len(stages), name if name and _STAGE_NAME.match(name) else None)
            if words:
                stage.uses.append(words[0].lower())
            stages.append(stage)
        elif stages and keyword in ("COPY", "ADD"):
            stages[-1].uses += [m.lower() for m in _FROM_FLAG.findall(rest)]
        elif stages and keyword == "RUN":
            stages[-1].uses += [m.lower() for m in _MOUNT_FROM.findall(rest)]
    return stages


def cache_stages(text: str, target: str | None = None) -> list[str]:
    """The named stages that ``target`` (default: the last stage) needs, itself excluded, in
    the order they are built: each gets a cache image. Empty for a one-stage Dockerfile, or
    when ``target`` is not a stage (the build then fails with docker's own message)."""
    stages = dockerfile_stages(text)
    if not stages:
        return []
    by_name = {s.name: s for s in stages if s.name}
    if target is None:
        final = stages[-1]
    elif target.lower() in by_name:
        final = by_name[target.lower()]
    else:
        return []
    needed: set[int] = set()
    todo = [final]
    while todo:
        stage = todo.pop()
        for use in stage.uses:
            dep = by_name.get(use)
            if dep is None and use.isdigit() and int(use) < len(stages):
                dep = stages[int(use)]
            # a stage reads only from earlier ones; anything else is an image
            if dep is not None and dep.index < stage.index and dep.index not in needed:
                needed.add(dep.index)
                todo.append(dep)
    return [s.name for s in stages if s.index in needed and s.name]


def _instructions(text: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments and heredoc
    bodies left out."""
    lines = text.splitlines()
    escape = "\\"
    for line in lines:  # parser directives come first, before any instruction or blank
        directive = _ESCAPE_DIRECTIVE.match(line.strip())
        if directive:
            escape = directive.group(1)
        if not line.strip().startswith("#"):
            break
    instructions: list[str] = []
    current = ""
    heredoc: str | None = None
    for raw in lines:
        line = raw.strip()
        if heredoc is not None:
            if line == heredoc:
                heredoc = None
            continue
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith(escape):
            current += line[: -len(escape)] + " "
            continue
        current += line
        instructions.append(current.strip())
        marker = _HEREDOC.search(current)
        if marker and current.split(" ", 1)[0].upper() in ("RUN", "COPY", "ADD"):
            heredoc = marker.group(1)
        current = ""
    if current.strip():
        instructions.append(current.strip())
    return instructions
