"""Scenario files: what the event generator produces, and which anomalies it injects.

A scenario is a JSON or YAML file (see ``data/scenarios/lab.yaml`` for a commented example)
with a start time, a total duration, a list of *senders* (each one emits copies of a JSON
template at a given rate, like one record template of AWS's Kinesis Data Generator) and a
list of labelled *anomalies* that change or add traffic for a while.

:func:`load_scenario` reads and validates a file; :func:`parse_scenario` validates the parsed
content of one (dicts and lists). Both return a frozen :class:`Scenario` or raise
:class:`~clicklab.exceptions.ScenarioError`, whose message names the file, the sender or
anomaly, and the field at fault: ``lab.yaml: sender 'clicks': field 'rate': -1 is less than
the minimum of 0``.

Validation has two stages:

1. The JSON Schema ``scenario_schema.json`` (Draft 2020-12, next to this module, loaded as
   :data:`SCHEMA`) holds every rule about a single field: types, required and unknown fields,
   ranges, the ``arrivals`` values, what a template may contain, and the defaults of optional
   fields. It is checked with ``jsonschema``, whose own text gives the reason; the code only
   adds where the error is, from the error's path. Numbers must also be finite (YAML has
   ``.nan`` and ``.inf``, JSON has not).
2. The code below checks what relates fields to each other (senders and anomalies ending
   within the scenario or the anomaly, unique sender names, an anomaly's site and
   ``rate_factor`` keys matching a sender, ...) and the ``start_time`` syntax, which is
   ``datetime.fromisoformat``'s, while it builds the dataclasses.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import yaml

from clicklab.exceptions import ScenarioError

__all__ = [
    "ARRIVALS",
    "SCENARIO_DIR",
    "SCENARIO_SUFFIXES",
    "SCHEMA",
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

SCHEMA: dict[str, Any] = json.loads(resources.files("clicklab").joinpath("scenario_schema.json").read_text("utf-8"))
"""The JSON Schema (Draft 2020-12) of a scenario file's per-field rules; treat it as read-only."""

ARRIVALS: tuple[str, ...] = tuple(SCHEMA["$defs"]["sender"]["properties"]["arrivals"]["enum"])
"""Supported arrival processes (from the schema)."""

_DEFAULTS: dict[str, dict[str, Any]] = {
    kind: {key: prop["default"] for key, prop in schema.get("properties", {}).items() if "default" in prop}
    for kind, schema in {"scenario": SCHEMA, **SCHEMA["$defs"]}.items()
}
"""The schema's defaults of optional fields, by kind of object; the only place they are given."""


@dataclass(frozen=True)
class Drift:
    """Slow sinusoidal drift of a sender's rate.

    The rate at scenario offset ``t`` (seconds) is
    ``rate * (1 + amplitude * sin(2*pi*t/period + radians(phase)))``.
    """

    amplitude: float
    period: float
    phase: float


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
    arrivals: str
    start: float
    duration: float
    drift: Drift | None

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
    rate_factor: Mapping[str, float]
    senders: tuple[Sender, ...]

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
    anomalies: tuple[Anomaly, ...]
    source: str

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


def parse_scenario(data: dict[str, Any], source: str = "<scenario>", default_name: str | None = None) -> Scenario:
    """Validate a scenario given as the parsed content of a scenario file (dicts and lists).

    ``source`` is used as the file name in error messages; ``default_name`` is the scenario
    name when the mapping has no ``name`` (``load_scenario`` passes the file stem).
    """
    if isinstance(data, dict) and isinstance(data.get("start_time"), datetime):
        # YAML reads an unquoted timestamp as a datetime: check the text it was written as
        data = {**data, "start_time": data["start_time"].isoformat()}
    _check_schema(data, source)
    return _Builder(source).scenario(data, default_name)


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
# validation, stage 1: the schema (one field at a time)


@functools.cache
def _validator() -> Any:
    """A Draft 2020-12 validator of :data:`SCHEMA` for which NaN and infinities are not numbers.

    Built on first use: importing jsonschema can take seconds.
    """
    from jsonschema import Draft202012Validator, validators

    types = Draft202012Validator.TYPE_CHECKER
    finite = types.redefine("number", lambda _checker, value: types.is_type(value, "number") and math.isfinite(value))
    return validators.extend(Draft202012Validator, type_checker=finite)(SCHEMA)


