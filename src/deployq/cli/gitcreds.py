"""How the CLI takes an app's git credentials: a token (``-``: from stdin, or asked for
without echo, so it is never in the shell's history) and an SSH key file (checked)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from deployq.errors import InvalidInput
from deployq.gitauth import SshKey, read_ssh_key


def read_git_token(value: str | None) -> str | None:
    """The token option's value; ``-`` reads one line from stdin (asks on a terminal)."""
    if value != "-":
        return value
    if sys.stdin.isatty():
        text = str(click.prompt("git token", hide_input=True, err=True))
    else:
        text = sys.stdin.readline()
    token = text.strip()
    if not token:
        raise InvalidInput(
            "no git token on stdin: pipe it in, e.g. `deployq app credentials APP "
            "--git-token - < token.txt`"
        )
    return token


async def ssh_key_option(path: Path | None) -> SshKey | None:
    """The key file of ``--git-ssh-key``, read and checked (ssh-keygen runs in a thread)."""
    return None if path is None else await asyncio.to_thread(read_ssh_key, path)
