"""The lab's servers listen on 127.0.0.1 only: free ports, whether one is open, and a lock per build folder.

Shared by the Flink cluster (:mod:`clicklab.cluster`), the Kafka broker (:mod:`clicklab.kafka.broker`) and the
local alert servers (:mod:`clicklab.alerts.local`).
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
from collections.abc import Iterator
from pathlib import Path

LOOPBACK = "127.0.0.1"


def port_open(port: int, timeout_s: float = 1.0) -> bool:
    """Something accepts connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        return s.connect_ex((LOOPBACK, port)) == 0


def free_port() -> int:
    """A port nothing listens on now (the system's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def can_bind(port: int) -> bool:
    """``port`` can be listened on now (a restarted server may take its old port again). As a server binds it
    (``SO_REUSEADDR``, Java's default): the connections of a server just stopped, in ``TIME_WAIT`` for a minute,
    do not hold the port; only a socket listening on it does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """One ``up`` or ``down`` at a time for the server kept in ``folder`` (two notebooks may ask at once)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
