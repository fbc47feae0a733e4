"""Children die with their worker: ``PR_SET_PDEATHSIG`` for every command a build runs.

Commands run in a session of their own (so a cancel can kill the whole group), which also
means nothing kills them when the worker is killed with SIGKILL: a `docker build` would go on,
re-parented to PID 1, beside the attempt that rescues its job. The kernel's parent-death
signal closes that gap: a child asks for SIGKILL the moment its parent dies, and the docker
client's death ends its session with the daemon, which cancels the build.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable

#: <linux/prctl.h>
PR_SET_PDEATHSIG = 1

_LIBC = (
    ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None
)


def die_with_parent_preexec() -> Callable[[], None]:
    """A ``preexec_fn`` for subprocesses: SIGKILL when this process dies (Linux)."""
    parent = os.getpid()

    def setup() -> None:  # runs in the child between fork and exec: nothing but syscalls
        if _LIBC is not None:
            _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the prctl took effect
            os._exit(1)

    return setup
