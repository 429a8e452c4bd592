"""Judging detections against labels (clicklab.evaluation), on frames made by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clicklab.evaluation import (
    FalseAlarms,
    compare_modes,
    detections,
    evaluate_series_in_process,
    false_alarms,
    flag_scores,
    read_label_windows,
    series_table,
    to_seconds,
)
from clicklab.exceptions import ClicklabError
from clicklab_udf.forest import ForestParams

T0 = 1_692_795_600  # 2023-08-23 13:00:00 UTC


def _flags(key: str, flagged_offsets: list[int], n: int = 360, step: int = 10, unscored: int = 0) -> pd.DataFrame:
    """``n`` rows of ``key`` every ``step`` s from T0; flagged at the given offsets (s); first rows unscored."""
    times = T0 + np.arange(n) * step
    return pd.DataFrame({
        "key": key, "time": times, "is_anomaly": np.isin(times - T0, flagged_offsets),
        "scored": np.arange(n) >= unscored,
    })


def _labels(*rows: tuple[str, int, int]) -> pd.DataFrame:
    return pd.DataFrame([{"key": k, "start": T0 + a, "end": T0 + b, "kind": f"k{a}"} for k, a, b in rows],
                        columns=["key", "start", "end", "kind"])


def test_to_seconds_reads_numbers_timestamps_and_text():
    assert to_seconds([T0, T0 + 10]).tolist() == [T0, T0 + 10]
    assert to_seconds(["2023-08-23T13:00:00Z", "2023-08-23 13:00:10"]).tolist() == [T0, T0 + 10]
    assert to_seconds(pd.Series(pd.to_datetime([T0], unit="s", utc=True))).tolist() == [T0]
    assert to_seconds([]).tolist() == []


@pytest.mark.parametrize(
    ("offset", "detected", "delay"),
    [(-10, True, -10.0), (0, True, 0.0), (10, True, 10.0), (20, False, 20.0), (-20, False, math.nan)],
)
def test_detected_within_one_window_of_the_start(offset, detected, delay):
    flags = _flags("a", [600 + offset])
    det = detections(flags, _labels(("a", 600, 630)), before_s=10, max_delay_s=10)
    assert det["detected"].tolist() == [detected]
    assert det["delay_s"].tolist() == pytest.approx([delay], nan_ok=True)


def test_detection_takes_the_first_flag_and_only_the_labels_key():
    flags = pd.concat([_flags("a", [620, 630, 1000]), _flags("b", [600])])
    det = detections(flags, _labels(("a", 600, 660), ("b", 590, 610), ("c", 600, 610)))
    assert det[["key", "kind", "detected"]].values.tolist() == [["a", "k600", True], ["b", "k590", True],
                                                                ["c", "k600", False]]
    assert det["delay_s"].tolist()[:2] == [20.0, 10.0] and math.isnan(det["delay_s"].iloc[2])
    assert det["start"].iloc[0] == pd.Timestamp(T0 + 600, unit="s", tz="UTC")


def test_false_alarms_count_onsets_outside_labels_per_hour_of_normal_data():
    # one hour of windows; a run of three flags (one alarm), two lone flags, a flag inside the label and
    # one in the minute of grace after it, and one while warming up
    flags = _flags("a", [5, 200, 210, 220, 1500, 1800, 2000, 2070, 3000], unscored=3)
    labels = _labels(("a", 2000, 2010))
    result = false_alarms(flags, labels, before_s=10, grace_s=60, step_s=10)
    normal_rows = 360 - 3 - (2070 - 1990) // 10 - 1
    assert result == FalseAlarms(4, normal_rows * 10 / 3600, pytest.approx(4 / (normal_rows * 10 / 3600)))
    every_row = false_alarms(flags, labels, before_s=10, grace_s=60, step_s=10, onsets=False)
    assert every_row.count == 6
    assert false_alarms(flags, labels, before_s=10, grace_s=0, step_s=10).count == 5  # 2070 is outside now


def test_false_alarm_hours_add_up_over_keys_and_step_defaults_to_the_spacing():
    flags = pd.concat([_flags("a", [100]), _flags("b", [], step=20, n=180)])
    result = false_alarms(flags, _labels())
    assert result.count == 1 and result.hours == pytest.approx(2.0) and result.per_hour == pytest.approx(0.5)
    none = false_alarms(_flags("a", [], unscored=360), _labels())
    assert none.count == 0 and none.hours == 0 and math.isnan(none.per_hour)


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="flags needs columns key, time, is_anomaly; missing: is_anomaly"):
        detections(pd.DataFrame({"key": [], "time": []}), _labels())
    with pytest.raises(ValueError, match="step_s must be > 0"):
        false_alarms(_flags("a", []), _labels(), step_s=0)


def test_compare_modes_on_the_lab_streams():
    times = T0 + np.arange(100) * 10
    scores = np.r_[np.zeros(20), np.full(80, 0.8)]
    scores[[50, 51, 70]] = [7.0, 5.0, 3.0]
    scored = pd.DataFrame({"site": "s", "time": times, "ctr": 10.0, "score": scores})
    flagged = pd.DataFrame({"site": ["s"], "rowtime": pd.to_datetime([T0 + 500], unit="s")})
    labels = pd.DataFrame({"site": ["s"], "start": pd.to_datetime([T0 + 500], unit="s", utc=True),
                           "end": pd.to_datetime([T0 + 520], unit="s", utc=True), "kind": ["burst"]})
    report = compare_modes(scored, flagged, labels, 2.0)
    assert report.detections[["site", "adaptive detected", "fixed detected"]].values.tolist() == [["s", True, True]]
    summary = report.summary.set_index("mode")
    assert summary["false alarms"].tolist() == [0, 1]  # the fixed threshold also flags 3.0 at T0+700
    assert summary["normal site-hours"].iloc[0] == round((80 - 10) * 10 / 3600, 2)  # label: 490-580 s


def test_flag_scores_scores_in_time_order_per_key():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"key": ["a", "b"] * 100, "time": np.repeat(T0 + np.arange(100) * 10, 2),
                          "value": np.r_[rng.normal(10, 1, 200)]})
    frame.loc[190, "value"] = 90.0
    out = flag_scores(frame.iloc[::-1], ForestParams(number_of_trees=20, sub_sample_size=32, warmup=32))
    assert out["time"].is_monotonic_increasing and len(out) == 200
    assert out.groupby("key")["scored"].sum().tolist() == [68, 68]
    top = out.loc[out["score"].idxmax()]
    assert (top["key"], top["time"], top["fixed"], top["adaptive"]) == ("a", T0 + 950, True, True)


def test_series_table_and_in_process_evaluation_of_nab_like_files(tmp_path: Path):
    rng = np.random.default_rng(1)
    stamps = pd.date_range("2015-01-01", periods=400, freq="5min")
    values = rng.normal(50, 2, 400)
    values[300] = 120.0
    (tmp_path / "data" / "real").mkdir(parents=True)
    pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%d %H:%M:%S"), "value": values}).to_csv(
        tmp_path / "data" / "real" / "one.csv", index=False)
    windows = {"real/one.csv": [["2015-01-01 23:30:00", "2015-01-02 02:00:00.000000"]]}
    (tmp_path / "labels.json").write_text(json.dumps(windows))
    table = evaluate_series_in_process(tmp_path / "data", tmp_path / "labels.json",
                                       ForestParams(number_of_trees=30, sub_sample_size=64, warmup=64))
    rows = table.set_index(["series", "mode"])
    assert rows.loc[("real/one.csv", "adaptive"), "detected"] == 1  # 300 x 5 min = 2015-01-02 01:00
    assert rows.loc[("real/one.csv", "adaptive"), "median delay h"] == 1.5
    assert rows.loc[("TOTAL", "adaptive"), "windows"] == 1
    assert set(table["mode"]) == {"adaptive", "fixed > 2"}
    # a table from frames made by hand: one alarm outside the window, hours of scored rows only
    frame = pd.DataFrame({"time": T0 + np.arange(48) * 3600.0, "scored": np.arange(48) >= 24,
                          "flag": np.isin(np.arange(48), [30, 31, 40])})
    hand = series_table({"s": frame}, {"s": [(T0 + 40 * 3600, T0 + 41 * 3600)]}, {"m": "flag"})
    row = hand.iloc[0]
    assert (row["detected"], row["false alarms"], row["normal days"]) == (1, 1, 0.9)


def test_label_windows_file_errors_name_the_file(tmp_path: Path):
    bad = tmp_path / "w.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ClicklabError, match=r"w\.json: expected an object"):
        read_label_windows(bad)
    bad.write_text('{"x.csv": [["not a time", "2015-01-01"]]}')
    with pytest.raises(ClicklabError, match=r"entry 'x\.csv'"):
        read_label_windows(bad)
    good = tmp_path / "g.json"
    good.write_text('{"x.csv": [["2015-01-01 00:00:00.000000", "2015-01-02 00:00:00.000000"]]}')
    assert read_label_windows(good) == {"x.csv": [(pd.Timestamp("2015-01-01", tz="UTC"),
                                                   pd.Timestamp("2015-01-02", tz="UTC"))]}


# --------------------------------------------------------------------------------------------------
# NAB scores (clicklab evaluate's second table)
# --------------------------------------------------------------------------------------------------


def _nab_like(root: Path, points: int = 600) -> tuple[Path, Path]:
    """Two 5-minute series in NAB's layout under ``root/data/<category>/`` and their windows file."""
    rng = np.random.default_rng(2)
    stamps = pd.date_range("2015-01-01", periods=points, freq="5min")
    for category, name, spike in (("real", "one.csv", 450), ("art", "two.csv", None)):
        values = rng.normal(50, 2, points)
        if spike is not None:
            values[spike] = 150.0
        (root / "data" / category).mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%d %H:%M:%S"), "value": values}).to_csv(
            root / "data" / category / name, index=False)
    windows = {"real/one.csv": [[f"{stamps[420]}.000000", f"{stamps[479]}.000000"]], "art/two.csv": []}
    (root / "labels.json").write_text(json.dumps(windows))
    return root / "data", root / "labels.json"


