"""Node.js: npm, yarn, pnpm, bun (by ``packageManager``, then lockfile); Next.js, Vite and
other single-page apps, or a plain ``start``.

devDependencies are installed (NODE_ENV is set only in the runtime stage) so that a
``build`` script using vite or tsc works, then pruned. A single-page app's build output is
served by busybox httpd; its runtime image holds no Node.js at all.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from deployq.builders.plan import static, versions
from deployq.builders.plan.context import Context, image
from deployq.builders.plan.model import Layout, Plan
from deployq.builders.plan.overrides import procfile_start
from deployq.builders.plan.repo import Repo, first_line, tool_version
from deployq.builders.plan.static import httpd_start

NAME = "node"
PORT = 3000
START_HINT = (
    "no start command found for this Node.js project (looked for a `start` script, `main`, "
    "server.js, index.js, main.js, app.js, and a Vite or Create React App build): add a "
    "`start` script, a Procfile `web:` line, `start` in deployq.toml, or the app's --start-cmd"
)
_LOCKFILES = (
    ("pnpm-lock.yaml", "pnpm"),
    ("bun.lock", "bun"),
    ("bun.lockb", "bun"),
    ("yarn.lock", "yarn"),
    ("package-lock.json", "npm"),
    ("npm-shrinkwrap.json", "npm"),
)
_MANAGERS = ("npm", "pnpm", "yarn", "bun")
#: single-page app builders and where they write the site
_SPA_OUTPUT = (("vite", "dist"), ("react-scripts", "build"), ("astro", "dist"))
_OUT_DIR = re.compile(r"""outDir\s*:\s*['"]([\w./-]+)['"]""")
_EXTRA_MANIFESTS = (".npmrc", ".yarnrc", ".yarnrc.yml", "pnpm-workspace.yaml", "bunfig.toml")


def matches(repo: Repo) -> str | None:
    return repo.first("package.json")


def _manager(
    repo: Repo, package: dict[str, Any], reasons: list[str]
) -> tuple[str, str, str | None]:
    """(manager, its version or "", lockfile)."""
    lockfile = next((name for name, _ in _LOCKFILES if repo.is_file(name)), None)
    declared = package.get("packageManager")
    if isinstance(declared, str):
        name, _, version = declared.partition("@")
        if name in _MANAGERS:
            reasons.append(f"package manager {name} (packageManager {declared!r})")
            by_lock = dict(_LOCKFILES).get(lockfile or "")
            return name, version.split("+")[0], lockfile if by_lock == name else None
    if lockfile:
        manager = dict(_LOCKFILES)[lockfile]
        reasons.append(f"package manager {manager} ({lockfile} found)")
        return manager, "", lockfile
    if repo.is_file(".yarnrc.yml"):
        reasons.append("package manager yarn (.yarnrc.yml found)")
        return "yarn", "", None
    engines = _dict(package.get("engines"))
    for name in ("pnpm", "bun", "yarn"):
        if isinstance(engines.get(name), str):
            reasons.append(f"package manager {name} (engines.{name} {engines[name]!r})")
            return name, "", None
    reasons.append("package manager npm (no lockfile: the default)")
    return "npm", "", None


def _install(
    manager: str, version: str, lockfile: str | None, repo: Repo
) -> tuple[str, str | None]:
    """(install command, prune command)."""
    if manager == "npm":
        return ("npm ci" if lockfile else "npm install"), "npm prune --omit=dev"
    if manager == "pnpm":
        frozen = " --frozen-lockfile" if lockfile else ""
        return f"pnpm install{frozen}", "pnpm prune --prod"
    if manager == "bun":
        frozen = " --frozen-lockfile" if lockfile else ""
        return f"bun install{frozen}", f"rm -rf node_modules && bun install --production{frozen}"
    major = version.split(".")[0]
    berry = repo.is_file(".yarnrc.yml") or (major.isdigit() and int(major) >= 2)
    if berry:
        return "yarn install --immutable", None
    frozen = " --frozen-lockfile" if lockfile else ""
    return (
        f"yarn install{frozen}",
        f"yarn install --production{frozen} --ignore-scripts --prefer-offline",
    )


def _local_deps(repo: Repo, package: dict[str, Any]) -> list[str]:
    """``file:`` and ``link:`` dependencies inside the repository (installed from there)."""
    paths = []
    for table in ("dependencies", "devDependencies", "optionalDependencies"):
        deps = package.get(table)
        for spec in (deps or {}).values() if isinstance(deps, dict) else ():
            if isinstance(spec, str) and spec.startswith(("file:", "link:")):
                if path := repo.local_path(spec.split(":", 1)[1]):
                    paths.append(path)
    return paths


