"""Zero-config builds: a plan from the repository's files, then a Dockerfile from the plan.

Providers are tried in PROVIDERS order (as Railpack does: PHP, Go, Ruby, Python, Node.js,
static) and the first whose files are present plans the build; ``provider`` in deployq.toml
picks one instead. Overrides (the app's options, deployq.toml, a Procfile ``web:`` line)
replace what was detected. See docs/zero-config.md.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import ModuleType

from deployq.builders.plan import golang, node, php, python, ruby, static
from deployq.builders.plan.context import BaseImages, Context
from deployq.builders.plan.model import Layout, Plan
from deployq.builders.plan.overrides import (
    Overrides,
    app_overrides,
    procfile_start,
    repo_overrides,
)
from deployq.builders.plan.render import dockerfile
from deployq.builders.plan.repo import Repo
from deployq.errors import PlanError

__all__ = [
    "BaseImages",
    "Layout",
    "Overrides",
    "Plan",
    "PlanError",
    "app_overrides",
    "dockerfile",
    "make_plan",
]

PROVIDERS: dict[str, ModuleType] = {m.NAME: m for m in (php, golang, ruby, python, node, static)}
LOOKED_FOR = (
    "composer.json, index.php, go.mod, Gemfile, pyproject.toml, requirements.txt, setup.py, "
    "Pipfile, package.json, Staticfile, index.html, public/, dist/"
)


def make_plan(root: Path, images: BaseImages | None = None, app: Overrides | None = None) -> Plan:
    """The plan for the directory ``root``; PlanError when there is none."""
    repo = Repo(root)
    ctx = Context(repo, images or BaseImages(), app or Overrides(), repo_overrides(repo))
    found = [(name, why) for name, module in PROVIDERS.items() if (why := module.matches(repo))]
    chosen = ctx.override("provider")
    if chosen is not None:
        name = str(chosen[0])
        first = f"provider {name} chosen by {chosen[1]}"
    elif found:
        name = found[0][0]
        first = f"provider {name} ({found[0][1]} found)"
        if len(found) > 1:
            others = ", ".join(f"{n} ({why})" for n, why in found[1:])
            first += f"; also seen: {others}; set `provider` in deployq.toml to choose"
    else:
        raise PlanError(
            f"no Dockerfile and no known runtime detected (looked for {LOOKED_FOR}): add a "
            "Dockerfile, set "
            "the app's --dockerfile to its path, or --context to the app's directory"
        )
    module = PROVIDERS[name]
    plan = module.plan(ctx)
    plan = _apply_overrides(ctx, plan)
    if not plan.start:
        raise PlanError(module.START_HINT)
    return replace(plan, reasons=(first, *plan.reasons))


def _apply_overrides(ctx: Context, plan: Plan) -> Plan:
    reasons = list(plan.reasons)
    changes: dict[str, object] = {}
    for field in ("install", "build", "start", "port"):
        found = ctx.override(field)
        if found is not None:
            changes[field] = found[0]
            reasons.append(f"{field} set by {found[1]}")
    if "install" in changes:  # which files it reads is unknown: it gets the whole source
        changes["dependency_files"] = ()
    if "start" not in changes and (procfile := procfile_start(ctx.repo)):
        changes["start"] = procfile
        reasons.append("start is the Procfile's web: process")
    if "start" in changes:  # the provider's warnings were about its own start command
        reasons = [r for r in reasons if not r.startswith("warning:")]
    return replace(plan, **changes, reasons=tuple(reasons))  # type: ignore[arg-type]
