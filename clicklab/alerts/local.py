"""The local default: a real ``moto_server`` (SNS, DynamoDB) and an SMTP server, on 127.0.0.1.

Each server runs in its own process, started here with ``python -m clicklab.alerts.local``:

* ``moto``: moto's server (the same WSGI app as the ``moto_server`` command) on a free port;
* ``smtp``: an ``aiosmtpd`` server that stores every message it receives as an ``.eml`` file in the
  outbox (``build/outbox/`` by default).

A pid file per server (``build/alerts/run/<name>.json``: pid, port, url) lets notebook 12, a test, or the
next start stop what a crashed kernel left. Each server also watches the process that started it and
exits when it is gone, so even a killed kernel leaves no orphan. :class:`LocalServices` is a context
manager that stops both, also on failure, and checks that their ports are free again.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clicklab.exceptions import ClicklabError

HOST = "127.0.0.1"
#: What the local default hands to boto3 explicitly (never through os.environ): moto accepts anything.
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                     "aws_session_token": "testing", "region_name": "us-east-1"}


def run_dir(build: Path) -> Path:
    """Where the pid files live."""
    return Path(build) / "alerts" / "run"


def outbox_dir(build: Path) -> Path:
    """Where the local SMTP server stores received messages."""
    return Path(build) / "outbox"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


@dataclass
class Service:
    """A server process this module started."""

    name: str
    pid: int
    port: int
    pidfile: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return _is_ours(self.pid)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate, wait, kill if needed; remove the pid file; make sure the port is free."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout_s)
        elif _is_ours(self.pid):
            _terminate_pid(self.pid, timeout_s)
        self.pidfile.unlink(missing_ok=True)
        deadline = time.monotonic() + timeout_s
        while port_open(self.port):
            if time.monotonic() > deadline:
                raise ClicklabError(f"{self.name} server stopped but port {HOST}:{self.port} is still bound")
            time.sleep(0.1)


def _is_ours(pid: int) -> bool:
    """The pid is alive and runs ``clicklab.alerts.local`` (not a recycled pid of someone else)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and "clicklab.alerts.local" in " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _terminate_pid(pid: int, timeout_s: float) -> None:
    import psutil

    try:
        proc = psutil.Process(pid)
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)
    except psutil.NoSuchProcess:
        pass


def start(name: str, build: Path, extra: list[str] | None = None, timeout_s: float = 30.0) -> Service:
    """Start one server (``moto`` or ``smtp``) on a free port and wait until it answers."""
    folder = run_dir(build)
    folder.mkdir(parents=True, exist_ok=True)
    pidfile = folder / f"{name}.json"
    stop_stale(build, [name])
    log = open(folder / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it; closed below
    for _ in range(3):  # another process may grab the free port between the probe and the bind
        port = free_port()
        cmd = [sys.executable, "-m", "clicklab.alerts.local", name, "--port", str(port),
               "--parent-pid", str(os.getpid()), "--pidfile", str(pidfile), *(extra or [])]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        service = Service(name, proc.pid, port, pidfile, proc)
        pidfile.write_text(json.dumps({"name": name, "pid": proc.pid, "port": port, "parent": os.getpid()}))
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline and not port_open(port):
            time.sleep(0.1)
        if proc.poll() is None and port_open(port):
            log.close()
            atexit.register(_stop_quietly, service)
            return service
        service.stop()
    log.close()
    raise ClicklabError(f"the local {name} server did not start on {HOST}: see {folder / f'{name}.log'}")


def _stop_quietly(service: Service) -> None:
    with contextlib.suppress(Exception):
        service.stop()


def running(build: Path) -> list[Service]:
    """Servers whose pid file is under ``build`` and whose process is still ours and alive."""
    found = []
    for pidfile in sorted(run_dir(build).glob("*.json")):
        try:
            info = json.loads(pidfile.read_text())
            service = Service(info["name"], int(info["pid"]), int(info["port"]), pidfile)
        except (OSError, ValueError, KeyError):
            pidfile.unlink(missing_ok=True)
            continue
        if service.running():
            found.append(service)
        else:
            pidfile.unlink(missing_ok=True)  # stale: its process is gone
    return found


def stop_stale(build: Path, names: list[str] | None = None) -> list[str]:
    """Stop servers left running under ``build`` (all, or those named); say what was stopped."""
    stopped = []
    for service in running(build):
        if names is None or service.name in names:
            service.stop()
            stopped.append(f"{service.name} (pid {service.pid}, port {service.port})")
    return stopped


class LocalServices:
    """moto and the SMTP server, started together, stopped together (also from ``atexit``)."""

    def __init__(self, build: Path, outbox: Path | None = None) -> None:
        self.build = Path(build)
        self.outbox = Path(outbox) if outbox else outbox_dir(build)
        self.moto: Service | None = None
        self.smtp: Service | None = None

    def start(self) -> LocalServices:
        try:
            self.moto = start("moto", self.build)
            self.outbox.mkdir(parents=True, exist_ok=True)
            self.smtp = start("smtp", self.build, ["--outbox", str(self.outbox.resolve())])
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        errors = []
        for service in (self.smtp, self.moto):
            if service is not None:
                try:
                    service.stop()
                except ClicklabError as exc:
                    errors.append(str(exc))
        if errors:
            raise ClicklabError("; ".join(errors))

    def session(self) -> Any:
        """A boto3 session with the dummy credentials moto accepts (only for the local servers)."""
        import boto3

        return boto3.session.Session(**LOCAL_CREDENTIALS)

    def __enter__(self) -> LocalServices:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# The server processes (python -m clicklab.alerts.local moto|smtp ...)


def _watch_parent(parent_pid: int, stop: threading.Event) -> None:
    """Set ``stop`` when the process that started us is gone (a killed kernel leaves no orphan)."""
    import psutil

    while not stop.wait(0.5):
        if not psutil.pid_exists(parent_pid) or os.getppid() == 1:
            stop.set()


def _serve(args: argparse.Namespace) -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=_watch_parent, args=(args.parent_pid, stop), daemon=True).start()
    if args.server == "moto":
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address=HOST, port=args.port, verbose=False)
        server.start()
        stop.wait()
        server.stop()
        return
    from aiosmtpd.controller import Controller

    outbox = Path(args.outbox)
    outbox.mkdir(parents=True, exist_ok=True)

    class Store:
        count = 0

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            Store.count += 1
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            name = f"{stamp}-{os.getpid()}-{Store.count:05d}.eml"
            tmp = outbox / f".{name}.tmp"
            tmp.write_bytes(envelope.original_content or envelope.content)
            tmp.replace(outbox / name)
            return "250 Message accepted for delivery"

    controller = Controller(Store(), hostname=HOST, port=args.port)
    controller.start()
    stop.wait()
    controller.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m clicklab.alerts.local")
    p.add_argument("server", choices=["moto", "smtp"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--parent-pid", type=int, required=True)
    p.add_argument("--outbox", default="build/outbox")
    p.add_argument("--pidfile", default=None, help="removed when the server exits")
    args = p.parse_args(argv)
    try:
        _serve(args)
    finally:
        if args.pidfile:
            pidfile = Path(args.pidfile)
            with contextlib.suppress(OSError, ValueError):
                if json.loads(pidfile.read_text()).get("pid") == os.getpid():
                    pidfile.unlink()


if __name__ == "__main__":
    main()
