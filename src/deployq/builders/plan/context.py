"""What a provider works with: the repository, the base image settings and the overrides."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from deployq.builders.plan import versions
from deployq.builders.plan.overrides import Overrides
from deployq.builders.plan.repo import Repo
from deployq.config import Settings

VERSION_PLACEHOLDER = "{version}"


@dataclass(frozen=True)
class BaseImages:
    """Base images of generated Dockerfiles (Settings.base_image_*).

    ``{version}`` in a name is replaced by the version family the plan chose.
    """

    python: str = "python:{version}-slim"
    node: str = "node:{version}-slim"
    bun: str = "oven/bun:{version}-slim"
    go: str = "golang:{version}"
    go_runtime: str = "gcr.io/distroless/static-debian12"
    static: str = "busybox:stable"
    php: str = "php:{version}-cli"
    composer: str = "composer:2"
    ruby: str = "ruby:{version}-slim"

    @classmethod
    def from_settings(cls, settings: Settings) -> BaseImages:
        """Each field from the setting ``base_image_<field>``."""
        return cls(**{f.name: getattr(settings, f"base_image_{f.name}") for f in fields(cls)})


def image(template: str, version: str | None) -> str:
    """``python:{version}-slim`` + ``3.12`` -> ``python:3.12-slim``."""
    return template.replace(VERSION_PLACEHOLDER, version or "latest")


@dataclass(frozen=True)
class Context:
    """One plan in the making."""

    repo: Repo
    images: BaseImages
    app: Overrides
    repo_config: Overrides

    def override(self, name: str) -> tuple[Any, str] | None:
        """(value, where it came from) of the highest override that sets ``name``."""
        for layer in (self.app, self.repo_config):
            value = getattr(layer, name)
            if value is not None:
                return value, layer.source
        return None

    def version(
        self, language: versions.Language, candidates: list[tuple[str, str | None]]
    ) -> versions.Version:
        """The version family: an override, else the first file that names one, else the
        language's default."""
        found = self.override("version")
        override = None
        if found is not None:
            value, source = found
            override = (str(value), f"{source} (runtime version)")
        return versions.pick(language, override, candidates)
