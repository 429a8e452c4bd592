"""Scenario files: what the event generator produces, and which anomalies it injects.

A scenario is a JSON or YAML file (see ``data/scenarios/lab.yaml`` for a commented example)
with a start time, a total duration, a list of *senders* (each one emits copies of a JSON
template at a given rate, like one record template of AWS's Kinesis Data Generator) and a
list of labelled *anomalies* that change or add traffic for a while.

:func:`load_scenario` reads and validates a file; :func:`parse_scenario` validates an
in-memory mapping. Both return a frozen :class:`Scenario` or raise
:class:`~clicklab.exceptions.ScenarioError`, whose message names the file, the sender or
anomaly, and the field at fault.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from clicklab.exceptions import ScenarioError

__all__ = [
    "ARRIVALS",
    "SCENARIO_DIR",
    "SCENARIO_SUFFIXES",
    "Anomaly",
    "Drift",
    "Scenario",
    "Sender",
    "format_time",
    "list_scenarios",
    "load_scenario",
    "parse_scenario",
]

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "data" / "scenarios"
"""Where bare scenario names are looked up."""

SCENARIO_SUFFIXES = (".yaml", ".yml", ".json")
"""File extensions tried, in order, for a bare scenario name."""

ARRIVALS = ("poisson", "constant")
"""Supported arrival processes."""

_TOP_FIELDS = ("name", "description", "start_time", "duration", "senders", "anomalies")
_SENDER_FIELDS = ("name", "template", "rate", "arrivals", "start", "duration", "drift")
_DRIFT_FIELDS = ("amplitude", "period", "phase")
_ANOMALY_FIELDS = ("site", "kind", "start", "duration", "rate_factor", "senders")


@dataclass(frozen=True)
class Drift:
    """Slow sinusoidal drift of a sender's rate.

    The rate at scenario offset ``t`` (seconds) is
    ``rate * (1 + amplitude * sin(2*pi*t/period + radians(phase)))``.
    """

    amplitude: float
    period: float
    phase: float = 0.0


@dataclass(frozen=True)
class Sender:
    """One stream of records: copies of ``template`` plus an ``event_time``.

    ``start`` and ``duration`` are seconds from the scenario start (for an anomaly's extra
    senders they are already converted from anomaly-relative to scenario offsets).
    ``template`` is a read-only mapping in file order.
    """

    name: str
    template: Mapping[str, Any]
    rate: float
    arrivals: str = "poisson"
    start: float = 0.0
    duration: float = 0.0
    drift: Drift | None = None

    @property
    def end(self) -> float:
        """Offset (seconds) at which the sender stops; exclusive."""
        return self.start + self.duration

    @property
    def site(self) -> Any:
        """The template's ``site`` value, or None."""
        return self.template.get("site")

    @property
    def browseraction(self) -> Any:
        """The template's ``browseraction`` value, or None."""
        return self.template.get("browseraction")


@dataclass(frozen=True)
class Anomaly:
    """A labelled anomaly: traffic of ``site`` changes during ``[start, start + duration)``.

    ``rate_factor`` maps a ``browseraction`` value to the factor applied to the normal senders
    of that site and action (0 silences them). ``senders`` are extra senders active only during
    the anomaly, with scenario-relative ``start``.
    """

    site: str
    kind: str
    start: float
    duration: float
    rate_factor: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    senders: tuple[Sender, ...] = ()

    @property
    def end(self) -> float:
        """Offset (seconds) at which the anomaly ends; exclusive."""
        return self.start + self.duration


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. ``start_time`` is a timezone-aware UTC datetime (event time of
    offset 0); ``duration`` is in seconds; ``source`` names where it came from."""

    name: str
    description: str
    start_time: datetime
    duration: float
    senders: tuple[Sender, ...]
    anomalies: tuple[Anomaly, ...] = ()
    source: str = "<scenario>"

    @property
    def all_senders(self) -> tuple[Sender, ...]:
        """Normal senders followed by every anomaly's extra senders, in file order."""
        extra = tuple(s for a in self.anomalies for s in a.senders)
        return self.senders + extra


