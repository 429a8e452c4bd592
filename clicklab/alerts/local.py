"""The local default: a real moto server (SNS, DynamoDB) and an SMTP server, on 127.0.0.1.

Both run as threads of the process that starts them (the notebook's kernel, a test), with the libraries' own
threaded servers:

* moto's :class:`~moto.moto_server.threaded_moto_server.ThreadedMotoServer` (the WSGI app of the
  ``moto_server`` command);
* aiosmtpd's :class:`~aiosmtpd.controller.Controller`, with a handler that stores every message it receives
  as an ``.eml`` file in the outbox (``build/outbox/`` by default).

They end with that process: a kernel that is killed or restarted takes its listening sockets with it, so
nothing is left to find or stop afterwards. :class:`LocalServices` starts both and stops both (also when the
``with`` block fails), and checks that their ports are free again.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clicklab.exceptions import ClicklabError
from clicklab.loopback import LOOPBACK as HOST
from clicklab.loopback import free_port, port_open

#: What the local default hands to boto3 explicitly (never through os.environ): moto accepts anything.
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                     "aws_session_token": "testing", "region_name": "us-east-1"}
#: How often to try another free port when one is taken between the probe and the bind.
BIND_ATTEMPTS = 3
START_TIMEOUT_S = 30.0


def outbox_dir(build: Path) -> Path:
    """Where the local SMTP server stores received messages."""
    return Path(build) / "outbox"


def wait_port_free(name: str, port: int, timeout_s: float = 5.0) -> None:
    """Return once nothing accepts connections on ``port``; :class:`ClicklabError` naming it otherwise."""
    deadline = time.monotonic() + timeout_s
    while port_open(port):
        if time.monotonic() > deadline:
            raise ClicklabError(f"the {name} server was stopped but port {HOST}:{port} still accepts connections")
        time.sleep(0.05)


@dataclass
class Server:
    """One server running in this process: its port, and how to stop it."""

    name: str
    port: int
    _stop: Callable[[], None] = field(repr=False)
    stopped: bool = False

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the server (once) and check that its port is free."""
        if not self.stopped:
            self.stopped = True
            self._stop()
        wait_port_free(self.name, self.port, timeout_s)


def start_moto(timeout_s: float = START_TIMEOUT_S) -> Server:
    """moto's threaded server on 127.0.0.1, on a port the system picks when it binds (no probe, no race).

    ``ThreadedMotoServer.start`` waits without a timeout for a bind that, when it fails, ends its thread
    quietly: it is called from a helper thread here, so a failed start is an error, not a hang.
    """
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    requests_log = logging.getLogger("werkzeug")
    if requests_log.level == logging.NOTSET:  # unless configured: not one line per request in the kernel's output
        requests_log.setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
    starter = threading.Thread(target=server.start, name="clicklab-moto-start", daemon=True)
    starter.start()
    starter.join(timeout_s)
    if starter.is_alive():
        raise ClicklabError(f"the local moto server did not start on {HOST} within {timeout_s:.0f} s")
    _, port = server.get_host_and_port()
    return Server("moto", int(port), server.stop)


#: Numbers the stored messages of every SMTP server of this process (their names never collide).
_MESSAGE_NUMBERS = itertools.count(1)


class OutboxHandler:
    """aiosmtpd handler: every message received is written to ``outbox`` as an ``.eml`` file.

    Written under a hidden temporary name first, then renamed, so a reader never sees half a message.
    """

    def __init__(self, outbox: Path) -> None:
        self.outbox = Path(outbox)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{stamp}-{os.getpid()}-{next(_MESSAGE_NUMBERS):05d}.eml"
        tmp = self.outbox / f".{name}.tmp"
        tmp.write_bytes(envelope.original_content or envelope.content)
        tmp.replace(self.outbox / name)
        return "250 Message accepted for delivery"


def start_smtp(outbox: Path, attempts: int = BIND_ATTEMPTS) -> Server:
    """aiosmtpd's threaded SMTP server on a free port of 127.0.0.1, storing messages in ``outbox``.

    The Controller needs the port before it binds (it connects to it to check the server answers), so the
    port is probed first; when another process takes it in between, the bind fails and another is tried.
    """
    from aiosmtpd.controller import Controller

    outbox = Path(outbox)
    outbox.mkdir(parents=True, exist_ok=True)
    last: OSError | None = None
    for _ in range(attempts):
        port = free_port()
        controller = Controller(OutboxHandler(outbox), hostname=HOST, port=port)
        try:
            controller.start()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            last = exc
            controller.loop.close()
            continue
        return Server("smtp", port, controller.stop)
    raise ClicklabError(f"the local SMTP server found no free port on {HOST} in {attempts} attempts: {last}")


class LocalServices:
    """moto and the SMTP server, started together in this process, stopped together."""

    def __init__(self, build: Path, outbox: Path | None = None) -> None:
        self.build = Path(build)
        self.outbox = Path(outbox) if outbox else outbox_dir(build)
        self.moto: Server | None = None
        self.smtp: Server | None = None

    def start(self) -> LocalServices:
        try:
            self.moto = start_moto()
            self.smtp = start_smtp(self.outbox)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both (again: nothing happens) and check their ports are free; errors name the ports."""
        errors = []
        for server in (self.smtp, self.moto):
            if server is not None:
                try:
                    server.stop()
                except ClicklabError as exc:
                    errors.append(str(exc))
        if errors:
            raise ClicklabError("; ".join(errors))

    def ports(self) -> dict[str, int]:
        """The port of each server started: ``{"moto": ..., "smtp": ...}``."""
        return {s.name: s.port for s in (self.moto, self.smtp) if s is not None}

    def session(self) -> Any:
        """A boto3 session with the dummy credentials moto accepts (only for the local servers)."""
        import boto3

        return boto3.session.Session(**LOCAL_CREDENTIALS)

    def __enter__(self) -> LocalServices:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
