"""Where the live generator's events go: the :class:`Sink` interface and :class:`FileSink`, the folder Flink watches.

The generator (:class:`clicklab.live.generator.LiveGenerator`) hands a sink one *batch* per flush
interval (or one for a whole backfill, or for the intervals it catches up): the records, JSON lines in
time order, of consecutive event time. A sink commits a batch as a whole or not at all, and says where a
restart continues (the newest record it holds). :class:`FileSink` is today's only sink; another (a
Kafka producer, say) implements :class:`Sink` and is passed as ``LiveGenerator(..., sink=...)``.

**The tickerstream files** (:class:`FileSink`, ``<build>/streams/tickerstream/``, which the live pipeline
reads with Flink's filesystem source and ``source.monitor-interval``):

* one file per batch, named ``<epoch ms>-<seq>.jsonl`` after the batch's start (:data:`FILE_RE`), so
  names sort by time, holding the interval's records in time order (the replay's record format:
  template fields, then ``event_time`` in ISO-8601 UTC with milliseconds and ``Z``). A batch with no
  records writes no file.
* A file appears complete: it is written as ``.<name>.tmp`` (Flink's file source skips names that
  start with ``.`` or ``_``) and renamed. Files hold consecutive intervals: a file never holds a record
  older than one of an earlier file (a restart continues after the newest record already in the
  folder, :meth:`FileSink.last_event_ms`).
* Why one file for a backfill or a catch-up, not many: Flink's filesystem source reads the new files
  one scan finds in directory order, not by name (seen with Flink 2.3: 34 files found at once were read
  with 17 jumps back in time), and records older than the watermark are dropped. So files are
  committed at least :data:`MIN_SPACING` flush intervals apart (:attr:`FileSink.min_spacing`), and a
  pipeline whose ``source.monitor-interval`` is below that and which is *already running* when the
  generator starts sees one new file per scan, in time order. A job started later finds the existing
  files all at once, in any order: start the live job first, then the generator.
* Housekeeping (:meth:`FileSink.housekeeping`) tidies every live stream folder
  (:func:`clicklab.live.folders.tidy`: files older than a few seconds move to the folder's archive,
  archived ones older than ``keep_s`` are deleted), so an hour's run keeps a bounded number of files.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from clicklab import settings
from clicklab.exceptions import ClicklabError
from clicklab.live.folders import tidy
from clicklab.live.options import _parse_iso, tickerstream_dir

__all__ = ["FILE_RE", "MIN_SPACING", "FileSink", "Sink"]

MIN_SPACING = 0.8
"""Files are committed at least this many flush intervals apart (wall clock), also after a backfill
or while catching up: a Flink scan every ``source.monitor-interval`` below that sees one new file."""

FILE_RE = re.compile(r"^(\d{13})-(\d{6,})\.jsonl$")
"""Names of committed tickerstream files: ``<interval start, epoch ms>-<sequence>.jsonl``."""


class Sink(Protocol):
    """Where the live generator writes its events, one committed batch at a time.

    The generator calls :meth:`open` once it has registered, then :meth:`last_event_ms`, then
    :meth:`write` for each batch (in event-time order: a batch never holds a record older than one of
    an earlier batch), :meth:`housekeeping` every few seconds, and :meth:`close` at the end of its run,
    also after an error or a stop. :meth:`describe` names the destination in log lines and in
    ``generator.json``.
    """

    min_spacing: float
    """Batches are committed at least this many flush intervals apart (wall clock); 0: as soon as each is
    over. Files need it (see :data:`MIN_SPACING`); a destination read in order may not."""

    def open(self) -> None:
        """Prepare the destination (create it; remove what a killed writer left half-written).

        Raises:
            ClicklabError: the destination cannot be prepared.
        """
        ...

    def close(self) -> None:
        """End the run: leave nothing half-written behind. Called after an error or a stop too."""
        ...

    def last_event_ms(self) -> int | None:
        """The event time (epoch ms) of the newest record already committed, or None if there is none:
        the generator continues after it (a restart never writes a record older than one already there).

        Raises:
            ClicklabError: the newest committed record cannot be read.
        """
        ...

    def write(self, first_ms: int, chunks: Iterable[bytes]) -> bool:
        """Commit one batch: the records of event time from ``first_ms`` (epoch ms, the batch's start).

        ``chunks`` are JSON lines (whole lines, ``\\n``-terminated, in time order), consumed lazily as
        the generator makes them (a backfill's batch need not fit in memory; the generator does its
        housekeeping between chunks). Readers see the batch all at once once ``chunks`` is exhausted,
        or nothing of it if consuming it raises. Returns True if a batch was committed, False if it had
        no records (nothing is written).

        Raises:
            ClicklabError: the batch cannot be written (nothing of it is committed).
        """
        ...

    def housekeeping(self, keep_s: float) -> None:
        """Keep the destination bounded; called every few seconds. ``keep_s``: the retention (seconds)
        of what the destination keeps after readers have had it (:attr:`LiveOptions.keep_s`)."""
        ...

    def describe(self) -> str:
        """Where the events go, in a few words (a path, a topic), for log lines and ``generator.json``."""
        ...


class FileSink:
    """The tickerstream folder of ``build``: one file per batch, committed by rename (see the module doc).

    Its :meth:`housekeeping` tidies every live stream folder of the build, not only tickerstream.
    """

    min_spacing: float = MIN_SPACING

    def __init__(self, build: str | Path = settings.DEFAULT_BUILD) -> None:
        self.build = Path(build)
        self.folder = tickerstream_dir(self.build)
        self._seq = 0

    def open(self) -> None:
        """Create the folder and delete the ``.tmp`` files a killed generator may have left."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ClicklabError(f"{self.folder}: cannot create the live folder: {exc}") from None
        _remove_tmp(self.folder)

    def close(self) -> None:
        """Delete the hidden ``.tmp`` file of a batch that was not committed."""
        _remove_tmp(self.folder)

    def last_event_ms(self) -> int | None:
        """The event time (epoch ms) of the newest record in the folder's committed files, or None."""
        return _last_event_ms(self.folder)

    def write(self, first_ms: int, chunks: Iterable[bytes]) -> bool:
        """Write the batch as ``.<name>.tmp``, chunk by chunk, and rename it ``<first_ms>-<seq>.jsonl`` once
        complete; no file if it has no records."""
        name = f"{first_ms:013d}-{self._seq:06d}.jsonl"
        tmp, target = self.folder / f".{name}.tmp", self.folder / name
        fh = None
        try:
            for data in chunks:
                if data:
                    if fh is None:
                        fh = open(tmp, "wb")  # noqa: SIM115 - closed below
                    fh.write(data)
            if fh is None:
                return False
            fh.close()
            os.replace(tmp, target)
            self._seq += 1
            return True
        except OSError as exc:
            raise ClicklabError(f"{target}: cannot write tickerstream file: {exc}") from None
        finally:
            if fh is not None:
                fh.close()
            tmp.unlink(missing_ok=True)

    def housekeeping(self, keep_s: float) -> None:
        """Tidy every stream folder of the build, tickerstream's too (archived files go after ``keep_s``)."""
        tidy(self.build, retention_s=keep_s)

    def describe(self) -> str:
        """The folder's absolute path."""
        return str(self.folder.resolve())


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

