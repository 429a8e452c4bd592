"""Tests for clicklab.generator: rates, determinism, format, anomalies, labels and the bundled replay."""

from __future__ import annotations

import csv
import gzip
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clicklab.exceptions import DatasetError
from clicklab.generator import (
    BLOCK_S,
    GenerateResult,
    _iter_windows,
    benchmark_scenario,
    default_labels_path,
    expected_events,
    generate,
)
from clicklab.scenario import Scenario, load_scenario, parse_scenario

REPO = Path(__file__).resolve().parent.parent
MYSITE = "https://www.mysite.com"
SHOP = "https://shop.example.com"
START = datetime(2023, 8, 23, 12, tzinfo=UTC)
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def scenario(
    senders: list[dict[str, Any]], duration: float = 600, anomalies: list[dict[str, Any]] | None = None
) -> Scenario:
    return parse_scenario(
        {
            "name": "t",
            "start_time": "2023-08-23T12:00:00Z",
            "duration": duration,
            "senders": senders,
            "anomalies": anomalies or [],
        },
        source="<test>",
    )


def sender(name: str, action: str = "Click", site: str = MYSITE, rate: float = 1.0, **extra: Any) -> dict[str, Any]:
    return {"name": name, "template": {"browseraction": action, "site": site}, "rate": rate, **extra}


def read_text(path: Path) -> str:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rt", encoding="ascii") as fh:
            return fh.read()
    return path.read_text(encoding="ascii")


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in read_text(path).splitlines()]


