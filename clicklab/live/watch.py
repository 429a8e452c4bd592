"""The live lab's waiting: "wait until it shows", and the rows a live stream has committed so far.

:func:`wait_for` polls a condition until it holds or a timeout passes, and then raises a
:class:`~clicklab.exceptions.ClicklabError` that says what did not happen in time.
:func:`rows_committed` reads a stream's rows (its folder and archive, see :mod:`clicklab.live.folders`)
with the time each one's file appeared; :func:`session_rows` keeps those of a live session's site and
windows, and :func:`wait_for_anomaly` waits until ``anomalydetectionstream`` shows one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from clicklab import settings, streams
from clicklab.exceptions import ClicklabError
from clicklab.live.folders import ARCHIVE, committed_files

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ReadCommitted", "rows_committed", "scored_windows", "session_rows", "wait_for", "wait_for_anomaly",
           "window_start_s"]

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float, poll_s: float = 0.5) -> T:
    """Poll ``check`` until it returns something (not ``None``/``False``); its value, or ``ClicklabError``.

    The error says ``what`` did not happen within ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got is not None and got is not False:
            return got
        if time.monotonic() > deadline:
            raise ClicklabError(f"{what}: not within {timeout_s:g} s")
        time.sleep(poll_s)


def rows_committed(build: Path, name: str) -> pd.DataFrame:
    """A stream's rows (folder and archive) with ``committed_at``: when the file that holds each appeared (epoch s)."""
    import pandas as pd

    folder = streams.stream_path(build, name)
    frames = []
    for path in committed_files(folder) + committed_files(folder / ARCHIVE):
        try:
            mtime = path.stat().st_mtime
            frame = pd.read_json(path, lines=True, dtype=False)
        except (FileNotFoundError, ValueError):  # moved to the archive meanwhile, or empty
            continue
        if len(frame):
            frames.append(frame.assign(committed_at=mtime))
    if not frames:
        return pd.DataFrame(columns=[*(c.name for c in streams.STREAMS[name].columns), "committed_at"])
    return pd.concat(frames, ignore_index=True)


def window_start_s(frame: pd.DataFrame) -> pd.Series:
    """Each row's window start in epoch seconds, from ``time`` (epoch s) or ``rowtime`` (UTC text)."""
    import pandas as pd

    if "time" in frame:
        return frame["time"].astype(float)
    return pd.to_datetime(frame["rowtime"], utc=True).astype("int64") / 1e9


#: Reads a stream's rows with ``committed_at`` (epoch s): :func:`rows_committed` on files,
#: ``clicklab.lab.Lab.committed`` for the session's own streams (folders or topics).
ReadCommitted = Callable[[str], "pd.DataFrame"]


def session_rows(frame: pd.DataFrame, session: Any, window_s: int = settings.WINDOW_SECONDS) -> pd.DataFrame:
    """The rows of ``frame`` (a stream's rows with ``committed_at``) for the session's site whose window overlaps
    the session, with ``shown_after_s``: seconds from the end of the row's window until it was committed."""
    if not len(frame):
        return frame.assign(shown_after_s=[])
    start = window_start_s(frame)
    lo, hi = session.start.timestamp(), session.end.timestamp()
    mine = frame[(frame["site"] == session.site) & (start + window_s > lo) & (start < hi)].copy()
    mine["shown_after_s"] = mine["committed_at"] - (window_start_s(mine) + window_s)
    return mine.sort_values("committed_at")


def wait_for_anomaly(read: ReadCommitted, session: Any, timeout_s: float = 120.0) -> pd.DataFrame:
    """Wait until ``anomalydetectionstream`` (as ``read`` gives it) holds a row of the session's site and windows;
    those rows. If none comes, the error says what ``destinationstream`` holds for those windows: their scores
    (scored, not flagged: the threshold's doing) or none (the scoring job is behind, or not running)."""

    def found() -> pd.DataFrame | None:
        rows = session_rows(read("anomalydetectionstream"), session)
        return rows if len(rows) else None

    try:
        return wait_for(f"an anomaly row for {session}", found, timeout_s)
    except ClicklabError as exc:
        raise ClicklabError(f"{exc}; {scored_windows(read, session)}") from None


def scored_windows(read: ReadCommitted, session: Any) -> str:
    """What ``destinationstream`` holds for the session's site and windows, in words (for an error message)."""
    import pandas as pd

    scores = read("destinationstream")
    rows = session_rows(scores, session)
    if not len(rows):
        site = scores[scores["site"] == session.site] if len(scores) else scores
        last = (f"its last scored window starts {pd.Timestamp(window_start_s(site).max(), unit='s'):%H:%M:%S}"
                if len(site) else "it holds no score of the site")
        return f"destinationstream holds no score for those windows yet ({last})"
    seen = ", ".join(f"{pd.Timestamp(t, unit='s'):%H:%M:%S} CTR {ctr:g} % score {score:.2f}" for t, ctr, score
                     in zip(window_start_s(rows), rows["ctr"], rows["score"], strict=True))
    return f"destinationstream scored its windows but none was flagged: {seen}"
