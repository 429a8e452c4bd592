"""``clicklab score``: any CSV series through the same Flink job and functions as the notebooks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clicklab.score import Columns, SeriesError, read_series, score_frames
from clicklab.udfs import Detector
from clicklab_udf.forest import ForestParams, KeyedForests
from tests.conftest import client_env

PARAMS = ForestParams(number_of_trees=30, sub_sample_size=64, warmup=32)


def _csv(path: Path, rows: list[str], header: str = "timestamp,value") -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_bad_rows_name_file_line_and_value(tmp_path: Path):
    bad_value = _csv(tmp_path / "v.csv", ["2015-01-01 00:00:00,1", "2015-01-01 00:05:00,abc"])
    with pytest.raises(SeriesError, match=r"v\.csv:3: value 'abc'"):
        read_series(bad_value)
    bad_time = _csv(tmp_path / "t.csv", ["2015-01-01 00:00:00,1", "yesterday,2"])
    with pytest.raises(SeriesError, match=r"t\.csv:3: time 'yesterday'"):
        read_series(bad_time)
    backwards = _csv(tmp_path / "b.csv", ["2015-01-01 00:05:00,1", "2015-01-01 00:00:00,2"])
    with pytest.raises(SeriesError, match=r"b\.csv:3: time '2015-01-01 00:00:00' is before"):
        read_series(backwards)
    nan = _csv(tmp_path / "n.csv", ["2015-01-01 00:00:00,nan"])
    with pytest.raises(SeriesError, match=r"n\.csv:2: value 'nan'.*not a finite number"):
        read_series(nan)
    with pytest.raises(SeriesError, match="no column 'value'"):
        read_series(_csv(tmp_path / "c.csv", ["2015-01-01,1"], header="timestamp,v"))


def test_keys_may_interleave_but_each_must_be_in_time_order(tmp_path: Path):
    path = _csv(tmp_path / "k.csv", ["a,2015-01-01 00:00:00,1", "b,2014-01-01 00:00:00,2", "a,2015-01-01 00:01:00,3"],
                header="site,timestamp,value")
    frame = read_series(path, Columns(key="site"))
    assert list(frame["key"]) == ["a", "b", "a"] and list(frame["line"]) == [2, 3, 4]


@pytest.mark.flink
def test_flink_job_scores_exactly_like_the_scorer_in_order_per_key(t_env, tmp_path: Path):
    rng = np.random.default_rng(5)
    n = 300
    values = {"a": 10 + rng.normal(0, 1, n), "b": 50 + rng.normal(0, 5, n)}
    values["a"][250] = 40.0
    # the two keys interleaved, as sites are in ctrstream
    keys = ["a", "b"] * n
    vals = [values[k][i // 2] for i, k in enumerate(keys)]
    frame = pd.DataFrame({"key": keys, "ms": np.arange(2 * n) * 1000, "value": vals})
    scored = score_frames({"s": frame}, tmp_path, Detector(forest=PARAMS, adaptive=False), t_env=t_env)["s"]
    assert len(scored) == 2 * n
    alone = {}
    for key in values:
        forests = KeyedForests(PARAMS)
        alone[key] = [forests.score(f"s\x1f{key}", v).score for v in values[key]]
    got = {k: scored.loc[scored["key"] == k, "anomaly_score"].to_list() for k in values}
    assert got["a"] == pytest.approx(alone["a"]) and got["b"] == pytest.approx(alone["b"])
    assert scored["warming_up"].sum() == 2 * PARAMS.warmup
    fixed = scored["anomaly_score"] > 2
    assert (scored["is_anomaly"] == fixed).all()
    assert scored.loc[(scored["key"] == "a")].iloc[250]["is_anomaly"]


@pytest.mark.flink
def test_cli_score_writes_the_series_back_in_input_order(tmp_path: Path):
    times = pd.date_range("2015-01-01", periods=200, freq="5min")
    values = np.r_[np.full(150, 10.0) + np.sin(np.arange(150)), [80.0], np.full(49, 10.0)]
    src = tmp_path / "in.csv"
    pd.DataFrame({"timestamp": times.strftime("%Y-%m-%d %H:%M:%S"), "value": values}).to_csv(src, index=False)
    out = tmp_path / "out.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "clicklab", "score", "--input", str(src), "--output", str(out),
         "--build", str(tmp_path / "b"), "--trees", "30", "--sample-size", "64", "--warmup", "32"],
        capture_output=True, text=True, timeout=600, env=client_env(),
    )
    assert proc.returncode == 0, proc.stderr
    result = pd.read_csv(out)
    assert list(result.columns) == ["timestamp", "value", "anomaly_score", "is_anomaly", "expected", "usual_low",
                                    "usual_high", "grade"]
    assert list(result["timestamp"]) == list(times.strftime("%Y-%m-%d %H:%M:%S"))
    assert result["anomaly_score"].idxmax() == 150 and bool(result.loc[150, "is_anomaly"])
    assert (result["anomaly_score"][:32] == 0).all()  # warm-up
    spike = result.loc[150]  # what was usual before the spike: about 10, and the spike far above it
    assert 9 < spike["expected"] < 11 and spike["usual_low"] < spike["expected"] < spike["usual_high"] < 80
    assert 0 < spike["grade"] <= 1 and (result["grade"] > 0).sum() == result["is_anomaly"].sum()
    assert pd.isna(result.loc[0, "expected"]) and result["expected"][1:].notna().all()  # known from the 2nd row