def offset(record: dict[str, Any]) -> float:
    """Seconds from the scenario start of a record's event_time."""
    moment = datetime.strptime(record["event_time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return (moment - START).total_seconds()


def offsets(recs: list[dict[str, Any]], **match: Any) -> np.ndarray:
    return np.array([offset(r) for r in recs if all(r.get(k) == v for k, v in match.items())])


# --------------------------------------------------------------------------------------------
# rates


def test_poisson_rate_and_dispersion(tmp_path: Path) -> None:
    sc = scenario([sender("s", rate=40)], duration=600)
    out = tmp_path / "p.jsonl"
    result = generate(sc, 7, out)
    t = offsets(records(out))
    assert result.events == t.size
    # mean 24000, sd ~155: 5 sd tolerance
    assert abs(t.size - 24000) < 775
    per_second = np.bincount(t.astype(int), minlength=600)
    dispersion = per_second.var() / per_second.mean()
    assert 0.8 < dispersion < 1.2, "Poisson counts have variance close to their mean"
    assert t.min() >= 0 and t.max() < 600


def test_constant_rate_is_evenly_spaced(tmp_path: Path) -> None:
    sc = scenario([sender("c", rate=5, arrivals="constant", start=10, duration=60)], duration=100)
    out = tmp_path / "c.jsonl"
    generate(sc, 1, out)
    t = offsets(records(out))
    assert t.size == 300
    assert t[0] == 10.0 and t[-1] == pytest.approx(69.8)
    assert np.all(np.round(np.diff(t) * 1000) == 200)


def test_drift_follows_the_sine(tmp_path: Path) -> None:
    sc = scenario([sender("d", rate=40, drift={"amplitude": 0.5, "period": 600, "phase": 0})], duration=600)
    out = tmp_path / "d.jsonl"
    generate(sc, 3, out)
    t = offsets(records(out))
    first, second = np.sum(t < 300), np.sum(t >= 300)
    # expected 12000 +- 20*600/pi = 15820 and 8180 (sd < 130)
    assert abs(first - 15820) < 650 and abs(second - 8180) < 500
    assert expected_events(sc) == pytest.approx(24000, rel=1e-3)


def test_expected_events_matches_constant_counts(tmp_path: Path) -> None:
    sc = scenario(
        [sender("a", rate=2, arrivals="constant"), sender("b", rate=0.5, arrivals="constant", start=100)], 300
    )
    assert expected_events(sc) == pytest.approx(2 * 300 + 0.5 * 200)
    assert generate(sc, 0, tmp_path / "x.jsonl").events == 700


# --------------------------------------------------------------------------------------------
# determinism


def test_same_seed_same_bytes_different_seed_different(tmp_path: Path) -> None:
    sc = load_scenario("tiny")
    a, b, c = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz", tmp_path / "c.jsonl.gz"
    generate(sc, 5, a)
    generate(sc, 5, b)
    generate(sc, 6, c)
    assert a.read_bytes() == b.read_bytes()  # gzip header carries no name or mtime
    assert read_text(a) != read_text(c)


def test_adding_a_sender_leaves_other_senders_unchanged(tmp_path: Path) -> None:
    base = [sender("imp", "Impression", rate=5), sender("clk", rate=1)]
    more = [*base, sender("other", site=SHOP, rate=3)]
    generate(scenario(base, 700), 11, tmp_path / "a.jsonl")
    generate(scenario(more, 700), 11, tmp_path / "b.jsonl")
    lines_a = read_text(tmp_path / "a.jsonl").splitlines()
    lines_b = [line for line in read_text(tmp_path / "b.jsonl").splitlines() if SHOP not in line]
    assert len(lines_b) < len(read_text(tmp_path / "b.jsonl").splitlines())
    assert lines_a == lines_b


def test_senders_draw_independent_streams(tmp_path: Path) -> None:
    out = tmp_path / "two.jsonl"
    generate(scenario([sender("x", "Impression", rate=5), sender("y", rate=5)], 60), 1, out)
    recs = records(out)
    x, y = offsets(recs, browseraction="Impression"), offsets(recs, browseraction="Click")
    assert x.size > 200 and y.size > 200
    assert x.size != y.size or not np.array_equal(x, y)


def test_anomaly_does_not_change_earlier_blocks(tmp_path: Path) -> None:
    senders = [sender("imp", "Impression", rate=5), sender("clk", rate=1)]
    drop = [{"site": MYSITE, "kind": "click-drop", "start": 2 * BLOCK_S, "duration": 60, "rate_factor": {"Click": 0}}]
    generate(scenario(senders, 900), 2, tmp_path / "a.jsonl")
    generate(scenario(senders, 900, drop), 2, tmp_path / "b.jsonl")
    before_a = [r for r in records(tmp_path / "a.jsonl") if offset(r) < 2 * BLOCK_S]
    before_b = [r for r in records(tmp_path / "b.jsonl") if offset(r) < 2 * BLOCK_S]
    assert before_a and before_a == before_b


def test_window_size_does_not_change_output() -> None:
    sc = load_scenario("tiny")
    default = b"".join(data for _, data, _ in _iter_windows(sc, 9))
    small = b"".join(data for _, data, _ in _iter_windows(sc, 9, window_ms=7_000))
    assert default == small and default


# --------------------------------------------------------------------------------------------
# format and order


def test_records_are_ordered_and_well_formed(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    generate(load_scenario("tiny"), 4, out)
    lines = read_text(out).splitlines()
    times = []
    for line in lines:
        rec = json.loads(line)
        assert list(rec) == ["browseraction", "site", "event_time"]
        assert rec["browseraction"] in {"Impression", "Click"} and rec["site"] in {MYSITE, SHOP}
        assert TIME_RE.match(rec["event_time"]), rec["event_time"]
        times.append(rec["event_time"])
    assert times == sorted(times)
    assert times[0] >= "2023-08-23T12:00:00.000Z" and times[-1] < "2023-08-23T12:05:00.000Z"
    assert lines[0].endswith('"}') and '"event_time": "2023-08-23T12:0' in lines[0]


def test_ties_keep_sender_order(tmp_path: Path) -> None:
    senders = [
        sender("first", "Impression", rate=2, arrivals="constant"),
        sender("second", rate=2, arrivals="constant"),
    ]
    out = tmp_path / "ties.jsonl"
    generate(scenario(senders, 10), 0, out)
    recs = records(out)
    assert len(recs) == 40
    assert [r["browseraction"] for r in recs] == ["Impression", "Click"] * 20
    assert [r["event_time"] for r in recs[:4]] == ["2023-08-23T12:00:00.000Z"] * 2 + ["2023-08-23T12:00:00.500Z"] * 2


def test_template_fields_kept_with_event_time_last(tmp_path: Path) -> None:
    template = {"browseraction": "Click", "site": MYSITE, "user": {"id": 7, "tags": ["a", "b"]}, "city": "Zürich"}
    sc = scenario([{"name": "rich", "template": template, "rate": 1, "arrivals": "constant"}], 5)
    out = tmp_path / "rich.jsonl"
    generate(sc, 0, out)
    recs = records(out)
    assert len(recs) == 5
    for rec in recs:
        assert list(rec) == [*template, "event_time"]
        assert {k: rec[k] for k in template} == template


def test_empty_template_gives_event_time_only(tmp_path: Path) -> None:
    sc = scenario(
        [{"name": "bare", "template": {}, "rate": 2, "arrivals": "constant"}, sender("c", rate=1, arrivals="constant")],
        2,
    )
    out = tmp_path / "bare.jsonl"
    generate(sc, 0, out)
    lines = read_text(out).splitlines()
    assert lines[0] == '{"event_time": "2023-08-23T12:00:00.000Z"}'
    assert (
        lines[1]
        == '{"browseraction": "Click", "site": "https://www.mysite.com", "event_time": "2023-08-23T12:00:00.000Z"}'
    )
    assert len(lines) == 6


def test_gz_output_is_gzip_with_same_content_as_plain(tmp_path: Path) -> None:
    sc = load_scenario("tiny")
    generate(sc, 8, tmp_path / "x.jsonl.gz")
    generate(sc, 8, tmp_path / "x.jsonl")
    assert (tmp_path / "x.jsonl.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert read_text(tmp_path / "x.jsonl.gz") == read_text(tmp_path / "x.jsonl")


# --------------------------------------------------------------------------------------------
# anomalies and labels


def test_rate_factor_silences_matching_senders_and_extra_senders_stay_in_window(tmp_path: Path) -> None:
    sc = load_scenario("tiny")
    out = tmp_path / "tiny.jsonl"
    generate(sc, 13, out)
    recs = records(out)
    # studio-lab-burst [120, 150): normal mysite senders silenced, only the constant 1/s + 5/s
    imp = offsets(recs, site=MYSITE, browseraction="Impression")
    clk = offsets(recs, site=MYSITE, browseraction="Click")
    in_imp = imp[(imp >= 120) & (imp < 150)]
    in_clk = clk[(clk >= 120) & (clk < 150)]
    assert np.array_equal(in_imp, np.arange(120, 150, 1.0))
    assert np.allclose(in_clk, np.arange(120, 150, 0.2))
    assert np.sum((imp >= 100) & (imp < 120)) > 50  # normal traffic (5/s) before the burst
    # click-drop [200, 260) on shop: no shop clicks, but clicks before and after, impressions throughout
    shop_clk = offsets(recs, site=SHOP, browseraction="Click")
    shop_imp = offsets(recs, site=SHOP, browseraction="Impression")
    assert np.sum((shop_clk >= 200) & (shop_clk < 260)) == 0
    assert np.sum((shop_clk >= 140) & (shop_clk < 200)) > 20 and np.sum(shop_clk >= 260) > 10
    assert np.sum((shop_imp >= 200) & (shop_imp < 260)) > 150


def test_extra_senders_only_inside_their_window(tmp_path: Path) -> None:
    extra = {"name": "bot", "template": {"browseraction": "Click", "site": MYSITE, "bot": True}, "rate": 20, "start": 5}
    anomalies = [{"site": MYSITE, "kind": "bot", "start": 100, "duration": 30, "senders": [extra]}]
    sc = scenario([sender("imp", "Impression", rate=5), sender("clk", rate=1)], 300, anomalies)
    out = tmp_path / "bot.jsonl"
    generate(sc, 21, out)
    recs = records(out)
    bot = offsets(recs, bot=True)
    assert 300 < bot.size < 700  # Poisson, mean 20/s * 25 s = 500
    assert bot.min() >= 105 and bot.max() < 130
    normal_clicks = offsets([r for r in recs if "bot" not in r], browseraction="Click")
    assert np.sum((normal_clicks >= 100) & (normal_clicks < 130)) > 5  # no rate_factor: normal traffic continues


def test_labels_rows_match_the_scenario(tmp_path: Path) -> None:
    anomalies = [
        {"site": SHOP, "kind": "click-drop", "start": 400, "duration": 60, "rate_factor": {"Click": 0}},
        {"site": MYSITE, "kind": "spike", "start": 100.5, "duration": 20, "rate_factor": {"Click": 3}},
    ]
    sc = scenario([sender("a"), sender("b", site=SHOP)], 600, anomalies)
    out = tmp_path / "run.jsonl.gz"
    result = generate(sc, 1, out)
    assert result.labels_path == tmp_path / "run.labels.csv"
    with result.labels_path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [
        ["site", "start", "end", "kind"],
        [MYSITE, "2023-08-23T12:01:40.500Z", "2023-08-23T12:02:00.500Z", "spike"],
        [SHOP, "2023-08-23T12:06:40.000Z", "2023-08-23T12:07:40.000Z", "click-drop"],
    ]


def test_explicit_labels_path_and_default_derivation(tmp_path: Path) -> None:
    assert default_labels_path("data/x.jsonl.gz") == Path("data/x.labels.csv")
    assert default_labels_path("data/x.jsonl") == Path("data/x.labels.csv")
    assert default_labels_path("x.out") == Path("x.out.labels.csv")
    labels = tmp_path / "sub" / "my-labels.csv"
    result = generate(load_scenario("tiny"), 1, tmp_path / "e.jsonl", labels_path=labels)
    assert result.labels_path == labels and labels.read_text().count("\n") == 3
    assert not (tmp_path / "e.labels.csv").exists()


# --------------------------------------------------------------------------------------------
# result, progress, errors


def test_result_and_progress(tmp_path: Path) -> None:
    calls: list[tuple[int, float, float]] = []
    out = tmp_path / "r.jsonl"
    result = generate(load_scenario("tiny"), 3, out, progress=lambda *a: calls.append(a))
    assert isinstance(result, GenerateResult)
    assert result.events == len(read_text(out).splitlines()) > 1000
    assert result.out_path == out and result.seconds > 0
    assert result.events_per_s == pytest.approx(result.events / result.seconds)
    assert calls and calls[-1][0] == result.events and calls[-1][2] == pytest.approx(1.0)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    assert [c[2] for c in calls] == sorted(c[2] for c in calls)


def test_interrupted_run_leaves_no_file(tmp_path: Path) -> None:
    def stop(events: int, seconds: float, fraction: float) -> None:
        raise KeyboardInterrupt

    out = tmp_path / "big.jsonl.gz"
    sc = benchmark_scenario(2, 1200, 5, 0.1)
    with pytest.raises(KeyboardInterrupt):
        generate(sc, 1, out, progress=stop)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_path_raises_dataset_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DatasetError, match=r"file/x\.jsonl"):
        generate(load_scenario("tiny"), 1, blocker / "x.jsonl")


@pytest.mark.parametrize("seed", [-1, 1.5, "42", True])
def test_bad_seed(tmp_path: Path, seed: Any) -> None:
    with pytest.raises(ValueError, match="seed"):
        generate(load_scenario("tiny"), seed, tmp_path / "x.jsonl")


def test_benchmark_scenario(tmp_path: Path) -> None:
    sc = benchmark_scenario(12, 120, 10, 0.1)
    assert len(sc.senders) == 24 and not sc.anomalies
    sites = sorted({s.site for s in sc.senders})
    assert sites[0] == "https://site-001.example.com" and sites[-1] == "https://site-012.example.com"
    assert expected_events(sc) == pytest.approx(12 * 120 * 11)
    out = tmp_path / "bench.jsonl.gz"
    result = generate(sc, 1, out)
    assert abs(result.events - 15840) < 5 * 126
    per_site = Counter(r["site"] for r in records(out))
    assert len(per_site) == 12


# --------------------------------------------------------------------------------------------
# the bundled replay dataset


def test_bundled_replay_is_the_lab_scenario_with_seed_42(tmp_path: Path) -> None:
    bundled = REPO / "data" / "lab_replay.jsonl.gz"
    bundled_labels = REPO / "data" / "lab_replay.labels.csv"
    assert bundled.stat().st_size <= 5 * 1024 * 1024
    result = generate(load_scenario("lab"), 42, tmp_path / "lab_replay.jsonl.gz")
    with gzip.open(bundled, "rb") as fh:
        expected = fh.read()
    with gzip.open(result.out_path, "rb") as fh:
        assert fh.read() == expected
    assert result.labels_path.read_text() == bundled_labels.read_text()
    assert bundled_labels.read_text().count("\n") == 1 + len(load_scenario("lab").anomalies)


def test_bundled_replay_has_the_lab_anomalies() -> None:
    recs = records(REPO / "data" / "lab_replay.jsonl.gz")
    lab = load_scenario("lab")
    assert recs[0]["event_time"] >= "2023-08-23T12:00:00.000Z"
    assert recs[-1]["event_time"] < (START + timedelta(seconds=lab.duration)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    studio = lab.anomalies[0]
    mysite_clicks = offsets(recs, site=MYSITE, browseraction="Click")
    mysite_imps = offsets(recs, site=MYSITE, browseraction="Impression")
    in_window = (studio.start <= mysite_clicks) & (mysite_clicks < studio.end)
    assert in_window.sum() == 150 and ((studio.start <= mysite_imps) & (mysite_imps < studio.end)).sum() == 30