def format_time(start_time: datetime, offset_s: float) -> str:
    """ISO-8601 UTC text with milliseconds and ``Z`` for ``start_time + offset_s``."""
    moment = start_time.astimezone(UTC) + timedelta(milliseconds=round(offset_s * 1000))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def list_scenarios(directory: Path | None = None) -> list[str]:
    """Names of the scenario files in ``directory`` (default: the bundled ``data/scenarios``)."""
    folder = SCENARIO_DIR if directory is None else Path(directory)
    if not folder.is_dir():
        return []
    names = {p.stem for p in folder.iterdir() if p.is_file() and p.suffix in SCENARIO_SUFFIXES}
    return sorted(names)


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load and validate a scenario.

    ``name_or_path`` is either the path of an existing ``.yaml``/``.yml``/``.json`` file or a
    bare name looked up in ``data/scenarios`` (e.g. ``"lab"``).

    Raises:
        ScenarioError: the file is missing, unparseable or invalid; the message names the
            file (and for invalid content the sender or anomaly and the field).
    """
    path = _resolve(name_or_path)
    label = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{label}: cannot read scenario file: {exc}") from exc
    data = _parse_text(text, path, label)
    return parse_scenario(data, source=label, default_name=path.stem)


def parse_scenario(data: Mapping[str, Any], source: str = "<scenario>", default_name: str | None = None) -> Scenario:
    """Validate a scenario given as a mapping (the parsed content of a scenario file).

    ``source`` is used as the file name in error messages; ``default_name`` is the scenario
    name when the mapping has no ``name`` (``load_scenario`` passes the file stem).
    """
    v = _Validator(source)
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{source}: the scenario must be a mapping of fields, got {_tname(data)}")
    v.check_fields(data, _TOP_FIELDS, "")
    for req in ("start_time", "duration", "senders"):
        v.require(data, req, "")

    if "name" in data:
        name = v.string(data["name"], "", "name")
    elif default_name is not None:
        name = default_name
    else:
        v.fail("", "name", "missing required field")
    description = v.string(data.get("description", ""), "", "description", allow_empty=True)
    start_time = v.timestamp(data["start_time"], "", "start_time")
    duration = v.number(data["duration"], "", "duration")
    if duration <= 0:
        v.fail("", "duration", f"must be > 0, got {_fmt(duration)}")
    try:
        last_year = (start_time + timedelta(seconds=duration)).year
    except OverflowError:
        last_year = 10_000
    if start_time.year < 1000 or last_year > 9999:
        v.fail("", "duration", "the scenario must lie between the years 1000 and 9999")

    raw_senders = v.sequence(data["senders"], "", "senders")
    if not raw_senders:
        v.fail("", "senders", "must list at least one sender")
    seen: dict[str, str] = {}
    senders = tuple(
        v.sender(raw, i, "", 0.0, duration, duration, seen, "scenario") for i, raw in enumerate(raw_senders)
    )

    raw_anomalies = v.sequence(data.get("anomalies", []) or [], "", "anomalies")
    anomalies = tuple(v.anomaly(raw, i, senders, duration, seen) for i, raw in enumerate(raw_anomalies))
    return Scenario(
        name=name,
        description=description,
        start_time=start_time,
        duration=duration,
        senders=senders,
        anomalies=anomalies,
        source=source,
    )


# --------------------------------------------------------------------------------------------
# file handling


def _resolve(name_or_path: str | Path) -> Path:
    """Turn a path or a bare scenario name into the path of an existing file."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = str(name_or_path)
    looks_like_path = path.suffix in SCENARIO_SUFFIXES or "/" in text or "\\" in text
    if looks_like_path:
        raise ScenarioError(f"{text}: scenario file not found")
    for suffix in SCENARIO_SUFFIXES:
        candidate = SCENARIO_DIR / f"{text}{suffix}"
        if candidate.is_file():
            return candidate
    available = ", ".join(list_scenarios()) or "none"
    raise ScenarioError(
        f"{text}: no such scenario file or bundled scenario name "
        f"(looked in {_display(SCENARIO_DIR)}; available: {available})"
    )


def _display(path: Path) -> str:
    """The path as shown in messages: relative to the working directory when below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate mapping keys."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):
            continue  # construct_mapping reports unhashable keys itself
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _parse_text(text: str, path: Path, label: str) -> Any:
    """Parse JSON (``.json``) or YAML (anything else); errors name the file."""
    if path.suffix == ".json":
        try:
            return json.loads(text, object_pairs_hook=_json_pairs)
        except ValueError as exc:
            raise ScenarioError(f"{label}: not valid JSON: {exc}") from exc
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ScenarioError(f"{label}: not valid YAML: {detail}") from exc


# --------------------------------------------------------------------------------------------
# validation


def _tname(value: Any) -> str:
    """A user-facing type name."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def _fmt(value: Any) -> str:
    """Short rendering of a value for messages (3 rather than 3.0)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, str) else str(value)


def _check_json_value(value: Any, where: str) -> str | None:
    """None if ``value`` is representable in JSON, else a description of the problem."""
    if value is None or isinstance(value, (bool, str, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where} is not a finite number"
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            problem = _check_json_value(item, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has a non-string key {key!r}"
            problem = _check_json_value(item, f"{where}.{key}")
            if problem:
                return problem
        return None
    return f"{where} is a {_tname(value)}, which JSON cannot hold (quote it)"


def _freeze(value: Any) -> Any:
    """Read-only deep copy of a JSON-like value (mappings become MappingProxyType)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return copy.copy(value)


