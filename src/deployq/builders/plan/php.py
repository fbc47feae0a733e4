"""PHP: composer; Laravel (``artisan serve``) or PHP's built-in server on public/ or the top.

composer is copied from the composer image into the build stage only (an empty
``base_image_composer`` means the PHP image brings its own).
"""

from __future__ import annotations

from typing import Any

from deployq.builders.plan import versions
from deployq.builders.plan.context import Context, image
from deployq.builders.plan.model import Plan
from deployq.builders.plan.repo import Repo, first_line, tool_version

NAME = "php"
PORT = 8080
START_HINT = (
    "no entry point found for this PHP project (looked for artisan, public/index.php, "
    "index.php): add a Procfile `web:` line, `start` in deployq.toml, or the app's --start-cmd"
)


def matches(repo: Repo) -> str | None:
    return repo.first("composer.json", "index.php", "public/index.php")


def _path_repositories(repo: Repo, composer: dict[str, Any]) -> list[str]:
    paths = []
    listed = composer.get("repositories")
    for entry in listed if isinstance(listed, list) else []:
        if not isinstance(entry, dict) or entry.get("type") != "path":
            continue
        if isinstance(entry.get("url"), str) and (path := repo.local_path(entry["url"])):
            paths.append(path)
    return paths


def plan(ctx: Context) -> Plan:
    repo = ctx.repo
    composer = repo.json("composer.json") or {}
    require = composer.get("require") if isinstance(composer.get("require"), dict) else {}
    php_require = require.get("php") if require else None
    version = ctx.version(
        versions.PHP,
        [
            (".php-version", first_line(repo.text(".php-version"))),
            (".tool-versions", tool_version(repo, "php")),
            ("composer.json require.php", php_require if isinstance(php_require, str) else None),
        ],
    )
    reasons = [version.reason()]
    install = build = None
    files: list[str] = []
    lockfile = None
    manager = None
    if repo.is_file("composer.json"):
        manager, lockfile = "composer", repo.first("composer.lock")
        reasons.append("package manager composer" + (" (composer.lock found)" if lockfile else ""))
        install = (
            "composer install --no-dev --no-interaction --no-progress --no-scripts --no-autoloader"
        )
        build = "composer dump-autoload --optimize --no-dev --no-interaction"
        files = ["composer.json", *([lockfile] if lockfile else [])]
        files += [p for p in _path_repositories(repo, composer) if p not in files]
    framework = None
    start = None
    if repo.is_file("artisan") and "laravel/framework" in (require or {}):
        framework = "laravel"
        start = "php artisan serve --host=0.0.0.0 --port=$PORT"
        reasons.append("Laravel (artisan and laravel/framework found): start runs artisan serve")
    elif repo.is_file("public/index.php"):
        start = "php -S 0.0.0.0:$PORT -t public"
        reasons.append("public/index.php found: PHP's built-in server on public/")
    elif repo.is_file("index.php"):
        start = "php -S 0.0.0.0:$PORT -t ."
        reasons.append("index.php found: PHP's built-in server on the top directory")
    php_image = image(ctx.images.php, version.family)
    tools = ((ctx.images.composer, "/usr/bin/composer"),) if manager and ctx.images.composer else ()
    return Plan(
        provider=NAME,
        version=version.family,
        version_source=version.source,
        package_manager=manager,
        lockfile=lockfile,
        framework=framework,
        install=install,
        build=build,
        start=start,
        port=PORT,
        build_image=php_image,
        runtime_image=php_image,
        dependency_files=tuple(files),
        build_tools=tools,
        build_env={"COMPOSER_ALLOW_SUPERUSER": "1"} if manager else {},
        reasons=tuple(reasons),
    )
