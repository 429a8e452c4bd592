"""Scenario files: what the event generator produces, and which anomalies it injects.

A scenario is a JSON or YAML file (see ``data/scenarios/lab.yaml`` for a commented example)
with a start time, a total duration, a list of *senders* (each one emits copies of a JSON
template at a given rate, like one record template of AWS's Kinesis Data Generator) and a
list of labelled *anomalies* that change or add traffic for a while.

:func:`load_scenario` reads and validates a file; :func:`parse_scenario` validates an
in-memory mapping. Both return a frozen :class:`Scenario` or raise
:class:`~clicklab.exceptions.ScenarioError`, whose message names the file, the sender or
anomaly, and the field at fault.

Validation has two stages. The JSON Schema ``scenario_schema.json`` (Draft 2020-12, next to
this module, loaded as :data:`SCHEMA`) holds every rule about a single field: types, required
and unknown fields, ranges, the ``arrivals`` values, defaults, what a template may contain.
The code below holds only the rules that relate fields to each other (an anomaly or a sender
ending within the scenario or the anomaly, unique sender names, an anomaly's site and
``rate_factor`` keys matching a sender, ...) and turns the file's values into the dataclasses.
"""

from __future__ import annotations

import copy
import functools
import json
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn

import yaml

from clicklab.exceptions import ScenarioError

