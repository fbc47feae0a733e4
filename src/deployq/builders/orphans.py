"""Children die with their worker: ``PR_SET_PDEATHSIG`` for every command a build runs.

Commands run in a session of their own (so a cancel can kill the whole group), which also
means nothing kills them when the worker is killed with SIGKILL: a `docker build` would go on,
re-parented to PID 1, beside the attempt that rescues its job. The kernel's parent-death
signal closes that gap: the command gets SIGKILL the moment the worker dies, and the docker
client's death ends its session with the daemon, which cancels the build.

The signal is set by util-linux's ``setpriv --pdeathsig KILL``, which then execs the command
(the setting survives exec). A ``preexec_fn`` would do the same in Python, but it forces a
full fork of the worker on the event loop's thread (100 ms and more for a large process),
where ``setpriv`` lets the spawn use vfork.

The wrapper costs one more exec (~1.4 ms on an idle host). A command that is short, local and
ends by itself, and writes only into the job's own workspace, runs without it
(``run_streaming(bounded=True)``): the checkout's ``git read-tree`` of a commit's files out of
the host's mirror. Left behind by a killed worker, it finishes within moments in that
worker's scratch directory, which the next worker's start sweeps. Everything that talks to
a remote, to an engine or can run for long keeps the signal: ``docker build``, ``git fetch``
(a slow remote, a large repository), ``git repack``.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence

SETPRIV = shutil.which("setpriv")


def dying_with_parent(argv: Sequence[str]) -> list[str]:
    """``argv`` wrapped so the command is killed when this process dies (when setpriv is
    there: util-linux, on every Debian; without it the command runs as is)."""
    if SETPRIV is None:
        return list(argv)
    return [SETPRIV, "--pdeathsig", "KILL", "--", *argv]
