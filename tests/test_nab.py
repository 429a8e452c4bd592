"""NAB's scoring (clicklab.nab) on series made by hand, and against ../shared/nab/nab_score.py on NAB's series."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clicklab import nab
from tests.conftest import shared_path

STANDARD = nab.PROFILES["standard"]
#: A 1000-record series: probation 150 records, one window of 100 records, 500-599.
ONE = nab.Series.make("one.csv", 1000, [(500, 599)])


def _flags(n: int, *at: int) -> np.ndarray:
    flags = np.zeros(n, bool)
    flags[list(at)] = True
    return flags


def test_scaled_sigmoid_and_probation():
    assert nab.scaled_sigmoid(0.0) == 0.0
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert nab.scaled_sigmoid(3.0) == pytest.approx(2 / (1 + math.exp(15)) - 1)
    assert nab.scaled_sigmoid(3.01) == -1.0
    assert nab.scaled_sigmoid(np.array([-1.0, 0.0, 4.0])).tolist() == pytest.approx([0.9866, 0.0, -1.0], abs=1e-4)
    assert (nab.probation_length(1000), nab.probation_length(4032), nab.probation_length(22695)) == (150, 604, 750)


def test_a_detection_at_the_window_start_earns_the_tp_weight_and_later_ones_less():
    assert nab.raw_score(_flags(1000, 500), ONE) == nab.Raw(pytest.approx(1.0), 1, 0, 0)
    at_end = nab.raw_score(_flags(1000, 599), ONE).score
    assert 0 < at_end < 0.03  # c(-1/100) / c(-1)
    middle = nab.raw_score(_flags(1000, 550), ONE).score
    assert at_end < middle < 1.0
    # only the window's best (earliest) detection counts
    assert nab.raw_score(_flags(1000, 500, 520, 599), ONE) == nab.raw_score(_flags(1000, 500), ONE)
    low_fn = nab.PROFILES["reward_low_FN_rate"]
    assert nab.raw_score(_flags(1000), ONE, low_fn) == nab.Raw(-2.0, 0, 1, 0)


def test_a_false_positive_costs_the_fp_weight_and_probation_is_free():
    # before any window: -fp, and the window is missed: -fn
    assert nab.raw_score(_flags(1000, 300), ONE).score == pytest.approx(-1.0 - 0.11)
    assert nab.raw_score(_flags(1000, 300, 301), ONE) == nab.Raw(pytest.approx(-1.22), 0, 1, 2)
    assert nab.raw_score(_flags(1000, 300), ONE, nab.PROFILES["reward_low_FP_rate"]).score == pytest.approx(-1.22)
    assert nab.raw_score(_flags(1000, 10, 149), ONE) == nab.Raw(-1.0, 0, 1, 0)  # in probation: not scored


def test_a_detection_after_the_window_costs_little_at_first_then_the_fp_weight():
    just_after = nab.raw_score(_flags(1000, 500, 600), ONE)
    assert just_after.fp == 1
    assert just_after.score == pytest.approx(1.0 + 0.11 * nab.scaled_sigmoid(1 / 99))
    assert -0.01 < just_after.score - 1.0 < 0
    one_width_on = nab.raw_score(_flags(1000, 500, 698), ONE).score - 1.0
    assert one_width_on == pytest.approx(0.11 * nab.scaled_sigmoid(1.0))  # about -0.11 * 0.987
    assert nab.raw_score(_flags(1000, 500, 999), ONE).score - 1.0 == pytest.approx(-0.11)  # > 3 widths on


def test_null_scores_0_and_perfect_100_over_a_corpus():
    two = nab.Series.make("two.csv", 400, [(100, 139), (300, 339)])
    corpus = [ONE, two]
    null = nab.corpus_score({"one.csv": _flags(1000), "two.csv": _flags(400)}, corpus)
    perfect = nab.corpus_score({"one.csv": _flags(1000, 500), "two.csv": _flags(400, 100, 300)}, corpus)
    assert (null.score, null.null, null.perfect, null.windows) == (0.0, -3.0, 3.0, 3)
    assert perfect.score == pytest.approx(100.0) and perfect.raw.tp == 3
    # one window of three at its start, nothing else: raw -1, i.e. (-1 + 3) / 6 of the way
    one_of_three = nab.corpus_score({"one.csv": _flags(1000, 500), "two.csv": _flags(400)}, corpus)
    assert one_of_three.score == pytest.approx(100 * 2 / 6)
    # flagging everything is worse than nothing here, so the null detector flags nothing
    everything = nab.corpus_score({"one.csv": np.ones(1000, bool), "two.csv": np.ones(400, bool)}, corpus)
    assert everything.score < 0


def test_best_threshold_picks_the_best_and_ties_go_to_the_higher():
    scores = np.full(1000, 0.1)
    scores[[520, 530]] = 0.9  # inside the window
    scores[[300, 700, 800]] = 0.5  # false positives
    scores[505] = 0.4  # an earlier detection in the window, below the false positives
    best = nab.best_threshold({"one.csv": scores}, [ONE])
    expected = nab.raw_score(scores >= 0.9, ONE).score
    assert best.threshold == 0.9 and best.raw.score == pytest.approx(expected) and best.raw.fp == 0
    # nothing in the window: flagging nothing is best (threshold inf), the null detector's score
    nothing = nab.best_threshold({"one.csv": np.where(np.arange(1000) < 500, scores, 0.0)}, [ONE])
    assert math.isinf(nothing.threshold) and nothing.score == 0.0
    # brute force over every threshold on random scores: the sweep finds the maximum
    rng = np.random.default_rng(3)
    two = nab.Series.make("two.csv", 600, [(200, 229), (400, 459)])
    random = {"one.csv": rng.random(1000).round(2), "two.csv": rng.random(600).round(2)}
    found = nab.best_threshold(random, [ONE, two])
    candidates = sorted({*random["one.csv"][150:], *random["two.csv"][90:]})
    brute = max(nab.corpus_score({k: v >= t for k, v in random.items()}, [ONE, two]).raw.score for t in candidates)
    assert found.raw.score == pytest.approx(max(brute, -3.0))
    assert nab.corpus_score({k: v >= found.threshold for k, v in random.items()}, [ONE, two]).score == pytest.approx(
        found.score)


def test_windows_from_labels_follow_nabs_rule():
    times = pd.date_range("2015-01-01", periods=1000, freq="5min")
    # 2 labels: windows of int(0.1 * 1000 / 2) = 50 records, 25 either side
    assert nab.windows_from_labels(times, [times[300], times[700]]) == [(275, 325), (675, 725)]
    assert nab.windows_from_labels(times, [times[10], times[990]]) == [(0, 35), (965, 999)]  # clipped
    assert nab.windows_from_labels(times, [times[300], times[320]]) == [(275, 345)]  # overlapping: merged
    assert nab.windows_from_labels(times, []) == []
    # a label between records goes to the next record
    assert nab.windows_from_labels(times, [times[300] + pd.Timedelta("1min")], fraction=0.02) == [(291, 311)]
    with pytest.raises(ValueError, match=r"s\.csv: label .* is after the series' last record"):
        nab.windows_from_labels(times, [times[-1] + pd.Timedelta("1h")], "s.csv")


def test_window_indices_and_errors_name_the_series_and_field():
    times = pd.date_range("2015-01-01", periods=100, freq="1h").strftime("%Y-%m-%d %H:%M:%S")
    assert nab.window_indices(times, [("2015-01-01 10:00:00.000000", "2015-01-01 19:30:00")]) == [(10, 19)]
    with pytest.raises(ValueError, match=r"a\.csv: window 0 .* holds no record"):
        nab.window_indices(times, [("2016-01-01", "2016-01-02")], "a.csv")
    with pytest.raises(ValueError, match=r"a\.csv: window 1 .* overlaps"):
        nab.window_indices(times, [("2015-01-01 10:00", "2015-01-01 20:00"), ("2015-01-01 15:00", "2015-01-02")],
                           "a.csv")
    with pytest.raises(ValueError, match=r"a\.csv: window 0 .* end is before start"):
        nab.window_indices(times, [("2015-01-02", "2015-01-01")], "a.csv")
    with pytest.raises(ValueError, match=r"a\.csv: timestamp: not a time"):
        nab.window_indices(["not a time"], [], "a.csv")
    with pytest.raises(ValueError, match=r"b\.csv: window 0 \(5, 200\) is not inside records 0-99"):
        nab.Series.make("b.csv", 100, [(5, 200)])
    with pytest.raises(ValueError, match=r"one\.csv: flags has 3 values for 1000 records"):
        nab.raw_score([True, False, True], ONE)
    with pytest.raises(ValueError, match=r"one\.csv: no scores given"):
        nab.best_threshold({}, [ONE])
    with pytest.raises(ValueError, match=r"one\.csv: scores must be finite"):
        nab.best_threshold({"one.csv": np.full(1000, np.nan)}, [ONE])


def test_profiles_file_is_read_and_checked(tmp_path: Path):
    good = tmp_path / "profiles.json"
    good.write_text(json.dumps({"standard": {"CostMatrix": {"tpWeight": 1, "fpWeight": 0.11, "fnWeight": 1}}}))
    assert nab.read_profiles(good) == {"standard": STANDARD}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"standard": {"CostMatrix": {"tpWeight": 1, "fpWeight": "x", "fnWeight": 1}}}))
    with pytest.raises(ValueError, match=r"bad\.json: profile 'standard': CostMatrix\.fpWeight must be a number"):
        nab.read_profiles(bad)


@pytest.mark.shared
def test_nab_profiles_and_windows_follow_the_published_rule():
    root = shared_path("nab")
    assert nab.read_profiles(root / "config" / "profiles.json") == nab.PROFILES
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    unlike = []
    for name, spans in sorted(windows.items()):
        times = pd.read_csv(root / "data" / name)["timestamp"]
        found = nab.window_indices(times, spans, name)
        width = 2 * (int(nab.WINDOW_FRACTION * len(times) / max(len(spans), 1)) // 2) + 1
        for first, last in found:  # each window is NAB's around its centre, unless clipped at the series' end
            if last - first + 1 != width and last != len(times) - 1:
                unlike.append(name)
        rebuilt = nab.windows_from_labels(times, [times[(a + b) // 2] for a, b in found], name)
        assert len(rebuilt) == len(found), name
    assert sum(len(s) for s in windows.values()) == 69
    assert unlike == ["realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv"]  # NAB narrowed that one by hand


def _write_results(root: Path, out: Path, make: object) -> tuple[dict, list]:
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    values, series = {}, []
    for name in sorted(windows):
        data = pd.read_csv(root / "data" / name)
        series.append(nab.Series.make(name, len(data), nab.window_indices(data["timestamp"], windows[name], name)))
        values[name] = make(len(data))  # type: ignore[operator]
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"timestamp": data["timestamp"], "anomaly_score": values[name]}).to_csv(path, index=False)
    return values, series


@pytest.mark.shared
@pytest.mark.parametrize("kind", ["scores", "decisions"])
def test_agrees_with_nab_score_py_on_the_shared_series(tmp_path: Path, kind: str):
    """Ours and ../shared/nab/nab_score.py (an independent implementation, run as a script) on NAB's 42 series."""
    root = shared_path("nab")
    script = shared_path("nab", "nab_score.py")
    rng = np.random.default_rng(11)
    if kind == "scores":
        def make(n: int) -> np.ndarray:
            return (rng.random(n) ** 8).round(3)
    else:
        def make(n: int) -> np.ndarray:
            return (rng.random(n) < 0.003).astype(int)
    values, series = _write_results(root, tmp_path / "results", make)
    out = tmp_path / "theirs.json"
    proc = subprocess.run([sys.executable, str(script), "--nab-dir", str(root), "--results", str(tmp_path / "results"),
                           "--category", "all", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    theirs = json.loads(out.read_text())["profiles"]
    for name, profile in nab.PROFILES.items():
        ours = nab.best_threshold(values, series, profile)
        them = theirs[name]
        assert ours.score == pytest.approx(them["score"], abs=1e-6), name
        assert ours.raw.score == pytest.approx(them["raw"], abs=1e-6), name
        assert (ours.null, ours.perfect) == (pytest.approx(them["null_raw"]), pytest.approx(them["perfect_raw"]))
        assert (ours.raw.tp, ours.raw.fn, ours.raw.fp) == (them["tp"], them["fn"], them["fp"]), name
        assert (math.isinf(ours.threshold) and them["threshold"] is None) or ours.threshold == pytest.approx(
            them["threshold"]), name
        if kind == "decisions" and ours.threshold == 1:  # the decisions as they are: the same score
            assert nab.corpus_score({k: v == 1 for k, v in values.items()}, series, profile).score == pytest.approx(
                them["score"], abs=1e-6)
