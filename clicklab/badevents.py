"""Bad tickerstream lines in Python: the same checks as the SQL, and a seeded fuzzer that makes bad lines.

Flink decides what a bad event is (:func:`clicklab.streams.reason_sql`, the view ``tickerstream`` and ``04``'s
``INSERT INTO badevents``). This module is its twin for what runs without Flink: :func:`reason` gives a line
the reason the SQL gives it, :func:`split` also finds the late events as the watermark does, so that
:func:`clicklab.results.read_events` (and with it the CTR the run is checked against) reads exactly the good
events; :func:`mix` puts fuzzed bad lines of every kind into a replay (``tests/test_badevents.py``).

Where the twins may differ: a line whose JSON object is followed by more JSON that ends in ``}`` (Flink's
parser reads the first object and stops, Python's refuses the line), and an event that is behind the newest
event by between the watermark delay and that plus the watermark interval (Flink's watermark moves in
steps of ``pipeline.auto-watermark-interval``, 200 ms, so it may not have reached it yet). The fuzzer makes
neither.
"""

from __future__ import annotations

import calendar
import gzip
import json
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clicklab import settings, streams

_NONFINITE = re.compile(streams.NONFINITE_PATTERN)
_EVENT_TIME = re.compile(streams.EVENT_TIME_REGEX)
_WHITESPACE = " \t\n\r"  # what Jackson skips before a value
_DECODER = json.JSONDecoder(parse_constant=lambda name: _refuse(name))


def _refuse(name: str) -> float:
    raise ValueError(f"{name} is no JSON value")


def parse_event_time(text: str) -> int | None:
    """``event_time`` in epoch milliseconds as Flink's ``TO_TIMESTAMP(text, EVENT_TIME_PATTERN)`` reads it, or None.

    Flink's parser resolves dates the java.time way (``SMART``): a day of month up to 31 is moved back to the
    month's last day (``2023-02-30`` is February 28th), ``24:00:00.000`` is the next day's midnight; month, hour,
    minute and second must be in range.
    """
    m = _EVENT_TIME.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, milli = (int(g) for g in re.findall("[0-9]+", text))
    midnight_after = hour == 24 and minute == second == milli == 0
    if not (year >= 1 and 1 <= month <= 12 and 1 <= day <= 31 and (hour < 24 or midnight_after)
            and minute < 60 and second < 60):
        return None
    day = min(day, calendar.monthrange(year, month)[1])
    when = datetime(year, month, day, hour % 24, minute, second, milli * 1000, tzinfo=UTC)
    return int((when + timedelta(days=1 if midnight_after else 0)).timestamp() * 1000)


def reason(line: str, fields: tuple[str, ...] = streams.EVENT_FIELDS) -> str | None:
    """What is wrong with a tickerstream line, as :func:`clicklab.streams.reason_sql` says it; None: a good event.

    >>> reason('{"browseraction": "Click", "site": 7, "event_time": "2023-08-23T12:00:00.000Z"}')
    'mistyped field site: not a string'
    """
    return _check(line, fields)[0]


def _decode(line: str) -> dict | None:
    """The line's JSON object as Flink's parser reads it (what follows the first value is ignored), or None."""
    try:
        record, _ = _DECODER.raw_decode(line.lstrip(_WHITESPACE))
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _check(line: str, fields: tuple[str, ...] = streams.EVENT_FIELDS) -> tuple[str | None, dict | None]:
    """The line's reason and its JSON object (None when it is none)."""
    record = _decode(line)
    if record is None:
        found = _NONFINITE.search(line)
        if found:
            return streams.REASON_NONFINITE.format(field=found.group(1)), None
        return streams.REASON_MALFORMED, None
    if not line.strip(" ").endswith("}"):
        return streams.REASON_MALFORMED, record
    for f in fields:
        if record.get(f) is None:
            return streams.REASON_MISSING.format(field=f), record
    for f in fields:
        if not isinstance(record[f], str):
            return streams.REASON_MISTYPED.format(field=f), record
    if "event_time" in fields and parse_event_time(record["event_time"]) is None:
        return streams.REASON_EVENT_TIME, record
    if record["browseraction"] not in streams.BROWSER_ACTIONS:
        return streams.REASON_UNKNOWN_ACTION, record
    return None, record


