"""The live generator: a scenario's traffic sent in real time into a folder that Flink watches.

``clicklab generate --live`` plays the role of AWS's Kinesis Data Generator (KDG) sending into
the ``tickerstream`` Kinesis stream: the scenario's normal ``senders`` emit copies of their
record templates at their rates (Poisson or constant arrivals, with drift), for as long as it
runs, each record stamped with the wall-clock time it is sent. The records go to
``<build>/streams/tickerstream/``, which the live pipeline reads with Flink's filesystem source
and ``source.monitor-interval``:

* one file per flush interval (default :data:`FLUSH_S`), named ``<epoch ms>-<seq>.jsonl`` after
  the interval's start, so names sort by time, holding the interval's records in time order
  (the replay's record format: template fields, then ``event_time`` in ISO-8601 UTC with
  milliseconds and ``Z``). An interval with no records writes no file.
* A file appears complete: it is written as ``.<name>.tmp`` (Flink's file source skips names
  that start with ``.`` or ``_``) and renamed. Files hold consecutive intervals: a file never
  holds a record older than one of an earlier file (a restart continues after the newest
  record already in the folder).
* ``backfill_s`` first writes the traffic of ``[now - backfill, now)`` at full speed, as one
  file, then the generator continues in real time from ``now`` (no gap, no overlap). When it is
  behind (after a long backfill at a high ``scale``, or a stall), the next file holds every
  interval that is over: it catches up in one file.
* Why one file, not many: Flink's filesystem source reads the new files one scan finds in
  directory order, not by name (seen with Flink 2.3: 34 files found at once were read
  with 17 jumps back in time), and records older than the watermark are dropped. So files are committed
  at least :data:`MIN_SPACING` flush intervals apart, and a pipeline whose
  ``source.monitor-interval`` is below that and which is *already running* when the generator
  starts sees one new file per scan, in time order. A job started later finds the existing
  files all at once, in any order: start the live job first, then the generator.
* Time offset 0 of the scenario (the drift's phase) is the first event time written, ``now -
  backfill``. The normal senders run from there until the generator stops; their ``start`` and
  ``duration`` in the file (which tie them to the scenario's length) are not used, nor are the
  scenario's labelled ``anomalies`` as such: those are *sessions*, played on demand.
* ``scale`` multiplies the rate of every sender of the scenario (its sessions' included).
* Randomness: each sender has its own stream per interval, keyed by the seed, the sender and the
  interval's offset, so the same seed and start time give the same files.

**Sessions** (:func:`send`, ``clicklab send``): one KDG session played by the running generator from
the next window boundary (:mod:`clicklab.session_start`: its windows are whole). A session has the
schema of a scenario's ``anomalies:`` entry without ``start``: it multiplies the normal senders of
``site`` by ``rate_factor`` (0 silences them) and adds its own ``senders`` for ``duration`` seconds.
``send(build, session="studio-lab-burst")`` plays one of the scenario's anomaly definitions by its
``kind``; ``send(build, template=..., rate=..., duration=...)`` any template (its rate is taken as
given: ``scale`` does not apply). The request is a JSON file dropped atomically into
``<build>/live/sessions/``; the generator picks it up once its time is near, starts the session at
the request's time (or at the first moment not yet written, if later), answers with the times it
scheduled and appends a row to ``<build>/live/labels.csv`` (``site,start,end,kind``, the replay
labels format) with exactly the window in which the session's traffic was sent (cut short if the
generator stops before its end).

**Running in the background** (:func:`start_background`, :func:`status`, :func:`stop`): the
generator is started from one notebook kernel and stopped from another (the cleanup notebook)
or from the command line, so it registers itself in ``<build>/live/generator.json`` (pid, its
start time in the kernel's clock ticks, options, and the scenario's session definitions) and
writes ``<build>/live/status.json`` about every second (events and files so far, current rate,
last event time, how far behind real time). :func:`stop` checks that the pid is still that
process and a live generator (``/proc``) before it signals it; SIGTERM or SIGINT end it after
the file being written, leaving no ``.tmp`` behind.

**Housekeeping**: about every :data:`ROTATE_EVERY_S` seconds the generator tidies every live stream
folder (:func:`clicklab.live.tidy`: files older than a few seconds move to the folder's archive, archived
ones older than ``keep_s`` are deleted), so an hour's run keeps a bounded number of files.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from clicklab import live, settings
from clicklab.exceptions import ClicklabError
from clicklab.generator import (
    _Formatter,
    _merge_window,
    _name_key,
    _plain,
    _Plan,
    _start_block,
    _window_size_ms,
)
from clicklab.scenario import ARRIVALS, Anomaly, Scenario, format_time, load_scenario, parse_scenario
from clicklab.session_start import describe_start, next_window_start_ms

__all__ = [
    "FLUSH_S",
    "KEEP_S",
    "MIN_SPACING",
    "ROTATE_EVERY_S",
    "WINDOW_S",
    "GeneratorInfo",
    "LiveGenerator",
    "LiveOptions",
    "LiveResult",
    "ScheduledSession",
    "live_dir",
    "parse_duration",
    "run_live",
    "send",
    "session_definition",
    "start_background",
    "status",
    "stop",
    "template_session",
    "tickerstream_dir",
]

log = logging.getLogger(__name__)

FLUSH_S = 0.5
"""Default flush interval: seconds of event time per tickerstream file."""

KEEP_S = 600.0
"""Default age (seconds, by modification time) after which archived stream files are deleted (see live.tidy)."""

MIN_SPACING = 0.8
"""Files are committed at least this many flush intervals apart (wall clock), also after a backfill
or while catching up: a Flink scan every ``source.monitor-interval`` below that sees one new file."""

WINDOW_S = 10.0
"""At most this many seconds of event time are generated at a time (fewer at high rates: bounded memory)."""

ROTATE_EVERY_S = 10.0
"""How often (seconds) the generator rotates the tickerstream folder."""

STATUS_EVERY_S = 1.0
"""How often (seconds) the generator rewrites ``status.json``."""

LOG_EVERY_S = 10.0
"""How often (seconds) the generator logs its progress."""

REQUEST_KEEP_S = 60.0
"""Session requests and answers older than this (seconds) are deleted by the generator."""

FILE_RE = re.compile(r"^(\d{13})-(\d{6,})\.jsonl$")
"""Names of committed tickerstream files: ``<interval start, epoch ms>-<sequence>.jsonl``."""

_FOREVER_MS = 2**62
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # generators this process started, to reap them


# --------------------------------------------------------------------------------------------
# paths and options


def live_dir(build: str | Path = settings.DEFAULT_BUILD) -> Path:
    """``<build>/live/``: the generator's registration, status, log, labels and session requests."""
    return Path(build) / "live"


