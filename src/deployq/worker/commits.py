"""What a checkout says about its commit, and how a raw git commit object reads."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PERSON = re.compile(r"^(?P<name>.*?)\s*<(?P<email>[^>]*)>")


@dataclass(frozen=True)
class CommitInfo:
    """The commit that was checked out."""

    sha: str
    message: str
    author: str
    author_email: str


def parse_commit(sha: str, raw: bytes) -> CommitInfo:
    """A commit object's author and message (``raw``: its body, without the object header).
    The message is decoded as the ``encoding`` header says, else as UTF-8."""
    head, _, message = raw.partition(b"\n\n")
    author = b""
    encoding = "utf-8"
    for line in head.split(b"\n"):
        key, _, value = line.partition(b" ")
        if key == b"author":
            author = value
        elif key == b"encoding":
            encoding = value.decode("ascii", "replace").strip() or "utf-8"
    try:
        text = message.decode(encoding, "replace")
    except LookupError:
        text = message.decode("utf-8", "replace")
    person = _PERSON.match(author.decode("utf-8", "replace"))
    name, email = (person.group("name"), person.group("email")) if person else ("", "")
    return CommitInfo(sha=sha, message=text.strip(), author=name.strip(), author_email=email)