@dataclass(frozen=True)
class Checked:
    """One line of a replay: its text, its reason (None: a good event) and event time (epoch ms, when it parses)."""

    line: str
    reason: str | None
    event_ms: int | None
    record: dict | None = None


def split(lines: Iterable[str], delay_s: float = settings.WATERMARK_DELAY_SECONDS) -> Iterator[Checked]:
    """Check every line in order, late events included: behind the watermark (newest good event - ``delay_s``).

    A bad line does not move the watermark (its rowtime is the epoch in the SQL); a late one cannot (it is behind).
    """
    watermark: int | None = None
    newest: int | None = None
    for line in lines:
        why, record = _check(line)
        value = record.get("event_time") if record is not None else None
        ms = parse_event_time(value) if isinstance(value, str) else None  # parsed_time in the SQL
        if why is None and ms is not None:
            if watermark is not None and ms <= watermark:
                why = streams.REASON_LATE
            newest = ms if newest is None else max(newest, ms)
            watermark = newest - int(delay_s * 1000)
        yield Checked(line, why, ms, record)


def read_lines(path: Path) -> list[str]:
    """A replay file's lines as Flink's ``raw`` format reads them: split on ``\\n`` only, no empty last line, and
    a ``\\r`` before the ``\\n`` dropped (a CRLF file's lines are its lines; Flink's line reader does the same)."""
    path = Path(path)
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as fh:
            data = fh.read()
    else:
        data = path.read_bytes()
    text = data.decode("utf-8", errors="replace")
    if text.endswith("\n"):
        text = text[:-1]
    return [t.removesuffix("\r") for t in text.split("\n")] if text else []


def good_records(path: Path) -> list[dict]:
    """The good events of a replay file, in order, as dicts (what ``tickerstream`` lets through)."""
    return [c.record for c in split(read_lines(path)) if c.reason is None and c.record is not None]


# ---------------------------------------------------------------------------------------------
# The fuzzer

#: The kinds of bad line :func:`mix` makes, one reason (or family of reasons) each.
KINDS = ("malformed", "missing", "mistyped", "event_time", "nonfinite", "unknown_action", "late")


@dataclass(frozen=True)
class BadLine:
    """A fuzzed line: its text, its kind and the reason ``badevents`` must give it."""

    line: str
    kind: str
    reason: str


def _dumps(record: dict) -> str:
    return json.dumps(record, allow_nan=True, ensure_ascii=False)


