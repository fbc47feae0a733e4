"""Go: modules, the go.mod ``go`` line, the main package at the top or under ``cmd/``.

The binary is built with CGO off into /app/server; the runtime image holds only it.
"""

from __future__ import annotations

import re

from deployq.builders.plan import versions
from deployq.builders.plan.context import Context, image
from deployq.builders.plan.model import Layout, Plan
from deployq.builders.plan.repo import Repo, tool_version

NAME = "go"
PORT = 8080
BINARY = "/app/server"
START_HINT = (
    "no main package found (looked for `package main` at the top and in cmd/*): set the "
    "app's --build-cmd to build it into /app/server"
)
_GO_LINE = re.compile(r"^go\s+(\d+\.\d+(?:\.\d+)?)\s*$", re.MULTILINE)
_MODULE = re.compile(r"^module\s+(\S+)", re.MULTILINE)
_REPLACE = re.compile(r"=>\s*(\.\.?/[^\s]*)")
_MAIN = re.compile(r"^package\s+main\b", re.MULTILINE)
#: preferred names when cmd/ holds several commands
_PREFERRED = ("server", "api", "web", "app")


def matches(repo: Repo) -> str | None:
    return repo.first("go.mod")


def _is_main(repo: Repo, folder: str) -> bool:
    pattern = "*.go" if folder == "." else f"{folder}/*.go"
    sources = [name for name in repo.glob(pattern) if not name.endswith("_test.go")]
    return any(_MAIN.search(repo.text(name) or "") for name in sources)


def _package(repo: Repo, module: str | None) -> tuple[str | None, str]:
    """(package to build, why)."""
    if _is_main(repo, "."):
        return ".", "package main at the top"
    commands = [name for name in repo.subdirs("cmd") if _is_main(repo, f"cmd/{name}")]
    if not commands:
        return None, "no package main"
    if len(commands) == 1:
        return f"./cmd/{commands[0]}", f"the only command in cmd/ ({commands[0]})"
    preferred = [module.rsplit("/", 1)[-1]] if module else []
    for name in [*preferred, *_PREFERRED]:
        if name in commands:
            return f"./cmd/{name}", f"cmd/{name} chosen among {', '.join(commands)}"
    return f"./cmd/{commands[0]}", f"cmd/{commands[0]} chosen (first of {', '.join(commands)})"


def plan(ctx: Context) -> Plan:
    repo = ctx.repo
    gomod = repo.text("go.mod") or ""
    go_line = _GO_LINE.search(gomod)
    version = ctx.version(
        versions.GO,
        [
            (".tool-versions", tool_version(repo, "golang", "go")),
            ("go.mod go line", go_line.group(1) if go_line else None),
        ],
    )
    module = _MODULE.search(gomod)
    package, why = _package(repo, module.group(1) if module else None)
    reasons = [version.reason(), f"builds {package or '-'}: {why}"]
    files: list[str] = []
    install = None
    if repo.is_dir("vendor"):
        reasons.append("vendor/ found: modules come from it, not from the network")
    else:
        install = "go mod download"
        files = ["go.mod", *(["go.sum"] if repo.is_file("go.sum") else [])]
        for target in _REPLACE.findall(gomod):  # local replacements are read by download
            if (path := repo.local_path(target)) and path not in files:
                files.append(path)
    build = f'go build -trimpath -ldflags="-s -w" -o {BINARY} {package}' if package else None
    return Plan(
        provider=NAME,
        version=version.family,
        version_source=version.source,
        package_manager="go modules",
        lockfile=repo.first("go.sum"),
        framework=None,
        install=install,
        build=build,
        start=BINARY if package else None,
        port=PORT,
        build_image=image(ctx.images.go, version.family),
        runtime_image=ctx.images.go_runtime,
        layout=Layout.BINARY,
        dependency_files=tuple(files),
        # static binaries (the runtime image has no libc), also for a --build-cmd
        build_env={
            "CGO_ENABLED": "0",
            **({"GOFLAGS": "-mod=vendor"} if repo.is_dir("vendor") else {}),
        },
        reasons=tuple(reasons),
    )
