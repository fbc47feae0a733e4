"""Language base images for zero-config builds, made here from Debian packages.

No image can be pulled from a hub here, so one Debian root file system holding python3,
nodejs+npm, golang, php-cli+composer and ruby+bundler is made with ``mmdebstrap``,
``docker import``ed, and tagged under the names the tests' ``base_image_*`` settings use
(``deployq-test/python:3.11``, ``deployq-test/node:18`` ...: the versions Debian ships). The
image is named by a hash of what goes into it, so it is made once per machine (~1 GB, a few
minutes) and reused until the package list changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deployq.config import DEFAULT_DOCKER_HOST
from deployq.testing.services import ServiceError, docker_cmd

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "python3",
    "python3-venv",
    "nodejs",
    "npm",
    "golang-go",
    "php-cli",
    "composer",
    "ruby",
    "ruby-bundler",
    "ca-certificates",
)
REPOSITORY = "deployq-test/runtime"
#: mmdebstrap fetches ~300 MB of packages; a slow mirror needs a while
MMDEBSTRAP_TIMEOUT_S = 1800
LOCK_FILE = Path(tempfile.gettempdir()) / "deployq-test-runtime.lock"
#: prints "<language> <version>" for each language of the root, to tag the image with
_VERSIONS_SCRIPT = (
    'echo "python $(python3 -c \'import sys; print(*sys.version_info[:2], sep=".")\')"; '
    'echo "node $(node -p process.versions.node)"; '
    "echo \"golang $(go env GOVERSION | sed 's/^go//')\"; "
    "echo \"php $(php -r 'echo PHP_VERSION;')\"; "
    "echo \"ruby $(ruby -e 'print RUBY_VERSION')\""
)
#: how many parts of each version make the tag (the version family of the plans)
_FAMILY_PARTS = {"python": 2, "node": 1, "golang": 2, "php": 2, "ruby": 2}


@dataclass(frozen=True)
class RuntimeImages:
    """The runtime image and its per-language tags (``deployq-test/<language>:<family>``)."""

    image: str
    tags: dict[str, str]

    def settings(self, static_image: str) -> dict[str, str]:
        """``base_image_*`` settings that build from these images (``{version}`` templates);
        ``static_image`` (busybox) serves static sites and runs Go binaries."""
        return {
            "base_image_python": "deployq-test/python:{version}",
            "base_image_node": "deployq-test/node:{version}",
            "base_image_go": "deployq-test/golang:{version}",
            "base_image_go_runtime": static_image,
            "base_image_static": static_image,
            "base_image_php": "deployq-test/php:{version}",
            "base_image_composer": "",  # Debian's php image has composer itself
            "base_image_ruby": "deployq-test/ruby:{version}",
        }


def content_hash() -> str:
    """What decides the root file system's content."""
    text = "\n".join([SUITE, MIRROR, *PACKAGES])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_runtime_images(docker_host: str = DEFAULT_DOCKER_HOST) -> RuntimeImages:
    """Make (once) and tag the Debian runtime image; return its tags."""
    image = f"{REPOSITORY}:{content_hash()}"
    with LOCK_FILE.open("w") as lock:  # one builder at a time on this machine
        fcntl.flock(lock, fcntl.LOCK_EX)
        if docker_cmd(docker_host, "image", "inspect", image, check=False).returncode != 0:
            _build(docker_host, image)
        tags = _tag(docker_host, image)
    return RuntimeImages(image, tags)


def _build(docker_host: str, image: str) -> None:
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise ServiceError("mmdebstrap is missing: run scripts/provision to install it")
    with tempfile.TemporaryDirectory(prefix="deployq-runtime-") as tmp:
        tar = Path(tmp) / "root.tar"
        made = subprocess.run(
            [
                mmdebstrap,
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(tar),
                MIRROR,
            ],
            capture_output=True,
            text=True,
            timeout=MMDEBSTRAP_TIMEOUT_S,
            check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        if made.returncode != 0:
            raise ServiceError(f"mmdebstrap failed: {made.stderr[-2000:]}")
        docker_cmd(docker_host, "import", "--change", 'CMD ["/bin/sh"]', str(tar), image)


def _tag(docker_host: str, image: str) -> dict[str, str]:
    found = docker_cmd(docker_host, "run", "--rm", image, "/bin/sh", "-c", _VERSIONS_SCRIPT)
    tags = {}
    for line in found.stdout.splitlines():
        language, _, version = line.partition(" ")
        family = ".".join(version.strip().split(".")[: _FAMILY_PARTS[language]])
        tag = f"deployq-test/{language}:{family}"
        docker_cmd(docker_host, "tag", image, tag)
        tags[language] = tag
    return tags