def _check_schema(data: Any, source: str) -> None:
    """Raise ScenarioError for jsonschema's best match among the errors of ``data``, if any."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(data))
    if error is not None:
        where, fieldname = _where(data, error.absolute_path)
        raise _error(source, where, fieldname, error.message)


def _where(data: Any, path: Sequence[Any]) -> tuple[str, str]:
    """Split an error's path into where and field, e.g. ``anomalies/1/senders/0/drift/period`` into
    ``("anomaly #2 'kind': sender 'name'", "drift.period")``."""
    labels, node, rest = [], data, list(path)
    while len(rest) > 1 and rest[0] in ("senders", "anomalies") and isinstance(rest[1], int):
        key, index = rest.pop(0), rest.pop(0)
        node = node[key][index]
        labels.append(_label(key, node, index))
    return ": ".join(labels), ".".join(map(str, rest))


def _label(key: str, item: Any, index: int) -> str:
    """How messages name item ``index`` of a ``senders`` or ``anomalies`` list: ``sender 'name'``
    (``sender #n`` while it has no usable name) or ``anomaly #n 'kind'`` (``anomaly #n``)."""
    if key == "senders":
        name = item.get("name") if isinstance(item, dict) else None
        return f"sender '{name}'" if isinstance(name, str) and name.strip() else f"sender #{index + 1}"
    kind = item.get("kind") if isinstance(item, dict) else None
    return f"anomaly #{index + 1} '{kind}'" if isinstance(kind, str) else f"anomaly #{index + 1}"


def _error(source: str, where: str, fieldname: str, problem: str) -> ScenarioError:
    """``<file>: <where>: field '<field>': <problem>``, leaving out an empty where or field."""
    return ScenarioError(": ".join(p for p in (source, where, fieldname and f"field '{fieldname}'", problem) if p))


# --------------------------------------------------------------------------------------------
# validation, stage 2: the rules that relate fields, and the dataclasses


def _with_defaults(raw: dict[str, Any], kind: str) -> dict[str, Any]:
    """The fields of a schema-valid object, null ones left out, over the schema's defaults."""
    return {**_DEFAULTS[kind], **{key: value for key, value in raw.items() if value is not None}}


def _freeze(value: Any) -> Any:
    """Read-only deep copy of a JSON value (dicts become MappingProxyType, lists tuples)."""
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


class _Builder:
    """Turns a schema-valid scenario into a :class:`Scenario`, checking the cross-field rules."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.seen: dict[str, str] = {}  # sender name -> the sender that has it

    def fail(self, where: str, fieldname: str, problem: str) -> NoReturn:
        raise _error(self.source, where, fieldname, problem)

    def ends_within(self, where: str, start: float, duration: float, limit: float, of: str) -> None:
        """Refuse a start and duration that end after ``limit``, the end of the scenario or anomaly ``of``."""
        if start + duration > limit + 1e-9:
            self.fail(where, "duration", f"start {start} + duration {duration} is past the {of} end ({limit} s)")

    def scenario(self, data: dict[str, Any], default_name: str | None) -> Scenario:
        data = _with_defaults(data, "scenario")
        name = data.get("name", default_name)
        if name is None:
            self.fail("", "name", "missing required field")
        start_time = self.start_time(data["start_time"])
        duration = data["duration"]
        try:
            in_range = start_time.year >= 1000 and (start_time + timedelta(seconds=duration)).year <= 9999
        except OverflowError:
            in_range = False
        if not in_range:
            self.fail("", "duration", "the scenario must lie between the years 1000 and 9999")
        senders = tuple(self.sender(raw, i, "", 0.0, duration, "scenario") for i, raw in enumerate(data["senders"]))
        anomalies = tuple(self.anomaly(raw, i, senders, duration) for i, raw in enumerate(data["anomalies"]))
        return Scenario(
            name=name,
            description=data["description"],
            start_time=start_time,
            duration=float(duration),
            senders=senders,
            anomalies=anomalies,
            source=self.source,
        )

    def start_time(self, value: str) -> datetime:
        """The UTC datetime of an ISO-8601 string with a time zone and whole milliseconds."""
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment: datetime | None = datetime.fromisoformat(text)
        except ValueError:
            moment = None
        if moment is None or moment.utcoffset() is None or moment.microsecond % 1000:
            self.fail(
                "",
                "start_time",
                f"{value!r} is not an ISO-8601 time with a time zone and at most millisecond precision, "
                "e.g. 2023-08-23T12:00:00Z",
            )
        return moment.astimezone(UTC)

    def sender(self, raw: dict[str, Any], index: int, prefix: str, origin: float, limit: float, of: str) -> Sender:
        """One sender, with a name no sender had before, starting and ending within ``limit`` seconds:
        the duration of the scenario or of the anomaly (``of``) that starts at offset ``origin``."""
        raw = _with_defaults(raw, "sender")
        where, name, start = prefix + _label("senders", raw, index), raw["name"], raw["start"]
        number = f"{prefix}sender #{index + 1}"
        if name in self.seen:
            self.fail(f"{number} '{name}'", "name", f"duplicate sender name (already used by {self.seen[name]})")
        self.seen[name] = number
        if start >= limit:
            self.fail(where, "start", f"must be before the {of} end ({limit} s), got {start}")
        duration = raw.get("duration", limit - start)
        self.ends_within(where, start, duration, limit, of)
        drift = raw.get("drift")
        return Sender(
            name=name,
            template=_freeze(raw["template"]),
            rate=float(raw["rate"]),
            arrivals=raw["arrivals"],
            start=origin + start,
            duration=float(duration),
            drift=None if drift is None else Drift(**{k: float(v) for k, v in _with_defaults(drift, "drift").items()}),
        )

    def anomaly(self, raw: dict[str, Any], index: int, normal: tuple[Sender, ...], scenario_end: float) -> Anomaly:
        """One anomaly: it ends within the scenario, changes something (a rate factor or extra
        senders), and its site and rate_factor keys match senders."""
        raw = _with_defaults(raw, "anomaly")
        where, site, start, duration = _label("anomalies", raw, index), raw["site"], raw["start"], raw["duration"]
        self.ends_within(where, start, duration, scenario_end, "scenario")
        for action in raw["rate_factor"]:
            if not any(s.site == site and s.browseraction == action for s in normal):
                self.fail(where, f"rate_factor.{action}", f"no sender has site {site!r} and browseraction {action!r}")
        extra = tuple(
            self.sender(s, i, f"{where}: ", float(start), duration, "anomaly") for i, s in enumerate(raw["senders"])
        )
        if not raw["rate_factor"] and not extra:
            self.fail(where, "", "needs a 'rate_factor' or 'senders' (otherwise nothing changes)")
        if not any(s.site == site for s in (*normal, *extra)):
            self.fail(where, "site", f"no sender has site {site!r}")
        factors = MappingProxyType({action: float(f) for action, f in raw["rate_factor"].items()})
        return Anomaly(
            site=site,
            kind=raw["kind"],
            start=float(start),
            duration=float(duration),
            rate_factor=factors,
            senders=extra,
        )