def test_evaluate_in_process_adds_nab_scores_per_corpus(tmp_path: Path):
    from clicklab import nab
    from clicklab.evaluation import evaluate
    from clicklab.udfs import Detector

    data, labels = _nab_like(tmp_path)
    detector = Detector(forest=ForestParams(number_of_trees=30, sub_sample_size=64, warmup=64))
    result = evaluate(data, labels, detector, in_process=True)
    assert set(result.detections["series"]) == {"real/one.csv", "art/two.csv", "TOTAL"}
    table = result.nab.set_index(["corpus", "detector"])
    assert list(dict.fromkeys(result.nab["corpus"])) == ["art", "real", "all"]
    assert set(result.nab["detector"]) == {"scores (best threshold)", "adaptive", "fixed > 2"}
    assert table.loc[("all", "adaptive"), "windows"] == 1 and table.loc[("all", "adaptive"), "series"] == 2
    # the table's figures are clicklab.nab's on the scored flags
    series = [result.series[n].nab_series() for n in ("art/two.csv", "real/one.csv")]
    fixed = nab.corpus_score({n: result.scored[n]["fixed"].to_numpy() for n in result.series}, series)
    assert table.loc[("all", "fixed > 2"), "standard"] == round(fixed.score, 1)
    assert table.loc[("all", "fixed > 2"), "FP"] == fixed.raw.fp
    best = table.loc[("real", "scores (best threshold)")]
    assert best["TP"] == 1 and best["standard"] > 90  # the spike at the window's start + 30 records
    assert math.isnan(table.loc[("art", "adaptive"), "standard"])  # no window: no score


