"""The Kinesis Data Analytics SQL application form of the lab (notebooks 20-23, :mod:`clicklab.sqlapp`).

Without Flink: every statement of the application is shown as written for Kinesis Data Analytics next to the Flink
SQL that runs it; the streams are defined in :mod:`clicklab.streams`; errors name the stream or value. On a local
Flink: the notebooks' SQL, run in order on the SQL lab's traffic, flags exactly the extra-click windows with
``ANOMALY_SCORE > 2``; ``RANDOM_CUT_FOREST_WITH_EXPLANATION`` explains a clicks burst as clicks HIGH and an
impression drop as impressions LOW.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clicklab import (
    cells,
    flink,
    javaudf,
    results,
    settings,
    sqlapp,
    sqlapp_checks,
    sqlapp_explain,
    sqltext,
    streams,
    udfs,
)
from clicklab.scenario import load_scenario
from clicklab_udf.forest import ForestParams

SQL_APP = [p for p in cells.lab_notebooks() if settings.is_sql_app_notebook(p)]


def _kda_statements(path: Path) -> list[tuple[int, str]]:
    """(cell index, text) of the raw cells: the statements as written for Kinesis Data Analytics."""
    return [(i, c.source) for i, c in enumerate(cells.read(path).cells) if c.cell_type == "raw"]


def test_the_sql_application_notebooks_are_20_to_23_in_order():
    assert [p.name for p in SQL_APP] == ["20_sql_app_overview.ipynb", "21_pumps.ipynb", "22_output_pump.ipynb",
                                         "23_anomaly_explanation.ipynb"]
    assert all(not cells.info(p).cleanup and not cells.info(p).live for p in SQL_APP)


@pytest.mark.parametrize("statement", [
    'CREATE OR REPLACE STREAM "CLICKSTREAM"', 'CREATE OR REPLACE STREAM "IMPRESSIONSTREAM"',
    'CREATE OR REPLACE STREAM "CTRSTREAM"', 'CREATE OR REPLACE STREAM "DESTINATION_SQL_STREAM"',
    'CREATE OR REPLACE PUMP "CLICKPUMP"', 'CREATE OR REPLACE PUMP "IMPRESSIONPUMP"', 'CREATE OR REPLACE PUMP "CTRPUMP"',
    'CREATE OR REPLACE PUMP "OUTPUT_PUMP"', '"SOURCE_SQL_STREAM_001"', '"browseraction"', "SELECT STREAM",
    "SECOND / 10 TO SECOND", "ON i.ROWTIME = c.ROWTIME", "RANDOM_CUT_FOREST(\n  CURSOR(SELECT STREAM \"CTR\"",
    "WHERE ANOMALY_SCORE > 2", "RANDOM_CUT_FOREST_WITH_EXPLANATION(",
])
def test_every_statement_of_the_application_is_shown_as_written_for_kinesis(statement: str):
    shown = [text for p in SQL_APP for _, text in _kda_statements(p)]
    assert any(statement in text for text in shown), f"no raw cell of notebooks 20-23 shows {statement!r}"


def test_the_forest_is_called_with_the_labs_parameter_list_in_both_forms():
    kda = " ".join(" ".join(t.split()) for _, t in _kda_statements(SQL_APP[2]))
    assert re.search(r"100, -- numberOfTrees.*12, -- subSampleSize.*100000, -- timeDecay.*1 -- shingleSize", kda)
    flink_sql = " ".join(cells.sql_cells(SQL_APP[2]))
    assert "DESCRIPTOR(CTR), 100, 12, 100000, 1)" in flink_sql and "anomaly_score > {anomaly_threshold}" in flink_sql


@pytest.mark.parametrize("path", SQL_APP, ids=lambda p: p.name)
def test_each_kinesis_statement_is_followed_by_prose_or_the_flink_sql_that_runs_it(path: Path):
    nb = cells.read(path)
    for index, _ in _kda_statements(path):
        after = nb.cells[index + 1: index + 3]
        assert any(cells.is_sql(c) for c in after) or any(c.cell_type == "markdown" for c in after), \
            f"{path.name}, cell {index + 1}: a Kinesis statement with neither its Flink SQL nor prose after it"
    variables = sqlapp.SqlApp(Path("/d.jsonl"), Path("/b"), t_env=None).variables()
    inserts = [s for sql in cells.sql_cells(path) for s in sqltext.parse_script(sqltext.substitute(sql, variables))
               if s.kind == sqltext.INSERT]
    assert all(s.target in streams.SQL_APP_STREAMS for s in inserts), [s.target for s in inserts]


def test_the_streams_are_defined_once_in_clicklab_streams():
    assert streams.SQL_APP_STREAM_NAMES == ("SOURCE_SQL_STREAM_001", "CLICKSTREAM", "IMPRESSIONSTREAM", "CTRSTREAM",
                                            "DESTINATION_SQL_STREAM")
    assert [c.name for c in streams.SQL_APP_STREAMS["DESTINATION_SQL_STREAM"].columns] == \
        ["ROWTIME", "CTRPERCENT", "ANOMALY_SCORE"]
    ddl = streams.sql_app_ddl("CTRSTREAM", Path("/b"), Path("/d.jsonl"))
    assert "'path' = '/b/sqlapp/ctrstream'" in ddl and "WATERMARK FOR ROWTIME" in ddl
    source = streams.sql_app_ddl("SOURCE_SQL_STREAM_001", Path("/b"), Path("/d.jsonl"))
    assert "'path' = '/d.jsonl'" in source and "ROWTIME AS TO_TIMESTAMP(event_time" in source
    with pytest.raises(ValueError, match=r"'SOURCE_SQL_STREAM_001'.*writes CLICKSTREAM"):
        streams.sql_app_path(Path("/b"), "SOURCE_SQL_STREAM_001")
    with pytest.raises(ValueError, match="'clickstream'"):
        streams.sql_app_path(Path("/b"), "clickstream")  # the Studio lab's stream, not the application's


def test_the_sql_labs_scenario_is_the_labs_traffic():
    scenario = load_scenario("sql_lab")
    assert sorted((s.browseraction, s.rate, s.arrivals) for s in scenario.senders) == \
        [("Click", 1, "constant"), ("Impression", 1, "constant")]
    (extra,) = scenario.anomalies
    assert (extra.kind, extra.duration, len(extra.senders)) == ("sql-lab-extra-clicks", 20, 3)
    assert all(s.rate == 1 and s.browseraction == "Click" for s in extra.senders)


def test_explain_words_an_explanation_and_names_a_bad_one():
    text = json.dumps({"impressions": {"DIRECTION": "LOW", "STRENGTH": "0.9", "ATTRIBUTION_SCORE": "2.5"},
                       "clicks": {"DIRECTION": "HIGH", "STRENGTH": "0.1", "ATTRIBUTION_SCORE": "0.4"}})
    assert sqlapp.explain(text) == "impressions LOW (2.50), clicks HIGH (0.40)"
    assert sqlapp.explain(None).startswith("no explanation")
    with pytest.raises(ValueError, match=r"ANOMALY_EXPLANATION '\{\"clicks\": 1\}'"):
        sqlapp.explain('{"clicks": 1}')


# ---------------------------------------------------------------------------------------------
# On a local Flink


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> sqlapp.SqlApp:
    """The notebooks' DDL and INSERT statements, in order, in one session on the SQL lab's generated traffic."""
    build = tmp_path_factory.mktemp("sqlapp") / "build"
    session = sqlapp.start(None, build)
    variables = session.variables()
    for path in SQL_APP:
        for sql in cells.sql_cells(path):
            for st in sqltext.parse_script(sqltext.substitute(sql, variables)):
                if st.kind != sqltext.QUERY:
                    session.run(st.sql)
    return session


@pytest.mark.flink
def test_the_application_flags_the_extra_click_windows_and_nothing_else(app):
    ctr = app.stream("CTRSTREAM")
    reference = results.reference_ctr(app.dataset)
    assert len(ctr) == len(reference) == 51
    # a window's ROWTIME is its end: the reference's window start + 10 s
    ends = pd.to_datetime(reference["time"] + settings.WINDOW_SECONDS, unit="s", utc=True)
    assert list(ctr["ROWTIME"]) == list(ends) and list(ctr["CTR"]) == list(reference["ctr"])
    destination = app.stream("DESTINATION_SQL_STREAM")
    flagged = sqlapp.flagged_windows(destination, sqlapp.window_labels(app.build))
    assert list(flagged["ROWTIME"].dt.strftime("%H:%M:%S")) == ["12:06:10", "12:06:20"]  # 12:06:00-12:06:20
    assert flagged["labelled"].all() and (flagged["ANOMALY_SCORE"] > 2).all()
    assert list(flagged["CTRPERCENT"]) == [400.0, 400.0]
    summary = sqlapp.summarize(app.build)
    assert summary is not None
    assert (summary["labelled windows"], summary["labelled windows flagged"], summary["false alarms"]) == (2, 2, 0)


@pytest.mark.flink
def test_the_python_twin_explains_every_window_as_the_java_function_does(app):
    """What the alert step of 22 says about a window (:mod:`clicklab.sqlapp_explain`) is what 23's query says."""
    (query,) = [sql for sql in cells.sql_cells(SQL_APP[3]) if "RANDOM_CUT_FOREST_WITH_EXPLANATION(" in sql]
    (outcome,) = app.run(sqltext.substitute(query, app.variables()), max_rows=1000)
    java = outcome.frame.assign(ROWTIME=lambda f: pd.to_datetime(f["ROWTIME"], utc=True))
    twin = sqlapp_explain.explain_counts(app.build)
    merged = java.merge(twin, on="ROWTIME", suffixes=("_java", "_twin"))
    assert len(merged) == len(java) == len(twin) == 51
    assert list(merged["anomaly_explanation_java"].fillna("")) == list(merged["anomaly_explanation_twin"].fillna(""))
    assert np.allclose(merged["anomaly_score_java"], merged["anomaly_score_twin"], rtol=0, atol=1e-12)


