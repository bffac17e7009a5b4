"""sd_notify without libsystemd: READY / WATCHDOG / STATUS / STOPPING / RELOADING over ``$NOTIFY_SOCKET``.

A no-op when the service is not started by systemd with ``Type=notify`` (no ``$NOTIFY_SOCKET``).
Send errors are logged once and never raised: a missing notification must not stop the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

logger = logging.getLogger(__name__)


def watchdog_interval_s(environ: Mapping[str, str], pid: int) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds (how often to ping), or None when the watchdog is off for us."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    try:
        if owner and int(owner) != pid:
            return None
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


class Notifier:
    """Talks to systemd's notification socket (path or abstract ``@name``)."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if raw.startswith("@"):
            self.address = b"\0" + raw[1:].encode()
        elif raw.startswith("/"):
            self.address = raw
        elif raw:
            logger.warning("ignoring NOTIFY_SOCKET=%r: expected a path or an abstract name ('@...')", raw)
        self.watchdog_interval_s = watchdog_interval_s(env, os.getpid()) if self.address else None
        self._sock: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self.address is not None

    def notify(self, state: str) -> bool:
        """Send one raw state string (``KEY=VALUE`` lines); True when it was sent."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(state.encode("utf-8", "replace"), self.address)
        except OSError as exc:
            if not self._failed:
                logger.warning("cannot notify systemd at %r: %s", self.address, exc)
                self._failed = True
            return False
        return True

    def ready(self) -> None:
        """Start-up is complete (``Type=notify`` units leave 'activating')."""
        self.notify("READY=1")

    def watchdog(self) -> None:
        """Keep-alive ping; call every ``watchdog_interval_s`` while healthy."""
        self.notify("WATCHDOG=1")

    def status(self, text: str) -> None:
        """One line shown by ``systemctl status``."""
        self.notify("STATUS=" + " ".join(text.splitlines()))

    def stopping(self) -> None:
        """Shutdown has begun."""
        self.notify("STOPPING=1")

    def reloading(self) -> None:
        """A configuration reload has begun (send ``ready()`` when done)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for more start/stop time (e.g. while a model loads on a slow board)."""
        self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}")

    def close(self) -> None:
        """Close the socket (idempotent)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
