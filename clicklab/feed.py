"""ctrstream fed to a keyed job in two halves, so that a fault strikes between them: by condition, not by time.

A fault test must strike while the job runs and its state matters. Against a bounded input that is a race:
on a loaded machine the job can read its whole file and end before the fault (CI, stop 21: "ended before the
fault"). Here the scoring job (08) reads ctrstream as a *watched* folder (``source.monitor-interval``), which
never ends by itself, and the test writes the CTR rows into it in two files:

1. **the first half** (the earlier windows, sorted by time and site), ending with one row of the
   :data:`END_SITE` one window later than the rest. A source task's watermark passes the half's last
   windows only once it has read that last line, so when the committed output holds every row the first
   half's watermark releases (:attr:`Feed.released_by_first`), the checkpoint that committed them had read
   the whole file: the fault strikes then, with every site's forest in state and nothing of the file left
   to re-read;
2. **the second half**, written once the job runs again after the fault, ending with an :data:`END_SITE`
   row a day after the last window: its watermark releases every CTR row before it, and the row itself is
   never released. The job has scored everything when the committed output holds :attr:`Feed.total` rows;
   the test then cancels it.

Each file is read by one source task in order, and files only ever bring later windows, so no row can fall
behind the watermark: every run scores the same rows in the same order per site. The first half's end row
is scored like any other (one row of a site of its own, in every run); the test's expected rows count it.

The job's output is then put into one file in time order (:func:`consolidate`): the sink commits a file per task
at every checkpoint, so how the rows are cut into files depends on when the checkpoints fell, and the next
step (09, bounded) reads files in no set order: with many files, rows behind its watermark would be dropped,
differently each run.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from clicklab import settings, streams
from clicklab.exceptions import ClicklabError

#: The stream fed this way, and the stream the fed job writes (the lab's 08 reads ctrstream, writes destinationstream).
STREAM, OUTPUT = "ctrstream", "destinationstream"

#: The site of the two rows that end each half (never one of the replay's sites).
END_SITE = "https://end-of-feed.clicklab.invalid"

#: How far after the last window the second half's end row is: beyond any watermark delay.
END_AHEAD_S = 86_400

#: The files each half is written to, in the order they are read.
FIRST_FILE, SECOND_FILE = "feed-1-first.json", "feed-2-second.json"


@dataclass(frozen=True)
class Feed:
    """The two halves' lines, how many output rows the first half releases, and how many in all."""

    first: list[str]
    second: list[str]
    released_by_first: int
    total: int


def aside_path(build: Path) -> Path:
    """Where :func:`set_aside` keeps the CTR rows: ``<build>/feed/ctrstream.json``."""
    return Path(build) / "feed" / f"{STREAM}.json"


def tables_ddl(build: Path) -> list[str]:
    """The replay's ``CREATE TABLE`` of the two streams (same columns, watermarks and folders) with what a job that
    never ends needs: :data:`STREAM` watched for new files, and :data:`OUTPUT`'s files rolled so that each
    checkpoint commits them (a replay's sink commits its row files only when its bounded job ends)."""
    watched = {**streams.local_options(STREAM, build, Path()),
               "source.monitor-interval": settings.LIVE_MONITOR_INTERVAL}
    rolled = {**streams.local_options(OUTPUT, build, Path()),
              "sink.rolling-policy.rollover-interval": settings.LIVE_ROLLOVER,
              "sink.rolling-policy.check-interval": settings.LIVE_ROLLOVER}
    return [streams.table_ddl(STREAM, watched), streams.table_ddl(OUTPUT, rolled)]


def _key(line: str) -> tuple[int, str]:
    row = json.loads(line)
    return int(row["time"]), str(row["site"])


def _sorted_lines(folder: Path) -> list[str]:
    """The committed rows of a stream folder, sorted by time and site, their text unchanged."""
    from clicklab.live.folders import committed_files

    lines = [line for path in sorted(committed_files(folder))
             for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return sorted(lines, key=_key)


def consolidate(build: Path, stream: str) -> Path:
    """Rewrite the committed files of ``stream``'s folder as one file, its rows sorted by time and site; the file."""
    from clicklab.live.folders import committed_files

    folder = streams.stream_path(build, stream)
    old = committed_files(folder)
    lines = _sorted_lines(folder)
    out = write(build, "part-consolidated.json", lines, stream)
    for path in old:
        if path != out:
            path.unlink()
    return out


def set_aside(build: Path) -> Path:
    """Move the committed rows of ``<build>/streams/ctrstream`` into one file sorted by time and site (their text
    unchanged), leaving the folder empty; return the file. Raises :class:`ClicklabError` if there are none."""
    folder = streams.stream_path(build, STREAM)
    lines = _sorted_lines(folder)
    if not lines:
        raise ClicklabError(f"{folder} holds no committed rows: run 04, 05 and 06 first")
    out = aside_path(build)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    clear(build)
    return out


def _end_row(time_s: int) -> str:
    return json.dumps({"site": END_SITE, "time": time_s, "ctr": 0.0, "clickcount": 0, "impressioncount": 0})


def load(build: Path) -> Feed:
    """The feed of the rows :func:`set_aside` kept, split before the window that holds the middle row."""
    path = aside_path(build)
    if not path.is_file():
        raise ClicklabError(f"no CTR rows set aside at {path}: run faults.run_upstream first")
    lines = path.read_text(encoding="utf-8").splitlines()
    times = [_key(line)[0] for line in lines]
    split = times.index(times[len(times) // 2])  # the first row of the middle row's window
    if split == 0:
        raise ClicklabError(f"{path}: the CTR rows span one window; the feed needs two")
    step = settings.WINDOW_SECONDS
    first_end = times[split - 1] + step  # one window after the first half's last: read last, raises its watermark
    delay = streams.STREAMS[STREAM].watermark_delay_s
    released = sum(1 for t in times[:split] if t <= first_end - delay)
    return Feed(first=[*lines[:split], _end_row(first_end)],
                second=[*lines[split:], _end_row(times[-1] + END_AHEAD_S)],
                released_by_first=released, total=len(lines) + 1)


def clear(build: Path) -> Path:
    """Empty ctrstream's folder (a watched table keeps reading it)."""
    folder = streams.stream_path(build, STREAM)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def write(build: Path, name: str, lines: list[str], stream: str = STREAM) -> Path:
    """Write ``lines`` as file ``name`` of ``stream``'s folder at once: a hidden file renamed into place, so a
    watching source never sees half of it."""
    folder = streams.stream_path(build, stream)
    hidden = folder / f".{name}.tmp"
    hidden.write_text("\n".join(lines) + "\n", encoding="utf-8")
    final = folder / name
    os.replace(hidden, final)
    return final


def committed_rows(build: Path, stream: str) -> int:
    """How many rows a stream's committed files hold (lines counted, not parsed: cheap to poll)."""
    from clicklab.live.folders import committed_files

    total = 0
    for path in committed_files(streams.stream_path(build, stream)):
        with open(path, "rb") as fh:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    return total