class _Validator:
    """Field checks that raise ScenarioError with ``<file>: <where>: field '<f>': <problem>``."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, fieldname: str | None, problem: str) -> Any:
        parts = [self.source]
        if where:
            parts.append(where)
        if fieldname:
            parts.append(f"field '{fieldname}'")
        raise ScenarioError(": ".join(parts) + ": " + problem)

    def check_fields(self, data: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
        for key in data:
            if key not in allowed:
                self.fail(where, str(key), f"unknown field (allowed: {', '.join(allowed)})")

    def require(self, data: Mapping[str, Any], key: str, where: str) -> None:
        if key not in data or data[key] is None:
            self.fail(where, key, "missing required field")

    def number(self, value: Any, where: str, fieldname: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(where, fieldname, f"must be a number, got {_tname(value)} {value!r}")
        if not math.isfinite(value):
            self.fail(where, fieldname, f"must be a finite number, got {value!r}")
        return float(value)

    def string(self, value: Any, where: str, fieldname: str, allow_empty: bool = False) -> str:
        if not isinstance(value, str):
            self.fail(where, fieldname, f"must be a string, got {_tname(value)} {value!r}")
        if not allow_empty and not value.strip():
            self.fail(where, fieldname, "must not be empty")
        return value

    def sequence(self, value: Any, where: str, fieldname: str) -> list[Any]:
        if not isinstance(value, (list, tuple)):
            self.fail(where, fieldname, f"must be a list, got {_tname(value)}")
        return list(value)

    def mapping(self, value: Any, where: str, fieldname: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(where, fieldname, f"must be a mapping, got {_tname(value)} {value!r}")
        return value

    def timestamp(self, value: Any, where: str, fieldname: str) -> datetime:
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, str):
            text = value.strip()
            if text.endswith(("Z", "z")):
                text = text[:-1] + "+00:00"
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                self.fail(where, fieldname, f"must be an ISO-8601 UTC time like 2023-08-23T12:00:00Z, got {value!r}")
        else:
            self.fail(where, fieldname, f"must be an ISO-8601 time string, got {_tname(value)} {value!r}")
        if moment.tzinfo is None or moment.utcoffset() is None:
            self.fail(where, fieldname, f"must include a time zone, e.g. 2023-08-23T12:00:00Z, got {value!r}")
        if moment.microsecond % 1000:
            self.fail(where, fieldname, f"must be a whole number of milliseconds, got {value!r}")
        return moment.astimezone(UTC)

    def drift(self, value: Any, where: str) -> Drift:
        data = self.mapping(value, where, "drift")
        sub = f"{where}: drift" if where else "drift"
        self.check_fields(data, _DRIFT_FIELDS, sub)
        for req in ("amplitude", "period"):
            self.require(data, req, sub)
        amplitude = self.number(data["amplitude"], sub, "amplitude")
        if not 0 <= amplitude < 1:
            self.fail(sub, "amplitude", f"must be >= 0 and < 1, got {_fmt(amplitude)}")
        period = self.number(data["period"], sub, "period")
        if period <= 0:
            self.fail(sub, "period", f"must be > 0 seconds, got {_fmt(period)}")
        phase = self.number(data.get("phase", 0.0), sub, "phase")
        return Drift(amplitude=amplitude, period=period, phase=phase)

    def sender(
        self,
        raw: Any,
        index: int,
        prefix: str,
        origin: float,
        default_duration: float,
        limit: float,
        seen: dict[str, str],
        limit_name: str,
    ) -> Sender:
        """Validate one sender.

        ``origin`` is the offset its ``start`` is relative to, ``default_duration`` the
        duration when it has none, ``limit`` the relative offset it must end by.
        """
        where = f"{prefix}sender #{index + 1}"
        if isinstance(raw, Mapping) and isinstance(raw.get("name"), str) and raw["name"].strip():
            where = f"{prefix}sender '{raw['name']}'"
        data = self.mapping(raw, where, None)
        self.check_fields(data, _SENDER_FIELDS, where)
        for req in ("name", "template", "rate"):
            self.require(data, req, where)
        name = self.string(data["name"], where, "name")
        if name in seen:
            here = f"{prefix}sender #{index + 1} '{name}'"
            self.fail(here, "name", f"duplicate sender name (already used by {seen[name]})")
        seen[name] = f"{prefix}sender #{index + 1}" if prefix else f"sender #{index + 1}"

        template = self.mapping(data["template"], where, "template")
        problem = _check_json_value(template, "template")
        if problem:
            self.fail(where, "template", f"must be a JSON object: {problem}")
        if "event_time" in template:
            self.fail(where, "template", "must not contain 'event_time' (the generator adds it)")

        rate = self.number(data["rate"], where, "rate")
        if rate < 0:
            self.fail(where, "rate", f"must be >= 0, got {_fmt(rate)}")
        arrivals = data.get("arrivals", "poisson")
        if arrivals not in ARRIVALS:
            self.fail(where, "arrivals", f"must be one of {', '.join(ARRIVALS)}, got {arrivals!r}")

        start = self.number(data.get("start", 0), where, "start")
        if start < 0:
            self.fail(where, "start", f"must be >= 0, got {_fmt(start)}")
        if start >= limit:
            self.fail(where, "start", f"must be before the {limit_name} end ({_fmt(limit)} s), got {_fmt(start)}")
        if data.get("duration") is None:
            duration = default_duration - start
        else:
            duration = self.number(data["duration"], where, "duration")
            if duration <= 0:
                self.fail(where, "duration", f"must be > 0 (end before start), got {_fmt(duration)}")
            if start + duration > limit + 1e-9:
                self.fail(
                    where,
                    "duration",
                    f"sender runs past the {limit_name} end: start {_fmt(start)} + duration "
                    f"{_fmt(duration)} = {_fmt(start + duration)} > {limit_name} duration {_fmt(limit)}",
                )
        drift = self.drift(data["drift"], where) if data.get("drift") is not None else None
        return Sender(
            name=name,
            template=_freeze(dict(template)),
            rate=rate,
            arrivals=arrivals,
            start=origin + start,
            duration=duration,
            drift=drift,
        )

    def anomaly(
        self,
        raw: Any,
        index: int,
        normal: tuple[Sender, ...],
        scenario_duration: float,
        seen: dict[str, str],
    ) -> Anomaly:
        where = f"anomaly #{index + 1}"
        if isinstance(raw, Mapping) and isinstance(raw.get("kind"), str):
            where = f"anomaly #{index + 1} '{raw['kind']}'"
        data = self.mapping(raw, where, None)
        self.check_fields(data, _ANOMALY_FIELDS, where)
        for req in ("site", "kind", "start", "duration"):
            self.require(data, req, where)
        site = self.string(data["site"], where, "site")
        kind = self.string(data["kind"], where, "kind")
        start = self.number(data["start"], where, "start")
        if start < 0:
            self.fail(where, "start", f"must be >= 0, got {_fmt(start)}")
        duration = self.number(data["duration"], where, "duration")
        if duration <= 0:
            self.fail(where, "duration", f"must be > 0 (end before start), got {_fmt(duration)}")
        if start + duration > scenario_duration + 1e-9:
            self.fail(
                where,
                "duration",
                f"anomaly runs past the scenario end: start {_fmt(start)} + duration {_fmt(duration)} "
                f"= {_fmt(start + duration)} > scenario duration {_fmt(scenario_duration)}",
            )

        factors: dict[str, float] = {}
        if data.get("rate_factor") is not None:
            raw_factors = self.mapping(data["rate_factor"], where, "rate_factor")
            for action, factor in raw_factors.items():
                if not isinstance(action, str):
                    self.fail(where, "rate_factor", f"keys must be browseraction strings, got {action!r}")
                value = self.number(factor, where, f"rate_factor.{action}")
                if value < 0:
                    self.fail(where, f"rate_factor.{action}", f"must be >= 0, got {_fmt(value)}")
                if not any(s.site == site and s.browseraction == action for s in normal):
                    self.fail(
                        where,
                        f"rate_factor.{action}",
                        f"no sender has site {site!r} and browseraction {action!r}",
                    )
                factors[action] = value

        extra: list[Sender] = []
        if data.get("senders") is not None:
            raw_senders = self.sequence(data["senders"], where, "senders")
            extra = [
                self.sender(s, i, f"{where}: ", start, duration, duration, seen, "anomaly")
                for i, s in enumerate(raw_senders)
            ]
        if not factors and not extra:
            self.fail(where, None, "needs a 'rate_factor' or 'senders' (otherwise nothing changes)")
        if not any(s.site == site for s in (*normal, *extra)):
            self.fail(where, "site", f"no sender has site {site!r}")
        return Anomaly(
            site=site,
            kind=kind,
            start=start,
            duration=duration,
            rate_factor=MappingProxyType(factors),
            senders=tuple(extra),
        )
