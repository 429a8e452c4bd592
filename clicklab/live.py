"""The live lab's housekeeping and waiting: stream folders kept small, and "wait until it shows".

**Why files move to ``.archive/``.** A live job reads only the files that appear after it starts (its
tables leave out the files already there, see :func:`clicklab.streams.live_ddl`), and every running job
reads a new file within a fraction of a second. So a live folder only needs the last
:data:`~clicklab.settings.LIVE_FOLDER_SECONDS` of files: :func:`tidy` moves older files into the
folder's hidden ``.archive/`` (Flink skips hidden names) and deletes archived files after
:data:`~clicklab.settings.LIVE_RETENTION_SECONDS` (:func:`rotate`), so an hour of live running keeps a
bounded number of files. :func:`clicklab.results.read_stream` reads the archive too: tables and plots
see the retained history. The live generator calls :func:`tidy` every few seconds.

**Waiting.** :func:`wait_for` polls a condition until it holds or a timeout passes, and then raises a
:class:`~clicklab.exceptions.ClicklabError` that says what did not happen in time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from clicklab import settings, streams
from clicklab.exceptions import ClicklabError

if TYPE_CHECKING:
    import pandas as pd

ARCHIVE = ".archive"

T = TypeVar("T")


@dataclass(frozen=True)
class Tidied:
    """What one :func:`tidy` pass did."""

    archived: int = 0
    deleted: int = 0


def committed_files(folder: Path) -> list[Path]:
    """The files of a stream folder that readers see: not hidden, not in progress."""
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "_"))]


def rotate(folder: str | Path, keep_s: float = settings.LIVE_RETENTION_SECONDS, *, now: float | None = None) -> int:
    """Delete the committed files of ``folder`` last modified more than ``keep_s`` seconds before ``now``.

    Committed files are the regular files directly in ``folder`` whose names do not start with
    ``.`` or ``_`` (the names Flink's file source and sink keep for files in progress); those,
    subfolders and symlinks are left alone. ``now`` defaults to the current time. Returns how many
    files were deleted; a missing folder deletes none.
    """
    if keep_s < 0:
        raise ValueError(f"keep_s must be >= 0, got {keep_s!r}")
    cutoff = (time.time() if now is None else now) - keep_s
    deleted = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name.startswith((".", "_")):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                deleted += 1
        except FileNotFoundError:
            continue
    return deleted


def tidy(build: Path = settings.DEFAULT_BUILD, now: float | None = None, keep_s: float | None = None,
         retention_s: float | None = None) -> Tidied:
    """Move stream files older than ``keep_s`` into ``.archive/``; delete archived files older than ``retention_s``.

    Ages are file modification times (when the writer committed the file). The defaults are
    :data:`~clicklab.settings.LIVE_FOLDER_SECONDS` and :data:`~clicklab.settings.LIVE_RETENTION_SECONDS`.
    """
    now = time.time() if now is None else now
    keep_s = settings.LIVE_FOLDER_SECONDS if keep_s is None else keep_s
    retention_s = settings.LIVE_RETENTION_SECONDS if retention_s is None else retention_s
    archived = deleted = 0
    for name in streams.STREAM_NAMES:
        folder = streams.stream_path(build, name)
        archive = folder / ARCHIVE
        for path in committed_files(folder):
            try:
                if now - path.stat().st_mtime > keep_s:
                    archive.mkdir(exist_ok=True)
                    os.replace(path, archive / path.name)
                    archived += 1
            except FileNotFoundError:  # gone meanwhile (another tidy)
                continue
        deleted += rotate(archive, retention_s, now=now)
    return Tidied(archived, deleted)


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


def session_rows(build: Path, name: str, session: Any, window_s: int = settings.WINDOW_SECONDS) -> pd.DataFrame:
    """The rows of ``name`` for the session's site whose window overlaps the session, with ``shown_after_s``:
    seconds from the end of the row's window until its file appeared."""
    frame = rows_committed(build, name)
    if not len(frame):
        return frame.assign(shown_after_s=[])
    start = window_start_s(frame)
    lo, hi = session.start.timestamp(), session.end.timestamp()
    mine = frame[(frame["site"] == session.site) & (start + window_s > lo) & (start < hi)].copy()
    mine["shown_after_s"] = mine["committed_at"] - (window_start_s(mine) + window_s)
    return mine.sort_values("committed_at")


def wait_for_anomaly(build: Path, session: Any, timeout_s: float = 120.0) -> pd.DataFrame:
    """Wait until ``anomalydetectionstream`` holds a row of the session's site and windows; those rows."""

    def found() -> pd.DataFrame | None:
        rows = session_rows(build, "anomalydetectionstream", session)
        return rows if len(rows) else None

    return wait_for(f"an anomaly row for {session}", found, timeout_s)
