"""The live lab: folders kept small, the live DDL, the notebooks' live switch, following a stream, and the
headless live run (`clicklab run --live`) end to end on the standalone cluster."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clicklab import cells, notebook, results, settings, streams
from clicklab.live import folders
from tests.conftest import burst_emails, client_env, email_texts

SITE = "https://www.mysite.com"


def write_rows(folder: Path, name: str, rows: list[dict], mtime: float | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    tmp = folder / f".{name}.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_tidy_archives_old_files_keeps_new_and_hidden_ones_and_deletes_after_retention(tmp_path: Path):
    folder = streams.stream_path(tmp_path, "ctrstream")
    now = time.time()
    row = {"site": SITE, "time": 1, "ctr": 10.0, "clickcount": 1, "impressioncount": 10}
    old = write_rows(folder, "part-old", [row], mtime=now - 60)
    new = write_rows(folder, "part-new", [row], mtime=now - 1)
    hidden = write_rows(folder, ".part-inprogress", [row], mtime=now - 60)
    gone = write_rows(folder / folders.ARCHIVE, "part-ancient", [row], mtime=now - 10_000)
    done = folders.tidy(tmp_path, now=now, keep_s=15, retention_s=600)
    assert (done.archived, done.deleted) == (1, 1)
    assert not old.exists() and (folder / folders.ARCHIVE / "part-old").exists()
    assert new.exists() and hidden.exists() and not gone.exists()
    # the history stays readable: the stream holds both rows, archived and recent
    assert len(results.read_stream(tmp_path, "ctrstream")) == 2


def test_a_builds_streams_are_read_back_with_their_commit_times_on_request(tmp_path: Path):
    """``notebook.reader(build, "files", with_time=True)``: live latencies need each row's commit time (the browser
    test's live pass read it from a reader without one: KeyError 'committed_at')."""
    from clicklab import notebook

    row = {"site": SITE, "time": 1, "ctr": 10.0, "clickcount": 1, "impressioncount": 10}
    write_rows(streams.stream_path(tmp_path, "ctrstream"), "part-0", [row], mtime=1_000_000.0)
    timed = notebook.reader(tmp_path, "files", with_time=True)("ctrstream")
    assert list(timed["committed_at"]) == [1_000_000.0] and list(timed["ctr"]) == [10.0]
    assert "committed_at" not in notebook.reader(tmp_path, "files")("ctrstream")


def test_live_tables_watch_their_folders_commit_quickly_and_wait_one_second():
    ddl = streams.live_ddl("ctrstream", Path("/b"))
    assert "'path' = '/b/streams/ctrstream'" in ddl
    assert f"'source.monitor-interval' = '{settings.LIVE_MONITOR_INTERVAL}'" in ddl
    assert f"'sink.rolling-policy.rollover-interval' = '{settings.LIVE_ROLLOVER}'" in ddl
    assert "WATERMARK FOR rowtime AS rowtime - INTERVAL '1' SECOND" in ddl
    ticker = streams.live_ddl("tickerstream", Path("/b"))
    assert "'path' = '/b/streams/tickerstream'" in ticker and "sink.rolling-policy" not in ticker
    # a starting job leaves out the files already there (Kinesis' LATEST): no backlog read out of order
    fresh = streams.live_ddl("ctrstream", Path("/b"), exclude=["part-x-0-1", "part-x-0-2"])
    assert r"'source.path.regex-pattern' = '(?!/b/streams/ctrstream/(part\-x\-0\-1|part\-x\-0\-2)$).*'" in fresh
    # the replay's tables are unchanged: ctrstream waits a minute there
    assert "rowtime - INTERVAL '60' SECOND" in streams.local_ddl("ctrstream", Path("/b"), Path("/d.jsonl"))


def test_live_is_a_parameter_or_the_environment(monkeypatch):
    monkeypatch.delenv(notebook.LIVE_VARIABLE, raising=False)
    assert notebook.is_live(None) is False and notebook.is_live(True) is True
    monkeypatch.setenv(notebook.LIVE_VARIABLE, "1")
    assert notebook.is_live(None) is True and notebook.is_live(False) is False


