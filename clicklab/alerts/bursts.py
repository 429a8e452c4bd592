"""Live: every burst you send gets its alert; the cooldown still keeps a burst, and the rest, from flooding.

The handler sends at most one alert per site every ``cooldown_s`` seconds of event time. Live, event time is
the wall clock, and the lab says: if no e-mail arrives, send the burst again. With a 10-minute cooldown the
second burst would be folded into the next alert, minutes away, whenever the site had an alert less than 10
minutes before (the first burst's, or an ordinary anomaly's). So, live, a session that the live generator
plays (a row of ``<build>/live/labels.csv``: ``clicklab send``, or notebook 10) opens a new cooldown period
for its site:

* the first anomaly of the site from the session's first window on is alerted, however recent the last
  alert was;
* after it, the cooldown applies as always: the burst's further windows, and anything else within
  ``cooldown_s``, are folded into the next alert.

So a burst never floods, and each burst sent gives at most one alert more than the cooldown alone would. On a
replay (``make run``) nothing changes: no live generator, no sessions, the cooldown as configured.

:class:`BurstCooldown` does it as a wrapper of the handler's state, for the destination notebook 11 opens
live (:func:`clicklab.alerts.destination.open_destination` with ``live=True``); the handler, and the Lambda
function made from it, are unchanged (on AWS nobody sends bursts from a notebook).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from clicklab.alerts import handler

#: The handler names a SQL application's rows after the application (``SQL application NAME``: they carry no
#: site); the one stream of the application takes every session the live generator plays.
SQL_APPLICATION = "SQL application "


def labels_path(build: Path) -> Path:
    """The live generator's record of the sessions it played (``site,start,end,kind``)."""
    from clicklab.live.options import live_dir

    return live_dir(build) / "labels.csv"


class BurstCooldown:
    """A :class:`~clicklab.alerts.handler.State` whose cooldown a session of the live generator opens anew.

    Every method passes to ``inner`` (the file or DynamoDB state: what is stored does not change). Only what
    :meth:`site` reports changes: when a session of the site starts after the site's last alert, and the
    cooldown would still run at its first window, the last alert is reported one cooldown before that window.
    The handler's rule (``|window - last_sent| < cooldown_s``: suppressed) then lets the session's first
    anomaly through, and still suppresses windows between the last alert and the session.
    """

    def __init__(self, inner: Any, build: Path, cooldown_s: int, window_s: int) -> None:
        self.inner, self.build = inner, Path(build)
        self.cooldown = timedelta(seconds=cooldown_s)
        self.window = timedelta(seconds=window_s)
        self._read: tuple[int, int] | None = None  # (mtime_ns, size) of the labels file last read
        self._starts: dict[str, list[datetime]] = {}

    def session_starts(self, site: str) -> list[datetime]:
        """When the sessions the live generator played on ``site`` start (UTC), in order; re-read when changed.
        A SQL application (:data:`SQL_APPLICATION`) takes every session: its one stream carries them all."""
        path = labels_path(self.build)
        try:
            stat = path.stat()
        except FileNotFoundError:
            self._read, self._starts = None, {}
            return []
        if self._read != (stat.st_mtime_ns, stat.st_size):
            from clicklab.results import read_labels

            rows = read_labels(path)
            starts: dict[str, list[datetime]] = {}
            for name, start in zip(rows["site"], rows["start"], strict=True):
                starts.setdefault(str(name), []).append(start.to_pydatetime())
            self._starts = {name: sorted(times) for name, times in starts.items()}
            self._read = (stat.st_mtime_ns, stat.st_size)
        if site.startswith(SQL_APPLICATION):
            return sorted(t for times in self._starts.values() for t in times)
        return self._starts.get(site, [])

    def site(self, channel: str, site: str) -> handler.SiteState:
        state = self.inner.site(channel, site)
        if state.last_sent is None or not self.cooldown:
            return state
        # a session's first window may begin up to one window before the session (windows are aligned)
        opened = [start - self.window for start in self.session_starts(site) if start - self.window > state.last_sent]
        if not opened or min(opened) - state.last_sent >= self.cooldown:
            return state  # no session since the last alert, or the cooldown is over by the time it starts
        return handler.SiteState(min(opened) - self.cooldown, state.folded)

    def claim(self, channel: str, anomaly: handler.Anomaly) -> bool:
        return bool(self.inner.claim(channel, anomaly))

    def suppressed(self, channel: str, anomaly: handler.Anomaly) -> None:
        self.inner.suppressed(channel, anomaly)

    def sent(self, channel: str, anomaly: handler.Anomaly, folded: int, message_id: str) -> None:
        self.inner.sent(channel, anomaly, folded, message_id)

    def release(self, channel: str, anomaly: handler.Anomaly, reason: str) -> None:
        self.inner.release(channel, anomaly, reason)
