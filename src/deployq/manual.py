"""One manual trigger: what an operator asks to build, from the CLI, the API or the console.

:func:`resolve_ref` decides what a ref typed by a person means (``main``, ``tags/v1``,
``refs/pull/7/head``, nothing at all) and refuses what git would refuse;
:func:`manual_trigger` turns it, with a commit and a priority, into the :class:`Trigger` the
store enqueues. ``deployq deploy``, ``POST /api/v1/apps/{app}/deployments`` and the console's
deploy dialog all call it, so the three agree on every case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deployq.errors import InvalidInput
from deployq.models import AppSpec, Priority, RefType, Trigger, TriggerKind
from deployq.validation import COMMIT_SHA_RE

#: a commit as people write it: 7 (git's short form) to 64 (sha256 repositories) hex digits
GLOB_CHARS = frozenset("*?[")
#: what git check-ref-format refuses anywhere in a ref (besides control characters)
_REFUSED_CHARS = frozenset(" ~^:\\")
_REVIEW_REF = re.compile(r"^refs/(pull|merge-requests)/([1-9][0-9]*)/(head|merge)$")
#: the branch column of a review ref: pr-7 (GitHub), mr-7 (GitLab), as webhooks record it
_REVIEW_PREFIX = {"pull": "pr", "merge-requests": "mr"}


@dataclass(frozen=True)
class ManualRef:
    """A ref resolved: the full ref to fetch, the branch name jobs show, and its kind."""

    ref: str
    branch: str
    kind: RefType


def default_branch(app: AppSpec) -> str:
    """The branch a deploy without a ref builds: the app's first branch that is not a glob."""
    for pattern in app.branches:
        if not GLOB_CHARS & set(pattern):
            return pattern
    patterns = ", ".join(app.branches) or "(none)"
    raise InvalidInput(
        f"app {app.name} builds branches matching {patterns}, none of them one branch: "
        "say which with a ref, e.g. --ref main"
    )


def resolve_ref(app: AppSpec, ref: str | None = None) -> ManualRef:
    """``main`` -> refs/heads/main (branch), ``tags/v1`` or ``refs/tags/v1`` -> a tag,
    ``refs/pull/7/head`` / ``refs/merge-requests/7/head`` -> a review; None -> the app's
    default branch. Raise InvalidInput, naming the rule, for anything git would refuse."""
    text = default_branch(app) if ref is None else ref.strip()
    if not text:
        raise InvalidInput("the ref is empty: give a branch, tags/NAME or a full ref")
    _check_format(text)
    if text.startswith("refs/"):
        full = text
    elif text.startswith("tags/"):
        full = f"refs/{text}"
    else:
        full = f"refs/heads/{text}"
    if full.startswith("refs/heads/"):
        return ManualRef(full, full.removeprefix("refs/heads/"), RefType.BRANCH)
    if full.startswith("refs/tags/"):
        return ManualRef(full, full.removeprefix("refs/tags/"), RefType.TAG)
    review = _REVIEW_REF.match(full)
    if review:
        return ManualRef(
            full, f"{_REVIEW_PREFIX[review.group(1)]}-{review.group(2)}", RefType.PULL_REQUEST
        )
    raise InvalidInput(
        f"ref {text!r} is not a branch, a tag (refs/tags/…) or a pull/merge request "
        "(refs/pull/N/head, refs/merge-requests/N/head)"
    )


def _check_format(ref: str) -> None:
    """git check-ref-format's rules, each refused with its own reason."""
    if GLOB_CHARS & set(ref):
        raise InvalidInput(f"ref {ref!r} is a pattern: say which branch to build")
    bad = sorted({c for c in ref if c in _REFUSED_CHARS or ord(c) < 32 or ord(c) == 127})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise InvalidInput(f"ref {ref!r} contains {shown}, which git does not allow in a ref")
    if ".." in ref or "@{" in ref or ref == "@":
        raise InvalidInput(f"ref {ref!r} contains '..' or '@{{', which git does not allow")
    if ref.startswith("/") or ref.endswith("/") or "//" in ref:
        raise InvalidInput(f"ref {ref!r} has an empty path component")
    for part in ref.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            raise InvalidInput(
                f"ref {ref!r}: component {part!r} starts with '.' or ends with '.lock'"
            )
    if ref.endswith("."):
        raise InvalidInput(f"ref {ref!r} ends with '.'")


def check_commit(commit: str | None) -> str | None:
    """A commit sha, full or short (7+ hex digits), lower-cased; InvalidInput otherwise."""
    if commit is None:
        return None
    text = commit.strip()
    if not COMMIT_SHA_RE.match(text):
        raise InvalidInput(f"commit {commit!r} is not a commit sha (7 to 64 hex digits)")
    return text.lower()


def manual_trigger(
    app: AppSpec,
    *,
    actor: str,
    pusher: str | None = None,
    ref: str | None = None,
    commit: str | None = None,
    priority: Priority | str | int | None = None,
) -> Trigger:
    """The trigger of a build an operator asked for: ``actor`` is recorded on the job's
    events (``alice``, ``token:ci``), ``pusher`` shown as who pushed (default: the actor)."""
    resolved = resolve_ref(app, ref)
    if priority is None or isinstance(priority, Priority):
        level = priority
    elif isinstance(priority, bool):
        raise InvalidInput("priority is low, normal, high or critical")
    else:
        try:
            level = Priority.parse(priority)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc
    return Trigger(
        kind=TriggerKind.MANUAL,
        provider="manual",
        app=app.name,
        ref=resolved.ref,
        ref_type=resolved.kind,
        commit_sha=check_commit(commit),
        priority=level,
        actor=actor,
        pusher=pusher or actor,
    )
