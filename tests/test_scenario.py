"""Tests for clicklab.scenario: loading, defaults and every validation error's message."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from clicklab.exceptions import ScenarioError
from clicklab.scenario import (
    ARRIVALS,
    SCENARIO_DIR,
    SCHEMA,
    Drift,
    Scenario,
    Sender,
    list_scenarios,
    load_scenario,
    parse_scenario,
)

MYSITE = "https://www.mysite.com"
SHOP = "https://shop.example.com"


def base() -> dict[str, Any]:
    """A valid scenario as a plain dict; tests mutate a copy."""
    return {
        "name": "unit",
        "description": "unit-test scenario",
        "start_time": "2023-08-23T12:00:00Z",
        "duration": 300,
        "senders": [
            {"name": "mysite-impressions", "template": {"browseraction": "Impression", "site": MYSITE}, "rate": 5},
            {
                "name": "mysite-clicks",
                "template": {"browseraction": "Click", "site": MYSITE},
                "rate": 0.5,
                "drift": {"amplitude": 0.1, "period": 600, "phase": 90},
            },
            {"name": "shop-clicks", "template": {"browseraction": "Click", "site": SHOP}, "rate": 1},
        ],
        "anomalies": [
            {"site": SHOP, "kind": "click-drop", "start": 100, "duration": 60, "rate_factor": {"Click": 0}},
            {
                "site": MYSITE,
                "kind": "studio-lab-burst",
                "start": 200,
                "duration": 30,
                "rate_factor": {"Impression": 0, "Click": 0},
                "senders": [
                    {
                        "name": "burst-clicks",
                        "template": {"browseraction": "Click", "site": MYSITE},
                        "rate": 5,
                        "arrivals": "constant",
                        "start": 10,
                    }
                ],
            },
        ],
    }


def write_yaml(tmp_path: Path, data: Any, name: str = "scenario.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def load_error(tmp_path: Path, data: Any) -> tuple[Path, str]:
    """Write ``data`` as YAML, load it, and return the path and the ScenarioError message."""
    path = write_yaml(tmp_path, data)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return path, str(info.value)


# --------------------------------------------------------------------------------------------
# valid files


def test_valid_scenario_defaults_and_types(tmp_path: Path) -> None:
    sc = load_scenario(write_yaml(tmp_path, base()))
    assert isinstance(sc, Scenario)
    assert sc.name == "unit"
    assert sc.start_time == datetime(2023, 8, 23, 12, tzinfo=UTC)
    assert sc.duration == 300
    imp, clicks, shop = sc.senders
    assert imp.arrivals == "poisson" and imp.start == 0 and imp.duration == 300 and imp.drift is None
    assert clicks.drift == Drift(amplitude=0.1, period=600, phase=90)
    assert dict(shop.template) == {"browseraction": "Click", "site": SHOP}
    drop, burst = sc.anomalies
    assert dict(drop.rate_factor) == {"Click": 0}
    assert drop.end == 160
    # extra senders: start is converted to a scenario offset, default duration runs to the anomaly end
    (extra,) = burst.senders
    assert (extra.start, extra.duration, extra.end) == (210, 20, 230)
    assert [s.name for s in sc.all_senders] == ["mysite-impressions", "mysite-clicks", "shop-clicks", "burst-clicks"]


def test_scenario_is_frozen(tmp_path: Path) -> None:
    sc = load_scenario(write_yaml(tmp_path, base()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        sc.duration = 10  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        sc.senders[0].rate = 10  # type: ignore[misc]
    with pytest.raises(TypeError):
        sc.senders[0].template["site"] = "x"  # type: ignore[index]


def test_json_file_loads_like_yaml(tmp_path: Path) -> None:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(base()), encoding="utf-8")
    from_json = load_scenario(path)
    from_yaml = load_scenario(write_yaml(tmp_path, base()))
    assert from_json.source.endswith("scenario.json")
    assert dataclasses.replace(from_json, source="x") == dataclasses.replace(from_yaml, source="x")


def test_unquoted_yaml_timestamp_and_offset_time_zone(tmp_path: Path) -> None:
    path = tmp_path / "ts.yaml"
    text = yaml.safe_dump(base(), sort_keys=False).replace(
        "start_time: '2023-08-23T12:00:00Z'", "start_time: 2023-08-23T14:00:00+02:00"
    )
    assert "14:00:00+02:00" in text
    path.write_text(text, encoding="utf-8")
    assert load_scenario(path).start_time == datetime(2023, 8, 23, 12, tzinfo=UTC)


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    data = base()
    del data["name"]
    assert load_scenario(write_yaml(tmp_path, data, "my-scenario.yaml")).name == "my-scenario"


def test_bundled_scenarios_by_name() -> None:
    names = list_scenarios()
    assert {"lab", "tiny"} <= set(names)
    lab = load_scenario("lab")
    assert lab.name == "lab" and lab.duration == 7200
    assert lab == load_scenario(SCENARIO_DIR / "lab.yaml")


def test_lab_scenario_matches_the_lab_design() -> None:
    lab = load_scenario("lab")
    assert lab.start_time == datetime(2023, 8, 23, 12, tzinfo=UTC)
    sites = {s.site for s in lab.senders}
    assert sites == {MYSITE, SHOP, "https://news.example.com"}
    kinds = [a.kind for a in lab.anomalies]
    assert kinds[:4] == ["studio-lab-burst", "sql-lab-extra-clicks", "click-drop", "impression-outage"]
    starts = sorted(lab.anomalies, key=lambda a: a.start)
    for a in starts:
        assert a.start >= 3600, "anomalies must come after the 60-minute warm-up"
        assert a.start % 10 == 0, "anomalies start on 10-second window boundaries"
    for prev, nxt in itertools.pairwise(starts):
        assert nxt.start - prev.end >= 480, "anomalies are at least 8 minutes apart"
    studio = lab.anomalies[0]
    assert dict(studio.rate_factor) == {"Impression": 0, "Click": 0} and studio.duration == 30
    assert sorted((s.browseraction, s.rate, s.arrivals) for s in studio.senders) == [
        ("Click", 5, "constant"),
        ("Impression", 1, "constant"),
    ]
    sql = lab.anomalies[1]
    assert sql.duration == 20 and not sql.rate_factor
    assert [(s.browseraction, s.rate, s.arrivals) for s in sql.senders] == [("Click", 1, "constant")] * 3


# --------------------------------------------------------------------------------------------
# validation errors: (mutation, parts the message must contain)

Mutation = Callable[[dict[str, Any]], None]


def _set(path: list[Any], value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete(path: list[Any]) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


CASES: list[tuple[str, Mutation, list[str]]] = [
    ("unknown top-level field", _set(["durration"], 5), ["field 'durration'", "unknown field"]),
    (
        "unknown sender field",
        _set(["senders", 1, "rat"], 5),
        ["sender 'mysite-clicks'", "field 'rat'", "unknown field"],
    ),
    (
        "unknown anomaly field",
        _set(["anomalies", 0, "factor"], 2),
        ["anomaly #1 'click-drop'", "field 'factor'", "unknown field"],
    ),
    (
        "unknown drift field",
        _set(["senders", 1, "drift", "amp"], 0.1),
        ["sender 'mysite-clicks'", "drift", "field 'amp'", "unknown field"],
    ),
    (
        "unknown field in an anomaly's sender",
        _set(["anomalies", 1, "senders", 0, "speed"], 1),
        ["anomaly #2 'studio-lab-burst'", "sender 'burst-clicks'", "field 'speed'", "unknown field"],
    ),
    ("missing start_time", _delete(["start_time"]), ["field 'start_time'", "missing required field"]),
    ("missing senders", _delete(["senders"]), ["field 'senders'", "missing required field"]),
    (
        "missing sender rate",
        _delete(["senders", 0, "rate"]),
        ["sender 'mysite-impressions'", "field 'rate'", "missing"],
    ),
    ("missing sender name", _delete(["senders", 1, "name"]), ["sender #2", "field 'name'", "missing"]),
    ("missing sender template", _delete(["senders", 2, "template"]), ["sender 'shop-clicks'", "field 'template'"]),
    ("missing anomaly kind", _delete(["anomalies", 0, "kind"]), ["anomaly #1", "field 'kind'", "missing"]),
    ("missing drift period", _delete(["senders", 1, "drift", "period"]), ["sender 'mysite-clicks'", "field 'period'"]),
    (
        "rate not a number",
        _set(["senders", 0, "rate"], "fast"),
        ["sender 'mysite-impressions'", "field 'rate'", "number"],
    ),
    ("rate boolean", _set(["senders", 0, "rate"], True), ["field 'rate'", "must be a number"]),
    ("duration not a number", _set(["duration"], "2h"), ["field 'duration'", "must be a number"]),
    ("senders not a list", _set(["senders"], {"a": 1}), ["field 'senders'", "must be a list"]),
    ("empty senders", _set(["senders"], []), ["field 'senders'", "at least one"]),
    ("sender not a mapping", _set(["senders", 1], "mysite-clicks"), ["sender #2", "must be a mapping"]),
    ("name not a string", _set(["senders", 0, "name"], 7), ["sender #1", "field 'name'", "must be a string"]),
    ("bad start_time", _set(["start_time"], "yesterday"), ["field 'start_time'", "ISO-8601"]),
    ("naive start_time", _set(["start_time"], "2023-08-23T12:00:00"), ["field 'start_time'", "time zone"]),
    (
        "negative rate",
        _set(["senders", 1, "rate"], -1),
        ["sender 'mysite-clicks'", "field 'rate'", "must be >= 0, got -1"],
    ),
    ("negative sender start", _set(["senders", 0, "start"], -5), ["sender 'mysite-impressions'", "field 'start'"]),
    (
        "negative sender duration",
        _set(["senders", 0, "duration"], -10),
        ["sender 'mysite-impressions'", "field 'duration'", "end before start"],
    ),
    ("zero scenario duration", _set(["duration"], 0), ["field 'duration'", "must be > 0"]),
    ("scenario past year 9999", _set(["start_time"], "9999-12-31T23:59:00Z"), ["field 'duration'", "9999"]),
    (
        "sender past scenario end",
        lambda d: d["senders"][2].update(start=250, duration=100),
        ["sender 'shop-clicks'", "field 'duration'", "past the scenario end", "350 > scenario duration 300"],
    ),
    ("sender starts after end", _set(["senders", 2, "start"], 300), ["sender 'shop-clicks'", "field 'start'"]),
    (
        "anomaly negative duration",
        _set(["anomalies", 0, "duration"], -60),
        ["anomaly #1 'click-drop'", "field 'duration'", "end before start"],
    ),
    (
        "anomaly past scenario end",
        _set(["anomalies", 0, "start"], 280),
        ["anomaly #1 'click-drop'", "field 'duration'", "past the scenario end"],
    ),
    (
        "anomaly sender past anomaly end",
        _set(["anomalies", 1, "senders", 0, "duration"], 25),
        ["anomaly #2 'studio-lab-burst'", "sender 'burst-clicks'", "field 'duration'", "past the anomaly end"],
    ),
    (
        "template not an object",
        _set(["senders", 0, "template"], "browseraction=Click"),
        ["sender 'mysite-impressions'", "field 'template'", "must be a mapping"],
    ),
    (
        "template with event_time",
        _set(["senders", 0, "template", "event_time"], "now"),
        ["sender 'mysite-impressions'", "field 'template'", "event_time"],
    ),
    (
        "duplicate sender names",
        _set(["senders", 2, "name"], "mysite-clicks"),
        ["sender #3 'mysite-clicks'", "field 'name'", "duplicate", "already used by sender #2"],
    ),
    (
        "anomaly sender reusing a sender name",
        _set(["anomalies", 1, "senders", 0, "name"], "shop-clicks"),
        ["anomaly #2", "sender #1 'shop-clicks'", "field 'name'", "duplicate", "already used by sender #3"],
    ),
    (
        "unknown arrivals",
        _set(["senders", 0, "arrivals"], "burst"),
        ["sender 'mysite-impressions'", "field 'arrivals'", "'burst'", "poisson"],
    ),
    (
        "drift amplitude too large",
        _set(["senders", 1, "drift", "amplitude"], 1.0),
        ["sender 'mysite-clicks'", "field 'amplitude'", "< 1"],
    ),
    ("drift period zero", _set(["senders", 1, "drift", "period"], 0), ["sender 'mysite-clicks'", "field 'period'"]),
    (
        "negative rate_factor",
        _set(["anomalies", 0, "rate_factor", "Click"], -1),
        ["anomaly #1 'click-drop'", "field 'rate_factor.Click'", ">= 0"],
    ),
    (
        "rate_factor for an action the site has no sender for",
        _set(["anomalies", 0, "rate_factor"], {"Impression": 0}),
        ["anomaly #1 'click-drop'", "field 'rate_factor.Impression'", "no sender"],
    ),
    ("anomaly site without senders", _set(["anomalies", 0, "site"], "https://nowhere"), ["anomaly #1", "no sender"]),
    (
        "anomaly that changes nothing",
        _delete(["anomalies", 0, "rate_factor"]),
        ["anomaly #1 'click-drop'", "rate_factor"],
    ),
]


@pytest.mark.parametrize(("mutate", "parts"), [(m, p) for _, m, p in CASES], ids=[c[0] for c in CASES])
def test_validation_error_names_file_sender_and_field(tmp_path: Path, mutate: Mutation, parts: list[str]) -> None:
    data = copy.deepcopy(base())
    mutate(data)
    path, message = load_error(tmp_path, data)
    assert message.split(": ")[0].endswith(path.name), message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def test_negative_rate_message_format(tmp_path: Path) -> None:
    data = base()
    data["senders"][1]["rate"] = -1
    path = write_yaml(tmp_path, data)
    with pytest.raises(ScenarioError, match=r"sender 'mysite-clicks': field 'rate': must be >= 0, got -1$"):
        load_scenario(path)


def test_scenario_error_is_a_value_error(tmp_path: Path) -> None:
    data = base()
    data["duration"] = -1
    with pytest.raises(ValueError, match="field 'duration'"):
        load_scenario(write_yaml(tmp_path, data))


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    path, message = load_error(tmp_path, ["a", "b"])
    assert path.name in message and "mapping" in message


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ScenarioError, match=r"absent\.yaml: scenario file not found"):
        load_scenario(path)


def test_unknown_name_lists_available_scenarios() -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario("no-such-scenario")
    message = str(info.value)
    assert message.startswith("no-such-scenario:")
    assert "available:" in message and "lab" in message and "tiny" in message


def test_unparseable_yaml_names_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nsenders: [unclosed\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"broken\.yaml: not valid YAML"):
        load_scenario(path)


def test_unparseable_json_names_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"name": "x",', encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"broken\.json: not valid JSON"):
        load_scenario(path)


def test_duplicate_yaml_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    text = yaml.safe_dump(base(), sort_keys=False) + "duration: 600\n"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"dup\.yaml: .*duplicate key 'duration'"):
        load_scenario(path)


def test_template_value_json_cannot_hold(tmp_path: Path) -> None:
    path = tmp_path / "date.yaml"
    text = yaml.safe_dump(base(), sort_keys=False).replace("site: https://shop.example.com", "site: 2023-01-01", 1)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"date\.yaml: sender 'shop-clicks': field 'template': must be a JSON"):
        load_scenario(path)


def test_parse_scenario_uses_source_in_messages() -> None:
    data = base()
    data["senders"][0]["rate"] = -3
    with pytest.raises(ScenarioError, match=r"^<memory>: sender 'mysite-impressions': field 'rate'"):
        parse_scenario(data, source="<memory>")


# --------------------------------------------------------------------------------------------
# the JSON Schema: per-field rules live in clicklab/scenario_schema.json


def test_schema_is_valid_draft_2020_12() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(SCHEMA)


def test_schema_is_the_json_file_next_to_the_module() -> None:
    resource = resources.files("clicklab").joinpath("scenario_schema.json")
    assert resource.is_file()
    assert json.loads(resource.read_text(encoding="utf-8")) == SCHEMA


def test_arrivals_come_from_the_schema() -> None:
    assert ARRIVALS == ("poisson", "constant")
    assert (
        SCHEMA["$defs"]["sender"]["properties"]["arrivals"]["default"]
        == Sender.__dataclass_fields__["arrivals"].default
    )


def _subschemas(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node, *(s for value in node.values() for s in _subschemas(value))]
    if isinstance(node, list):
        return [s for value in node for s in _subschemas(value)]
    return []


def test_every_error_message_belongs_to_a_keyword_of_its_schema() -> None:
    worded = [s for s in _subschemas(SCHEMA) if "errorMessage" in s]
    assert len(worded) >= 5
    for schema in worded:
        for keyword, wording in schema["errorMessage"].items():
            assert keyword in schema, f"errorMessage for {keyword!r} in a schema without it: {schema}"
            wording.format(value="v", repr="'v'", type="string")  # only the placeholders the code fills


@pytest.mark.parametrize("path", sorted(p for p in SCENARIO_DIR.iterdir() if p.suffix in (".yaml", ".yml", ".json")))
def test_bundled_scenarios_pass_the_plain_schema(path: Path) -> None:
    """Any Draft 2020-12 tool (an editor, CI) can check a scenario file with the schema alone."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert list(Draft202012Validator(SCHEMA).iter_errors(data)) == []
    assert list(Draft202012Validator(SCHEMA).iter_errors(base())) == []


