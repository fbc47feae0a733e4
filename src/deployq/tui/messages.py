"""The messages between the console's app and its views.

The app owns the one LISTEN connection and the clock; it posts these to every view on the
screen stack, and each view handles the ones it shows with ``@on``. Views ask the app to
switch views with ``OpenView``. Neither side calls the other's methods, so the app imports
the views and the views import only this module and ``context``.
"""

from __future__ import annotations

from textual.message import Message

from deployq.models import Job


class Broadcast(Message, bubble=False):
    """Sent by the app to each view; it does not bubble back up to the app."""


class JobsChanged(Broadcast):
    """These jobs changed (fetched in one query after a burst of notifications)."""

    def __init__(self, jobs: list[Job]) -> None:
        super().__init__()
        self.jobs = jobs


class LogsAppended(Broadcast):
    """Job ``job_id`` has log lines up to ``seq``."""

    def __init__(self, job_id: int, seq: int) -> None:
        super().__init__()
        self.job_id = job_id
        self.seq = seq


class ServersChanged(Broadcast):
    """A build server changed (drain, health, capacity)."""


class DeliveriesChanged(Broadcast):
    """A webhook delivery was recorded."""


class ClockTick(Broadcast):
    """A second passed: refresh ages and elapsed times (never re-query)."""


class StatsDue(Broadcast):
    """Time to re-read the header figures."""


class Resync(Broadcast):
    """(Re)connected: notifications may have been lost, reload what is shown."""


class OpenView(Message):
    """A view asks the app to show view ``name`` (``job`` needs ``job_id``)."""

    def __init__(self, name: str, job_id: int | None = None) -> None:
        super().__init__()
        self.name = name
        self.job_id = job_id


class DatabaseProblem(Message):
    """The database became unreachable (``reason``) or is back (None)."""

    def __init__(self, reason: str | None) -> None:
        super().__init__()
        self.reason = reason
