"""Zero-config builds for the pipeline: a plan (builders/plan/), then its Dockerfile."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deployq.builders.plan import BaseImages, Overrides, Plan, dockerfile, make_plan

__all__ = ["BaseImages", "Detection", "detect"]


@dataclass(frozen=True)
class Detection:
    """The plan for a repository without a Dockerfile, and the Dockerfile made from it."""

    plan: Plan
    dockerfile_text: str

    @property
    def runtime(self) -> str:
        return self.plan.provider


def detect(
    workspace: Path,
    dockerfile_name: str,
    *,
    base_images: BaseImages | None = None,
    overrides: Overrides | None = None,
) -> Detection | None:
    """None when ``dockerfile_name`` exists in ``workspace``; else a plan and its Dockerfile.

    Raises :class:`~deployq.errors.PlanError` (a BuildError that is not retried) when the
    repository has neither a Dockerfile nor anything a provider can plan.
    """
    if (workspace / dockerfile_name).is_file():
        return None
    plan = make_plan(workspace, base_images, overrides)
    return Detection(plan, dockerfile(plan))
