"""What valid input looks like, the one home: ids, commits, app names, page sizes.

The front doors (CLI, API, console), the OpenAPI document and the models check against
these, so a value accepted by one is accepted by all.
"""

from __future__ import annotations

import re

from deployq.errors import PlanError

#: a commit as people write it: 7 (git's short form) to 64 (SHA-256 repositories) hex digits
COMMIT_SHA_PATTERN = r"^[0-9a-fA-F]{7,64}$"
COMMIT_SHA_RE = re.compile(COMMIT_SHA_PATTERN)
#: a full commit sha as git prints it: 40 (SHA-1) or 64 (SHA-256) lower-case hex digits
FULL_SHA_RE = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")

#: app names: 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit
APP_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
APP_NAME_RE = re.compile(APP_NAME_PATTERN)
APP_NAME_RULE = (
    "app names are 1-63 lower-case letters, digits, '.', '_' or '-', "
    "starting with a letter or digit"
)

#: the largest row id (bigserial columns)
MAX_ID = 2**63 - 1
#: the largest log line number (job_logs.seq is an integer column)
MAX_LOG_SEQ = 2**31 - 1
#: rows per page of an API listing
MAX_PAGE_SIZE = 500

#: a build command (install, build, start) is one line of at most this many characters
MAX_COMMAND_CHARS = 2000
#: a language version: it becomes part of an image name
SAFE_VERSION = re.compile(r"^[0-9][0-9A-Za-z._+-]{0,31}$")


def check_command(value: str, where: str) -> str:
    """A command line: one line of printable text (it lands in a Dockerfile RUN or CMD)."""
    text = value.strip()
    if not text:
        raise PlanError(f"{where} is empty: give a command or leave it out")
    if len(text) > MAX_COMMAND_CHARS:
        raise PlanError(f"{where} is longer than {MAX_COMMAND_CHARS} characters: use a script")
    if any(ord(c) < 32 and c != "\t" for c in text):
        raise PlanError(
            f"{where} must be one line without control characters: put several steps in a "
            "script and call it, or join them with &&"
        )
    return text


def check_version(value: str, where: str) -> str:
    """A language version: it becomes part of an image name, so only version characters."""
    text = value.strip()
    if not SAFE_VERSION.match(text):
        raise PlanError(
            f"{where} {text!r} is not a version: digits first, then digits, letters, '.', '-' "
            "or '+' (e.g. 3.12 or 22)"
        )
    return text
