"""What ``deployq app add`` checks at once, so a typo shows now and not in the first build.

The repository answers ``git ls-remote`` with the app's credentials (or the global ones),
each branch that is not a pattern exists there, and the registry accepts deployq's login.
``--no-check`` skips it all (offline set-ups, a repository that is not there yet).
"""

from __future__ import annotations

import asyncio

from deployq.config import Settings
from deployq.embedded_registry import with_registry
from deployq.errors import DeployqError
from deployq.gitauth import app_git_auth, ls_remote
from deployq.manual import GLOB_CHARS
from deployq.models import AppSpec
from deployq.registry import RegistryClient

#: seconds each check may take
CHECK_TIMEOUT_S = 20.0


async def check_app(spec: AppSpec, settings: Settings) -> list[str]:
    """Every problem found, one sentence each (empty: all is well)."""
    repository, registry = await asyncio.gather(
        check_repository(spec, settings), _check_registry(settings)
    )
    return repository + registry


async def check_repository(spec: AppSpec, settings: Settings) -> list[str]:
    """The repository answers with the app's credentials (its own, else the global ones)
    and has the app's branches."""
    try:
        with app_git_auth(spec, settings) as auth:
            heads = await ls_remote(spec.repo_url, auth=auth, timeout_s=CHECK_TIMEOUT_S)
    except DeployqError as exc:
        return [f"repository: {exc.message}"]
    branches = sorted(ref.removeprefix("refs/heads/") for ref in heads)
    has = ", ".join(branches[:10]) + (", …" if len(branches) > 10 else "") or "no branches"
    return [
        f"branch {name!r} does not exist in {spec.repo_url} (it has: {has}); fix --branch"
        for name in spec.branches
        if not GLOB_CHARS & set(name) and f"refs/heads/{name}" not in heads
    ]


async def _check_registry(settings: Settings) -> list[str]:
    try:
        in_use = await asyncio.to_thread(with_registry, settings)
        await RegistryClient.from_settings(in_use, timeout_s=CHECK_TIMEOUT_S).check_login()
    except DeployqError as exc:
        return [f"registry: {exc.message}"]
    return []
