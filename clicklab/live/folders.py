"""The live lab's housekeeping: stream folders kept small.

**Why files move to ``.archive/``.** A live job reads only the files that appear after it starts (its
tables leave out the files already there, see :func:`clicklab.streams.live_ddl`), and every running job
reads a new file within a fraction of a second. So a live folder only needs the last
:data:`~clicklab.settings.LIVE_FOLDER_SECONDS` of files: :func:`tidy` moves older files into the
folder's hidden ``.archive/`` (Flink skips hidden names) and deletes archived files after
:data:`~clicklab.settings.LIVE_RETENTION_SECONDS` (:func:`rotate`), so an hour of live running keeps a
bounded number of files. :func:`clicklab.results.read_stream` reads the archive too: tables and plots
see the retained history. The live generator's file sink (:class:`clicklab.live.sink.FileSink`) calls
:func:`tidy` every few seconds.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from clicklab import settings, streams

__all__ = ["ARCHIVE", "Tidied", "committed_files", "rotate", "tidy"]

ARCHIVE = ".archive"


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
