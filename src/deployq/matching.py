"""Does a push concern an app? Branch and tag rules, PR builds, path globs, [skip ci].

Pure functions: the store calls them inside enqueue, the webhook receiver to explain
deliveries. Each returns ``None`` when the app should build, or the reason it should not.
"""

from __future__ import annotations

import re

from deployq.models import AppSpec, RefType, Trigger

SKIP_CI_RE = re.compile(r"\[(skip ci|ci skip|no ci|skip deployq)\]", re.IGNORECASE)


def glob_match(pattern: str, value: str) -> bool:
    """Glob as in CI tools: ``*`` stays within a path segment, ``**`` crosses ``/``.

    ``release/*`` matches ``release/1.2``; ``services/api/**`` matches every file below it;
    ``**/*.py`` matches ``a.py`` and ``x/y/a.py``.
    """
    return re.fullmatch(_glob_regex(pattern), value) is not None


def _glob_regex(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def skip_reason(app: AppSpec, trigger: Trigger) -> str | None:
    """Why this trigger does not build this app, or None when it does."""
    if trigger.kind.value in ("manual", "retry"):
        return None  # an operator asked for exactly this
    if trigger.ref_type is RefType.TAG:
        if not app.build_tags:
            return f"app {app.name} does not build tags (app add --tags turns them on)"
    elif trigger.ref_type is RefType.PULL_REQUEST:
        if not app.build_prs:
            return f"app {app.name} does not build pull requests (app add --prs turns them on)"
    else:
        branch = trigger.short_ref
        if not any(glob_match(pattern, branch) for pattern in app.branches):
            return (
                f"branch {branch} is not one that app {app.name} builds ({', '.join(app.branches)})"
            )
    if trigger.commit_message and SKIP_CI_RE.search(trigger.commit_message):
        return "the head commit asks to skip CI"
    changed = trigger.changed_paths
    if app.paths and changed is not None:
        if not any(glob_match(p, path) for p in app.paths for path in changed):
            return (
                f"no file changed under {', '.join(app.paths)}, the paths app {app.name} builds for"
            )
    return None


def deleted_reason(ref: str) -> str:
    """Why a push that deletes a branch or tag builds nothing, as a sentence."""
    for prefix, kind in (("refs/heads/", "branch"), ("refs/tags/", "tag")):
        if ref.startswith(prefix):
            return f"the push deleted {kind} {ref.removeprefix(prefix)}: there is nothing to build"
    return f"the push deleted {ref}: there is nothing to build"
