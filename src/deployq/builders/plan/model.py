"""The build plan: what zero-config detection decided, before any Dockerfile is written.

A plan is plain data. ``render.dockerfile(plan)`` turns it into a Dockerfile, ``as_json``
into what ``deployq plan --json`` prints, ``describe`` into the lines of the job log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Layout(StrEnum):
    """The shape of the generated Dockerfile (one jinja2 template each)."""

    APP = "app"
    """Build stage installs and builds in /app; the runtime stage copies /app and runs it."""
    BINARY = "go"
    """Build stage compiles one binary; the runtime stage holds only that binary."""
    STATIC = "static"
    """Files (from the repository or a build stage) served by busybox httpd."""


#: numeric user and group of the runtime stage: no passwd entry needed in any base image
RUNTIME_UID = 10001


@dataclass(frozen=True)
class Plan:
    """How to build and run a repository that has no Dockerfile.

    ``start`` is a shell command line run from /app with ``$PORT`` set; ``setup`` (the
    package manager itself: not overridable), ``install``, ``build`` and ``prune`` are shell
    command lines run in the build stage, in that order.
    """

    provider: str
    version: str | None
    version_source: str
    package_manager: str | None
    lockfile: str | None
    framework: str | None
    install: str | None
    build: str | None
    start: str | None
    port: int
    build_image: str
    runtime_image: str
    layout: Layout = Layout.APP
    setup: str | None = None
    #: files and directories copied before ``install`` so dependencies get their own layer
    dependency_files: tuple[str, ...] = ()
    #: removes what only the build needed (devDependencies), after ``build``
    prune: str | None = None
    #: directory served by a STATIC layout (relative to the repository or the build stage)
    output_dir: str | None = None
    #: (image, path) of tools copied into the build stage only (composer)
    build_tools: tuple[tuple[str, str], ...] = ()
    build_env: dict[str, str] = field(default_factory=dict)
    runtime_env: dict[str, str] = field(default_factory=dict)
    #: why each decision was taken, in order
    reasons: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """What ``deployq plan --json`` prints (stable keys, like ``railpack plan``)."""
        return {
            "provider": self.provider,
            "version": self.version,
            "version_source": self.version_source,
            "package_manager": self.package_manager,
            "lockfile": self.lockfile,
            "framework": self.framework,
            "setup": self.setup,
            "install": self.install,
            "build": self.build,
            "prune": self.prune,
            "start": self.start,
            "port": self.port,
            "build_image": self.build_image,
            "runtime_image": self.runtime_image,
            "layout": self.layout.value,
            "dependency_files": list(self.dependency_files),
            "output_dir": self.output_dir,
            "reasons": list(self.reasons),
        }

    def describe(self) -> list[str]:
        """The plan as short aligned lines, for people (job log, ``deployq plan``)."""
        version = f"{self.version} (from {self.version_source})" if self.version else "-"
        manager = self.package_manager or "-"
        if self.lockfile:
            manager += f" ({self.lockfile})"
        rows = [
            ("provider", self.provider + (f" / {self.framework}" if self.framework else "")),
            ("version", version),
            ("packages", manager),
            *([("setup", self.setup)] if self.setup else []),
            ("install", self.install or "-"),
            ("build", self.build or "-"),
            ("start", self.start or "-"),
            ("port", str(self.port)),
            ("images", f"build {self.build_image}, runtime {self.runtime_image}"),
        ]
        lines = [f"{name:<9} {value}" for name, value in rows]
        lines.extend(f"because   {reason}" for reason in self.reasons)
        return lines
