"""Ruby: bundler; Rails -> puma (assets precompiled when the app has them), Rack -> puma or
rackup. Gems are installed into /app/vendor/bundle so the runtime stage gets them with /app."""

from __future__ import annotations

import re

from deployq.builders.plan import versions
from deployq.builders.plan.context import Context, image
from deployq.builders.plan.model import Plan
from deployq.builders.plan.repo import Repo, first_line, tool_version

NAME = "ruby"
PORT = 3000
START_HINT = (
    "no start command found for this Ruby project (looked for Rails and config.ru): add a "
    "Procfile `web:` line, `start` in deployq.toml, or the app's --start-cmd"
)
_GEMFILE_RUBY = re.compile(r"""^\s*ruby\s+['"]([^'"]+)['"]""", re.MULTILINE)
_LOCK_RUBY = re.compile(r"^RUBY VERSION\s*\n\s+ruby\s+(\d+\.\d+(?:\.\d+)?)", re.MULTILINE)
_GEM_PATH = re.compile(r"""^\s*gem\s+['"][^'"]+['"].*\bpath:\s*['"]([^'"]+)['"]""", re.MULTILINE)
_GEMSPEC = re.compile(r"^\s*gemspec\b", re.MULTILINE)
RAILS_ENV = {"RAILS_ENV": "production", "RAILS_LOG_TO_STDOUT": "1", "RAILS_SERVE_STATIC_FILES": "1"}
BUNDLE_ENV = {"BUNDLE_PATH": "/app/vendor/bundle", "BUNDLE_WITHOUT": "development:test"}


def matches(repo: Repo) -> str | None:
    return repo.first("Gemfile")


def _has_gem(gemfile: str, lock: str, name: str) -> bool:
    return bool(
        re.search(rf"""^\s*gem\s+['"]{name}['"]""", gemfile, re.MULTILINE)
        or re.search(rf"^    {name} \(", lock, re.MULTILINE)
    )


def plan(ctx: Context) -> Plan:
    repo = ctx.repo
    gemfile = repo.text("Gemfile") or ""
    lock = repo.text("Gemfile.lock") or ""
    ruby_line = _GEMFILE_RUBY.search(gemfile)
    lock_ruby = _LOCK_RUBY.search(lock)
    ruby_version = first_line(repo.text(".ruby-version"))
    version = ctx.version(
        versions.RUBY,
        [
            (".ruby-version", ruby_version.removeprefix("ruby-") if ruby_version else None),
            (".tool-versions", tool_version(repo, "ruby")),
            ("Gemfile ruby", ruby_line.group(1) if ruby_line else None),
            ("Gemfile.lock RUBY VERSION", lock_ruby.group(1) if lock_ruby else None),
        ],
    )
    lockfile = repo.first("Gemfile.lock")
    reasons = [
        version.reason(),
        "package manager bundler" + (" (Gemfile.lock found)" if lockfile else ""),
    ]
    files = ["Gemfile", *([lockfile] if lockfile else [])]
    files += [p for p in map(repo.local_path, _GEM_PATH.findall(gemfile)) if p and p not in files]
    if _GEMSPEC.search(gemfile):
        files += repo.glob("*.gemspec")
    build_env = dict(BUNDLE_ENV)
    if lockfile:
        build_env["BUNDLE_FROZEN"] = "true"
    runtime_env = dict(BUNDLE_ENV)
    framework = build = start = None
    puma = "bundle exec puma -b tcp://0.0.0.0:$PORT"
    if _has_gem(gemfile, lock, "rails"):
        framework = "rails"
        runtime_env |= RAILS_ENV
        build_env["RAILS_ENV"] = "production"
        start = puma
        reasons.append("Rails (rails gem found): start runs puma")
        if repo.is_dir("app/assets") or repo.is_dir("app/javascript"):
            build = "SECRET_KEY_BASE_DUMMY=1 bundle exec rails assets:precompile"
            reasons.append("app/assets found: build precompiles the assets")
    elif repo.is_file("config.ru"):
        framework = "rack"
        rackup = "bundle exec rackup -o 0.0.0.0 -p $PORT"
        start = puma if _has_gem(gemfile, lock, "puma") else rackup
        reasons.append("config.ru found: Rack app")
    ruby_image = image(ctx.images.ruby, version.family)
    return Plan(
        provider=NAME,
        version=version.family,
        version_source=version.source,
        package_manager="bundler",
        lockfile=lockfile,
        framework=framework,
        install="bundle install",
        build=build,
        start=start,
        port=PORT,
        build_image=ruby_image,
        runtime_image=ruby_image,
        dependency_files=tuple(files),
        build_env=build_env,
        runtime_env=runtime_env,
        reasons=tuple(reasons),
    )
