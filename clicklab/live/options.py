"""The live generator's options, paths and small shared helpers.

:class:`LiveOptions` is how a live generator runs (``clicklab generate --live`` options, checked on
creation, errors naming the option); :func:`parse_duration` reads ``90s``/``30m``/``1h``. The paths:
:func:`live_dir` (``<build>/live/``: the generator's registration, status, log, labels and session
requests) and :func:`tickerstream_dir` (the folder the live generator writes and Flink watches). The
helpers shared by the other modules of :mod:`clicklab.live`: times as the records' ISO-8601 text, and
JSON files written atomically.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clicklab import settings
from clicklab.exceptions import ClicklabError
from clicklab.scenario import format_time

__all__ = ["FLUSH_S", "KAFKA_FLUSH_S", "KEEP_S", "WINDOW_S", "LiveOptions", "live_dir", "parse_duration",
           "tickerstream_dir"]

FLUSH_S = 0.5
"""Default flush interval: seconds of event time per tickerstream file."""

KAFKA_FLUSH_S = 0.1
"""Default flush interval into the tickerstream topic: a window closes when the first event a second past its end
arrives (the watermark), so the batch interval adds to every window's latency; half a second was about a third of
the first hop's (``clicklab bench --live --kafka --scale 1 --json``). A batch is one ``produce`` call per event and
one ``flush``: no file per batch to keep small."""

KEEP_S = 600.0
"""Default age (seconds, by modification time) after which archived stream files are deleted
(see :func:`clicklab.live.folders.tidy`)."""

WINDOW_S = 10.0
"""At most this many seconds of event time are generated at a time (fewer at high rates: bounded memory)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


# --------------------------------------------------------------------------------------------
# paths


def live_dir(build: str | Path = settings.DEFAULT_BUILD) -> Path:
    """``<build>/live/``: the generator's registration, status, log, labels and session requests."""
    return Path(build) / "live"


def tickerstream_dir(build: str | Path = settings.DEFAULT_BUILD) -> Path:
    """``<build>/streams/tickerstream/``: the folder the live generator writes and Flink watches."""
    return settings.streams_dir(Path(build)) / "tickerstream"


# --------------------------------------------------------------------------------------------
# options


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
    speed; ``scale``: factor on every rate; ``flush_s``: seconds per file or batch (``None``: :data:`FLUSH_S`
    into the folder, :data:`KAFKA_FLUSH_S` into a topic); ``duration_s``: stop
    after this much real-time traffic (None: until stopped); ``keep_s``: rotation age; ``bootstrap``: send to
    the ``tickerstream`` topic of the Kafka at this address (``host:port``) instead of the folder.
    """

    seed: int = 42
    backfill_s: float = 0.0
    scale: float = 1.0
    flush_s: float | None = None
    duration_s: float | None = None
    keep_s: float = KEEP_S
    bootstrap: str | None = None

    def __post_init__(self) -> None:
        if self.flush_s is None:
            object.__setattr__(self, "flush_s", FLUSH_S if self.bootstrap is None else KAFKA_FLUSH_S)
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
        # explicit either way: the child never decides where tickerstream is from its environment
        args += ["--bootstrap", self.bootstrap] if self.bootstrap is not None else ["--streams", "files"]
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
# helpers: times, JSON files


def _iso(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds and ``Z`` (the records' format)."""
    return format_time(_EPOCH, ms / 1000)


def _iso_dt(moment: datetime) -> str:
    """A UTC datetime as ISO-8601 with milliseconds and ``Z``."""
    return format_time(moment, 0)


def _parse_iso(text: str) -> datetime:
    """``2026-12-01T18:05:00.123Z`` as a UTC datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


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
