"""sd_notify spoken directly on $NOTIFY_SOCKET: no systemd library, testable anywhere.

systemd hands a service the datagram socket in NOTIFY_SOCKET (a path, or ``@name`` for the
abstract namespace) and, with ``WatchdogSec=``, the period in WATCHDOG_USEC (for the process
in WATCHDOG_PID when set). These are systemd's protocol, not deployq settings, which is why
they are read from the environment here.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class SdNotifier:
    """Send READY=1, STATUS=..., WATCHDOG=1, STOPPING=1; a no-op without a socket."""

    def __init__(self, socket_path: str | None, *, watchdog_usec: int | None = None) -> None:
        self.socket_path = socket_path or None
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._status: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SdNotifier:
        """Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID as systemd sets them."""
        env = os.environ if environ is None else environ
        usec: int | None = None
        raw = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if raw.isdigit() and (not pid or (pid.isdigit() and int(pid) == os.getpid())):
            usec = int(raw)
        return cls(env.get("NOTIFY_SOCKET"), watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        return self.socket_path is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """Half the watchdog period, as sd_watchdog_enabled(3) recommends; None when off."""
        if self.watchdog_usec is None or not self.enabled:
            return None
        return self.watchdog_usec / 2_000_000

    def notify(self, message: str) -> bool:
        """Send one datagram; False (and a debug line) when it cannot be delivered."""
        if self.socket_path is None:
            return False
        address = self.socket_path
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(message.encode(), address)
        except OSError as exc:
            log.debug("sd_notify %r to %s failed: %s", message, self.socket_path, exc)
            return False
        return True

    def ready(self) -> None:
        self.notify("READY=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def status(self, text: str) -> None:
        """STATUS=text, sent only when it changed."""
        if text != self._status:
            self._status = text
            self.notify(f"STATUS={text}")
