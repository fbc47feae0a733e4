"""Zero-config detection on small sample projects; the static site is really built and run."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from deployq.builders import BuildKitBuilder, EngineBuilder, detect
from deployq.builders.base import BuildRequest
from deployq.builders.detect import BaseImages
from deployq.config import Settings
from deployq.errors import BuildError
from deployq.testing.services import DOCKER, docker_cmd

INSTRUCTIONS = {"FROM", "ENV", "WORKDIR", "COPY", "RUN", "EXPOSE", "CMD", "ENTRYPOINT", "ARG"}


def project(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    return root


def lint(text: str, workspace: Path) -> list[tuple[str, str]]:
    """(instruction, arguments) of each line; fails on unknown instructions or missing sources."""
    steps = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        assert instruction in INSTRUCTIONS, line
        if instruction == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                assert (workspace / source).exists(), f"{line}: {source} is not in the project"
        if instruction in ("CMD", "ENTRYPOINT"):
            assert isinstance(json.loads(args), list), line
        steps.append((instruction, args))
    return steps


def test_python_project_with_requirements(tmp_path: Path) -> None:
    root = project(tmp_path, {"requirements.txt": "flask\n", "app.py": "print('hi')\n"})
    images = BaseImages(python="registry.local/python:3.12")

    found = detect(root, "Dockerfile", base_images=images)

    assert found is not None and found.runtime == "python"
    assert "requirements.txt" in found.reason
    steps = lint(found.dockerfile_text, root)
    assert steps[0] == ("FROM", "registry.local/python:3.12")
    assert ("RUN", "pip install -r requirements.txt") in steps
    assert steps[-1] == ("CMD", '["python", "app.py"]')


def test_python_project_with_pyproject_script(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {"pyproject.toml": '[project]\nname = "web-app"\n[project.scripts]\nweb = "web:main"\n'},
    )

    found = detect(root, "Dockerfile")

    assert found is not None and found.runtime == "python"
    steps = lint(found.dockerfile_text, root)
    assert steps[0] == ("FROM", "python:3.12-slim")
    assert ("RUN", "pip install .") in steps
    assert steps[-1] == ("CMD", '["web"]')


def test_node_project_with_lockfile_and_build(tmp_path: Path) -> None:
    package = {"name": "web", "scripts": {"start": "node server.js", "build": "vite build"}}
    root = project(tmp_path, {"package.json": json.dumps(package), "package-lock.json": "{}"})

    found = detect(root, "Dockerfile", base_images=BaseImages(node="node:22-alpine"))

    assert found is not None and found.runtime == "node"
    assert "npm start" in found.reason
    steps = lint(found.dockerfile_text, root)
    assert steps[0] == ("FROM", "node:22-alpine")
    assert ("COPY", "package.json package-lock.json ./") in steps
    assert ("RUN", "npm ci") in steps and ("RUN", "npm run build") in steps
    assert steps[-1] == ("CMD", '["npm", "start"]')


def test_go_module_builds_its_command_into_a_static_image(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {"go.mod": "module example.com/svc\n\ngo 1.23\n", "cmd/server/main.go": "package main\n"},
    )

    found = detect(root, "Dockerfile")

    assert found is not None and found.runtime == "go"
    steps = lint(found.dockerfile_text, root)
    froms = [args for instruction, args in steps if instruction == "FROM"]
    assert froms == ["golang:1.23 AS build", "gcr.io/distroless/static-debian12"]
    assert any("go build" in args and "./cmd/server" in args for _, args in steps)
    assert steps[-1] == ("ENTRYPOINT", '["/app"]')


def test_an_existing_dockerfile_wins(tmp_path: Path) -> None:
    root = project(tmp_path, {"Dockerfile": "FROM scratch\n", "package.json": "{}"})

    assert detect(root, "Dockerfile") is None


def test_nothing_recognisable_is_a_clear_build_error(tmp_path: Path) -> None:
    root = project(tmp_path, {"README.md": "just words"})

    with pytest.raises(BuildError, match="no Dockerfile in the repository and no known runtime"):
        detect(root, "Dockerfile")


def test_base_images_come_from_settings() -> None:
    settings = Settings(base_image_static="mirror.local/busybox:1", base_image_go="golang:1.22")

    images = BaseImages.from_settings(settings)

    assert (images.static, images.go, images.node) == (
        "mirror.local/busybox:1",
        "golang:1.22",
        "node:22-slim",
    )


@pytest.mark.docker
@pytest.mark.parametrize("backend", ["buildkit", "engine"])
async def test_static_site_is_built_and_serves_its_files(
    backend: str, docker_host: str, base_image: str, tmp_path: Path
) -> None:
    page = f"<h1>{uuid.uuid4().hex}</h1>\n"
    root = project(tmp_path, {"index.html": page, ".git/config": "[core]\n"})
    found = detect(root, "Dockerfile", base_images=BaseImages(static=base_image))
    assert found is not None and found.runtime == "static"
    assert "index.html found" in found.reason
    tag = f"deployq-test/static-{uuid.uuid4().hex[:8]}:latest"
    builder = BuildKitBuilder(docker_host, DOCKER) if backend == "buildkit" else None
    lines: list[str] = []
    try:
        image_id = await (builder or EngineBuilder(docker_host)).build(
            BuildRequest(root, dockerfile_text=found.dockerfile_text, tags=[tag]), lines.append
        )
        served = docker_cmd(docker_host, "run", "--rm", image_id, "cat", "/www/index.html")
        listing = docker_cmd(docker_host, "run", "--rm", image_id, "ls", "-a", "/www")
        command = docker_cmd(
            docker_host, "image", "inspect", "--format", "{{json .Config.Cmd}}", tag
        )
    finally:
        docker_cmd(docker_host, "rmi", "--force", tag, check=False)
    assert served.stdout == page
    assert ".git" not in listing.stdout.split()
    assert re.search(r"httpd.*-p.*8080.*-h.*/www", command.stdout)