if TYPE_CHECKING:
    from jsonschema import ValidationError

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
    _check_schema(data, source)
    # from here on every field has the type and range the schema asks for
    rules = _Rules(source)
    if "name" in data:
        name = data["name"]
    elif default_name is not None:
        name = default_name
    else:
        rules.fail("", "name", "missing required field")
    start_time = rules.timestamp(data["start_time"], "", "start_time")
    duration = float(data["duration"])
    try:
        last_year = (start_time + timedelta(seconds=duration)).year
    except OverflowError:
        last_year = 10_000
    if start_time.year < 1000 or last_year > 9999:
        rules.fail("", "duration", "the scenario must lie between the years 1000 and 9999")

    seen: dict[str, str] = {}
    senders = tuple(rules.sender(raw, i, "", 0.0, duration, seen, "scenario") for i, raw in enumerate(data["senders"]))
    raw_anomalies = _value(data, "scenario", "anomalies")
    anomalies = tuple(rules.anomaly(raw, i, senders, duration, seen) for i, raw in enumerate(raw_anomalies))
    return Scenario(
        name=name,
        description=_value(data, "scenario", "description"),
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
# validation, stage 1: the schema (one field at a time)


def _is_json_number(_checker: Any, value: Any) -> bool:
    """An int or a finite float, not a bool: JSON has no NaN or Infinity (YAML's ``.nan``, ``.inf``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)


@functools.cache
def _schema_validator() -> Any:
    """The validator of :data:`SCHEMA`, built on first use (importing jsonschema can take seconds).

    It is Draft 2020-12 over Python's JSON-like values: any Mapping is an object, a tuple is an
    array, and non-finite floats are not numbers (so ``rate: .inf`` fails the schema like a string).
    """
    from jsonschema import Draft202012Validator, validators

    types = Draft202012Validator.TYPE_CHECKER.redefine_many(
        {
            "number": _is_json_number,
            "array": lambda _checker, value: isinstance(value, (list, tuple)),
            "object": lambda _checker, value: isinstance(value, Mapping),
        }
    )
    return validators.extend(Draft202012Validator, type_checker=types)(SCHEMA)


_OBJECTS: dict[str, Mapping[str, Any]] = {
    "scenario": SCHEMA,
    "sender": SCHEMA["$defs"]["sender"],
    "drift": SCHEMA["$defs"]["drift"],
    "anomaly": SCHEMA["$defs"]["anomaly"],
}
"""The schema of each kind of object a scenario is made of."""

_ITEMS = {("scenario", "senders"): "sender", ("scenario", "anomalies"): "anomaly", ("anomaly", "senders"): "sender"}
"""Lists of named objects: (kind of object, field) -> kind of the list's items."""

_BOUNDS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
_TYPE_WORDS = {"number": "a number", "string": "a string", "array": "a list", "object": "a mapping"}


def _value(data: Mapping[str, Any], kind: str, key: str) -> Any:
    """``data[key]``, or the schema's default for that field when it is absent or null."""
    value = data.get(key)
    return _OBJECTS[kind]["properties"][key].get("default") if value is None else value


def _check_schema(data: Any, source: str) -> None:
    """Validate ``data`` against :data:`SCHEMA`; raise ScenarioError for the first error in the file."""
    document = data
    if isinstance(data, Mapping) and isinstance(data.get("start_time"), datetime):
        # YAML reads an unquoted timestamp as a datetime: the schema sees the text it was written as
        document = {**data, "start_time": data["start_time"].isoformat()}
    error = _first_in_file(_schema_validator().iter_errors(document), document)
    if error is not None:
        raise ScenarioError(_message(source, *_explain(error, document)))


def _first_in_file(errors: Iterable[ValidationError], document: Any) -> ValidationError | None:
    """The error met first when reading the file: an object's own errors (unknown, missing fields)
    before those of its fields, then fields and list items in file order."""

    def position(error: ValidationError) -> list[int]:
        node, out = document, []
        for part in error.absolute_path:
            out.append(part if isinstance(node, (list, tuple)) else list(node).index(part))
            node = node[part]
        return out

    return min(errors, key=position, default=None)


def _sender_label(raw: Any, index: int) -> str:
    """``sender 'name'``, or ``sender #n`` while the sender has no usable name."""
    if isinstance(raw, Mapping) and isinstance(raw.get("name"), str) and raw["name"].strip():
        return f"sender '{raw['name']}'"
    return f"sender #{index + 1}"


def _anomaly_label(raw: Any, index: int) -> str:
    """``anomaly #n 'kind'``, or ``anomaly #n`` while it has no kind."""
    if isinstance(raw, Mapping) and isinstance(raw.get("kind"), str):
        return f"anomaly #{index + 1} '{raw['kind']}'"
    return f"anomaly #{index + 1}"


_LABELS = {"sender": _sender_label, "anomaly": _anomaly_label}


def _place(document: Any, path: Sequence[Any]) -> tuple[str, str, Any, Any, list[Any]]:
    """Split a JSON path into the words of a message.

    Returns ``(where, kind, obj, key, rest)``: for ``anomalies/1/senders/0/drift/period`` where is
    ``anomaly #2 'kind': sender 'name': drift``, kind ``'drift'``, obj the drift mapping, key
    ``'period'`` and rest ``[]``; for ``anomalies/0/rate_factor/Click`` key is ``'rate_factor'`` and
    rest ``['Click']``. key is None when the path ends at a sender or an anomaly.
    """
    where: list[str] = []
    kind, obj, parts = "scenario", document, list(path)
    while parts:
        key = parts.pop(0)
        item_kind = _ITEMS.get((kind, key))
        if item_kind and parts:
            index = parts.pop(0)
            kind, obj = item_kind, obj[key][index]
            where.append(_LABELS[item_kind](obj, index))
        elif (kind, key) == ("sender", "drift") and parts:
            kind, obj = "drift", obj[key]
            where.append("drift")
        else:
            return ": ".join(where), kind, obj, key, parts
    return ": ".join(where), kind, obj, None, []


def _explain(error: ValidationError, document: Any) -> tuple[str, str | None, str]:
    """``(where, field, problem)`` for a schema error, e.g. ``("sender 'clicks'", "rate", "must be >= 0, got -1")``."""
    path = list(error.absolute_path)
    keyword, value, schema = error.validator, error.instance, error.schema
    # the object's own errors: name the field that is missing or unknown
    if keyword == "required":
        key = next(k for k in error.validator_value if k not in value)
        return _place(document, [*path, key])[0], key, "missing required field"
    if keyword == "additionalProperties":
        known = schema["properties"]
        key = next(k for k in value if k not in known)
        return _place(document, [*path, key])[0], str(key), f"unknown field (allowed: {', '.join(known)})"

    where, kind, obj, key, rest = _place(document, path)
    names_a_key = len(error.schema_path) >= 2 and error.schema_path[-2] == "propertyNames"
    if key == "template" and (rest or names_a_key):
        return where, "template", "must be a JSON object: " + _json_problem(obj[key], rest, value, names_a_key)
    fieldname = None if key is None else ".".join(str(p) for p in (key, *rest))
    if keyword == "type" and value is None and not rest and key in _OBJECTS[kind].get("required", ()):
        return where, fieldname, "missing required field"

    wording = schema.get("errorMessage", {}).get(keyword) if isinstance(schema, Mapping) else None
    if keyword == "type":
        types = error.validator_value
        wanted = [t for t in ([types] if isinstance(types, str) else types) if t != "null"]
        if "number" in wanted and isinstance(value, float):  # only inf and nan fail to be numbers
            wording = "must be a finite number, got {repr}"
        elif wording is None:
            got = "{type}" if wanted == ["array"] else "{type} {repr}"
            wording = "must be " + " or ".join(_TYPE_WORDS.get(t, t) for t in wanted) + ", got " + got
    elif keyword in _BOUNDS and wording is None:
        bounds = " and ".join(f"{op} {_fmt(schema[k])}" for k, op in _BOUNDS.items() if k in schema)
        wording = f"must be {bounds}, got {{value}}"
    elif keyword == "enum" and wording is None:
        wording = f"must be one of {', '.join(map(str, error.validator_value))}, got {{repr}}"
    if wording is None:
        return where, fieldname, error.message
    return where, fieldname, wording.format(value=_fmt(value), repr=repr(value), type=_tname(value))


def _json_problem(template: Any, rest: list[Any], value: Any, names_a_key: bool) -> str:
    """Why ``value``, at ``rest`` below a sender's template, cannot be part of a JSON object."""
    where, node = "template", template
    for part in rest:
        where += f"[{part}]" if isinstance(node, (list, tuple)) else f".{part}"
        node = node[part]
    if names_a_key:
        return f"{where} has a non-string key {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} is not a finite number"
    return f"{where} is a {_tname(value)}, which JSON cannot hold (quote it)"


def _message(source: str, where: str, fieldname: str | None, problem: str) -> str:
    """``<file>: <where>: field '<field>': <problem>``, leaving out an empty where or field."""
    parts = [source]
    if where:
        parts.append(where)
    if fieldname:
        parts.append(f"field '{fieldname}'")
    return ": ".join(parts) + ": " + problem


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


def _freeze(value: Any) -> Any:
    """Read-only deep copy of a JSON-like value (mappings become MappingProxyType)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return copy.copy(value)


# --------------------------------------------------------------------------------------------
# validation, stage 2: the rules that relate fields, and the dataclasses


class _Rules:
    """Cross-field checks on a schema-valid scenario; they raise ScenarioError with
    ``<file>: <where>: field '<f>': <problem>`` like the schema errors."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, fieldname: str | None, problem: str) -> NoReturn:
        raise ScenarioError(_message(self.source, where, fieldname, problem))

    def timestamp(self, value: str | datetime, where: str, fieldname: str) -> datetime:
        """The UTC datetime of an ISO-8601 string (or of YAML's datetime); it must have a time zone
        and whole milliseconds. Kept in code: the accepted syntax is ``datetime.fromisoformat``'s."""
        if isinstance(value, datetime):
            moment = value
        else:
            text = value.strip()
            if text.endswith(("Z", "z")):
                text = text[:-1] + "+00:00"
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                self.fail(where, fieldname, f"must be an ISO-8601 UTC time like 2023-08-23T12:00:00Z, got {value!r}")
        if moment.tzinfo is None or moment.utcoffset() is None:
            self.fail(where, fieldname, f"must include a time zone, e.g. 2023-08-23T12:00:00Z, got {value!r}")
        if moment.microsecond % 1000:
            self.fail(where, fieldname, f"must be a whole number of milliseconds, got {value!r}")
        return moment.astimezone(UTC)

    def sender(
        self,
        raw: Mapping[str, Any],
        index: int,
        prefix: str,
        origin: float,
        limit: float,
        seen: dict[str, str],
        limit_name: str,
    ) -> Sender:
        """One sender: its name is unused so far (``seen``: name -> where it was used) and it
        starts and ends within ``limit`` seconds, the duration of the scenario or of the anomaly
        (``limit_name``) whose start is at scenario offset ``origin``. Without a duration it runs
        until ``limit``."""
        where = prefix + _sender_label(raw, index)
        name = raw["name"]
        if name in seen:
            here = f"{prefix}sender #{index + 1} '{name}'"
            self.fail(here, "name", f"duplicate sender name (already used by {seen[name]})")
        seen[name] = f"{prefix}sender #{index + 1}"

        start = float(_value(raw, "sender", "start"))
        if start >= limit:
            self.fail(where, "start", f"must be before the {limit_name} end ({_fmt(limit)} s), got {_fmt(start)}")
        if raw.get("duration") is None:
            duration = limit - start
        else:
            duration = float(raw["duration"])
            if start + duration > limit + 1e-9:
                self.fail(
                    where,
                    "duration",
                    f"sender runs past the {limit_name} end: start {_fmt(start)} + duration "
                    f"{_fmt(duration)} = {_fmt(start + duration)} > {limit_name} duration {_fmt(limit)}",
                )
        drift = None
        if raw.get("drift") is not None:
            amplitude, period = float(raw["drift"]["amplitude"]), float(raw["drift"]["period"])
            drift = Drift(amplitude=amplitude, period=period, phase=float(_value(raw["drift"], "drift", "phase")))
        return Sender(
            name=name,
            template=_freeze(dict(raw["template"])),
            rate=float(raw["rate"]),
            arrivals=_value(raw, "sender", "arrivals"),
            start=origin + start,
            duration=duration,
            drift=drift,
        )

    def anomaly(
        self,
        raw: Mapping[str, Any],
        index: int,
        normal: tuple[Sender, ...],
        scenario_duration: float,
        seen: dict[str, str],
    ) -> Anomaly:
        """One anomaly: it ends within the scenario, changes something (a rate factor or extra
        senders), and its site and rate_factor keys match senders."""
        where = _anomaly_label(raw, index)
        site = raw["site"]
        start = float(raw["start"])
        duration = float(raw["duration"])
        if start + duration > scenario_duration + 1e-9:
            self.fail(
                where,
                "duration",
                f"anomaly runs past the scenario end: start {_fmt(start)} + duration {_fmt(duration)} "
                f"= {_fmt(start + duration)} > scenario duration {_fmt(scenario_duration)}",
            )

        factors: dict[str, float] = {}
        for action, factor in _value(raw, "anomaly", "rate_factor").items():
            if not any(s.site == site and s.browseraction == action for s in normal):
                self.fail(where, f"rate_factor.{action}", f"no sender has site {site!r} and browseraction {action!r}")
            factors[action] = float(factor)

        extra = [
            self.sender(s, i, f"{where}: ", start, duration, seen, "anomaly")
            for i, s in enumerate(_value(raw, "anomaly", "senders"))
        ]
        if not factors and not extra:
            self.fail(where, None, "needs a 'rate_factor' or 'senders' (otherwise nothing changes)")
        if not any(s.site == site for s in (*normal, *extra)):
            self.fail(where, "site", f"no sender has site {site!r}")
        return Anomaly(
            site=site,
            kind=raw["kind"],
            start=start,
            duration=duration,
            rate_factor=MappingProxyType(factors),
            senders=tuple(extra),
        )
