"""Durations, the one home: parse ``90s``/``5m``/``2h``/``30d`` and print them back.

Two printed forms: ``elapsed`` for measured times (``42s``, ``3m12s``, ``1h05m``, ``2d03h``)
and ``setting`` for configured ones, exact and in the form the options take (``90s``,
``10m``, ``2h``, ``30d``).
"""

from __future__ import annotations

import re

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
DURATION_HINT = "expected seconds or a duration like 90s, 5m, 2h, 30d"


def parse_duration(value: str | float) -> float:
    """Seconds in ``value``: a number of seconds, or ``90s``, ``5m``, ``2h``, ``30d``.

    Raises ValueError with the accepted forms when ``value`` is neither."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _DURATION_RE.match(str(value))
    if match is None:
        raise ValueError(DURATION_HINT)
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def elapsed(seconds: float | None) -> str:
    """A measured time: ``45s``, ``3m12s``, ``1h05m``, ``2d03h``; empty when unknown."""
    if seconds is None:
        return ""
    total = round(max(0.0, seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def setting(seconds: float) -> str:
    """A configured duration the way options take it, in its largest exact unit: ``90s``,
    ``10m``, ``90m``, ``2h``, ``30d`` (sub-second values print as ``ms``), so that
    :func:`parse_duration` reads it back unchanged."""
    if seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"
