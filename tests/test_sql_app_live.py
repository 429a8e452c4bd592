"""The SQL application live (:mod:`clicklab.sqlapp_live`, notebooks 20-23 with ``live = True``).

Without a cluster: the live tables, the notebooks' live parameter, what starting the live run does to a running
generator and to the stream folders, the live labels. With one (``flink``, ``server``): the pumps and the output
pump run as jobs on the cluster on the live generator's SQL-lab traffic, the extra clicks are sent once the forest
has seen its windows, their e-mail arrives, every check ticks, and stopping leaves nothing running.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from clicklab import cells, settings, sqlapp, sqlapp_live, sqltext, streams
from clicklab.live import options, process

SQL_APP = [p for p in cells.lab_notebooks() if settings.is_sql_app_notebook(p)]


def test_live_tables_watch_folders_with_one_second_watermarks_and_sinks_that_commit():
    source = sqlapp_live.live_ddl("SOURCE_SQL_STREAM_001", Path("/b"))
    assert "'path' = '/b/streams/tickerstream'" in source, "the live generator's folder"
    assert f"'source.monitor-interval' = '{settings.LIVE_MONITOR_INTERVAL}'" in source
    assert "WATERMARK FOR ROWTIME AS ROWTIME - INTERVAL '1' SECOND" in source and "rolling" not in source
    ctr = sqlapp_live.live_ddl("CTRSTREAM", Path("/b"), exclude=["part-a-0-1"])
    assert "'path' = '/b/sqlapp/ctrstream'" in ctr and "ROWTIME - INTERVAL '1' SECOND" in ctr
    assert f"'sink.rolling-policy.rollover-interval' = '{settings.LIVE_ROLLOVER}'" in ctr
    assert r"'source.path.regex-pattern' = '(?!/b/sqlapp/ctrstream/(part\-a\-0\-1)$).*'" in ctr
    assert "INTERVAL '60' SECOND" in streams.sql_app_ddl("CTRSTREAM", Path("/b"), Path("/d.jsonl")), "replay unchanged"
    statements = sqlapp_live.from_now_on(Path("/b"))
    assert statements[::2] == [f"DROP TABLE IF EXISTS {n}" for n in streams.SQL_APP_STREAMS]


def test_the_session_takes_its_tables_and_the_output_pumps_cursor_from_the_mode():
    replay = sqlapp.SqlApp(Path("/d.jsonl"), Path("/b"), t_env=None).variables()
    on_line = sqlapp.SqlApp(Path("/b/streams/tickerstream"), Path("/b"), t_env=None, live=True).variables()
    assert (replay["ctr_cursor"], on_line["ctr_cursor"]) == ("CTRSTREAM_CURSOR", "CTRSTREAM_ARRIVING")
    assert "'source.monitor-interval'" in on_line["ddl_source_sql_stream_001"]
    assert "'source.monitor-interval'" not in replay["sql_app_ddl"]
    views = [sqltext.view_name(s.sql) for sql in cells.sql_cells(SQL_APP[2])
             for s in sqltext.parse_script(sqltext.substitute(sql, replay)) if sqltext.view_name(s.sql)]
    assert {"CTRSTREAM_CURSOR", "CTRSTREAM_ARRIVING"} <= set(views)
    assert any("TABLE {ctr_cursor} PARTITION BY `cursor`" in sql for sql in cells.sql_cells(SQL_APP[2]))


@pytest.mark.parametrize("path", SQL_APP, ids=lambda p: p.name)
def test_every_sql_notebook_takes_live_from_its_parameters_or_the_environment(path: Path):
    nb = cells.read(path)
    (params,) = [c for c in nb.cells if cells.PARAMETERS in cells.tags(c)]
    assert "\nlive = None  # None: $CLICKLAB_LIVE decides" in params.source
    assert any("clicklab.sqlapp.start(sql_dataset, build, live=live)" in c.source for c in nb.cells)


def test_the_live_run_counts_the_extra_clicks_sent_since_it_began(tmp_path: Path):
    live_dir = options.live_dir(tmp_path)
    live_dir.mkdir(parents=True)
    begin = datetime(2026, 12, 1, 18, 0, 0, tzinfo=UTC)
    rows = [("https://www.mysite.com", begin - timedelta(minutes=5), "sql-lab-extra-clicks"),  # an earlier run
            ("https://www.mysite.com", begin + timedelta(minutes=1), "studio-lab-burst"),
            ("https://www.mysite.com", begin + timedelta(minutes=3), "sql-lab-extra-clicks")]
    (live_dir / "labels.csv").write_text("site,start,end,kind\n" + "".join(
        f"{s},{options._iso_dt(t)},{options._iso_dt(t + timedelta(seconds=20))},{k}\n" for s, t, k in rows))
    assert sqlapp_live.live_since(tmp_path) is None and len(sqlapp_live.labels(tmp_path)) == 0
    sqlapp_live.marker_path(tmp_path).parent.mkdir(parents=True)
    sqlapp_live.marker_path(tmp_path).write_text(json.dumps({"generator": "g", "since": begin.isoformat()}))
    assert sqlapp_live.live_since(tmp_path) == begin
    (label,) = sqlapp_live.labels(tmp_path).itertuples()
    assert (label.kind, label.start) == ("sql-lab-extra-clicks", begin + timedelta(minutes=3))
    assert sqlapp.window_labels(tmp_path).equals(sqlapp_live.labels(tmp_path)), "the live run's labels"
    assert sqlapp_live.last_extra_clicks(tmp_path).start == begin + timedelta(minutes=3)
    sqlapp_live.forget_live(tmp_path)
    assert sqlapp_live.live_since(tmp_path) is None


class FakeCluster:
    """What :func:`sqlapp_live.start_live` asks of the cluster and the generator, recorded."""

    def __init__(self, scenario: str, running: bool = True, pid: int = 7, bootstrap: str | None = None) -> None:
        self.info = SimpleNamespace(running=running, scenario=scenario, pid=pid, started="t0",
                                    options={"bootstrap": bootstrap})
        self.cancelled: list[str] = []
        self.started: list[str] = []
        self.jobs = [SimpleNamespace(name="#5: Generate the Click Stream", state="RUNNING"),
                     SimpleNamespace(name="query: SELECT 1", state="RUNNING")]

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from clicklab import cluster, notebook

        monkeypatch.setattr(cluster, "up", lambda build: None)
        monkeypatch.setattr(cluster, "jobs", lambda build: self.jobs)
        monkeypatch.setattr(cluster, "cancel_named", lambda build, name: self.cancelled.append(name) or [])
        monkeypatch.setattr(notebook, "job_name", lambda stream: "#5: Generate the Click Stream")
        monkeypatch.setattr(process, "status", lambda build: self.info)
        monkeypatch.setattr(process, "stop", lambda build: setattr(self, "info", None) or True)

        def start_live(build: Path, scenario: str, backend: str | None = None) -> None:
            assert backend == "files", "the SQL application's source watches the generator's folder"
            if self.info is None:
                self.started.append(scenario)
                self.info = SimpleNamespace(running=True, scenario=scenario_source(), pid=8, started="t1",
                                            options={"bootstrap": None})

        monkeypatch.setattr(notebook, "start_live", start_live)


def scenario_source() -> str:
    from clicklab.scenario import load_scenario

    return load_scenario(sqlapp.SCENARIO).source


def test_starting_live_replaces_the_studio_generator_and_starts_with_empty_streams(tmp_path, monkeypatch):
    fake = FakeCluster("data/scenarios/lab.yaml")
    fake.install(monkeypatch)
    stale = streams.sql_app_path(tmp_path, "CTRSTREAM")
    stale.mkdir(parents=True)
    (stale / "part-replay").write_text('{"ROWTIME": "2023-08-23 12:00:10.000", "CTR": 100.0}\n')
    done = sqlapp_live.start_live(tmp_path)
    assert fake.started == [sqlapp.SCENARIO]
    assert "stopped the live generator of scenario data/scenarios/lab.yaml" in done[0]
    assert "cancelled the Studio lab's jobs: #5: Generate the Click Stream" in done[0]
    assert "#5: Generate the Click Stream" in fake.cancelled and "INSERT INTO CTRSTREAM" in fake.cancelled
    assert not any(stale.iterdir()) and sqlapp_live.live_since(tmp_path) is not None, "the replay's rows are gone"
    # the next notebook of the same live run: nothing to do, the rows it wrote stay
    (stale / "part-live").write_text('{"ROWTIME": "2026-12-01 18:00:10.000", "CTR": 100.0}\n')
    fake.cancelled.clear()
    assert sqlapp_live.start_live(tmp_path) == [] and fake.cancelled == []
    assert [p.name for p in stale.iterdir()] == ["part-live"]


def test_a_generator_of_the_sql_lab_sending_to_the_topic_is_replaced_by_one_writing_the_folder(tmp_path, monkeypatch):
    """`clicklab generate --live --scenario sql_lab` sends to the lab's broker by default; the SQL application's
    source watches the folder, so it would see nothing: 20 replaces that generator, saying why."""
    fake = FakeCluster(scenario_source(), bootstrap="127.0.0.1:9092")
    fake.install(monkeypatch)
    done = sqlapp_live.start_live(tmp_path)
    assert fake.started == [sqlapp.SCENARIO] and fake.info.options["bootstrap"] is None
    assert "it sent to the tickerstream topic at 127.0.0.1:9092" in done[0], done


def test_a_live_stream_is_missing_while_the_job_that_fills_it_is_not_running(tmp_path, monkeypatch):
    from clicklab import cluster

    app = sqlapp.SqlApp(Path("/b/streams/tickerstream"), tmp_path, t_env=None, live=True)
    jobs: list[Any] = []
    monkeypatch.setattr(cluster, "jobs", lambda build: jobs)
    assert "run 21_pumps first (its job 'INSERT INTO CTRSTREAM' is not running" in app.missing_input("CTRSTREAM")
    jobs.append(SimpleNamespace(name="INSERT INTO CTRSTREAM", state="RUNNING", start_time=datetime.now(UTC)))
    assert app.missing_input("CTRSTREAM") is None
    assert app.missing_input("SOURCE_SQL_STREAM_001") is None, "the live generator fills it"


@pytest.mark.flink
@pytest.mark.server
def test_live_the_pumps_run_on_the_cluster_the_extra_clicks_are_flagged_and_emailed_then_nothing_is_left(tmp_path):
    """The SQL lab live, headless: 21's and 22's statements as jobs on the cluster, the live generator's traffic,
    the extra clicks once the forest has seen a few windows (5 here: the first extra window is flagged), the
    alert followed to its e-mail, every check a tick; then the jobs, the generator and the cluster are gone."""
    from clicklab import cluster, sqlapp_alerts, sqlapp_checks
    from clicklab.alerts import destination, local

    build = tmp_path / "build"
    app = sqlapp.start(None, build, live=True)
    try:
        variables = app.variables()

        def run(notebook: Path) -> None:
            for sql in cells.sql_cells(notebook):
                for st in sqltext.parse_script(sqltext.substitute(sql, variables)):
                    if st.kind != sqltext.QUERY:
                        app.run(st.sql)

        run(SQL_APP[1])  # CLICKPUMP, IMPRESSIONPUMP, CTRPUMP
        pumps = sqlapp_checks.pumps(app, wait_s=60)
        assert pumps.ok, str(pumps)
        run(SQL_APP[2])  # the cursor views, OUTPUT_PUMP
        running = {j.name for j in cluster.jobs(build) if j.state == "RUNNING"}
        assert {sqlapp_live.job_name(n) for n in ("CLICKSTREAM", "IMPRESSIONSTREAM", "CTRSTREAM",
                                                  "DESTINATION_SQL_STREAM")} <= running
        extra = sqlapp_live.send_extra_clicks(app, timeout_s=120, windows=5)
        assert round(extra.start.timestamp()) % settings.WINDOW_SECONDS == 0, "from a window boundary"
        with destination.open_destination(build, cooldown_s=0) as dest:
            followed = sqlapp_alerts.follow(dest, build, timeout_s=90, until=sqlapp_alerts.email_for(dest, extra))
            assert followed.stopped == "the awaited alert went out", str(followed)
            work = sqlapp_checks.output_pump(app, dest, wait_s=60)
            assert work.ok, str(work)
            assert "CLICKCOUNT HIGH" in str(work) and "(sent now)" in str(work)
            ports = dest.local.ports()
        assert not any(local.port_open(port) for port in ports.values())
    finally:
        done = sqlapp_live.stop_live(build)
    assert any(line.startswith("cancelled INSERT INTO DESTINATION_SQL_STREAM") for line in done)
    assert cluster.status(build) is None and process.status(build) is None and not cluster.processes(build)