@pytest.mark.flink
def test_check_your_work_ticks_on_the_notebooks_replay(app):
    pumps, output = sqlapp_checks.pumps(app), sqlapp_checks.output_pump(app)
    assert pumps.ok and output.ok, f"{pumps}\n{output}"
    assert len(pumps.ticks) == 4 and len(output.ticks) == 2


@pytest.fixture(scope="module")
def counts(t_env, tmp_path_factory):
    """Clicks and impressions per window of two sites: a clicks burst on one, an impression drop on the other."""
    javaudf.register_keyed(t_env, ForestParams.preset("lab"), 2.0, True,
                           udfs.threshold_options(udfs.Detector(forest=ForestParams.preset("lab"))))
    rng = np.random.default_rng(5)
    rows = []
    for i in range(60):
        for site in ("burst", "outage"):
            clicks, impressions = 10 + int(rng.integers(-1, 2)), 50 + int(rng.integers(-2, 3))
            if site == "burst" and i in (40, 41):
                clicks = 40
            if site == "outage" and i in (45, 46):
                impressions = 5
            rows.append({"site": site, "t": 1_700_000_000 + 10 * i, "clicks": clicks, "impressions": impressions})
    path = tmp_path_factory.mktemp("explain") / "counts.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    for statement in ("DROP TEMPORARY VIEW IF EXISTS counts_ordered", "DROP TABLE IF EXISTS counts",
                      f"""CREATE TABLE counts (site STRING, t BIGINT, clicks BIGINT, impressions BIGINT,
                            rowtime AS TO_TIMESTAMP_LTZ(t * 1000, 3),
                            WATERMARK FOR rowtime AS rowtime - INTERVAL '1' HOUR)
                          WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json')""",
                      """CREATE TEMPORARY VIEW counts_ordered AS SELECT site, t, clicks, impressions, rowtime,
                           COUNT(*) OVER (PARTITION BY site ORDER BY rowtime
                                          ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS n FROM counts"""):
        flink.execute(t_env, statement)
    return t_env


