"""Which builds of an attempt an engine still runs, and stopping them.

Every build carries an extra host entry the engine can report on, ``deployq-attempt.invalid``
(``docker build --add-host``; the reserved ``.invalid`` name resolves inside the build and
nowhere else), and the attempt is its address: a unique local IPv6 address (``fd00::/8``) made
of the job's enqueue time, its id and the attempt (:func:`attempt_marker`); the enqueue time
keeps apart the jobs of two installations (or test databases) that share an engine. The name
is the same for every build because BuildKit keeps an extra host's name in each ``RUN`` step's
cache key and drops only its address: a name per attempt would make every ``RUN`` a cache miss
(no warm build, no cache shared between servers). The engine keeps the entry with each step
that runs:

- **BuildKit** (dockerd's built-in builder) runs each ``RUN`` as a runc container whose bundle
  is ``<data root>/buildkit/executor/<id>/config.json``; the bundle bind-mounts a hosts file
  beside it that holds the name. The bundle exists while the step runs; its processes are in a
  cgroup named after ``<id>``. Neither the Engine API nor BuildKit's API of dockerd 20.10 lists
  running builds, so a short-lived container on the engine looks (``STEPS_SCRIPT``): it mounts
  the executor directory read-only and sees the host's processes (``--pid host``); to stop a
  step it SIGKILLs the processes of that cgroup (the daemon then fails the build). This works
  over every transport (unix://, tcp://, ssh://) and needs only a local image with a shell,
  never pulled.
- **The classic builder** (the Engine API backend) runs each step as a container whose
  HostConfig.ExtraHosts holds the name: listed and killed through the Engine API.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime

#: the host name every build carries (RFC 2606's reserved top-level domain: never a real host)
MARKER_NAME = "deployq-attempt.invalid"
#: bits of a marker address: fd (8) | enqueue time (40) | job id (48) | 0 (16) | attempt (16)
STAMP_BITS, JOB_BITS, ATTEMPT_BITS = 40, 48, 16
#: where dockerd's built-in BuildKit keeps the bundles of running steps, under its data root
EXECUTOR_DIR = "buildkit/executor"
#: seconds one look at the engine may take (it runs a container)
LOOK_TIMEOUT_S = 20.0

# $1: the marker; $2: "kill" to stop what is found. Prints "step <id> <pids>" per running step.
STEPS_SCRIPT = r"""
m="$1"
for c in /executor/*/config.json; do
  [ -f "$c" ] || continue
  id="${c%/config.json}"; id="${id##*/}"
  h="$(grep -o 'hosts\.[A-Za-z0-9]*' "$c" | head -n 1)"
  [ -n "$h" ] && grep -qwF "$m" "/executor/$h" 2>/dev/null || continue
  pids="$(grep -l -F "$id" /proc/[0-9]*/cgroup 2>/dev/null | cut -d/ -f3 | tr '\n' ' ')"
  [ -n "$pids" ] || continue
  echo "step $id $pids"
  if [ "$2" = kill ]; then kill -9 $pids 2>/dev/null; fi
done
echo done
"""


def attempt_marker(job_id: int, attempt: int, enqueued_at: datetime) -> str:
    """The address ``deployq-attempt.invalid`` has in every build of this attempt:
    ``fdTT:TTTT:TTTT:JJJJ:JJJJ:JJJJ:0:AAAA`` of the job's enqueue time in microseconds (low 40
    bits), its id and the attempt (the last group), written as BuildKit writes it (RFC 5952:
    runs of zero groups shortened to ``::``), so that it is found as it is."""
    stamp = round(enqueued_at.timestamp() * 1_000_000) % 2**STAMP_BITS
    value = 0xFD
    for part, bits in ((stamp, STAMP_BITS), (job_id, JOB_BITS), (0, 16), (attempt, ATTEMPT_BITS)):
        value = (value << bits) | (part % 2**bits)
    return str(ipaddress.IPv6Address(value))


@dataclass(frozen=True)
class EngineSteps:
    """What an engine said about one attempt: the ids of its steps that still run."""

    marker: str
    steps: tuple[str, ...]

    @property
    def running(self) -> bool:
        return bool(self.steps)


def parse_steps(marker: str, output: str) -> EngineSteps | None:
    """The steps ``STEPS_SCRIPT`` printed; None when its output is cut short (no ``done``)."""
    lines = [line.split() for line in output.splitlines() if line.strip()]
    if not lines or lines[-1] != ["done"]:
        return None
    return EngineSteps(marker, tuple(line[1] for line in lines if line[0] == "step"))
