"""The keyed functions of the jar, ``RANDOM_CUT_FOREST`` and ``ANOMALY_DECISIONS``, in Flink SQL.

Each keeps its state per partition key in Flink's keyed state. Checked here on a local Flink: the forest's
scores are the Python twin's (``KeyedForests`` with backend ``compact``, seeded as the Java function seeds a
key), whatever the parallelism and however the keys interleave; the decisions are the Python
``AdaptiveThreshold``'s; a value that is not a number gets no score and stops nothing; arguments in the call
win over the job parameters; a wrong column is named. ``tests/test_faults.py`` checks the state through
failures on the cluster.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clicklab import flink, javaudf, udfs
from clicklab_udf.forest import ForestParams, KeyedForests
from clicklab_udf.threshold import AdaptiveThreshold

pytestmark = pytest.mark.flink

KEYS = ("alpha", "beta", "gamma")
PARAMS = ForestParams(number_of_trees=30, sub_sample_size=32, warmup=5)


def _series(n: int = 150) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(n):
        for k, key in enumerate(KEYS):
            value = 10 + 3 * k + rng.normal(0, 1)
            if i in (90, 120) and key != "beta":
                value += 40
            rows.append({"k": key, "t": 1_700_000_000 + 10 * i, "v": float(value)})
    frame = pd.DataFrame(rows)
    # out of order as a replay's files are: the ordered view must put each key back in time order
    return frame.sample(frac=1.0, random_state=1).reset_index(drop=True)


def _table(t_env, path: Path, frame: pd.DataFrame, name: str = "series") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")), encoding="utf-8")
    for statement in (
        f"DROP TEMPORARY VIEW IF EXISTS {name}_ordered",
        f"DROP TABLE IF EXISTS {name}",
        f"""CREATE TABLE {name} (k STRING, t BIGINT, v DOUBLE, rowtime AS TO_TIMESTAMP_LTZ(t * 1000, 3),
              WATERMARK FOR rowtime AS rowtime - INTERVAL '1' HOUR)
            WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json')""",
        f"""CREATE TEMPORARY VIEW {name}_ordered AS SELECT k, t, v, rowtime,
              COUNT(*) OVER (PARTITION BY k ORDER BY rowtime ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS n
            FROM {name}""",
    ):
        flink.execute(t_env, statement)


def _collect(t_env, sql: str, parallelism: int = 1) -> pd.DataFrame:
    t_env.get_config().set("parallelism.default", str(parallelism))
    try:
        with t_env.execute_sql(sql).collect() as rows:
            got = [tuple(r) for r in rows]
    finally:
        t_env.get_config().set("parallelism.default", "1")
    return pd.DataFrame(got)


@pytest.fixture(scope="module")
def session(t_env, tmp_path_factory):
    javaudf.register_keyed(t_env, PARAMS, floor=2.0, adaptive=True,
                           threshold_options=udfs.threshold_options(udfs.Detector(forest=PARAMS)))
    frame = _series()
    _table(t_env, tmp_path_factory.mktemp("keyed") / "series.json", frame)
    return t_env, frame


def _expected_scores(frame: pd.DataFrame, params: ForestParams = PARAMS) -> dict[tuple[str, int], tuple[float, bool]]:
    forests = KeyedForests(params)
    out = {}
    for row in frame.sort_values(["t", "k"]).itertuples():
        scored = forests.score(row.k, row.v)
        out[row.k, row.t] = (scored.score, scored.warming_up)
    return out


@pytest.mark.parametrize("parallelism", [1, 2])
def test_scores_are_the_python_twins_key_by_key_at_any_parallelism(session, parallelism):
    t_env, frame = session
    got = _collect(t_env, "SELECT k, t, anomaly_score, warming_up FROM "
                          "RANDOM_CUT_FOREST(TABLE series_ordered PARTITION BY k, DESCRIPTOR(v))", parallelism)
    assert len(got) == len(frame)
    expected = _expected_scores(frame)
    worst = max(abs(score - expected[k, t][0]) for k, t, score, _ in got.itertuples(index=False))
    assert worst < 1e-9
    assert all(flag == expected[k, t][1] for k, t, _, flag in got.itertuples(index=False))
    assert sum(flag for *_, flag in got.itertuples(index=False)) == PARAMS.warmup * len(KEYS)
    spike_times = {1_700_000_000 + 10 * i for i in (90, 120)}
    spikes = got[got[1].isin(spike_times) & (got[0] != "beta")][2]
    assert len(spikes) == 4 and spikes.min() > 2  # the +40 values of alpha and gamma
    assert got[got[0] == "beta"][2].max() < spikes.min()  # beta has none