def test_jobs_carry_the_labs_names_and_scoring_reads_in_order_only_on_a_replay(tmp_path: Path):
    assert notebook.job_name("impressionstream").startswith("#4: Generate the Impression Stream Data in real-time")
    assert notebook.job_name("anomalydetectionstream") == "#9: Create a Stream with the Anomaly data in real-time"
    replay = notebook.Lab(settings.DEFAULT_DATASET, tmp_path, t_env=None).variables()
    on_line = notebook.Lab(settings.DEFAULT_DATASET, tmp_path, t_env=None, live=True).variables()
    assert (replay["ctr_input"], replay["scores_input"]) == ("ctr_in_time_order", "scores_in_time_order")
    assert (on_line["ctr_input"], on_line["scores_input"]) == ("ctrstream", "destinationstream")
    assert "'source.monitor-interval'" in on_line["ddl"] and "'source.monitor-interval'" not in replay["ddl"]


def test_the_live_run_takes_the_notebooks_that_submit_jobs_send_the_burst_alert_and_clean_up():
    live_ones = [p.name[:2] for p in cells.lab_notebooks() if cells.info(p).live]
    assert live_ones == ["01", "04", "05", "06", "08", "09", "10", "11", "12"]


@pytest.mark.server
def test_follow_invokes_the_handler_on_rows_as_they_arrive_until_the_awaited_email(tmp_path: Path):
    from datetime import UTC, datetime, timedelta

    from clicklab.alerts import destination
    from clicklab.live.sessions import ScheduledSession

    folder = streams.stream_path(tmp_path, "anomalydetectionstream")
    start = datetime(2026, 12, 1, 18, 0, 0, tzinfo=UTC)
    session = ScheduledSession(id="x", site=SITE, kind="studio-lab-burst", start=start + timedelta(seconds=30),
                               end=start + timedelta(seconds=60))

    def row(second: int, site: str = SITE) -> dict:
        when = start + timedelta(seconds=second)
        return {"site": site, "rowtime": when.strftime("%Y-%m-%d %H:%M:%S"), "ctrpercent": 500.0,
                "anomaly_score": 4.2}

    write_rows(folder, "part-a-0", [row(0, "https://news.example.com")])  # there before the follow starts

    def writer() -> None:
        time.sleep(1.0)
        write_rows(folder, "part-a-1", [row(30), row(40)])  # the burst's windows, a second later

    with destination.open_destination(tmp_path, cooldown_s=0) as dest:
        thread = threading.Thread(target=writer)
        thread.start()
        followed = destination.follow(dest, tmp_path, batch_size=10, timeout_s=30,
                                      until=destination.email_for(dest, session))
        thread.join()
        assert followed.stopped == "the awaited alert went out" and followed.records == 3
        table = dest.table()
        assert set(table[table["outcome"] == "sent"]["site"]) == {SITE, "https://news.example.com"}
        assert dest.emails()
        again = destination.follow(dest, tmp_path, timeout_s=1)  # nothing new: nothing invoked twice
        assert again.records == 0


