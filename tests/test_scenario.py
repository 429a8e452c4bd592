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
    # unknown and missing fields: jsonschema's message names the field
    ("unknown top-level field", _set(["durration"], 5), ["'durration' was unexpected"]),
    ("unknown sender field", _set(["senders", 1, "rat"], 5), ["sender 'mysite-clicks'", "'rat' was unexpected"]),
    (
        "unknown anomaly field",
        _set(["anomalies", 0, "factor"], 2),
        ["anomaly #1 'click-drop'", "'factor' was unexpected"],
    ),
    (
        "unknown drift field",
        _set(["senders", 1, "drift", "amp"], 0.1),
        ["sender 'mysite-clicks'", "field 'drift'", "'amp' was unexpected"],
    ),
    (
        "unknown field in an anomaly's sender",
        _set(["anomalies", 1, "senders", 0, "speed"], 1),
        ["anomaly #2 'studio-lab-burst': sender 'burst-clicks'", "'speed' was unexpected"],
    ),
    ("missing start_time", _delete(["start_time"]), ["'start_time' is a required property"]),
    ("missing senders", _delete(["senders"]), ["'senders' is a required property"]),
    (
        "missing sender rate",
        _delete(["senders", 0, "rate"]),
        ["sender 'mysite-impressions'", "'rate' is a required property"],
    ),
    ("missing sender name", _delete(["senders", 1, "name"]), ["sender #2", "'name' is a required property"]),
    (
        "missing sender template",
        _delete(["senders", 2, "template"]),
        ["sender 'shop-clicks'", "'template' is a required property"],
    ),
    ("missing anomaly kind", _delete(["anomalies", 0, "kind"]), ["anomaly #1: ", "'kind' is a required property"]),
    (
        "missing drift period",
        _delete(["senders", 1, "drift", "period"]),
        ["sender 'mysite-clicks'", "field 'drift'", "'period' is a required property"],
    ),
    # types
    (
        "rate not a number",
        _set(["senders", 0, "rate"], "fast"),
        ["sender 'mysite-impressions'", "field 'rate'", "'fast' is not of type 'number'"],
    ),
    ("rate boolean", _set(["senders", 0, "rate"], True), ["field 'rate'", "True is not of type 'number'"]),
    (
        "rate infinite",
        _set(["senders", 0, "rate"], float("inf")),
        ["sender 'mysite-impressions'", "field 'rate'", "inf is not of type 'number'"],
    ),
    ("duration NaN", _set(["duration"], float("nan")), ["field 'duration'", "nan is not of type 'number'"]),
    ("duration not a number", _set(["duration"], "2h"), ["field 'duration'", "'2h' is not of type 'number'"]),
    (
        "null required field",
        _set(["senders", 1, "rate"], None),
        ["sender 'mysite-clicks'", "field 'rate'", "None is not of type 'number'"],
    ),
    (
        "null optional field without a null default",
        _set(["senders", 0, "start"], None),
        ["sender 'mysite-impressions'", "field 'start'", "None is not of type 'number'"],
    ),
    ("senders not a list", _set(["senders"], {"a": 1}), ["field 'senders'", "{'a': 1} is not of type 'array'"]),
    ("empty senders", _set(["senders"], []), ["field 'senders'", "[] should be non-empty"]),
    ("anomalies not a list", _set(["anomalies"], {}), ["field 'anomalies'", "{} is not of type 'array'"]),
    (
        "sender not a mapping",
        _set(["senders", 1], "mysite-clicks"),
        ["sender #2: ", "'mysite-clicks' is not of type 'object'"],
    ),
    (
        "anomaly sender not a mapping",
        _set(["anomalies", 1, "senders", 0], 3),
        ["anomaly #2 'studio-lab-burst': sender #1: ", "3 is not of type 'object'"],
    ),
    (
        "drift not a mapping",
        _set(["senders", 1, "drift"], 5),
        ["sender 'mysite-clicks'", "field 'drift'", "5 is not of type 'object'"],
    ),
    ("name not a string", _set(["senders", 0, "name"], 7), ["sender #1", "field 'name'", "7 is not of type 'string'"]),
    ("blank sender name", _set(["senders", 0, "name"], "  "), ["sender #1", "field 'name'", "'  ' does not match"]),
    ("start_time a number", _set(["start_time"], 5), ["field 'start_time'", "5 is not of type 'string'"]),
    (
        "template not an object",
        _set(["senders", 0, "template"], "browseraction=Click"),
        ["sender 'mysite-impressions'", "field 'template'", "'browseraction=Click' is not of type 'object'"],
    ),
    (
        "template with event_time",
        _set(["senders", 0, "template", "event_time"], "now"),
        ["sender 'mysite-impressions'", "field 'template'", "'event_time' should not be valid"],
    ),
    (
        "template value infinite",
        _set(["senders", 0, "template", "weight"], float("inf")),
        ["sender 'mysite-impressions'", "field 'template.weight'", "inf is not of type"],
    ),
    (
        "template date in a list",
        _set(["senders", 0, "template", "tags"], ["a", datetime(2023, 1, 1, tzinfo=UTC).date()]),
        ["sender 'mysite-impressions'", "field 'template.tags.1'", "datetime.date(2023, 1, 1) is not of type"],
    ),
    (
        "template non-string key",
        _set(["senders", 0, "template", "nested"], {7: "x"}),
        ["sender 'mysite-impressions'", "field 'template.nested'", "7 is not of type 'string'"],
    ),
    (
        "rate_factor key not a string",
        _set(["anomalies", 0, "rate_factor", 1], 0),
        ["anomaly #1 'click-drop'", "field 'rate_factor'", "1 is not of type 'string'"],
    ),
    (
        "rate_factor value not a number",
        _set(["anomalies", 0, "rate_factor", "Click"], "off"),
        ["anomaly #1 'click-drop'", "field 'rate_factor.Click'", "'off' is not of type 'number'"],
    ),
    # ranges and enums
    (
        "negative rate",
        _set(["senders", 1, "rate"], -1),
        ["sender 'mysite-clicks'", "field 'rate'", "-1 is less than the minimum of 0"],
    ),
    (
        "negative sender start",
        _set(["senders", 0, "start"], -5),
        ["sender 'mysite-impressions'", "field 'start'", "-5 is less than the minimum of 0"],
    ),
    (
        "negative sender duration",
        _set(["senders", 0, "duration"], -10),
        ["sender 'mysite-impressions'", "field 'duration'", "-10 is less than or equal to the minimum of 0"],
    ),
    ("zero scenario duration", _set(["duration"], 0), ["field 'duration'", "0 is less than or equal to the minimum"]),
    (
        "anomaly negative duration",
        _set(["anomalies", 0, "duration"], -60),
        ["anomaly #1 'click-drop'", "field 'duration'", "-60 is less than or equal to the minimum of 0"],
    ),
    (
        "unknown arrivals",
        _set(["senders", 0, "arrivals"], "burst"),
        ["sender 'mysite-impressions'", "field 'arrivals'", "'burst' is not one of ['poisson', 'constant']"],
    ),
    (
        "drift amplitude too large",
        _set(["senders", 1, "drift", "amplitude"], 1.0),
        ["sender 'mysite-clicks'", "field 'drift.amplitude'", "1.0 is greater than or equal to the maximum of 1"],
    ),
    (
        "negative drift amplitude",
        _set(["senders", 1, "drift", "amplitude"], -0.5),
        ["sender 'mysite-clicks'", "field 'drift.amplitude'", "-0.5 is less than the minimum of 0"],
    ),
    (
        "drift period zero",
        _set(["senders", 1, "drift", "period"], 0),
        ["sender 'mysite-clicks'", "field 'drift.period'", "0 is less than or equal to the minimum of 0"],
    ),
    (
        "negative rate_factor",
        _set(["anomalies", 0, "rate_factor", "Click"], -1),
        ["anomaly #1 'click-drop'", "field 'rate_factor.Click'", "-1 is less than the minimum of 0"],
    ),
    # rules in code
    (
        "bad start_time",
        _set(["start_time"], "yesterday"),
        ["field 'start_time'", "'yesterday' is not an ISO-8601 time"],
    ),
    (
        "naive start_time",
        _set(["start_time"], "2023-08-23T12:00:00"),
        ["field 'start_time'", "'2023-08-23T12:00:00' is not", "with a time zone"],
    ),
    (
        "start_time below milliseconds",
        _set(["start_time"], "2023-08-23T12:00:00.0005Z"),
        ["field 'start_time'", "'2023-08-23T12:00:00.0005Z' is not", "millisecond"],
    ),
    ("scenario past year 9999", _set(["start_time"], "9999-12-31T23:59:00Z"), ["field 'duration'", "9999"]),
    (
        "sender past scenario end",
        lambda d: d["senders"][2].update(start=250, duration=100),
        ["sender 'shop-clicks'", "field 'duration'", "start 250 + duration 100 is past the scenario end (300 s)"],
    ),
    (
        "sender starts after end",
        _set(["senders", 2, "start"], 300),
        ["sender 'shop-clicks'", "field 'start'", "must be before the scenario end (300 s), got 300"],
    ),
    (
        "anomaly past scenario end",
        _set(["anomalies", 0, "start"], 280),
        ["anomaly #1 'click-drop'", "field 'duration'", "start 280 + duration 60 is past the scenario end"],
    ),
    (
        "anomaly sender past anomaly end",
        _set(["anomalies", 1, "senders", 0, "duration"], 25),
        [
            "anomaly #2 'studio-lab-burst': sender 'burst-clicks'",
            "field 'duration'",
            "start 10 + duration 25 is past the anomaly end (30 s)",
        ],
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
        "rate_factor for an action the site has no sender for",
        _set(["anomalies", 0, "rate_factor"], {"Impression": 0}),
        ["anomaly #1 'click-drop'", "field 'rate_factor.Impression'", "no sender", "'Impression'"],
    ),
    (
        "anomaly site without senders",
        lambda d: d["anomalies"][1].update(site="https://nowhere", rate_factor=None),
        ["anomaly #2 'studio-lab-burst'", "field 'site'", "no sender has site 'https://nowhere'"],
    ),
    (
        "anomaly that changes nothing",
        _delete(["anomalies", 0, "rate_factor"]),
        ["anomaly #1 'click-drop'", "needs a 'rate_factor' or 'senders'"],
    ),
]


