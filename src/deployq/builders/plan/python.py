"""Python: pip (requirements.txt), poetry, uv, pdm, pipenv; Django, FastAPI, Flask.

Dependencies go into a virtualenv at /app/.venv; package-manager tools (uv, poetry, pdm,
pipenv) live in /opt of the build stage only. Start: Django -> gunicorn on the WSGI module
named in the settings, FastAPI -> uvicorn, Flask -> gunicorn, else a ``[project.scripts]``
entry or main.py/app.py/server.py. No start found is an error, never a file server on the
source.
"""

from __future__ import annotations

import re
from typing import Any

from deployq.builders.plan import versions
from deployq.builders.plan.context import Context, image
from deployq.builders.plan.model import Plan
from deployq.builders.plan.repo import Repo, first_line, tool_version

NAME = "python"
MARKERS = ("pyproject.toml", "requirements.txt", "setup.py", "Pipfile")
PORT = 8000
VENV = "/app/.venv"
START_HINT = (
    "no start command found for this Python project (looked for Django's manage.py, a FastAPI "
    "or Flask app, [project.scripts], main.py, app.py, server.py): add a Procfile `web:` line, "
    "`start` in deployq.toml, or the app's --start-cmd"
)
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_APP_ASSIGN = r"^(\w+)\s*(?::[^=]+)?=\s*{cls}\("
_WSGI_SETTING = re.compile(r"""^WSGI_APPLICATION\s*=\s*['"]([\w.]+)['"]""", re.MULTILINE)


def matches(repo: Repo) -> str | None:
    return repo.first(*MARKERS)


def _table(data: dict[str, Any] | None, *keys: str) -> dict[str, Any]:
    for key in keys:
        value = data.get(key) if isinstance(data, dict) else None
        data = value if isinstance(value, dict) else None
    return data or {}


def _requirement_names(lines: list[str]) -> set[str]:
    names = set()
    for line in lines:
        match = _REQ_NAME.match(line) if not line.lstrip().startswith(("-", "#", ".")) else None
        if match:
            names.add(match.group(1).lower().replace("_", "-"))
    return names


def _requirement_paths(repo: Repo, name: str, seen: set[str]) -> list[str]:
    """Local files a requirements file needs at install time (wheels, -r files, path deps)."""
    if name in seen:
        return []
    seen.add(name)
    paths: list[str] = []
    for raw in (repo.text(name) or "").splitlines():
        line = raw.split(" #")[0].strip()
        for prefix in ("-r ", "--requirement ", "-c ", "--constraint "):
            if line.startswith(prefix) and (path := repo.local_path(line[len(prefix) :])):
                paths.extend([path, *_requirement_paths(repo, path, seen)])
        for prefix in ("--find-links ", "-f ", "-e ", "--editable ", "./", "file:"):
            if line.startswith(prefix):
                target = line[len(prefix) :] if prefix not in ("./",) else line
                target = target.removeprefix("file:").split("[")[0].split(";")[0].strip()
                if path := repo.local_path(target):
                    paths.append(path)
    return paths


