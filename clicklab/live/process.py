"""The live generator as a background process: started, watched and stopped from any process.

The generator is started from one notebook kernel (:func:`start_background`: ``python -m clicklab
generate --live ...``, detached) and stopped from another (the cleanup notebook) or from the command
line, so it registers itself in ``<build>/live/generator.json`` (pid, its start time in the kernel's
clock ticks, options, and the scenario's session definitions) and writes ``<build>/live/status.json``
about every second (events and files so far, current rate, last event time, how far behind real time):
:func:`status` reads both. :func:`stop` checks that the pid is still that process and a live generator
(``/proc``) before it signals it; SIGTERM or SIGINT end it after the file being written, leaving no
``.tmp`` behind. (The generator itself, and :func:`~clicklab.live.generator.run_live` that runs it in
the foreground, are in :mod:`clicklab.live.generator`.)
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clicklab import settings
from clicklab.exceptions import ClicklabError
from clicklab.live.options import KEEP_S, LiveOptions, _read_json, _write_json, live_dir, tickerstream_dir
from clicklab.live.sink import _remove_tmp
from clicklab.scenario import load_scenario

__all__ = ["GeneratorInfo", "register", "start_background", "status", "stop", "unregister"]

log = logging.getLogger(__name__)

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # generators this process started, to reap them


@dataclass(frozen=True)
class GeneratorInfo:
    """A registered live generator (``generator.json``) and its last status (``status.json``).

    ``running`` is False when the process is gone without having unregistered (killed).
    ``phase`` is ``starting``, ``backfill``, ``live`` or ``stopped``; ``events_per_s`` is the rate
    over the last 10 seconds of event time; ``behind_s`` how late the next file is (0 while the
    generator keeps up with real time; during a backfill, how far it still has to go).
    """

    pid: int
    running: bool
    started: str
    build: Path
    scenario: str
    options: dict[str, Any]
    log: Path
    phase: str
    events: int = 0
    files: int = 0
    last_event_time: str | None = None
    events_per_s: float = 0.0
    behind_s: float | None = None
    updated: str | None = None
    sessions: tuple[dict[str, str], ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        state = "running" if self.running else "not running (its process is gone)"
        behind = f", {self.behind_s:.1f} s behind" if self.behind_s is not None else ""
        return (f"live generator pid {self.pid} {state} since {self.started}: {self.phase}, "
                f"{self.events:,} events in {self.files:,} files, {self.events_per_s:,.1f} events/s, "
                f"last event {self.last_event_time or '-'}{behind}; log {self.log}")


def start_background(build: str | Path = settings.DEFAULT_BUILD, scenario: str | Path = "lab", seed: int = 42,
                     backfill_s: float = 0.0, scale: float = 1.0, flush_s: float | None = None,
                     duration_s: float | None = None, keep_s: float = KEEP_S, bootstrap: str | None = None,
                     timeout_s: float = 60.0) -> GeneratorInfo:
    """Start ``python -m clicklab generate --live ...`` as a detached process and return once it has registered.

    Its output goes to ``<build>/live/generator.log``. It keeps running when this process (a
    notebook kernel) ends; :func:`stop` ends it, from any process.

    Raises:
        ClicklabError: an option is invalid, a generator is already running for ``build``, or the
            process exited or did not register within ``timeout_s`` (the message has its last log line).
    """
    options = LiveOptions(seed=seed, backfill_s=backfill_s, scale=scale, flush_s=flush_s, duration_s=duration_s,
                          keep_s=keep_s, bootstrap=bootstrap)
    load_scenario(scenario)  # a bad name or file fails here, in one line
    build = Path(build)
    current = status(build)
    if current is not None and current.running:
        raise ClicklabError(f"a live generator (pid {current.pid}) is already running for {build}: "
                            f"stop it first (clicklab generate --live --stop --build {build})")
    live = live_dir(build)
    live.mkdir(parents=True, exist_ok=True)
    log_path = live / "generator.log"
    cmd = [sys.executable, "-m", "clicklab", "generate", "--live", "--scenario", str(scenario),
           "--build", str(build.resolve()), *options.cli_args()]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    _CHILDREN[proc.pid] = proc
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = _read_json(live / "generator.json")
        if record is not None and record.get("pid") == proc.pid:
            info = status(build)
            assert info is not None
            log.info("live generator started: pid %d, log %s", proc.pid, log_path)
            return info
        if proc.poll() is not None:
            _CHILDREN.pop(proc.pid, None)
            raise ClicklabError(f"the live generator exited with code {proc.returncode}: {_last_line(log_path)} "
                                f"(log: {log_path})")
        time.sleep(0.05)
    _terminate(proc.pid, None, 5.0)
    raise ClicklabError(f"the live generator did not start within {timeout_s:g} s (log: {log_path})")


def status(build: str | Path = settings.DEFAULT_BUILD) -> GeneratorInfo | None:
    """The registered generator of ``build`` and its last status, or None if none is registered."""
    build = Path(build)
    live = live_dir(build)
    record = _read_json(live / "generator.json")
    if record is None:
        return None
    pid = int(record.get("pid", 0))
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:  # reap our own child
        _CHILDREN.pop(pid, None)
    state = _read_json(live / "status.json") or {}
    if state.get("token") != record.get("token"):
        state = {}
    return GeneratorInfo(
        pid=pid, running=_alive(record), started=str(record.get("started", "")), build=build,
        scenario=str(record.get("scenario", "")), options=dict(record.get("options", {})),
        log=live / "generator.log", phase=str(state.get("phase", "starting")), events=int(state.get("events", 0)),
        files=int(state.get("files", 0)), last_event_time=state.get("last_event_time"),
        events_per_s=float(state.get("events_per_s", 0.0)), behind_s=state.get("behind_s"),
        updated=state.get("updated"), sessions=tuple(state.get("sessions", ())),
    )


def stop(build: str | Path = settings.DEFAULT_BUILD, timeout_s: float = 10.0) -> bool:
    """Stop the live generator of ``build``: SIGTERM, then SIGKILL after ``timeout_s``. True if one was running.

    The pid in ``generator.json`` is signalled only if that process is still the one that
    registered (same start time) and is a ``clicklab generate --live``. Leaves no registration
    and no ``.tmp`` file behind.

    Raises:
        ClicklabError: the registered generator runs inside this very process (call its ``request_stop``).
    """
    build = Path(build)
    path = live_dir(build) / "generator.json"
    record = _read_json(path)
    if record is None:
        return False
    pid = int(record.get("pid", 0))
    stopped = False
    if _alive(record):
        if pid == os.getpid():
            raise ClicklabError("the live generator runs in this process: call its request_stop()")
        if _is_live_generator(pid):
            _terminate(pid, record, timeout_s)
            stopped = True
        else:
            log.warning("pid %d in %s is not a live generator any more: not signalled", pid, path)
    unregister(build, record.get("token"))
    _remove_tmp(tickerstream_dir(build))
    return stopped


def register(build: Path, record: Mapping[str, Any]) -> None:
    """Register this process as the live generator of ``build``: ``generator.json`` holds its pid and start time,
    then ``record`` (with the ``token`` that :func:`unregister` and ``status.json`` name it by).

    Raises:
        ClicklabError: a running generator is registered for ``build`` already.
    """
    path = live_dir(build) / "generator.json"
    current = _read_json(path)
    if current is not None and _alive(current):
        raise ClicklabError(f"a live generator (pid {current.get('pid')}) is already running for {build}: "
                            f"stop it first (clicklab generate --live --stop --build {build})")
    _write_json(path, {"pid": os.getpid(), "proc_start": _proc_start(os.getpid()), **record})


def unregister(build: Path, token: Any) -> None:
    """Delete ``generator.json`` of ``build`` if it is still the registration of ``token``."""
    path = live_dir(build) / "generator.json"
    current = _read_json(path)
    if current is not None and current.get("token") == token:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# helpers: processes, logs


def _proc_start(pid: int) -> int | None:
    """The start time (clock ticks since boot) of a live, non-zombie process, or None if there is none.

    Where ``/proc`` is missing (macOS), a live process reports -1 (start time unknown).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return -1
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _alive(record: Mapping[str, Any]) -> bool:
    """True if the registered process is running and is the one that registered (same start time)."""
    try:
        pid = int(record["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    started = _proc_start(pid)
    if started is None:
        return False
    recorded = record.get("proc_start")
    return started == -1 or recorded in (None, -1) or started == recorded


def _is_live_generator(pid: int) -> bool:
    """True if the command line of ``pid`` is a ``clicklab generate --live``."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:
            text = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True,
                                  timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            return False
        args = [a.encode() for a in text.split()]
    words = [a.decode(errors="replace") for a in args]
    return "--live" in words and "generate" in words and any("clicklab" in w for w in words)


def _terminate(pid: int, record: Mapping[str, Any] | None, timeout_s: float) -> None:
    """SIGTERM ``pid``, wait up to ``timeout_s``, then SIGKILL it; reaps it if it is our child."""
    proc = _CHILDREN.pop(pid, None)

    def gone(seconds: float) -> bool:
        if proc is not None:
            try:
                proc.wait(seconds)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not _alive(record or {"pid": pid}):
                return True
            time.sleep(0.05)
        return not _alive(record or {"pid": pid})

    for sig, seconds in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if gone(seconds):
            return
        if sig == signal.SIGTERM:
            log.warning("live generator pid %d did not stop within %g s: killing it", pid, timeout_s)


def _last_line(path: Path) -> str:
    """The last non-empty line of a log file (for one-line errors)."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1].strip() if lines else "(empty log)"
