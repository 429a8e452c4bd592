"""The live generator: a scenario's traffic sent in real time into a sink that Flink reads.

``clicklab generate --live`` plays the role of AWS's Kinesis Data Generator (KDG) sending into
the ``tickerstream`` Kinesis stream: the scenario's normal ``senders`` emit copies of their
record templates at their rates (Poisson or constant arrivals, with drift), for as long as it
runs, each record stamped with the wall-clock time it is sent. The records go to a
:class:`~clicklab.live.sink.Sink`, by default :class:`~clicklab.live.sink.FileSink`:
``<build>/streams/tickerstream/``, which the live pipeline reads with Flink's filesystem source
(one file per flush interval, default :data:`~clicklab.live.options.FLUSH_S`: see
:mod:`clicklab.live.sink`).

* Batches hold consecutive intervals of event time, in order; a restart continues after the newest
  record the sink already holds.
* ``backfill_s`` first writes the traffic of ``[now - backfill, now)`` at full speed, as one
  batch, then the generator continues in real time from ``now`` (no gap, no overlap). When it is
  behind (after a long backfill at a high ``scale``, or a stall), the next batch holds every
  interval that is over: it catches up in one batch. Batches are committed at least the sink's
  ``min_spacing`` flush intervals apart.
* Time offset 0 of the scenario (the drift's phase) is the first event time written, ``now -
  backfill``. The normal senders run from there until the generator stops; their ``start`` and
  ``duration`` in the file (which tie them to the scenario's length) are not used, nor are the
  scenario's labelled ``anomalies`` as such: those are *sessions* (:mod:`clicklab.live.sessions`),
  played on demand (:func:`clicklab.live.send.send` drops a request; the generator picks it up).
* ``scale`` multiplies the rate of every sender of the scenario (its sessions' included).
* Randomness: each sender has its own stream per interval, keyed by the seed, the sender and the
  interval's offset, so the same seed and start time give the same files.

The generator registers in ``<build>/live/generator.json`` and writes ``status.json`` about every
second (:mod:`clicklab.live.process` reads them, starts it in the background and stops it).

**Housekeeping**: about every :data:`ROTATE_EVERY_S` seconds the generator has its sink keep the
destination bounded (:meth:`FileSink.housekeeping <clicklab.live.sink.FileSink.housekeeping>` tidies
every live stream folder) and deletes old session requests, so an hour's run keeps a bounded number of files.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from clicklab import settings
from clicklab.exceptions import ClicklabError
from clicklab.live.folders import rotate
from clicklab.live.options import _EPOCH, LiveOptions, _iso, _iso_dt, _write_json, live_dir
from clicklab.live.process import register, unregister
from clicklab.live.send import drop_stale_requests, pick_up_requests
from clicklab.live.sessions import (
    ScheduledSession,
    _definition,
    _parse_session,
    _sender_dicts,
    append_label,
    label_row,
    rewrite_labels,
)
from clicklab.live.sink import FileSink, Sink
from clicklab.live.timeline import Timeline
from clicklab.scenario import Scenario, load_scenario

__all__ = ["ROTATE_EVERY_S", "LiveGenerator", "LiveResult", "run_live"]

log = logging.getLogger(__name__)

ROTATE_EVERY_S = 10.0
"""How often (seconds) the generator has its sink keep the destination bounded (rotates the tickerstream folder)."""

STATUS_EVERY_S = 1.0
"""How often (seconds) the generator rewrites ``status.json``."""

LOG_EVERY_S = 10.0
"""How often (seconds) the generator logs its progress."""

REQUEST_KEEP_S = 60.0
"""Session requests and answers older than this (seconds) are deleted by the generator."""


@dataclass(frozen=True)
class LiveResult:
    """What a run of :class:`LiveGenerator` wrote: records, files, sessions and its time range (epoch ms).

    ``files`` counts the batches committed (files, for the file sink).
    """

    events: int
    files: int
    backfill_events: int
    sessions: tuple[ScheduledSession, ...]
    first_ms: int
    live_start_ms: int
    end_ms: int


class LiveGenerator:
    """Writes a scenario's normal traffic, and the sessions requested, into the live tickerstream.

    ``clock`` (epoch seconds) and ``wait`` (sleep for that many seconds, returning early once
    :meth:`request_stop` is called) are injectable so that tests can run minutes of traffic in
    a moment; by default they are :func:`time.time` and the stop event's ``wait``. ``register``
    writes ``generator.json``/``status.json`` (without them :func:`~clicklab.live.send.send` and
    :func:`~clicklab.live.process.status` do not see the generator). ``sink``: where the records go
    (default: a :class:`~clicklab.live.sink.FileSink` on the build's tickerstream folder). One
    :meth:`run` per instance.
    """

    def __init__(self, scenario: Scenario, build: str | Path = settings.DEFAULT_BUILD,
                 options: LiveOptions | None = None, *, clock: Callable[[], float] = time.time,
                 wait: Callable[[float], Any] | None = None, register: bool = True,
                 sink: Sink | None = None) -> None:
        self.scenario = scenario
        self.build = Path(build)
        self.options = options or LiveOptions()
        self.sink: Sink = sink if sink is not None else FileSink(self.build)
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
        self._timeline = Timeline(scenario, self.options.seed, self.options.scale)
        self._events = 0
        self._batches = 0
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
                sink cannot be written or holds a record that cannot be read.
        """
        try:
            self.sessions_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ClicklabError(f"{self.sessions_dir}: cannot create the live folder: {exc}") from None
        if self._register:
            self._claim()
        try:
            self.sink.open()
            drop_stale_requests(self.sessions_dir, self._now_ms())
            return self._run()
        finally:
            self._phase = "stopped"
            self.sink.close()
            if self._register:
                self._write_status()
                unregister(self.build, self._token)

    def _run(self) -> LiveResult:
        opts, timeline = self.options, self._timeline
        now = self._now_ms()
        origin = now - round(opts.backfill_s * 1000)
        last = self.sink.last_event_ms()
        if last is not None and origin <= last:
            log.warning("%s already holds records up to %s: %s", self.sink.describe(), _iso(last),
                        "the backfill starts after them" if last < now else "waiting for real time to pass them")
            origin = last + 1
        timeline.start(origin)
        log.info("live generator pid %d: scenario %s (%d senders, %s events/s at scale %g), seed %d, "
                 "%g s per file -> %s", os.getpid(), self.scenario.name, timeline.senders, f"{timeline.rate:,.1f}",
                 opts.scale, opts.seed, opts.flush_s, self.sink.describe())
        # backfill [origin, now) at full speed, as one batch
        if origin < now:
            self._phase = "backfill"
            began = time.perf_counter()
            self._emit(now, backfill=True)
            self._backfill_events = self._events
            log.info("backfill: %s events in %.1f s, %s to %s", f"{self._events:,}", time.perf_counter() - began,
                     _iso(origin), _iso(timeline.cursor))
        live_start = timeline.cursor
        end = None if opts.duration_s is None else live_start + round(opts.duration_s * 1000)
        self._phase = "live"
        self._housekeeping(force=True)
        committed, spacing = self._now_ms(), round(self.sink.min_spacing * self._flush_ms)
        while not self.stopping and (end is None or timeline.cursor < end):
            # the next interval, once it is over, and not too soon after the last batch
            hi = timeline.cursor + self._flush_ms
            if not self._wait_until(max(hi if end is None else min(hi, end), committed + spacing)):
                break
            # everything that is over goes into this batch (one interval unless catching up)
            hi += (self._now_ms() - hi) // self._flush_ms * self._flush_ms
            if end is not None:
                hi = min(hi, end)
            pick_up_requests(self.sessions_dir, hi, self.schedule)
            self._emit(hi)
            committed = self._now_ms()
            self._housekeeping()
        self._cut_sessions()
        log.info("stopped: %s events in %s files, %s to %s", f"{self._events:,}", f"{self._batches:,}",
                 _iso(origin), _iso(timeline.cursor))
        return LiveResult(events=self._events, files=self._batches, backfill_events=self._backfill_events,
                          sessions=tuple(self._sessions), first_ms=origin, live_start_ms=live_start,
                          end_ms=timeline.cursor)

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

    def _emit(self, hi: int, backfill: bool = False) -> None:
        """Commit the records of ``[cursor, hi)`` as one batch of the sink (none if there are none); move the
        cursor to ``hi``.

        The records are made :data:`~clicklab.live.options.WINDOW_S` seconds (fewer at high rates) at a time
        and handed to the sink as they come, which commits them once complete. A backfill stops early, after
        a window, when asked to stop (its batch then ends there) and keeps the status up to date.
        """
        timeline = self._timeline
        events, last = 0, b""

        def chunks() -> Iterator[bytes]:
            nonlocal events, last
            while timeline.cursor < hi and not (backfill and self.stopping):
                count, data = timeline.records(min(timeline.cursor + timeline.window_ms, hi))
                if count:
                    events, last = events + count, data
                    yield data
                if backfill:
                    self._housekeeping()

        if self.sink.write(timeline.cursor, chunks()):
            self._batches += 1
            self._events += events
            self._last_event = last[-27:-3].decode("ascii")  # the last record's event_time
        self._rate_samples.append((timeline.cursor, self._events))
        while self._rate_samples and self._rate_samples[0][0] < timeline.cursor - 10_000:
            self._rate_samples.popleft()

    # -- sessions

    def schedule(self, definition: Mapping[str, Any], requested_ms: int | None = None, scaled: bool = True,
                 session_id: str | None = None) -> ScheduledSession:
        """Start a session (a definition as :func:`~clicklab.live.sessions.session_definition` returns) at
        ``requested_ms``, or at the first moment not yet written if that is later; append its label row.

        Called by the generator's own thread (for requests from :func:`~clicklab.live.send.send`); ``scaled``
        applies the generator's ``scale`` to the session's senders.
        """
        anomaly = _parse_session(dict(definition), self._normal, f"session {definition.get('kind', '?')!r}")
        cursor = self._timeline.cursor
        start = max(cursor, requested_ms if requested_ms is not None else cursor)
        end = start + round(anomaly.duration * 1000)
        number = len(self._sessions) + 1
        self._timeline.add_session(anomaly, start, end, self.options.scale if scaled else 1.0, number)
        session = ScheduledSession(id=session_id or f"{start:013d}-{number}", site=anomaly.site, kind=anomaly.kind,
                                   start=_EPOCH + timedelta(milliseconds=start),
                                   end=_EPOCH + timedelta(milliseconds=end))
        self._sessions.append(session)
        self._session_ends.append(end)
        append_label(self.labels_path, session)
        log.info("session %s", session)
        return session

    def _cut_sessions(self) -> None:
        """Sessions still running when the generator stops end where the stream ends: so do their labels."""
        cursor = self._timeline.cursor
        cut = {i for i, end in enumerate(self._session_ends) if end > cursor}
        if not cut:
            return
        stop_at = _EPOCH + timedelta(milliseconds=cursor)
        changed: dict[tuple[str, ...], ScheduledSession] = {}
        for i in cut:
            before = label_row(self._sessions[i])
            self._sessions[i] = replace(self._sessions[i], end=stop_at)
            self._session_ends[i] = cursor
            changed[before] = self._sessions[i]
        rewrite_labels(self.labels_path, changed)

    # -- registration, status, rotation, progress

    def _claim(self) -> None:
        """Register in ``generator.json``, unless a running generator already has; write the first status."""
        register(self.build, {
            "token": self._token, "started": _iso(self._now_ms()), "build": str(self.build.resolve()),
            "scenario": self.scenario.source, "scenario_name": self.scenario.name, "options": asdict(self.options),
            "folder": self.sink.describe(), "sessions": self._definitions,
        })
        self._write_status()

    def _housekeeping(self, force: bool = False) -> None:
        """Write the status, keep the sink bounded and log progress when their time has come."""
        now = self._clock()
        if self._register and (force or now >= self._next["status"]):
            self._next["status"] = now + STATUS_EVERY_S
            self._write_status()
        if now >= self._next["rotate"]:
            self._next["rotate"] = now + ROTATE_EVERY_S
            self.sink.housekeeping(self.options.keep_s)  # the file sink: every stream folder, tickerstream's too
            rotate(self.sessions_dir, REQUEST_KEEP_S)
        if self._phase == "live" and now >= self._next["log"]:
            if self._next["log"]:
                behind = self._behind(now)
                log.info("live: %s events in %s files, %s events/s, last event %s, %.1f s behind real time%s",
                         f"{self._events:,}", f"{self._batches:,}", f"{self._rate():,.1f}", self._last_event or "-",
                         behind, " (falling behind: lower --scale?)" if behind > 2 else "")
            self._next["log"] = now + LOG_EVERY_S

    def _behind(self, now: float) -> float:
        """Seconds by which the next batch is overdue (0 while the generator keeps up with real time)."""
        return max(0.0, now - (self._timeline.cursor + self._flush_ms) / 1000)

    def _rate(self) -> float:
        """Records per second of event time over the last 10 seconds written."""
        if len(self._rate_samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._rate_samples[0], self._rate_samples[-1]
        return (n1 - n0) / ((t1 - t0) / 1000) if t1 > t0 else 0.0

    def _write_status(self) -> None:
        now, cursor = self._clock(), self._timeline.cursor
        active = [s for s, end in zip(self._sessions, self._session_ends, strict=True) if end > cursor]
        _write_json(self.live / "status.json", {
            "pid": os.getpid(), "token": self._token, "phase": self._phase, "events": self._events,
            "files": self._batches, "last_event_time": self._last_event, "events_per_s": round(self._rate(), 3),
            "written_until": _iso(cursor) if cursor else None,
            "behind_s": round(self._behind(now), 3) if cursor else None,
            "updated": _iso(round(now * 1000)),
            "sessions": [{"kind": s.kind, "site": s.site, "start": _iso_dt(s.start), "end": _iso_dt(s.end)}
                         for s in active],
        })


def run_live(scenario: str | Path = "lab", build: str | Path = settings.DEFAULT_BUILD,
             options: LiveOptions | None = None) -> LiveResult:
    """Run the live generator in this process until SIGTERM/SIGINT (Ctrl-C) or ``duration_s``.

    What ``clicklab generate --live`` does in the foreground (and in the background process started by
    :func:`clicklab.live.process.start_background`).
    """
    sink = None
    if options is not None and options.bootstrap is not None:
        from clicklab.kafka.producer import TopicSink

        sink = TopicSink(options.bootstrap)
    generator = LiveGenerator(load_scenario(scenario), build, options, sink=sink)
    handlers: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            handlers[sig] = signal.signal(sig, lambda signum, frame: generator.request_stop())
    try:
        return generator.run()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
