"""Which builds of an attempt an engine still runs, and stopping them.

Every build of attempt K of job N carries a name the engine can report on: an extra host
entry ``deployq-attempt-N-K.invalid`` (``docker build --add-host``; the ``.invalid`` name
resolves to 127.0.0.1 inside the build and nowhere else). The engine keeps it with each step
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

from dataclasses import dataclass

#: the answer of a client (never a real host): RFC 2606's reserved top-level domain
MARKER_DOMAIN = "invalid"
#: where a marker resolves inside the build
MARKER_ADDRESS = "127.0.0.1"
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


def attempt_marker(job_id: int, attempt: int) -> str:
    """The name every build of this attempt carries: ``deployq-attempt-12-3.invalid``."""
    return f"deployq-attempt-{job_id}-{attempt}.{MARKER_DOMAIN}"


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