@pytest.mark.parametrize(("mutate", "parts"), [(m, p) for _, m, p in CASES], ids=[c[0] for c in CASES])
def test_validation_error_names_file_sender_and_field(tmp_path: Path, mutate: Mutation, parts: list[str]) -> None:
    data = copy.deepcopy(base())
    mutate(data)
    path, message = load_error(tmp_path, data)
    assert message.split(": ")[0].endswith(path.name), message
    assert "\n" not in message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def test_message_format(tmp_path: Path) -> None:
    data = base()
    data["senders"][1]["rate"] = -1
    path = write_yaml(tmp_path, data)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value).endswith(
        f"{path.name}: sender 'mysite-clicks': field 'rate': -1 is less than the minimum of 0"
    )


def test_one_error_is_reported_and_an_objects_own_error_first(tmp_path: Path) -> None:
    data = base()
    data["senders"][0]["rate"] = "fast"
    data["senders"][2]["rate"] = -1
    _, message = load_error(tmp_path, data)
    reported = ["'fast' is not of type" in message, "-1 is less than" in message]
    assert reported.count(True) == 1, message
    data["senders"][0].update(rate=-1, speed=2)  # an unknown field is reported before a field's value
    _, message = load_error(tmp_path, data)
    assert "sender 'mysite-impressions'" in message and "'speed' was unexpected" in message, message