def test_call_arguments_win_over_job_parameters_as_in_kinesis_data_analytics(session):
    t_env, frame = session
    got = _collect(t_env, "SELECT k, t, anomaly_score FROM RANDOM_CUT_FOREST("
                          "TABLE series_ordered PARTITION BY k, DESCRIPTOR(v), 20, 16, 1000, 1)")
    params = ForestParams(number_of_trees=20, sub_sample_size=16, time_decay=1000.0, shingle_size=1)
    expected = _expected_scores(frame, params)  # warm-up follows the call's sample size: 1 + 16 // 4
    assert max(abs(s - expected[k, t][0]) for k, t, s in got.itertuples(index=False)) < 1e-9
    named = _collect(t_env, "SELECT k, t, anomaly_score FROM RANDOM_CUT_FOREST(input => TABLE series_ordered "
                            "PARTITION BY k, columns => DESCRIPTOR(v), numberOfTrees => 20, subSampleSize => 16, "
                            "timeDecay => 1000, shingleSize => 1)")
    pd.testing.assert_frame_equal(named.sort_values([0, 1]).reset_index(drop=True),
                                  got.sort_values([0, 1]).reset_index(drop=True))


def test_decisions_are_the_python_thresholds(session, tmp_path):
    t_env, _ = session
    scores = _collect(t_env, "SELECT k, t, v, anomaly_score FROM "
                             "RANDOM_CUT_FOREST(TABLE series_ordered PARTITION BY k, DESCRIPTOR(v))")
    scores.columns = ["k", "t", "v", "score"]
    table = tmp_path / "scores.json"
    table.write_text("".join(json.dumps(r) + "\n" for r in scores.sample(frac=1, random_state=2).to_dict("records")))
    for statement in (
        "DROP TEMPORARY VIEW IF EXISTS scores_ordered", "DROP TABLE IF EXISTS scores",
        f"""CREATE TABLE scores (k STRING, t BIGINT, v DOUBLE, score DOUBLE,
              rowtime AS TO_TIMESTAMP_LTZ(t * 1000, 3), WATERMARK FOR rowtime AS rowtime - INTERVAL '1' HOUR)
            WITH ('connector' = 'filesystem', 'path' = '{table}', 'format' = 'json')""",
        """CREATE TEMPORARY VIEW scores_ordered AS SELECT k, t, score, rowtime,
              COUNT(*) OVER (PARTITION BY k ORDER BY rowtime ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS n
            FROM scores""",
    ):
        flink.execute(t_env, statement)
    got = _collect(t_env, "SELECT k, t, score, is_anomaly, threshold FROM "
                          "ANOMALY_DECISIONS(TABLE scores_ordered PARTITION BY k)", parallelism=2)
    options = udfs.threshold_options(udfs.Detector(forest=PARAMS))
    rule = AdaptiveThreshold(floor=2.0, **options)
    expected = {}
    for row in scores.sort_values(["t", "k"]).itertuples():
        decision = rule.update(row.k, row.score, row.score == 0.0)
        expected[row.k, row.t] = decision
    for k, t, _, flag, threshold in got.itertuples(index=False):
        assert flag == expected[k, t].is_anomaly
        assert threshold == expected[k, t].threshold or (math.isinf(threshold) and math.isinf(expected[k, t].threshold))
    assert got[3].sum() >= 2  # the spikes are flagged
    fixed = _collect(t_env, "SELECT k, t, score, is_anomaly FROM "
                            "ANOMALY_DECISIONS(TABLE scores_ordered PARTITION BY k, DESCRIPTOR(score), 2E0, FALSE)")
    assert all(flag == (score > 2.0) for _, _, score, flag in fixed.itertuples(index=False))


def _decision_scores(n: int = 400) -> pd.DataFrame:
    """Scores that take every path of the adaptive threshold: ordinary noise, a lone spike, a run, an escalation, a
    raised stretch under the floor (a sustained change), a long anomaly, per key a little different."""
    rng = np.random.default_rng(11)
    rows = []
    for k, key in enumerate(KEYS):
        scores = np.abs(0.8 + (0.1 + 0.1 * k) * rng.standard_normal(n))
        scores[:3] = 0.0  # warming up
        scores[100 + k] = 7.5
        scores[150:153] = [3.6, 2.7, 2.2]
        scores[180:183] = [3.0, 2.9, 7.9]  # a run, then an escalation over the ceiling within its refractory period
        scores[200 + 10 * k:260 + 10 * k] += 0.7
        scores[320:340] = 5.0
        ctr = 9.0 + k + rng.normal(0, 1.5, n) + 40 * (scores > 2.5)  # a CTR per row, high where the score is
        rows += [{"k": key, "t": 1_700_000_000 + 10 * i, "score": float(s), "ctr": float(c)}
                 for i, (s, c) in enumerate(zip(scores, ctr, strict=True))]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("options", [{}, {"refractory": 3, "smoothing": 0.2, "sustained_z": 3.0, "alpha": 0.01,
                                          "z": 2.0, "spike_ratio": 4.0},
                                     {"refractory": 5, "run_z": 3.5, "spike_floor": 3.0, "repeat_ratio": 1.2},
                                     {"refractory": 5, "repeat_ratio": 3.0, "spike_ceiling": 4.5}])
