"""Static sites: ``Staticfile`` (its ``root:``), ``index.html``, ``public/``, ``dist/``,
served by busybox httpd from the static base image."""

from __future__ import annotations

import re

from deployq.builders.plan.context import Context
from deployq.builders.plan.model import Layout, Plan
from deployq.builders.plan.repo import Repo

NAME = "static"
PORT = 8080
START_HINT = "static sites are served by busybox httpd"
_SITE_DIRS = (".", "public", "dist", "build", "site", "_site")
_ROOT = re.compile(r"^root\s*:\s*(\S+)\s*$", re.MULTILINE)


def httpd_start() -> str:
    """The command serving /www (busybox httpd, in the foreground, logging requests)."""
    return "busybox httpd -f -v -p $PORT -h /www"


def _site_dir(repo: Repo) -> tuple[str, str] | None:
    """(directory, the file that says so)."""
    match = _ROOT.search(repo.text("Staticfile") or "")
    if match:
        root = match.group(1).strip("/") or "."
        if repo.local_path(root) and repo.is_dir(root):
            return root, "Staticfile"
    for folder in _SITE_DIRS:
        index = "index.html" if folder == "." else f"{folder}/index.html"
        if repo.is_file(index):
            return folder, index
    return None


def matches(repo: Repo) -> str | None:
    found = _site_dir(repo)
    return found[1] if found else None


def plan(ctx: Context) -> Plan:
    found = _site_dir(ctx.repo)
    folder, why = found or (".", "the repository is the site")
    return Plan(
        provider=NAME,
        version=None,
        version_source="none",
        package_manager=None,
        lockfile=None,
        framework=None,
        install=None,
        build=None,
        start=httpd_start(),
        port=PORT,
        build_image=ctx.images.static,
        runtime_image=ctx.images.static,
        layout=Layout.STATIC,
        output_dir=folder,
        reasons=(f"site directory {folder} ({why} found), served by busybox httpd",),
    )
