"""Zero-config builds: detect a repository's runtime and write a Dockerfile for it.

Checked in this order, the first match wins: Python (pyproject.toml, requirements.txt or
setup.py), Node.js (package.json), Go (go.mod), static site (index.html at the top, or a
dist/ or public/ directory holding one). Dockerfiles come from the jinja2 templates in
builders/templates/; their base images are settings (DEPLOYQ_BASE_IMAGE_*).
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from deployq.config import Settings
from deployq.errors import BuildError

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("deployq.builders", "templates"),
    autoescape=False,  # Dockerfiles, not HTML
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)


@dataclass(frozen=True)
class Detection:
    """What was detected, why, and the Dockerfile generated for it."""

    runtime: str
    reason: str
    dockerfile_text: str


@dataclass(frozen=True)
class BaseImages:
    """Base images of generated Dockerfiles (Settings.base_image_*)."""

    python: str = "python:3.12-slim"
    node: str = "node:22-slim"
    go: str = "golang:1.23"
    go_runtime: str = "gcr.io/distroless/static-debian12"
    static: str = "busybox:stable"

    @classmethod
    def from_settings(cls, settings: Settings) -> BaseImages:
        return cls(
            python=settings.base_image_python,
            node=settings.base_image_node,
            go=settings.base_image_go,
            go_runtime=settings.base_image_go_runtime,
            static=settings.base_image_static,
        )


def detect(
    workspace: Path, dockerfile: str, *, base_images: BaseImages | None = None
) -> Detection | None:
    """None when ``dockerfile`` exists in ``workspace``; else a generated Dockerfile.

    Raises :class:`BuildError` when neither a Dockerfile nor a known runtime is found.
    """
    if (workspace / dockerfile).is_file():
        return None
    images = base_images or BaseImages()
    for probe in (_python, _node, _go, _static):
        found = probe(workspace, images)
        if found is not None:
            return found
    error = BuildError(
        f"no {dockerfile} in the repository and no known runtime detected (looked for "
        "pyproject.toml, requirements.txt, setup.py, package.json, go.mod, index.html, dist/, "
        "public/): add a Dockerfile, or set the app's --dockerfile to its path"
    )
    error.retryable = False
    raise error


def _render(name: str, **values: Any) -> str:
    return _TEMPLATES.get_template(f"{name}.Dockerfile.j2").render(**values)


def _exec_form(*argv: str) -> str:
    return json.dumps(list(argv))


def _python(root: Path, images: BaseImages) -> Detection | None:
    candidates = ("pyproject.toml", "requirements.txt", "setup.py")
    markers = [m for m in candidates if (root / m).is_file()]
    if not markers:
        return None
    has_pyproject = "pyproject.toml" in markers or "setup.py" in markers
    command = _exec_form("python", "-m", "http.server", "8000")
    project: dict[str, Any] = {}
    if (root / "pyproject.toml").is_file():
        try:
            project = tomllib.loads((root / "pyproject.toml").read_text()).get("project", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            project = {}
    scripts = project.get("scripts") or {}
    if (root / "manage.py").is_file():
        command = _exec_form("python", "manage.py", "runserver", "0.0.0.0:8000")
    elif scripts:
        command = _exec_form(str(next(iter(scripts))))
    else:
        for entry in ("main.py", "app.py", "server.py"):
            if (root / entry).is_file():
                command = _exec_form("python", entry)
                break
        else:
            if project.get("name"):
                module = re.sub(r"[^A-Za-z0-9_]", "_", str(project["name"])).lower()
                command = _exec_form("python", "-m", module)
    reason = f"Python project ({', '.join(markers)} found)"
    text = _render(
        "python",
        reason=reason,
        base_image=images.python,
        has_requirements="requirements.txt" in markers,
        has_pyproject=has_pyproject,
        command=command,
    )
    return Detection("python", reason, text)


def _node(root: Path, images: BaseImages) -> Detection | None:
    path = root / "package.json"
    if not path.is_file():
        return None
    try:
        package = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        error = BuildError(f"package.json is not valid JSON ({exc}): fix it or add a Dockerfile")
        error.retryable = False
        raise error from exc
    scripts = package.get("scripts") or {}
    manifests = ["package.json"]
    install = "npm install"
    if (root / "package-lock.json").is_file():
        manifests.append("package-lock.json")
        install = "npm ci"
    if scripts.get("start"):
        command = _exec_form("npm", "start")
    elif package.get("main"):
        command = _exec_form("node", str(package["main"]))
    else:
        command = _exec_form("node", "server.js" if (root / "server.js").is_file() else "index.js")
    reason = "Node.js project (package.json found" + (
        ", runs `npm start`)" if scripts.get("start") else ")"
    )
    text = _render(
        "node",
        reason=reason,
        base_image=images.node,
        manifests=manifests,
        install=install,
        has_build=bool(scripts.get("build")),
        command=command,
    )
    return Detection("node", reason, text)


def _go(root: Path, images: BaseImages) -> Detection | None:
    if not (root / "go.mod").is_file():
        return None
    package = "."
    cmd = root / "cmd"
    if not list(root.glob("*.go")) and cmd.is_dir():
        mains = sorted(p.name for p in cmd.iterdir() if p.is_dir())
        if mains:
            package = f"./cmd/{mains[0]}"
    reason = f"Go module (go.mod found, builds {package})"
    text = _render(
        "go",
        reason=reason,
        base_image=images.go,
        runtime_image=images.go_runtime,
        has_go_sum=(root / "go.sum").is_file(),
        package=package,
    )
    return Detection("go", reason, text)


def _static(root: Path, images: BaseImages) -> Detection | None:
    for site_dir in (".", "dist", "public"):
        if (root / site_dir / "index.html").is_file():
            where = "index.html" if site_dir == "." else f"{site_dir}/index.html"
            reason = f"static site ({where} found, served by busybox httpd on port 8080)"
            text = _render("static", reason=reason, base_image=images.static, site_dir=site_dir)
            return Detection("static", reason, text)
    return None