def _iso(ms: int) -> str:
    when = datetime.fromtimestamp(ms / 1000, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def bad_line(kind: str, template: dict, newest_ms: int, rng: random.Random) -> BadLine:
    """One bad line of ``kind`` made from a good record ``template`` (the events at that point are up to ``newest_ms``).

    Its ``event_time``, when it has one, is the newest event's, or sometimes a day later: a bad line must not move
    the watermark. A late line is 5 s to 10 min behind the newest event.
    """
    record = dict(template)
    when = newest_ms + (86_400_000 if rng.random() < 0.3 else 0)
    record["event_time"] = _iso(when)
    if kind == "malformed":
        good = _dumps(record)
        line = rng.choice([
            good[: rng.randrange(1, len(good) - 1)],  # cut short
            good + " trailing", good + ",", good.replace('", "', '" "', 1), good.replace('"', "'"),
            "", "   ", "not json at all", "ünïcödé ✓ garbage", "[" + good + "]", '"just a string"', "42", "null",
        ])
        return BadLine(line, kind, streams.REASON_MALFORMED)
    if kind == "missing":
        f = rng.choice(streams.EVENT_FIELDS)
        if rng.random() < 0.5:
            del record[f]
        else:
            record[f] = None
        return BadLine(_dumps(record), kind, streams.REASON_MISSING.format(field=f))
    if kind == "mistyped":
        f = rng.choice(streams.EVENT_FIELDS)
        record[f] = rng.choice([42, 3.5, True, False, {"x": 1}, ["Click"], 1692795600123, -1])
        return BadLine(_dumps(record), kind, streams.REASON_MISTYPED.format(field=f))
    if kind == "event_time":
        record["event_time"] = rng.choice([
            _iso(when).replace("T", " ").rstrip("Z"), _iso(when)[:19] + "Z", _iso(when)[:-1] + "+02:00",
            "23/08/2023 12:00:00", "yesterday", "", "2023-13-01T00:00:00.000Z", "2023-08-23T25:00:00.000Z",
            "2023-08-32T00:00:00.000Z", str(when // 1000), "NaN",
        ])
        return BadLine(_dumps(record), kind, streams.REASON_EVENT_TIME)
    if kind == "nonfinite":
        f = rng.choice(["event_time", "value", "ctr"])
        record[f] = rng.choice([float("nan"), float("inf"), float("-inf")])
        return BadLine(_dumps(record), kind, streams.REASON_NONFINITE.format(field=f))
    if kind == "unknown_action":
        record["browseraction"] = rng.choice(["Purchase", "click", "IMPRESSION", "", "Impression ", "Klick", "Scroll"])
        return BadLine(_dumps(record), kind, streams.REASON_UNKNOWN_ACTION)
    if kind == "late":
        record["event_time"] = _iso(newest_ms - rng.randrange(5_000, 600_000))
        return BadLine(_dumps(record), kind, streams.REASON_LATE)
    raise ValueError(f"unknown kind of bad line {kind!r}: the kinds are {', '.join(KINDS)}")


def mix(lines: list[str], count: int = 1000, seed: int = 0) -> tuple[list[str], list[BadLine]]:
    """``lines`` (good events in time order) with ``count`` bad lines of every kind in turn at seeded places.

    Never before the first line (so the file still starts with an event: ``clicklab run`` checks that), and a
    late line only after an event, so that there is a watermark to be behind. Returns the mixed lines and the
    bad ones in the order they stand.
    """
    if not lines:
        raise ValueError("mix: no good lines to mix bad ones into")
    rng = random.Random(seed)
    places = sorted(rng.randrange(1, len(lines) + 1) for _ in range(count))  # insert before lines[place]
    out: list[str] = []
    bad: list[BadLine] = []
    newest: int | None = None
    template: dict = {}
    k = 0
    for i, line in enumerate(lines):
        while k < count and places[k] == i:
            made = bad_line(KINDS[k % len(KINDS)], template, newest or 0, rng)
            out.append(made.line)
            bad.append(made)
            k += 1
        out.append(line)
        template = json.loads(line)
        ms = parse_event_time(template["event_time"])
        newest = ms if newest is None or (ms is not None and ms > newest) else newest
    for _ in range(count - k):  # places == len(lines): after the last line
        made = bad_line(KINDS[k % len(KINDS)], template, newest or 0, rng)
        out.append(made.line)
        bad.append(made)
        k += 1
    return out, bad


def mix_file(source: Path, target: Path, count: int = 1000, seed: int = 0,
             start: str | None = None, end: str | None = None) -> list[BadLine]:
    """Write ``source``'s events (those from ``start`` to before ``end``, ISO-8601, when given) mixed with ``count``
    bad lines to ``target`` (gzip if its name ends in ``.gz``); return the bad lines."""
    lines = read_lines(source)
    if start or end:
        lo = _ms(start) if start else None
        hi = _ms(end) if end else None
        kept = []
        for line in lines:
            ms = parse_event_time(json.loads(line)["event_time"])
            if ms is not None and (lo is None or ms >= lo) and (hi is None or ms < hi):
                kept.append(line)
        lines = kept
    mixed, bad = mix(lines, count, seed)
    text = "".join(line + "\n" for line in mixed)
    target = Path(target)
    if target.suffix == ".gz":
        with gzip.open(target, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        target.write_text(text, encoding="utf-8")
    return bad


def _ms(iso: str) -> int:
    when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
    return int((when - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))
