"""`sd_notify`: tell systemd a service is ready or stopping (Type=notify), without systemd-python.

Shared by the signer shim and the coordinator: one datagram to `$NOTIFY_SOCKET`, nothing when the
variable is unset (run by hand or in tests)."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("keyrite.sdnotify")


def sd_notify(message: str = "READY=1") -> bool:
    """Send `message` to $NOTIFY_SOCKET if set (leading @: abstract namespace); True if sent."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    target = "\0" + addr[1:] if addr.startswith("@") else addr
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(target)
            s.sendall(message.encode())
    except OSError as e:  # the service manager's problem, not a reason to stop serving
        log.warning("sd_notify %s to %s failed: %s", message, addr, e)
        return False
    return True