def _explained(t_env, directionality: str = ", TRUE") -> pd.DataFrame:
    sql = ("SELECT site, t, clicks, impressions, anomaly_score, anomaly_explanation, warming_up FROM "
           "RANDOM_CUT_FOREST_WITH_EXPLANATION(TABLE counts_ordered PARTITION BY site, "
           f"DESCRIPTOR(clicks, impressions), 100, 12, 100000, 1{directionality})")
    with t_env.execute_sql(sql).collect() as rows:
        got = [tuple(r) for r in rows]
    return pd.DataFrame(got, columns=["site", "t", "clicks", "impressions", "score", "explanation", "warming_up"])


def _top(explanation: str) -> tuple[str, str]:
    """The column with the largest attribution, and its direction."""
    name, parts = max(json.loads(explanation).items(), key=lambda kv: float(kv[1]["ATTRIBUTION_SCORE"]))
    return name, parts["DIRECTION"]


@pytest.mark.flink
def test_a_clicks_burst_is_clicks_high_and_an_impression_drop_impressions_low(counts):
    got = _explained(counts)
    assert len(got) == 120 and got["warming_up"].sum() == 2 * 4  # 1 + 12 // 4 windows per site
    assert got.loc[got["warming_up"], "explanation"].isna().all()
    burst = got[(got["site"] == "burst") & (got["clicks"] == 40)]
    outage = got[(got["site"] == "outage") & (got["impressions"] == 5)]
    assert len(burst) == 2 and len(outage) == 2
    assert (burst["score"] > 2).all() and (outage["score"] > 2).all()
    assert [_top(e) for e in burst["explanation"]] == [("clicks", "HIGH")] * 2
    assert [_top(e) for e in outage["explanation"]] == [("impressions", "LOW")] * 2
    normal = got[~got["warming_up"] & ~got.index.isin(burst.index) & ~got.index.isin(outage.index)]
    assert normal["score"].max() < burst["score"].min()
    # in Kinesis Data Analytics' form: per column, in DESCRIPTOR's order, numbers as strings with 4 decimals,
    # the attributions adding up to the score
    for row in got[~got["warming_up"]].itertuples():
        parsed = json.loads(row.explanation)
        assert list(parsed) == ["clicks", "impressions"]
        assert all(set(p) == {"DIRECTION", "STRENGTH", "ATTRIBUTION_SCORE"} for p in parsed.values())
        assert all(re.fullmatch(r"\d+\.\d{4}", p["ATTRIBUTION_SCORE"]) for p in parsed.values())
        assert all(0.0 <= float(p["STRENGTH"]) <= 1.0 for p in parsed.values())
        assert sum(float(p["ATTRIBUTION_SCORE"]) for p in parsed.values()) == pytest.approx(row.score, abs=2e-4)