def tickerstream_dir(build: str | Path = settings.DEFAULT_BUILD) -> Path:
    """``<build>/streams/tickerstream/``: the folder the live generator writes and Flink watches."""
    return settings.streams_dir(Path(build)) / "tickerstream"


def parse_duration(value: str | float | int, option: str = "--backfill") -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``1h`` or ``1.5h`` (or a number); ``option`` names it in errors.

    >>> parse_duration("30m"), parse_duration("90s"), parse_duration("1h"), parse_duration(45)
    (1800.0, 90.0, 3600.0, 45.0)
    """
    if isinstance(value, bool):
        raise ClicklabError(f"{option}: {value!r} is not a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION_RE.match(str(value))
        if m is None:
            raise ClicklabError(
                f"{option}: {value!r} is not a duration (seconds, or a number with s, m or h: 90, 90s, 30m, 1h)"
            )
        seconds = float(m[1]) * _UNITS[m[2].lower()]
    if not math.isfinite(seconds) or seconds < 0:
        raise ClicklabError(f"{option}: {value!r} is not a duration (a non-negative number of seconds)")
    return seconds


@dataclass(frozen=True)
class LiveOptions:
    """How the live generator runs; checked on creation (errors name the command-line option).

    ``seed``: random streams; ``backfill_s``: seconds of past traffic written first at full
    speed; ``scale``: factor on every rate; ``flush_s``: seconds per file; ``duration_s``: stop
    after this much real-time traffic (None: until stopped); ``keep_s``: rotation age.
    """

    seed: int = 42
    backfill_s: float = 0.0
    scale: float = 1.0
    flush_s: float = FLUSH_S
    duration_s: float | None = None
    keep_s: float = KEEP_S

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ClicklabError(f"--seed must be a non-negative integer, got {self.seed!r}")
        _number("--backfill", self.backfill_s, minimum=0.0)
        _number("--scale", self.scale, minimum=0.0, inclusive=False)
        _number("--flush", self.flush_s, minimum=0.01, maximum=60.0)
        if self.duration_s is not None:
            _number("--duration", self.duration_s, minimum=0.0, inclusive=False)
        _number("--keep", self.keep_s, minimum=0.0, inclusive=False)
        if self.keep_s < 2 * self.flush_s:
            raise ClicklabError(f"--keep must be at least two flush intervals ({2 * self.flush_s:g} s), "
                                f"got {self.keep_s!r}")

    def cli_args(self) -> list[str]:
        """The options as ``clicklab generate --live`` arguments."""
        args = ["--seed", str(self.seed), "--backfill", repr(float(self.backfill_s)), "--scale", repr(self.scale),
                "--flush", repr(self.flush_s), "--keep", repr(float(self.keep_s))]
        if self.duration_s is not None:
            args += ["--duration", repr(float(self.duration_s))]
        return args


def _number(option: str, value: Any, minimum: float, maximum: float | None = None, inclusive: bool = True) -> None:
    """Refuse ``value`` unless it is a finite number within the bounds, naming ``option``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value >= minimum if inclusive else value > minimum) and (maximum is None or value <= maximum)
    if not ok:
        bound = f"{'at least' if inclusive else 'more than'} {minimum:g}"
        if maximum is not None:
            bound += f" and at most {maximum:g}"
        raise ClicklabError(f"{option} must be a number {bound}, got {value!r}")


# --------------------------------------------------------------------------------------------
# results and status


@dataclass(frozen=True)
class ScheduledSession:
    """A session the generator scheduled: its traffic changes during ``[start, end)`` (UTC)."""

    id: str
    site: str
    kind: str
    start: datetime
    end: datetime

    def __str__(self) -> str:
        return f"{self.kind} on {self.site}: {_iso_dt(self.start)} to {_iso_dt(self.end)}{describe_start(self.start)}"