def test_scenario_error_is_a_value_error(tmp_path: Path) -> None:
    data = base()
    data["duration"] = -1
    with pytest.raises(ValueError, match="field 'duration'"):
        load_scenario(write_yaml(tmp_path, data))


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    path, message = load_error(tmp_path, ["a", "b"])
    assert path.name in message and "['a', 'b'] is not of type 'object'" in message


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
    with pytest.raises(
        ScenarioError, match=r"date\.yaml: sender 'shop-clicks': field 'template\.site': datetime\.date\("
    ):
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


def test_arrivals_and_defaults_come_from_the_schema() -> None:
    assert ARRIVALS == ("poisson", "constant")
    data = base()
    del data["description"], data["anomalies"], data["senders"][1]["drift"]["phase"]
    sc = parse_scenario(data)
    sender, drift = SCHEMA["$defs"]["sender"]["properties"], SCHEMA["$defs"]["drift"]["properties"]
    assert sc.description == SCHEMA["properties"]["description"]["default"] and sc.anomalies == ()
    assert sc.senders[0].arrivals == sender["arrivals"]["default"] and sc.senders[0].start == sender["start"]["default"]
    assert sc.senders[1].drift is not None and sc.senders[1].drift.phase == drift["phase"]["default"]


@pytest.mark.parametrize("path", sorted(p for p in SCENARIO_DIR.iterdir() if p.suffix in (".yaml", ".yml", ".json")))
def test_bundled_scenarios_pass_the_plain_schema(path: Path) -> None:
    """Any Draft 2020-12 tool (an editor, CI) can check a scenario file with the schema alone."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert list(Draft202012Validator(SCHEMA).iter_errors(data)) == []
    assert list(Draft202012Validator(SCHEMA).iter_errors(base())) == []


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