EXTRA_CASES: list[tuple[str, Mutation, str]] = [
    (
        "rate infinite",
        _set(["senders", 0, "rate"], float("inf")),
        "sender 'mysite-impressions': field 'rate': must be a finite number, got inf",
    ),
    ("duration NaN", _set(["duration"], float("nan")), "field 'duration': must be a finite number, got nan"),
    (
        "null required field",
        _set(["senders", 1, "rate"], None),
        "sender 'mysite-clicks': field 'rate': missing required field",
    ),
    (
        "null optional field without a null default",
        _set(["senders", 0, "start"], None),
        "sender 'mysite-impressions': field 'start': must be a number, got null None",
    ),
    (
        "start_time a number",
        _set(["start_time"], 5),
        "field 'start_time': must be an ISO-8601 time string, got number 5",
    ),
    ("anomalies not a list", _set(["anomalies"], {}), "field 'anomalies': must be a list, got mapping"),
    (
        "drift not a mapping",
        _set(["senders", 1, "drift"], 5),
        "sender 'mysite-clicks': field 'drift': must be a mapping, got number 5",
    ),
    (
        "negative drift amplitude",
        _set(["senders", 1, "drift", "amplitude"], -0.5),
        "sender 'mysite-clicks': drift: field 'amplitude': must be >= 0 and < 1, got -0.5",
    ),
    (
        "drift period zero",
        _set(["senders", 1, "drift", "period"], 0),
        "sender 'mysite-clicks': drift: field 'period': must be > 0 seconds, got 0",
    ),
    ("blank sender name", _set(["senders", 0, "name"], "  "), "sender #1: field 'name': must not be empty"),
    (
        "anomaly sender not a mapping",
        _set(["anomalies", 1, "senders", 0], 3),
        "anomaly #2 'studio-lab-burst': sender #1: must be a mapping, got number 3",
    ),
    (
        "rate_factor key not a string",
        _set(["anomalies", 0, "rate_factor", 1], 0),
        "anomaly #1 'click-drop': field 'rate_factor': keys must be browseraction strings, got 1",
    ),
    (
        "rate_factor value not a number",
        _set(["anomalies", 0, "rate_factor", "Click"], "off"),
        "anomaly #1 'click-drop': field 'rate_factor.Click': must be a number, got string 'off'",
    ),
    (
        "template value infinite",
        _set(["senders", 0, "template", "weight"], float("inf")),
        "sender 'mysite-impressions': field 'template': must be a JSON object: template.weight is not a finite number",
    ),
    (
        "template date in a list",
        _set(["senders", 0, "template", "tags"], ["a", datetime(2023, 1, 1, tzinfo=UTC).date()]),
        "sender 'mysite-impressions': field 'template': must be a JSON object: template.tags[1] is a date, "
        "which JSON cannot hold (quote it)",
    ),
    (
        "template non-string key",
        _set(["senders", 0, "template", "nested"], {7: "x"}),
        "sender 'mysite-impressions': field 'template': must be a JSON object: template.nested has a non-string key 7",
    ),
    (
        "two errors: the first in the file wins",
        lambda d: d["senders"][2].update(rate=-1) or d["senders"][0].update(rate="fast"),
        "sender 'mysite-impressions': field 'rate': must be a number, got string 'fast'",
    ),
    (
        "an object's unknown field before its fields' errors",
        lambda d: d["senders"][0].update(rate=-1, speed=2),
        "sender 'mysite-impressions': field 'speed': unknown field (allowed: name, template, rate, arrivals, start, "
        "duration, drift)",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), [(m, e) for _, m, e in EXTRA_CASES], ids=[c[0] for c in EXTRA_CASES])