@dataclass(frozen=True)
class LiveResult:
    """What a run of :class:`LiveGenerator` wrote: records, files, sessions and its time range (epoch ms)."""

    events: int
    files: int
    backfill_events: int
    sessions: tuple[ScheduledSession, ...]
    first_ms: int
    live_start_ms: int
    end_ms: int


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


# --------------------------------------------------------------------------------------------
# sessions


def session_definition(scenario: Scenario, kind: str) -> dict[str, Any]:
    """The definition of the scenario's anomaly ``kind`` as a session (an ``anomalies:`` entry without start).

    Raises:
        ClicklabError: the scenario has no anomaly of that kind (the message lists the kinds).
    """
    for anomaly in scenario.anomalies:
        if anomaly.kind == kind:
            return _definition(anomaly)
    kinds = ", ".join(dict.fromkeys(a.kind for a in scenario.anomalies)) or "none"
    raise ClicklabError(f"--session: scenario {scenario.name!r} has no session {kind!r} (its sessions: {kinds})")


def template_session(template: Mapping[str, Any] | str, rate: float, duration: float | str,
                     arrivals: str = "poisson", kind: str = "custom") -> dict[str, Any]:
    """A session of one sender: ``template`` (a mapping or JSON text, with a ``site``) at ``rate`` records/s
    for ``duration`` seconds, added on top of the normal traffic; labelled ``kind``.

    Raises:
        ClicklabError: a value is invalid; the message names the option.
    """
    if isinstance(template, str):
        try:
            template = json.loads(template)
        except ValueError as exc:
            raise ClicklabError(f"--template: not valid JSON: {exc}") from None
    if not isinstance(template, Mapping):
        raise ClicklabError(f"--template: must be a JSON object, got {template!r}")
    site = template.get("site")
    if not isinstance(site, str) or not site.strip():
        raise ClicklabError("--template: needs a 'site' (a string): the label row and the pipeline key on it")
    _number("--rate", rate, minimum=0.0)
    seconds = parse_duration(duration, "--duration")
    if seconds <= 0:
        raise ClicklabError(f"--duration must be more than 0 seconds, got {duration!r}")
    if arrivals not in ARRIVALS:
        raise ClicklabError(f"--arrivals must be one of {', '.join(ARRIVALS)}, got {arrivals!r}")
    if not isinstance(kind, str) or not kind.strip():
        raise ClicklabError(f"--kind must be a non-blank string, got {kind!r}")
    definition = {
        "site": site, "kind": kind, "duration": seconds,
        "senders": [{"name": f"{kind}-sender", "template": dict(template), "rate": float(rate), "arrivals": arrivals}],
    }
    _parse_session(definition, [], "--template")
    return definition


def _definition(anomaly: Anomaly) -> dict[str, Any]:
    """An anomaly as a session definition (JSON-serialisable; its senders' start relative to the anomaly)."""
    return {
        "site": anomaly.site,
        "kind": anomaly.kind,
        "duration": anomaly.duration,
        "rate_factor": dict(anomaly.rate_factor),
        "senders": [
            {"name": s.name, "template": _plain(s.template), "rate": s.rate, "arrivals": s.arrivals,
             "start": s.start - anomaly.start, "duration": s.duration,
             "drift": None if s.drift is None else asdict(s.drift)}
            for s in anomaly.senders
        ],
    }


def _parse_session(definition: Any, normal: list[dict[str, Any]], source: str) -> Anomaly:
    """Validate a session definition with the scenario schema, as an anomaly at offset 0 of a scenario
    whose normal senders are ``normal`` (``rate_factor`` keys must match them)."""
    if not isinstance(definition, dict):
        raise ClicklabError(f"{source}: a session must be a JSON object, got {definition!r}")
    duration = definition.get("duration")
    _number(f"{source}: duration", duration, minimum=0.0, inclusive=False)
    senders = normal or [{"name": " normal", "template": {}, "rate": 0}]
    data = {"name": "session", "start_time": "2000-01-01T00:00:00Z", "duration": duration, "senders": senders,
            "anomalies": [{**definition, "start": 0}]}
    return parse_scenario(data, source=source).anomalies[0]


def _sender_dicts(scenario: Scenario) -> list[dict[str, Any]]:
    """The normal senders as minimal scenario entries (name, template, rate), to validate sessions against."""
    return [{"name": s.name, "template": _plain(s.template), "rate": s.rate} for s in scenario.senders]


# --------------------------------------------------------------------------------------------
# the generator