@pytest.mark.flink
@pytest.mark.server
def test_clicklab_run_live_sends_the_burst_and_its_email_arrives_then_nothing_is_left(tmp_path: Path):
    """The headless live lab: cluster, live generator, five jobs side by side, the burst, its anomaly, its e-mail;
    with the streams in folders, on request (the default, topics, is tests/test_kafka_live.py's)."""
    from clicklab import cluster
    from clicklab.live import process

    build = tmp_path / "build"
    # no timed assert (speed is `clicklab bench --live`'s to measure): only a timeout against a hang
    proc = subprocess.run([sys.executable, "-m", "clicklab", "run", "--live", "--streams", "files",
                           "--build", str(build)],
                          capture_output=True, text=True, timeout=1200, env=client_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "events generated live:" in out and "anomalies per site" in out
    latency = re.search(r"the burst, seconds after its first anomalous window ended: anomaly row ([\d.]+), "
                        r"e-mail ([\d.]+)", out)
    assert latency, out
    assert float(latency.group(1)) <= float(latency.group(2)) < 60
    # one alert for the burst, on its first flagged window: a window the burst filled whole (about the lab's 500 %),
    # and what was usual for the site (issue 23)
    assert burst_emails(build / "outbox"), [text[:400] for text in email_texts(build / "outbox")]
    # torn down: no cluster, no generator, no process of ours, no job
    assert cluster.status(build) is None and process.status(build) is None
    assert cluster.processes(build) == {}


def test_the_burst_waits_for_the_end_of_the_refractory_period_of_an_earlier_false_alarm(monkeypatch, capsys):
    """A false alarm just before the burst would keep the burst's windows from being anomalies (the adaptive
    threshold reports one change once): the burst is sent once the site has had `refractory` quiet windows."""
    import pandas as pd

    from clicklab.live import send as live_send
    from clicklab_udf.threshold import AdaptiveThreshold

    refractory = AdaptiveThreshold().refractory
    windows = {"n": 10}  # scored windows so far: each read is one window later
    sent = []

    def read(name: str) -> pd.DataFrame:
        if name == "anomalydetectionstream":  # a false alarm at window 8
            return pd.DataFrame({"site": [SITE], "rowtime": [pd.Timestamp(80, unit="s", tz="UTC").isoformat()]})
        windows["n"] += 1
        return pd.DataFrame({"site": SITE, "time": [10 * i for i in range(windows["n"])], "score": 1.0})

    fast = live_send.wait_for
    monkeypatch.setattr(live_send, "wait_for", lambda what, check, timeout_s: fast(what, check, timeout_s, poll_s=0))
    monkeypatch.setattr(live_send, "session_of", lambda build, session: {"site": SITE})
    monkeypatch.setattr(live_send, "send", lambda build, session: sent.append(windows["n"]) or "sent")
    assert live_send.send_when_warm(Path("unused"), read=read) == "sent"
    assert sent and sent[0] - 9 >= refractory  # windows 9 .. n-1 came after the alarm's window 8
    assert "refractory period" in capsys.readouterr().out


def test_an_anomaly_that_does_not_come_is_reported_with_what_destinationstream_scored():
    """The burst's error says whether its windows were scored (and how) or not scored at all."""
    import pandas as pd

    from clicklab.exceptions import ClicklabError
    from clicklab.live import watch
    from clicklab.live.sessions import ScheduledSession

    start = pd.Timestamp("2026-12-07T15:17:20Z").to_pydatetime()
    session = ScheduledSession(id="x", site=SITE, kind="studio-lab-burst", start=start,
                               end=start + pd.Timedelta(seconds=30).to_pytimedelta())
    t0 = start.timestamp()
    scored = pd.DataFrame({"site": SITE, "time": [t0 - 10, t0, t0 + 10], "ctr": [9.5, 500.0, 500.0],
                           "score": [0.8, 3.51, 2.2], "committed_at": t0 + 20})
    frames = {"anomalydetectionstream": scored.iloc[:0], "destinationstream": scored}
    with pytest.raises(ClicklabError) as err:
        watch.wait_for_anomaly(frames.__getitem__, session, timeout_s=0)
    assert str(err.value).endswith("not within 0 s; destinationstream scored its windows but none was flagged: "
                                   "15:17:20 CTR 500 % score 3.51, 15:17:30 CTR 500 % score 2.20")
    frames["destinationstream"] = scored.iloc[:1]
    with pytest.raises(ClicklabError, match=r"holds no score for those windows yet \(its last scored window starts "
                                            r"15:17:10\)"):
        watch.wait_for_anomaly(frames.__getitem__, session, timeout_s=0)


def test_after_08_runs_again_the_burst_waits_for_the_new_forests_scores(monkeypatch, tmp_path):
    """Rows of a replaced scoring job stay in destinationstream: with ``since`` (the running job's start) they are
    not counted, so the burst is not sent into the new forest's warm-up; the job's start comes from the cluster."""
    from datetime import UTC, datetime

    import pandas as pd

    from clicklab import cluster
    from clicklab.exceptions import ClicklabError
    from clicklab.lab import Lab, job_name
    from clicklab.live import send as live_send

    started = 1_800_000_000.0
    old = pd.DataFrame({"site": SITE, "time": [10 * i for i in range(20)], "score": 1.0, "committed_at": started - 5})
    new = pd.DataFrame({"site": SITE, "time": [200, 210], "score": 0.9, "committed_at": started + 30})
    frames = {"destinationstream": pd.concat([old, new]), "anomalydetectionstream": pd.DataFrame()}
    monkeypatch.setattr(live_send, "session_of", lambda build, session: {"site": SITE})
    monkeypatch.setattr(live_send, "send", lambda build, session: "sent")
    assert live_send.send_when_warm(tmp_path, read=frames.__getitem__, timeout_s=0) == "sent"  # the old rows count
    with pytest.raises(ClicklabError, match=r"8 scores for https://www.mysite.com in destinationstream of the "
                                            r"scoring job started at \d\d:\d\d:\d\d .*not within 0 s"):
        live_send.send_when_warm(tmp_path, read=frames.__getitem__, timeout_s=0, since=started)

    def job(name: str, state: str, at: float) -> cluster.Job:
        return cluster.Job(id=name, name=name, state=state, start_time=datetime.fromtimestamp(at, UTC), duration_s=1)

    scoring = job_name("destinationstream")
    jobs = [job(scoring, "CANCELED", started - 600), job(scoring, "RUNNING", started),
            job(job_name("ctrstream"), "RUNNING", started + 60)]
    info = cluster.ClusterInfo(url="", rest_port=0, conf_dir=tmp_path, log_dir=tmp_path, started="", jobs=jobs)
    monkeypatch.setattr(cluster, "status", lambda build: info)
    lab = Lab(tmp_path / "replay.jsonl", tmp_path, t_env=None, live=True)
    assert lab.job_started("destinationstream") == started
    assert lab.job_started("anomalydetectionstream") is None  # no such job runs
    assert Lab(tmp_path / "replay.jsonl", tmp_path, t_env=None).job_started("destinationstream") is None  # a replay


def test_the_studio_lab_replaces_a_generator_that_sends_elsewhere(tmp_path: Path, monkeypatch, capsys):
    """After the SQL application's live run (its generator writes the folder), the Studio lab on topics would
    read nothing from tickerstream: its start replaces that generator, and keeps one that sends to its topic."""
    from types import SimpleNamespace

    from clicklab import cluster, notebook
    from clicklab.kafka import lab as kafka_lab
    from clicklab.live import process

    calls: list[object] = []
    running = SimpleNamespace(running=True, options={"bootstrap": None})
    monkeypatch.setattr(kafka_lab, "open_live", lambda build: "127.0.0.1:1")
    monkeypatch.setattr(cluster, "up", lambda build: None)
    monkeypatch.setattr(process, "status", lambda build: running)
    monkeypatch.setattr(process, "stop", lambda build: calls.append("stop") or True)
    monkeypatch.setattr(process, "start_background", lambda build, scenario, bootstrap: calls.append(bootstrap))
    assert notebook.start_live(tmp_path, backend="kafka") == "127.0.0.1:1"
    assert calls == ["stop", "127.0.0.1:1"]
    assert "stopped the live generator that sent to the tickerstream folder" in capsys.readouterr().out
    calls.clear()
    running.options["bootstrap"] = "127.0.0.1:1"
    notebook.start_live(tmp_path, backend="kafka")
    assert calls == [], "a generator already sending to the lab's topic is kept"