def test_schema_error_message(tmp_path: Path, mutate: Mutation, expected: str) -> None:
    data = copy.deepcopy(base())
    mutate(data)
    path, message = load_error(tmp_path, data)
    label, rest = message.split(": ", 1)
    assert label.endswith(path.name) and rest == expected
    assert "\n" not in message


def test_null_optional_fields_mean_their_defaults(tmp_path: Path) -> None:
    data = base()
    data["senders"][0].update(duration=None, drift=None)
    data["anomalies"][0]["senders"] = None
    data["anomalies"][1]["rate_factor"] = None
    plain = load_scenario(write_yaml(tmp_path, data, "nulls.yaml"))
    del data["senders"][0]["duration"], data["senders"][0]["drift"]
    del data["anomalies"][0]["senders"], data["anomalies"][1]["rate_factor"]
    assert dataclasses.replace(plain, source="x") == dataclasses.replace(
        load_scenario(write_yaml(tmp_path, data)), source="x"
    )
    data["anomalies"] = None
    assert load_scenario(write_yaml(tmp_path, data)).anomalies == ()


def test_parse_scenario_takes_any_mapping_and_tuples() -> None:
    data = base()
    expected = parse_scenario(copy.deepcopy(data))
    data["senders"] = tuple(MappingProxyType(s) for s in data["senders"])
    assert parse_scenario(MappingProxyType(data)) == expected