def test_replay_sites_are_labelled_series_with_nab_windows(tmp_path: Path):
    from clicklab import settings
    from clicklab.evaluation import REPLAY_CORPUS, replay_labelled

    series = replay_labelled(settings.DEFAULT_DATASET, settings.DATA_DIR / "lab_replay.labels.csv")
    assert sorted(series) == [f"{REPLAY_CORPUS}/https://{s}" for s in ("news.example.com", "shop.example.com",
                                                                      "www.mysite.com")]
    mysite = series[f"{REPLAY_CORPUS}/https://www.mysite.com"]
    # 720 10-second windows, two labels: windows of int(0.1 * 720 / 2) = 36 records centred on each start
    assert len(mysite.frame) == 720 and [b - a for a, b in mysite.windows] == [36, 36]
    assert mysite.frame["time"].iloc[mysite.windows[0][0] + 18] == to_seconds(["2023-08-23T13:05:00Z"])[0]
    shop = series[f"{REPLAY_CORPUS}/https://shop.example.com"]
    assert shop.windows == [(474, 546)] and shop.frame["time"].iloc[546] >= to_seconds(["2023-08-23T13:28:00Z"])[0]
    bad = tmp_path / "labels.csv"
    bad.write_text("site,begin\nx,1\n")
    with pytest.raises(ValueError, match=r"labels\.csv needs columns site, start, end"):
        replay_labelled(settings.DEFAULT_DATASET, bad)


def test_labelled_files_keep_file_order_and_name_bad_rows(tmp_path: Path):
    from clicklab.evaluation import read_labelled_file

    good = tmp_path / "g.csv"
    good.write_text("timestamp,value\n2015-01-01 00:10:00,1\n2015-01-01 00:00:00,2\n")
    frame = read_labelled_file(good, "g.csv")
    assert frame["value"].tolist() == [1.0, 2.0] and frame["timestamp"].iloc[0] == "2015-01-01 00:10:00"
    bad = tmp_path / "b.csv"
    bad.write_text("timestamp,value\n2015-01-01 00:00:00,1\n2015-01-01 00:05:00,nan\n")
    with pytest.raises(ValueError, match=r"b\.csv:3: value 'nan' in column 'value'"):
        read_labelled_file(bad, "b.csv")
    bad.write_text("timestamp,value\nyesterday,1\n")
    with pytest.raises(ValueError, match=r"b\.csv:2: time 'yesterday' in column 'timestamp'"):
        read_labelled_file(bad, "b.csv")
