"""Run a command, stream its output line by line, and kill it when the awaiting task is cancelled.

Each command runs in its own process group (a new session), so a cancel kills the command and
everything it started — and nothing else; and it dies with the worker (builders.orphans).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deployq.builders.orphans import dying_with_parent

#: how long a cancelled command gets after SIGTERM before SIGKILL
TERM_GRACE_S = 2.0
#: how many trailing output lines a result keeps for error messages
TAIL_LINES = 30
#: longest line read at once; longer lines are split
LINE_LIMIT_BYTES = 1024 * 1024


@dataclass
class ProcessResult:
    """Exit code and the last lines of output of a finished command."""

    returncode: int
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))

    def last_lines(self, count: int = 8) -> str:
        return "\n".join(list(self.tail)[-count:])


def base_env(extra: Mapping[str, str], *, drop: Sequence[str] = ()) -> dict[str, str]:
    """The environment of a child: ours (PATH, HOME, SSH agent...) plus ``extra``."""
    # Children need PATH/HOME/SSH_AUTH_SOCK; this is not configuration, so os.environ is fine.
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env


async def run_streaming(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    on_line: Callable[[str], None],
    cwd: Path | None = None,
    stdin_data: bytes | None = None,
    redact: Callable[[str], str] = lambda line: line,
    bounded: bool = False,
) -> ProcessResult:
    """Run ``argv``; call ``on_line`` with each non-empty output line (stdout and stderr).

    On cancellation the process group is terminated (then killed) before CancelledError
    propagates, so the caller knows the command is gone when the cancel returns.
    ``bounded``: a short local command that ends by itself and touches nothing but the
    job's own workspace (builders.orphans): it runs without the parent-death wrapper.
    """
    proc = await asyncio.create_subprocess_exec(
        # no orphan outlives a killed worker (a bounded one ends by itself)
        *(argv if bounded else dying_with_parent(argv)),
        stdin=asyncio.subprocess.PIPE if stdin_data is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
        limit=LINE_LIMIT_BYTES,
    )
    result = ProcessResult(returncode=-1)
    try:
        if stdin_data is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin_data)
            await proc.stdin.drain()
            proc.stdin.close()
        assert proc.stdout is not None
        while True:
            try:
                raw = await proc.stdout.readline()
            except ValueError:  # a line over the limit: take what is buffered
                raw = await proc.stdout.read(LINE_LIMIT_BYTES)
            if not raw:
                break
            for part in raw.decode("utf-8", "replace").rstrip("\r\n").split("\n"):
                line = redact(part.rstrip())
                if line.strip():
                    result.tail.append(line)
                    on_line(line)
        result.returncode = await proc.wait()
        return result
    except BaseException:
        await _terminate(proc)
        raise


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    """Stop the process group of ``proc`` (SIGTERM, then SIGKILL) and reap it."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), TERM_GRACE_S)
    except (TimeoutError, asyncio.CancelledError):
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(asyncio.shield(proc.wait()), TERM_GRACE_S)