def _spa(repo: Repo, deps: dict[str, Any], scripts: dict[str, Any]) -> tuple[str, str] | None:
    """(framework, output directory) of a single-page app that only needs a static server."""
    start = str(scripts.get("start") or "")
    if "build" not in scripts or (start and not re.match(r"^(vite|astro)( |$)", start)):
        return None
    for framework, output in _SPA_OUTPUT:
        if framework in deps:
            config = repo.first(*(f"{framework}.config.{ext}" for ext in ("ts", "js", "mjs")))
            match = _OUT_DIR.search(repo.text(config) or "") if config else None
            if match and (path := _safe_dir(match.group(1))):
                output = path
            return framework, output
    return None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _safe_dir(name: str) -> str | None:
    parts = [p for p in name.strip("/").split("/") if p not in ("", ".")]
    return "/".join(parts) if parts and ".." not in parts else None


def _start(repo: Repo, manager: str, package: dict[str, Any], reasons: list[str]) -> str | None:
    scripts = package.get("scripts") if isinstance(package.get("scripts"), dict) else {}
    if scripts and scripts.get("start"):
        reasons.append(f"start runs the `start` script ({scripts['start']!r})")
        return f"{manager} run start"
    main = package.get("main")
    if isinstance(main, str) and repo.is_file(main.removeprefix("./")):
        reasons.append(f"start runs `main` ({main})")
        return f"node {main.removeprefix('./')}"
    entry = repo.first("server.js", "index.js", "main.js", "app.js")
    if entry:
        reasons.append(f"start runs {entry}")
        return f"node {entry}"
    return None


def plan(ctx: Context) -> Plan:
    repo = ctx.repo
    package = repo.json("package.json") or {}
    reasons: list[str] = []
    manager, manager_version, lockfile = _manager(repo, package, reasons)
    engines = _dict(package.get("engines"))
    if manager == "bun":
        version = ctx.version(
            versions.BUN,
            [
                ("packageManager", manager_version or None),
                (".bun-version", first_line(repo.text(".bun-version"))),
                ("package.json engines.bun", _str(engines.get("bun"))),
            ],
        )
        build_image = image(ctx.images.bun, version.family)
    else:
        node_engine = engines.get("node")
        version = ctx.version(
            versions.NODE,
            [
                (".nvmrc", first_line(repo.text(".nvmrc"))),
                (".node-version", first_line(repo.text(".node-version"))),
                (".tool-versions", tool_version(repo, "nodejs", "node")),
                ("package.json engines.node", _str(node_engine)),
            ],
        )
        build_image = image(ctx.images.node, version.family)
    reasons.insert(0, version.reason())
    install, prune = _install(manager, manager_version, lockfile, repo)
    scripts = _dict(package.get("scripts"))
    build = f"{manager} run build" if scripts.get("build") else None
    if build:
        reasons.append(f"build runs the `build` script ({scripts['build']!r}) with devDependencies")
    deps: dict[str, Any] = {}
    for table in ("dependencies", "devDependencies"):
        if isinstance(package.get(table), dict):
            deps |= package[table]
    files: list[str] = []
    if not package.get("workspaces"):  # a workspace's packages are spread over the tree
        files = ["package.json", *([lockfile] if lockfile else [])]
        files += [n for n in _EXTRA_MANIFESTS if repo.is_file(n)]
        files += [p for p in _local_deps(repo, package) if p not in files]
    base = Plan(
        provider=NAME,
        version=version.family,
        version_source=version.source,
        package_manager=manager,
        lockfile=lockfile,
        framework=None,
        setup="corepack enable" if manager in ("yarn", "pnpm") else None,
        install=install,
        build=build,
        start=None,
        port=PORT,
        build_image=build_image,
        runtime_image=build_image,
        dependency_files=tuple(files),
        prune=prune,
        runtime_env={"NODE_ENV": "production"},
    )
    spa = _spa(repo, deps, scripts)
    if spa is not None and (ctx.override("start") or procfile_start(repo)):
        reasons.append(
            f"{spa[0]} build with a start command given: run as a server, not a static site"
        )
        spa = None
    if spa is not None:
        framework, output = spa
        reasons.append(f"{framework} single-page app: {output}/ served by busybox httpd")
        return replace(
            base,
            framework=framework,
            start=httpd_start(),
            port=static.PORT,
            runtime_image=ctx.images.static,
            layout=Layout.STATIC,
            output_dir=output,
            prune=None,
            runtime_env={},
            reasons=tuple(reasons),
        )
    next_js = "next" if "next" in deps else None
    start = _start(repo, manager, package, reasons)
    if next_js and start is None:
        start = f"{'bunx' if manager == 'bun' else 'npx'} next start"
        reasons.append("Next.js without a `start` script: start runs `next start`")
    return replace(base, framework=next_js, start=start, reasons=tuple(reasons))
