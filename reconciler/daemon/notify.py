"""systemd's notify protocol: READY=1 after the first full pass, WATCHDOG=1 while healthy.

A datagram to ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace); no
socket set means not under systemd, and every call is a no-op.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        # Taken out of the environment (sd_notify's unset_environment): children of the
        # daemon — runc, conmon, containers — must not talk to systemd in our name.
        env_addr = os.environ.pop("NOTIFY_SOCKET", None)
        addr = address if address is not None else env_addr
        self.address = None if not addr else ("\0" + addr[1:] if addr[0] == "@" else addr)
        usec = os.environ.pop("WATCHDOG_USEC", "")
        pid = os.environ.pop("WATCHDOG_PID", "")
        ok_pid = not pid or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and ok_pid else None

    def send(self, *lines: str) -> None:
        if self.address is None:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            try:
                s.sendto("\n".join(lines).encode(), self.address)
            except OSError:
                return  # systemd went away: nothing to tell