class _Project:
    """What the Python manifests say."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self.pyproject = repo.toml("pyproject.toml") or {}
        self.project = _table(self.pyproject, "project")
        self.poetry = _table(self.pyproject, "tool", "poetry")
        self.pipfile = repo.toml("Pipfile") or {}
        deps: set[str] = set()
        deps |= _requirement_names((repo.text("requirements.txt") or "").splitlines())
        listed = self.project.get("dependencies")
        if isinstance(listed, list):
            deps |= _requirement_names([str(d) for d in listed])
        deps |= {str(k).lower() for k in _table(self.poetry, "dependencies")}
        deps |= {str(k).lower() for k in _table(self.pipfile, "packages")}
        self.dependencies = deps

    def path_dependencies(self) -> list[str]:
        """Directories and files that poetry, uv or pipenv install from the repository."""
        tables = [
            _table(self.poetry, "dependencies"),
            _table(self.pyproject, "tool", "uv", "sources"),
            _table(self.pipfile, "packages"),
        ]
        paths = []
        for table in tables:
            for spec in table.values():
                if isinstance(spec, dict) and isinstance(spec.get("path"), str):
                    if path := self.repo.local_path(spec["path"]):
                        paths.append(path)
        return paths

    def version_candidates(self) -> list[tuple[str, str | None]]:
        runtime = first_line(self.repo.text("runtime.txt"))
        requires = _table(self.pipfile, "requires")
        pipfile_version = requires.get("python_full_version") or requires.get("python_version")
        requires_python = self.project.get("requires-python")
        poetry_python = _table(self.poetry, "dependencies").get("python")
        return [
            (".python-version", first_line(self.repo.text(".python-version"))),
            (".tool-versions", tool_version(self.repo, "python")),
            ("runtime.txt", runtime.removeprefix("python-") if runtime else None),
            ("Pipfile [requires]", str(pipfile_version) if pipfile_version else None),
            (
                "pyproject.toml requires-python",
                requires_python if isinstance(requires_python, str) else None,
            ),
            (
                "pyproject.toml [tool.poetry.dependencies] python",
                poetry_python if isinstance(poetry_python, str) else None,
            ),
        ]


def _package_manager(repo: Repo, project: _Project) -> tuple[str, str | None]:
    if repo.is_file("uv.lock"):
        return "uv", "uv.lock"
    if repo.is_file("poetry.lock") or project.poetry:
        return "poetry", repo.first("poetry.lock")
    if repo.is_file("pdm.lock") or _table(project.pyproject, "tool", "pdm"):
        return "pdm", repo.first("pdm.lock")
    if repo.is_file("Pipfile"):
        return "pipenv", repo.first("Pipfile.lock")
    return "pip", repo.first("requirements.txt")


def _tool(name: str) -> str:
    """Install a package manager in its own virtualenv of the build stage."""
    return f"python3 -m venv /opt/{name} && /opt/{name}/bin/pip install --no-cache-dir {name}"


def _install(repo: Repo, manager: str, lockfile: str | None) -> tuple[str, str, list[str]]:
    """(setup, install command, files it needs); no files means it needs the whole source."""
    venv = f"python3 -m venv {VENV}"
    if manager == "uv":
        return (
            _tool("uv"),
            "/opt/uv/bin/uv sync --locked --no-dev --no-install-project",
            ["pyproject.toml", "uv.lock"],
        )
    if manager == "poetry":
        files = ["pyproject.toml", *([lockfile] if lockfile else [])]
        return (
            f"{_tool('poetry')} && {venv}",
            "/opt/poetry/bin/poetry install --only main --no-root --no-interaction",
            files,
        )
    if manager == "pdm":
        files = ["pyproject.toml", *([lockfile] if lockfile else [])]
        check = " --check" if lockfile else ""
        return (
            f"{_tool('pdm')} && {venv}",
            f"/opt/pdm/bin/pdm install{check} --prod --no-self",
            files,
        )
    if manager == "pipenv":
        files = ["Pipfile", *([lockfile] if lockfile else [])]
        deploy = "--deploy" if lockfile else "--skip-lock"
        return f"{_tool('pipenv')} && {venv}", f"/opt/pipenv/bin/pipenv install {deploy}", files
    if repo.is_file("requirements.txt"):
        return venv, "pip install --no-cache-dir -r requirements.txt", ["requirements.txt"]
    return venv, "pip install --no-cache-dir .", []


def _module_of(name: str) -> str:
    return name.removesuffix(".py").replace("/", ".")


def _find_app(repo: Repo, cls: str) -> tuple[str, str] | None:
    """(module, variable) of the first ``x = Flask(...)``-style assignment."""
    pattern = re.compile(_APP_ASSIGN.format(cls=cls), re.MULTILINE)
    candidates = ["main.py", "app.py", "server.py", "api.py", "wsgi.py", "asgi.py"]
    for folder in ("app", "src", "api"):
        candidates += [f"{folder}/main.py", f"{folder}/app.py", f"{folder}/__init__.py"]
    candidates += [n for n in repo.glob("*.py") if n not in candidates]
    for name in candidates:
        match = pattern.search(repo.text(name) or "")
        if match:
            module = _module_of(name).removesuffix(".__init__")
            return module, match.group(1)
    return None


def _django_wsgi(repo: Repo) -> tuple[str | None, str]:
    for name in [*repo.glob("*/settings.py"), *repo.glob("*/settings/*.py")]:
        match = _WSGI_SETTING.search(repo.text(name) or "")
        if match:
            module, _, attr = match.group(1).rpartition(".")
            return f"{module}:{attr}", f"WSGI_APPLICATION in {name}"
    wsgi = repo.glob("*/wsgi.py")
    if wsgi:
        return f"{_module_of(wsgi[0])}:application", f"{wsgi[0]} found"
    return None, "no WSGI_APPLICATION setting or */wsgi.py found"


#: framework dependency -> (its application class, the server, the start command)
_APP_FRAMEWORKS = {
    "fastapi": ("FastAPI", "uvicorn", "uvicorn {app} --host 0.0.0.0 --port $PORT"),
    "flask": ("Flask", "gunicorn", "gunicorn {app} --bind 0.0.0.0:$PORT"),
}


def _start(repo: Repo, project: _Project, reasons: list[str]) -> tuple[str | None, str | None]:
    """(framework, start command)."""
    deps = project.dependencies
    if repo.is_file("manage.py") or "django" in deps:
        module, why = _django_wsgi(repo)
        reasons.append(f"Django: {why}")
        _want(deps, "gunicorn", reasons)
        return "django", f"gunicorn {module} --bind 0.0.0.0:$PORT" if module else None
    for framework, (cls, server, command) in _APP_FRAMEWORKS.items():
        if framework in deps:
            found = _find_app(repo, cls)
            _want(deps, server, reasons)
            if found is None:
                return framework, None
            reasons.append(f"{cls} app `{found[1]}` in module {found[0]}")
            return framework, command.format(app=f"{found[0]}:{found[1]}")
    scripts = project.project.get("scripts") or _table(project.poetry, "scripts")
    if isinstance(scripts, dict) and scripts:
        script = str(next(iter(scripts)))
        reasons.append(f"start runs the first [project.scripts] entry, {script!r}")
        return None, script
    entry = repo.first("main.py", "app.py", "server.py")
    if entry:
        reasons.append(f"start runs {entry}")
        return None, f"python {entry}"
    return None, None


def _want(deps: set[str], server: str, reasons: list[str]) -> None:
    if server not in deps:
        reasons.append(f"warning: {server} is not a dependency: add it, or the start fails")


def plan(ctx: Context) -> Plan:
    repo = ctx.repo
    project = _Project(repo)
    version = ctx.version(versions.PYTHON, project.version_candidates())
    manager, lockfile = _package_manager(repo, project)
    setup, install, files = _install(repo, manager, lockfile)
    reasons = [
        version.reason(),
        f"package manager {manager}" + (f" ({lockfile} found)" if lockfile else ""),
    ]
    build = "/opt/uv/bin/uv sync --locked --no-dev" if manager == "uv" else None
    if files:
        seen: set[str] = set()
        local = _requirement_paths(repo, "requirements.txt", seen) + project.path_dependencies()
        files = [*files, *dict.fromkeys(p for p in local if p not in files)]
    framework, start = _start(repo, project, reasons)
    python_image = image(ctx.images.python, version.family)
    build_env = {
        "PYTHONDONTWRITEBYTECODE": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "VIRTUAL_ENV": VENV,
        "PATH": f"{VENV}/bin:$PATH",
    }
    if manager == "uv":
        build_env |= {"UV_PROJECT_ENVIRONMENT": VENV, "UV_PYTHON_DOWNLOADS": "never"}
    if manager == "poetry":
        build_env |= {"POETRY_VIRTUALENVS_CREATE": "false"}
    if manager == "pdm":
        build_env |= {"PDM_CHECK_UPDATE": "false"}
    return Plan(
        provider=NAME,
        version=version.family,
        version_source=version.source,
        package_manager=manager,
        lockfile=lockfile,
        framework=framework,
        setup=setup,
        install=install,
        build=build,
        start=start,
        port=PORT,
        build_image=python_image,
        runtime_image=python_image,
        dependency_files=tuple(files),
        build_env=build_env,
        runtime_env={
            "PYTHONUNBUFFERED": "1",
            "VIRTUAL_ENV": VENV,
            "PATH": f"{VENV}/bin:$PATH",
        },
        reasons=tuple(reasons),
    )
