"""How the console writes things: status colours, progress bars, ages (durations are
:func:`deployq.durations.elapsed`).

Pure functions of their arguments (``now`` is always passed in), so a frozen clock gives
the same screen every time.
"""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

from deployq.durations import elapsed
from deployq.models import Job, JobStatus
from deployq.tui.glyphs import UNICODE, Glyphs

#: cells of the progress bar in the queue table
PROGRESS_BAR_CELLS = 5

#: Status colours as RGB values whose nearest colour in the 16-colour and 256-colour
#: palettes is the same hue (queued stays yellow, failed red). ANSI names ("yellow") would
#: be mapped through the theme's ANSI palette first, and Monokai's yellow is orange: on a
#: 16-colour terminal (TERM=xterm, TERM=linux) it became bright red, and red became magenta.
YELLOW = "#d7af00"
CYAN = "#00afd7"
GREEN = "#00af00"
RED = "#d70000"
GREY = "#6c6c6c"

STATUS_STYLE: dict[JobStatus, str] = {
    JobStatus.QUEUED: YELLOW,
    JobStatus.RUNNING: f"bold {CYAN}",
    JobStatus.SUCCEEDED: GREEN,
    JobStatus.FAILED: f"bold {RED}",
    JobStatus.TIMED_OUT: RED,
    JobStatus.CANCELLED: GREY,
    JobStatus.SUPERSEDED: GREY,
}

#: pinned order in the queue: running, then queued, then everything else
STATUS_RANK: dict[JobStatus, int] = {JobStatus.RUNNING: 0, JobStatus.QUEUED: 1}


def status_text(status: JobStatus, *, cancel_requested: bool = False) -> Text:
    label = status.value.replace("_", " ")
    if cancel_requested and status is JobStatus.RUNNING:
        label = "stopping"
    return Text(label, style=STATUS_STYLE[status])


def progress_bar(percent: int, glyphs: Glyphs = UNICODE, cells: int = PROGRESS_BAR_CELLS) -> str:
    """``███░░  60%`` (``###--  60%`` in ASCII)."""
    percent = max(0, min(100, percent))
    full = round(percent * cells / 100)
    return glyphs.bar_full * full + glyphs.bar_empty * (cells - full) + f" {percent:>3}%"


def age(at: datetime | None, now: datetime) -> str:
    """How long ago ``at`` was, e.g. ``12s ago``; ``never`` when None."""
    if at is None:
        return "never"
    return elapsed((now - at).total_seconds()) + " ago"


def job_time(job: Job, now: datetime) -> str:
    """Waiting time while queued, elapsed time while running, duration once finished."""
    if job.status is JobStatus.QUEUED:
        return elapsed((now - job.enqueued_at).total_seconds())
    if job.status is JobStatus.RUNNING and job.started_at is not None:
        return elapsed((now - job.started_at).total_seconds())
    return elapsed(job.duration_s)


def job_progress(job: Job, glyphs: Glyphs = UNICODE) -> str:
    if job.status is JobStatus.QUEUED or job.started_at is None:
        return ""
    return progress_bar(job.progress, glyphs)


def priority_name(value: int) -> str:
    return {0: "low", 1: "normal", 2: "high", 3: "critical"}.get(value, str(value))


def priority_short(value: int) -> str:
    """Four cells at most: ``low``, ``norm``, ``high``, ``crit``."""
    return priority_name(value)[:4]


def one_line(text: str | None, width: int) -> str:
    """The first line of ``text``, cut to ``width`` cells with an ellipsis."""
    if not text:
        return ""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= width else first[: max(0, width - 1)] + "…"
