"""What valid input looks like, the one home: ids, commits, app names, page sizes.

The front doors (CLI, API, console), the OpenAPI document and the models check against
these, so a value accepted by one is accepted by all.
"""

from __future__ import annotations

import re

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