@pytest.mark.flink
def test_without_directionality_the_explanation_has_attributions_only_and_the_same_scores(counts):
    plain, directed = _explained(counts, ""), _explained(counts)
    key = ["site", "t"]
    merged = plain.merge(directed, on=key, suffixes=("", "_directed"))
    assert len(merged) == 120 and (merged["score"] == merged["score_directed"]).all()
    scored = merged[~merged["warming_up"]]
    assert all(set(p) == {"ATTRIBUTION_SCORE"} for e in scored["explanation"] for p in json.loads(e).values())


# ---------------------------------------------------------------------------------------------
# The lab's parameter set, one switch (issue 12 part 2)


@pytest.mark.parametrize("command", [["score", "--input", "x.csv", "--output", "y.csv"], ["evaluate"]])
def test_params_lab_selects_the_sql_labs_forest_and_reaches_the_java_functions_job_parameters(command):
    from clicklab import cli
    from clicklab_udf.forest import PRESETS

    assert tuple(PRESETS) == cli.PARAMETER_SETS
    lab = cli._detector(cli.parser().parse_args([*command, "--params", "lab"]))
    assert lab.forest == ForestParams.preset("lab")
    job = javaudf.job_parameters(lab.forest)  # what the Java scalar and keyed functions read (rcf.*)
    assert (job["rcf.number_of_trees"], job["rcf.sub_sample_size"], job["rcf.time_decay"], job["rcf.shingle_size"],
            job["rcf.warmup"]) == ("100", "12", "100000.0", "1", "4")
    default = cli._detector(cli.parser().parse_args(command))
    assert javaudf.job_parameters(default.forest)["rcf.sub_sample_size"] == "256"
    overridden = cli._detector(cli.parser().parse_args([*command, "--params", "lab", "--trees", "30"]))
    assert (overridden.forest.number_of_trees, overridden.forest.sub_sample_size) == (30, 12)
    with pytest.raises(SystemExit):
        cli.parser().parse_args([*command, "--params", "huge"])


def test_clicklab_run_passes_the_parameter_set_to_the_runner(monkeypatch):
    from clicklab import cli, flink, runner

    seen = {}

    def fake_run(**kwargs):
        seen.update(kwargs)
        raise cli.ClicklabError("stop here")

    monkeypatch.setattr(runner, "run", fake_run)
    monkeypatch.setattr(flink, "check_java", lambda: None)
    assert cli.main(["run", "--params", "lab", "--only", "08"]) == 1
    assert seen["forest_preset"] == "lab" and seen["only"] == ["08"]