def test_every_path_of_the_decisions_is_the_python_thresholds(session, tmp_path, options):
    """Runs, spikes, sustained changes, refractory periods and the bar after an anomaly: Java and Python decide
    alike, row by row."""
    t_env, _ = session
    scores = _decision_scores()
    table = tmp_path / "paths.json"
    table.write_text("".join(json.dumps(r) + "\n" for r in scores.sample(frac=1, random_state=3).to_dict("records")))
    # the rows span 67 minutes, shuffled: the watermark waits two hours, so no row is late
    for statement in (
        "DROP TEMPORARY VIEW IF EXISTS paths_ordered", "DROP TABLE IF EXISTS paths",
        f"""CREATE TABLE paths (k STRING, t BIGINT, score DOUBLE, ctr DOUBLE,
              rowtime AS TO_TIMESTAMP_LTZ(t * 1000, 3), WATERMARK FOR rowtime AS rowtime - INTERVAL '2' HOUR)
            WITH ('connector' = 'filesystem', 'path' = '{table}', 'format' = 'json')""",
        """CREATE TEMPORARY VIEW paths_ordered AS SELECT k, t, score, ctr, rowtime,
              COUNT(*) OVER (PARTITION BY k ORDER BY rowtime ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS n
            FROM paths""",
    ):
        flink.execute(t_env, statement)
    default = udfs.threshold_options(udfs.Detector(forest=PARAMS))
    try:
        javaudf.register_keyed(t_env, PARAMS, floor=2.0, adaptive=True, threshold_options={**default, **options})
        got = _collect(t_env, "SELECT k, t, is_anomaly, threshold, grade, expected, usual_low, usual_high FROM "
                              "ANOMALY_DECISIONS(TABLE paths_ordered PARTITION BY k)", parallelism=2)
    finally:
        javaudf.register_keyed(t_env, PARAMS, floor=2.0, adaptive=True, threshold_options=default)
    rule = AdaptiveThreshold(floor=2.0, **{**default, **options})
    expected = {(row.k, row.t): rule.update(row.k, row.score, row.score == 0.0, value=row.ctr)
                for row in scores.itertuples()}
    assert len(got) == len(scores)
    for k, t, flag, threshold, grade, usual, low, high in got.itertuples(index=False):
        want = expected[k, t]
        assert flag == want.is_anomaly, (k, t)
        assert threshold == want.threshold or (math.isinf(threshold) and math.isinf(want.threshold))
        assert grade == want.grade and (grade > 0) == flag, (k, t, grade)  # 0 unless an anomaly
        assert [None if pd.isna(x) else x for x in (usual, low, high)] == [want.expected, want.low, want.high], (k, t)
    flagged = {(k, t) for (k, t), d in expected.items() if d.is_anomaly}
    quiet = sum(math.isinf(d.threshold) for d in expected.values()) - 3 * len(KEYS)
    assert len(flagged) >= 3 * len(KEYS) and quiet > 0  # spikes, runs, sustained changes; refractory rows
    first = scores.groupby("k").head(1)  # nothing is usual before a key's first value; then the CTRs' own mean
    assert all(expected[row.k, row.t].expected is None for row in first.itertuples())
    for k in KEYS:
        ordinary = [d for (key, _), d in expected.items() if key == k and d.expected is not None]
        assert 9 + KEYS.index(k) - 1 < ordinary[-1].expected < 9 + KEYS.index(k) + 1  # the high CTRs not learned
        assert ordinary[-1].low < ordinary[-1].expected < ordinary[-1].high
    for k in KEYS:  # the raised stretch is flagged as a sustained change, its scores under the floor
        shift = 10 * KEYS.index(k)
        hits = [t for (key, t) in flagged if key == k and 200 + shift <= (t - 1_700_000_000) // 10 < 260 + shift]
        assert hits, k


def test_a_value_that_is_no_number_gets_no_score_and_stops_nothing(t_env, tmp_path):
    javaudf.register_keyed(t_env, PARAMS, floor=2.0, adaptive=True)
    frame = pd.DataFrame({"k": ["a"] * 20, "t": [1_700_000_000 + 10 * i for i in range(20)],
                          "v": [10.0 + (i % 3) for i in range(20)]})
    frame["v"] = frame["v"].astype(object)
    frame.loc[7, "v"] = None
    _table(t_env, tmp_path / "gaps.json", frame, name="gaps")
    got = _collect(t_env, "SELECT t, anomaly_score FROM RANDOM_CUT_FOREST(TABLE gaps_ordered PARTITION BY k, "
                          "DESCRIPTOR(v))").sort_values(0)
    assert len(got) == 20 and got[1].isna().sum() == 1 and pd.isna(got.iloc[7, 1])
    clean = frame.drop(index=7)
    expected = _expected_scores(clean)
    for t, score in got.dropna().itertuples(index=False):
        assert abs(score - expected["a", t][0]) < 1e-9  # the missing value was not learned


def test_a_column_that_is_not_there_is_named(session):
    t_env, _ = session
    with pytest.raises(Exception, match="columns names 'ctr', which the input table does not have"):
        _collect(t_env, "SELECT * FROM RANDOM_CUT_FOREST(TABLE series_ordered PARTITION BY k, DESCRIPTOR(ctr))")