class LiveGenerator:
    """Writes a scenario's normal traffic, and the sessions requested, into the live tickerstream.

    ``clock`` (epoch seconds) and ``wait`` (sleep for that many seconds, returning early once
    :meth:`request_stop` is called) are injectable so that tests can run minutes of traffic in
    a moment; by default they are :func:`time.time` and the stop event's ``wait``. ``register``
    writes ``generator.json``/``status.json`` (without them :func:`send` and :func:`status` do not
    see the generator). One :meth:`run` per instance.
    """

    def __init__(self, scenario: Scenario, build: str | Path = settings.DEFAULT_BUILD,
                 options: LiveOptions | None = None, *, clock: Callable[[], float] = time.time,
                 wait: Callable[[float], Any] | None = None, register: bool = True) -> None:
        self.scenario = scenario
        self.build = Path(build)
        self.options = options or LiveOptions()
        self.folder = tickerstream_dir(self.build)
        self.live = live_dir(self.build)
        self.sessions_dir = self.live / "sessions"
        self.labels_path = self.live / "labels.csv"
        self._clock = clock
        self._stop = threading.Event()
        self._wait = wait if wait is not None else self._stop.wait
        self._register = register
        self._token = secrets.token_hex(8)
        self._normal = _sender_dicts(scenario)
        self._definitions: dict[str, dict[str, Any]] = {}
        for a in scenario.anomalies:
            self._definitions.setdefault(a.kind, _definition(a))
        self._flush_ms = max(1, round(self.options.flush_s * 1000))
        # state of a run
        self._origin = 0
        self._cursor = 0
        self._plans: list[_Plan] = []
        self._n_normal = 0
        self._extras: list[_Plan] = []
        self._fmt: _Formatter | None = None
        self._window_ms = round(WINDOW_S * 1000)
        self._seq = 0
        self._events = 0
        self._files = 0
        self._backfill_events = 0
        self._sessions: list[ScheduledSession] = []
        self._session_ends: list[int] = []
        self._last_event: str | None = None
        self._rate_samples: deque[tuple[int, int]] = deque()
        self._phase = "starting"
        self._next = {"status": 0.0, "rotate": 0.0, "log": 0.0}

    # -- control

    def request_stop(self) -> None:
        """Ask :meth:`run` to end after the file it is writing (safe from a signal handler or another thread)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`request_stop` has been called."""
        return self._stop.is_set()

    # -- the run

    def run(self) -> LiveResult:
        """Backfill, then write the live traffic until stopped (or for ``duration_s``); see the module doc.

        Raises:
            ClicklabError: another live generator is registered for this build and running, or the
                folder cannot be written or holds a file whose last record cannot be read.
        """
        for folder in (self.folder, self.sessions_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ClicklabError(f"{folder}: cannot create the live folder: {exc}") from None
        if self._register:
            self._claim()
        try:
            _remove_tmp(self.folder)
            self._drop_stale_requests()
            return self._run()
        finally:
            self._phase = "stopped"
            _remove_tmp(self.folder)
            if self._register:
                self._write_status()
                self._unclaim()

    def _run(self) -> LiveResult:
        opts = self.options
        now = self._now_ms()
        origin = now - round(opts.backfill_s * 1000)
        last = _last_event_ms(self.folder)
        if last is not None and origin <= last:
            log.warning("%s already holds records up to %s: %s", self.folder, _iso(last),
                        "the backfill starts after them" if last < now else "waiting for real time to pass them")
            origin = last + 1
        self._start_timeline(origin)
        rate = sum(p.sender.rate for p in self._plans)
        log.info("live generator pid %d: scenario %s (%d senders, %s events/s at scale %g), seed %d, "
                 "%g s per file -> %s", os.getpid(), self.scenario.name, len(self._plans), f"{rate:,.1f}", opts.scale,
                 opts.seed, opts.flush_s, self.folder)
        # backfill [origin, now) at full speed, as one file
        if origin < now:
            self._phase = "backfill"
            began = time.perf_counter()
            self._emit(now, backfill=True)
            self._backfill_events = self._events
            log.info("backfill: %s events in %.1f s, %s to %s", f"{self._events:,}", time.perf_counter() - began,
                     _iso(origin), _iso(self._cursor))
        live_start = self._cursor
        end = None if opts.duration_s is None else live_start + round(opts.duration_s * 1000)
        self._phase = "live"
        self._housekeeping(force=True)
        committed, spacing = self._now_ms(), round(MIN_SPACING * self._flush_ms)
        while not self.stopping and (end is None or self._cursor < end):
            # the next interval, once it is over, and not too soon after the last file
            hi = self._cursor + self._flush_ms
            if not self._wait_until(max(hi if end is None else min(hi, end), committed + spacing)):
                break
            # everything that is over goes into this file (one interval unless catching up)
            hi += (self._now_ms() - hi) // self._flush_ms * self._flush_ms
            if end is not None:
                hi = min(hi, end)
            self._pick_up_requests(hi)
            self._emit(hi)
            committed = self._now_ms()
            self._housekeeping()
        self._cut_sessions()
        log.info("stopped: %s events in %s files, %s to %s", f"{self._events:,}", f"{self._files:,}",
                 _iso(origin), _iso(self._cursor))
        return LiveResult(events=self._events, files=self._files, backfill_events=self._backfill_events,
                          sessions=tuple(self._sessions), first_ms=origin, live_start_ms=live_start,
                          end_ms=self._cursor)

    def _now_ms(self) -> int:
        return round(self._clock() * 1000)

    def _wait_until(self, moment_ms: int) -> bool:
        """Sleep until the clock reaches ``moment_ms``; False if asked to stop first."""
        while True:
            now = self._now_ms()
            if now >= moment_ms:
                return True
            if self.stopping:
                return False
            self._housekeeping()
            self._wait(min(moment_ms - now, 250) / 1000)

    # -- the timeline: plans of the generator's senders, offsets in ms from the origin

    def _start_timeline(self, origin: int) -> None:
        self._origin = self._cursor = origin
        scale = self.options.scale
        self._plans = [
            _Plan(index=i, sender=replace(s, rate=s.rate * scale), start_ms=0, end_ms=_FOREVER_MS,
                  key=_name_key(s.name), factors=[])
            for i, s in enumerate(self.scenario.senders)
        ]
        self._n_normal = len(self._plans)
        self._rebuild()
        self._window_ms = min(round(WINDOW_S * 1000), _window_size_ms(self.scenario, self._plans))

    def _rebuild(self) -> None:
        """Renumber the plans (normal senders, then active sessions' senders) and rebuild the formatter."""
        self._plans = self._plans[: self._n_normal] + self._extras
        for i, plan in enumerate(self._plans):
            plan.index = i
        self._fmt = _Formatter(replace(self.scenario, start_time=_EPOCH + timedelta(milliseconds=self._origin)),
                               self._plans)

    def _emit(self, hi: int, backfill: bool = False) -> None:
        """Write the records of ``[cursor, hi)`` as one file (none if there are none); move the cursor to ``hi``.

        The records are generated :data:`WINDOW_S` seconds (fewer at high rates) at a time and
        appended to the hidden file, which is renamed once complete. A backfill stops early, after
        a window, when asked to stop (its file then ends there) and keeps the status up to date.
        """
        name = f"{self._cursor:013d}-{self._seq:06d}.jsonl"
        tmp, target = self.folder / f".{name}.tmp", self.folder / name
        fh: BinaryIO | None = None
        events, last = 0, b""
        try:
            while self._cursor < hi and not (backfill and self.stopping):
                w_hi = min(self._cursor + self._window_ms, hi)
                count, data = self._window(w_hi)
                if count:
                    if fh is None:
                        fh = open(tmp, "wb")  # noqa: SIM115 - closed below
                    fh.write(data)
                    events, last = events + count, data
                if backfill:
                    self._housekeeping()
            if fh is not None:
                fh.close()
                os.replace(tmp, target)
                self._seq += 1
                self._files += 1
                self._events += events
                self._last_event = last[-27:-3].decode("ascii")  # the last record's event_time
        except OSError as exc:
            raise ClicklabError(f"{target}: cannot write tickerstream file: {exc}") from None
        finally:
            if fh is not None:
                fh.close()
            tmp.unlink(missing_ok=True)
        self._rate_samples.append((self._cursor, self._events))
        while self._rate_samples and self._rate_samples[0][0] < self._cursor - 10_000:
            self._rate_samples.popleft()

    def _window(self, hi: int) -> tuple[int, bytes]:
        """The records of ``[cursor, hi)`` (record count and bytes, in time order); moves the cursor to ``hi``."""
        lo_off, hi_off = self._cursor - self._origin, hi - self._origin
        live = []
        for plan in self._plans:
            if plan.start_ms < hi_off and plan.end_ms > lo_off:
                _start_block(plan, self.options.seed, lo_off, lo_off, hi_off)
                live.append(plan)
        assert self._fmt is not None
        count, data = _merge_window(live, self._fmt, lo_off, hi_off)
        self._cursor = hi
        self._end_sessions(hi_off)
        return count, data

    # -- sessions

    def schedule(self, definition: Mapping[str, Any], requested_ms: int | None = None, scaled: bool = True,
                 session_id: str | None = None) -> ScheduledSession:
        """Start a session (a definition as :func:`session_definition` returns) at ``requested_ms``, or at
        the first moment not yet written if that is later; append its label row.

        Called by the generator's own thread (for requests from :func:`send`); ``scaled`` applies the
        generator's ``scale`` to the session's senders.
        """
        anomaly = _parse_session(dict(definition), self._normal, f"session {definition.get('kind', '?')!r}")
        start = max(self._cursor, requested_ms if requested_ms is not None else self._cursor)
        end = start + round(anomaly.duration * 1000)
        s_off, e_off = start - self._origin, end - self._origin
        for plan in self._plans[: self._n_normal]:
            action = plan.sender.browseraction
            if plan.sender.site == anomaly.site and isinstance(action, str) and action in anomaly.rate_factor:
                plan.factors.append((s_off, e_off, anomaly.rate_factor[action]))
        number = len(self._sessions) + 1
        for s in anomaly.senders:
            begin = s_off + round(s.start * 1000)
            self._extras.append(
                _Plan(index=0, sender=replace(s, rate=s.rate * (self.options.scale if scaled else 1.0)),
                      start_ms=begin, end_ms=begin + round(s.duration * 1000),
                      key=_name_key(f"{s.name}#{number}"), factors=[])
            )
        self._rebuild()
        session = ScheduledSession(id=session_id or f"{start:013d}-{number}", site=anomaly.site, kind=anomaly.kind,
                                   start=_EPOCH + timedelta(milliseconds=start),
                                   end=_EPOCH + timedelta(milliseconds=end))
        self._sessions.append(session)
        self._session_ends.append(end)
        self._append_label(session)
        log.info("session %s", session)
        return session

    def _end_sessions(self, hi_off: int) -> None:
        """Forget the senders and rate factors of sessions that ended before ``hi_off``."""
        for plan in self._plans[: self._n_normal]:
            plan.factors = [f for f in plan.factors if f[1] > hi_off]
        ended = [p for p in self._extras if p.end_ms <= hi_off]
        if ended:
            self._extras = [p for p in self._extras if p.end_ms > hi_off]
            self._rebuild()

    def _append_label(self, session: ScheduledSession) -> None:
        new = not self.labels_path.exists()
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if new:
            writer.writerow(["site", "start", "end", "kind"])
        writer.writerow(self._label_row(session))
        with open(self.labels_path, "a", encoding="utf-8") as fh:
            fh.write(buf.getvalue())

    def _cut_sessions(self) -> None:
        """Sessions still running when the generator stops end where the stream ends: so do their labels."""
        cut = {i for i, end in enumerate(self._session_ends) if end > self._cursor}
        if not cut:
            return
        stop_at = _EPOCH + timedelta(milliseconds=self._cursor)
        rows_before = {self._label_row(self._sessions[i]): i for i in cut}
        for i in cut:
            self._sessions[i] = replace(self._sessions[i], end=stop_at)
            self._session_ends[i] = self._cursor
        with open(self.labels_path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        rows = [self._label_row(self._sessions[rows_before[tuple(r)]]) if tuple(r) in rows_before else r
                for r in rows]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        tmp = self.labels_path.with_name(f".{self.labels_path.name}.tmp")
        tmp.write_text(buf.getvalue(), encoding="utf-8")
        os.replace(tmp, self.labels_path)

    @staticmethod
    def _label_row(session: ScheduledSession) -> tuple[str, str, str, str]:
        """A session's row of ``labels.csv``: ``site,start,end,kind``."""
        return (session.site, _iso_dt(session.start), _iso_dt(session.end), session.kind)

    def _pick_up_requests(self, hi: int) -> None:
        """Schedule the requests in ``sessions/`` whose time is before ``hi`` (the end of the next file)."""
        for path in sorted(self.sessions_dir.glob("*.request.json")):
            if path.name.startswith("."):
                continue
            request_id = path.name[: -len(".request.json")]
            try:
                request = json.loads(path.read_text(encoding="utf-8"))
                requested = int(request["requested_ms"])
                if requested >= hi:
                    continue
                session = self.schedule(request["definition"], requested, bool(request.get("scaled", True)),
                                        request_id)
                answer: dict[str, Any] = {"id": request_id, "site": session.site, "kind": session.kind,
                                          "start": _iso_dt(session.start), "end": _iso_dt(session.end)}
            except FileNotFoundError:
                continue  # withdrawn by send() after its timeout
            except (ClicklabError, ValueError, KeyError, TypeError) as exc:
                log.warning("session request %s refused: %s", request_id, exc)
                answer = {"id": request_id, "error": str(exc)}
            path.unlink(missing_ok=True)
            _write_json(self.sessions_dir / f"{request_id}.{'error' if 'error' in answer else 'scheduled'}.json",
                        answer)

    def _drop_stale_requests(self) -> None:
        """Delete the requests made before this generator started: they were meant for an earlier one."""
        now = self._now_ms()
        for path in self.sessions_dir.glob("*.request.json"):
            try:
                requested = int(json.loads(path.read_text(encoding="utf-8"))["requested_ms"])
            except (OSError, ValueError, KeyError, TypeError):
                requested = 0
            if requested < now:
                path.unlink(missing_ok=True)

    # -- registration, status, rotation, progress

    def _claim(self) -> None:
        """Register in ``generator.json``, unless a running generator already has."""
        path = self.live / "generator.json"
        current = _read_json(path)
        if current is not None and _alive(current):
            raise ClicklabError(f"a live generator (pid {current.get('pid')}) is already running for {self.build}: "
                                f"stop it first (clicklab generate --live --stop --build {self.build})")
        _write_json(path, {
            "pid": os.getpid(), "proc_start": _proc_start(os.getpid()), "token": self._token,
            "started": _iso(self._now_ms()), "build": str(self.build.resolve()), "scenario": self.scenario.source,
            "scenario_name": self.scenario.name, "options": asdict(self.options),
            "folder": str(self.folder.resolve()), "sessions": self._definitions,
        })
        self._write_status()

    def _unclaim(self) -> None:
        path = self.live / "generator.json"
        current = _read_json(path)
        if current is not None and current.get("token") == self._token:
            path.unlink(missing_ok=True)

    def _housekeeping(self, force: bool = False) -> None:
        """Write the status, rotate and log progress when their time has come."""
        now = self._clock()
        if self._register and (force or now >= self._next["status"]):
            self._next["status"] = now + STATUS_EVERY_S
            self._write_status()
        if now >= self._next["rotate"]:
            self._next["rotate"] = now + ROTATE_EVERY_S
            live.tidy(self.build, retention_s=self.options.keep_s)  # every stream folder, tickerstream's too
            live.rotate(self.sessions_dir, REQUEST_KEEP_S)
        if self._phase == "live" and now >= self._next["log"]:
            if self._next["log"]:
                behind = self._behind(now)
                log.info("live: %s events in %s files, %s events/s, last event %s, %.1f s behind real time%s",
                         f"{self._events:,}", f"{self._files:,}", f"{self._rate():,.1f}", self._last_event or "-",
                         behind, " (falling behind: lower --scale?)" if behind > 2 else "")
            self._next["log"] = now + LOG_EVERY_S

    def _behind(self, now: float) -> float:
        """Seconds by which the next file is overdue (0 while the generator keeps up with real time)."""
        return max(0.0, now - (self._cursor + self._flush_ms) / 1000)

    def _rate(self) -> float:
        """Records per second of event time over the last 10 seconds written."""
        if len(self._rate_samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._rate_samples[0], self._rate_samples[-1]
        return (n1 - n0) / ((t1 - t0) / 1000) if t1 > t0 else 0.0

    def _write_status(self) -> None:
        now = self._clock()
        active = [s for s, end in zip(self._sessions, self._session_ends, strict=True) if end > self._cursor]
        _write_json(self.live / "status.json", {
            "pid": os.getpid(), "token": self._token, "phase": self._phase, "events": self._events,
            "files": self._files, "last_event_time": self._last_event, "events_per_s": round(self._rate(), 3),
            "written_until": _iso(self._cursor) if self._cursor else None,
            "behind_s": round(self._behind(now), 3) if self._cursor else None,
            "updated": _iso(round(now * 1000)),
            "sessions": [{"kind": s.kind, "site": s.site, "start": _iso_dt(s.start), "end": _iso_dt(s.end)}
                         for s in active],
        })


# --------------------------------------------------------------------------------------------
# running it: foreground, background, status, stop


def run_live(scenario: str | Path = "lab", build: str | Path = settings.DEFAULT_BUILD,
             options: LiveOptions | None = None) -> LiveResult:
    """Run the live generator in this process until SIGTERM/SIGINT (Ctrl-C) or ``duration_s``.

    What ``clicklab generate --live`` does in the foreground (and in the background process).
    """
    generator = LiveGenerator(load_scenario(scenario), build, options)
    handlers: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            handlers[sig] = signal.signal(sig, lambda signum, frame: generator.request_stop())
    try:
        return generator.run()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def start_background(build: str | Path = settings.DEFAULT_BUILD, scenario: str | Path = "lab", seed: int = 42,
                     backfill_s: float = 0.0, scale: float = 1.0, flush_s: float = FLUSH_S,
                     duration_s: float | None = None, keep_s: float = KEEP_S,
                     timeout_s: float = 60.0) -> GeneratorInfo:
    """Start ``python -m clicklab generate --live ...`` as a detached process and return once it has registered.

    Its output goes to ``<build>/live/generator.log``. It keeps running when this process (a
    notebook kernel) ends; :func:`stop` ends it, from any process.

    Raises:
        ClicklabError: an option is invalid, a generator is already running for ``build``, or the
            process exited or did not register within ``timeout_s`` (the message has its last log line).
    """
    options = LiveOptions(seed=seed, backfill_s=backfill_s, scale=scale, flush_s=flush_s, duration_s=duration_s,
                          keep_s=keep_s)
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
    current = _read_json(path)
    if current is not None and current.get("token") == record.get("token"):
        path.unlink(missing_ok=True)
    _remove_tmp(tickerstream_dir(build))
    return stopped


def session_of(build: str | Path, session: str) -> dict[str, Any]:
    """The definition of ``session`` (a ``kind``) in the scenario of the generator registered for ``build``.

    Raises:
        ClicklabError: no generator is registered, or its scenario has no such session (listed in the message).
    """
    record = _read_json(live_dir(build) / "generator.json")
    if record is None:
        raise ClicklabError(f"no live generator is running for {build}: start it with "
                            f"`clicklab generate --live --build {build}`")
    sessions = record.get("sessions", {})
    if session not in sessions:
        raise ClicklabError(f"--session: scenario {record.get('scenario_name')!r} has no session {session!r} "
                            f"(its sessions: {', '.join(sessions) or 'none'})")
    return sessions[session]


def send(build: str | Path = settings.DEFAULT_BUILD, session: str | None = None, *,
         template: Mapping[str, Any] | str | None = None, rate: float | None = None,
         duration: float | str | None = None, arrivals: str = "poisson", kind: str = "custom",
         timeout_s: float = 10.0, align_s: float = settings.WINDOW_SECONDS) -> ScheduledSession:
    """Play one KDG session in the running live generator of ``build``, from the next window boundary (a multiple
    of ``align_s`` seconds, :mod:`clicklab.session_start`: its windows are whole); returns what it scheduled.

    Either ``session``, the ``kind`` of one of the generator's scenario anomalies (e.g.
    ``"studio-lab-burst"``, ``"sql-lab-extra-clicks"``), or ``template`` (a mapping or JSON text)
    with ``rate`` (records/s), ``duration`` (seconds, or ``30s``/``2m``) and ``arrivals``, labelled
    ``kind``. Waits until the generator has picked the request up (within one flush interval of the start).

    Raises:
        ClicklabError: bad arguments; no generator running (the one line says how to start one); the
            session is unknown or refused; or the generator did not answer within ``timeout_s``.
    """
    if (session is None) == (template is None):
        raise ClicklabError("give either --session KIND or --template JSON (with --rate and --duration)")
    definition: dict[str, Any] | None = None
    if template is not None:
        if rate is None or duration is None:
            raise ClicklabError("--template needs --rate (records/s) and --duration (seconds)")
        definition = template_session(template, rate, duration, arrivals, kind)
    elif rate is not None or duration is not None:
        raise ClicklabError("--rate and --duration go with --template; --session plays the scenario's definition")
    build = Path(build)
    info = status(build)
    if info is None or not info.running:
        raise ClicklabError(f"no live generator is running for {build}: start it with "
                            f"`clicklab generate --live --build {build}` (or livegen.start_background)")
    if definition is None:
        definition = session_of(build, session)
    requested_ms = next_window_start_ms(round(time.time() * 1000), align_s)
    request_id = _submit(build, definition, requested_ms, scaled=template is None)
    folder = live_dir(build) / "sessions"
    see = f"see {live_dir(build) / 'generator.log'}"
    deadline, taken = time.monotonic() + timeout_s + max(0.0, requested_ms / 1000 - time.time()), False
    while True:
        for suffix in ("scheduled", "error"):
            answer = _read_json(folder / f"{request_id}.{suffix}.json")
            if answer is not None:
                (folder / f"{request_id}.{suffix}.json").unlink(missing_ok=True)
                if suffix == "error":
                    raise ClicklabError(f"the live generator refused the session: {answer.get('error')}")
                return ScheduledSession(id=request_id, site=answer["site"], kind=answer["kind"],
                                        start=_parse_iso(answer["start"]), end=_parse_iso(answer["end"]))
        if time.monotonic() > deadline:
            if taken:
                raise ClicklabError(f"the live generator took the session request but did not answer; {see}")
            try:
                (folder / f"{request_id}.request.json").unlink()  # withdraw it
            except FileNotFoundError:
                taken, deadline = True, time.monotonic() + 5.0  # the generator has it: the answer is on its way
                continue
            now = status(build)
            phase = f" (it is {now.phase}, {now.behind_s or 0:.0f} s behind real time)" if now else ""
            raise ClicklabError(f"the live generator did not pick up the session within {timeout_s:g} s{phase}; {see}")
        time.sleep(0.02)


def _submit(build: Path, definition: Mapping[str, Any], requested_ms: int, scaled: bool) -> str:
    """Drop a session request for the generator of ``build``; returns its id."""
    request_id = f"{requested_ms:013d}-{os.getpid()}-{secrets.token_hex(3)}"
    _write_json(live_dir(build) / "sessions" / f"{request_id}.request.json",
                {"id": request_id, "requested_ms": requested_ms, "scaled": scaled, "definition": dict(definition)})
    return request_id


# --------------------------------------------------------------------------------------------
# rotation


# --------------------------------------------------------------------------------------------
# helpers: files, processes, times


def _write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically (hidden temporary name, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    """The JSON content of ``path``, or None if it is missing or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _remove_tmp(folder: Path) -> None:
    """Delete the hidden ``.*.tmp`` files a killed generator may have left."""
    for path in folder.glob(".*.tmp"):
        path.unlink(missing_ok=True)


def _last_event_ms(folder: Path) -> int | None:
    """The event time (epoch ms) of the newest record in the folder's committed files, or None."""
    names = sorted(e.name for e in os.scandir(folder) if FILE_RE.match(e.name))
    if not names:
        return None
    path = folder / names[-1]
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 65536))
            last = fh.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        return round(_parse_iso(json.loads(last)["event_time"]).timestamp() * 1000)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ClicklabError(f"{path}: cannot read the event_time of its last record ({exc}); "
                            f"the live generator continues after it: delete the file or the folder") from None


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


def _iso(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds and ``Z`` (the records' format)."""
    return format_time(_EPOCH, ms / 1000)


def _iso_dt(moment: datetime) -> str:
    """A UTC datetime as ISO-8601 with milliseconds and ``Z``."""
    return format_time(moment, 0)


def _parse_iso(text: str) -> datetime:
    """``2026-12-01T18:05:00.123Z`` as a UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# --------------------------------------------------------------------------------------------
# the live lab's sessions, read back


def labels(build: str | Path = settings.DEFAULT_BUILD) -> Any:
    """The sessions the live generator played (``<build>/live/labels.csv``), as replay labels (a DataFrame)."""
    from clicklab.results import read_labels

    return read_labels(live_dir(build) / "labels.csv")


def last_session(build: str | Path = settings.DEFAULT_BUILD, kind: str | None = None) -> ScheduledSession | None:
    """The last session (of ``kind``) the live generator played, from its labels; ``None`` if there is none."""
    rows = labels(build)
    if kind is not None:
        rows = rows[rows["kind"] == kind]
    if not len(rows):
        return None
    row = rows.iloc[-1]
    return ScheduledSession(id="", site=row["site"], kind=row["kind"], start=row["start"].to_pydatetime(),
                            end=row["end"].to_pydatetime())


#: Scored windows of its site before :func:`send_when_warm` plays a session: past the forest's warm-up, the
#: adaptive threshold needs a few ordinary scores of the site to know what is unusual for it (with one or two,
#: its level is still the spread of two numbers, and a burst can pass under it).
SCORED_BEFORE_SENDING = 6


def send_when_warm(build: str | Path = settings.DEFAULT_BUILD, session: str = "studio-lab-burst",
                   timeout_s: float = 180.0) -> ScheduledSession:
    """Play a session once its site's forest has emitted :data:`SCORED_BEFORE_SENDING` scores (its warm-up is
    over in ``destinationstream`` and the threshold has seen a few ordinary windows)."""
    site = session_of(build, session)["site"]

    def warm() -> bool:
        scored = live.rows_committed(Path(build), "destinationstream")
        return bool(len(scored)) and int(((scored["site"] == site) & (scored["score"] > 0)).sum()) >= \
            SCORED_BEFORE_SENDING

    live.wait_for(f"{SCORED_BEFORE_SENDING} scores for {site} in destinationstream (the forest's warm-up, then a "
                  "few ordinary windows)", warm, timeout_s)
    return send(build, session=session)
