"""The SQL application's alert step and its "check your work" (:mod:`clicklab.sqlapp_alerts`,
:mod:`clicklab.sqlapp_checks`, :mod:`clicklab.sqlapp_explain`), without Flink and without servers.

The destination here is the real :class:`clicklab.alerts.destination.Destination` and handler, with a channel that
writes each e-mail as the local SMTP server stores it (an ``.eml`` file in the outbox); the streams are files as
the pumps write them, made with pandas from the SQL lab's replay.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from clicklab import cells, results, settings, sqlapp, sqlapp_alerts, sqlapp_checks, sqlapp_explain, streams
from clicklab.alerts import destination, handler
from clicklab.live.sessions import ScheduledSession

W = settings.WINDOW_SECONDS
SQL_APP = [p for p in cells.lab_notebooks() if settings.is_sql_app_notebook(p)]


class EmlChannel:
    """E-mail as the local SMTP server keeps it: one ``.eml`` file per message in ``outbox``."""

    name = "smtp"

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox
        outbox.mkdir(parents=True, exist_ok=True)

    def send(self, alert: handler.Alert) -> str:
        msg = handler.mime_message(alert, "alerts@example.com", ["lab-user@example.com"])
        path = self.outbox / f"{len(list(self.outbox.glob('*.eml'))):05d}.eml"
        path.write_bytes(msg.as_bytes())
        return str(msg["Message-ID"])


def open_dest(build: Path, cooldown_s: int = 600) -> destination.Destination:
    config = handler.Config(state_file=str(build / "alerts" / "state.json"), cooldown_s=cooldown_s, window_s=W)
    return destination.Destination(config, [EmlChannel(build / "outbox")], handler.FileState(config.state_file),
                                   outbox=build / "outbox")


def write_rows(build: Path, name: str, part: str, rows: list[dict[str, Any]]) -> None:
    """Rows of a SQL-application stream as a committed file of the pump's sink."""
    folder = streams.sql_app_path(build, name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / part).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def stamp(t: pd.Timestamp) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.000")


@pytest.fixture(scope="module")
def pumped(tmp_path_factory) -> sqlapp.SqlApp:
    """The SQL lab's replay, and the streams of 21 and 22 as the pumps write them (computed with pandas)."""
    build = tmp_path_factory.mktemp("pumped") / "build"
    dataset = sqlapp.ensure_dataset(build)
    counts = results.reference_counts(results.read_events(dataset))
    ends = pd.to_datetime(counts["time"] + W, unit="s", utc=True)
    write_rows(build, "CLICKSTREAM", "part-c", [{"ROWTIME": stamp(t), "CLICKCOUNT": float(c)}
                                               for t, c in zip(ends, counts["clickcount"], strict=True)])
    write_rows(build, "IMPRESSIONSTREAM", "part-i", [{"ROWTIME": stamp(t), "IMPRESSIONCOUNT": float(i)}
                                                     for t, i in zip(ends, counts["impressioncount"], strict=True)])
    ctr = counts["clickcount"] / counts["impressioncount"] * 100
    write_rows(build, "CTRSTREAM", "part-r", [{"ROWTIME": stamp(t), "CTR": float(c)} for t, c in zip(ends, ctr,
                                                                                                strict=True)])
    flagged = [(t, c) for t, c in zip(ends, ctr, strict=True) if c > 300]
    write_rows(build, "DESTINATION_SQL_STREAM", "part-d", [{"ROWTIME": stamp(t), "CTRPERCENT": float(c),
                                                            "ANOMALY_SCORE": 3.5} for t, c in flagged])
    return sqlapp.SqlApp(dataset, build, t_env=None)


# ---------------------------------------------------------------------------------------------
# The Lambda-destination events of DESTINATION_SQL_STREAM


def test_events_carry_the_applications_rows_in_the_destination_contract(pumped):
    rows = pumped.stream("DESTINATION_SQL_STREAM")
    events = sqlapp_alerts.events(rows, batch_size=1)
    assert [len(e["records"]) for e in events] == [1, 1]
    assert all(e["applicationArn"].endswith(":application/clickstream-sql-lab") for e in events)
    assert sqlapp_alerts.decoded(events[0]) == [{"ROWTIME": "2023-08-23 12:06:10.000", "CTRPERCENT": 400.0,
                                                  "ANOMALY_SCORE": 3.5}]
    record = events[0]["records"][0]
    assert set(record) == {"recordId", "lambdaDeliveryRecordMetadata", "data"}
    assert handler.is_sql_row(json.loads(base64.b64decode(record["data"])))
    assert sqlapp_alerts.events(rows) == sqlapp_alerts.events(rows), "the same rows give the same events (retries)"
    with pytest.raises(ValueError, match=r"lack column.*CTRPERCENT"):
        sqlapp_alerts.events(rows.drop(columns=["CTRPERCENT"]))


def test_the_handler_alerts_once_per_cooldown_names_the_application_and_the_email_is_found(pumped, tmp_path):
    rows = pumped.stream("DESTINATION_SQL_STREAM")
    dest = open_dest(tmp_path)
    (response,) = [dest.invoke(e) for e in sqlapp_alerts.events(rows)]
    assert [r["result"] for r in response["records"]] == ["Ok", "Ok"]
    assert list(dest.table()["outcome"]) == ["sent", "suppressed"]  # one alert per source per 10 minutes
    (mail,) = sqlapp_alerts.emails_for(dest.outbox, rows["ROWTIME"])
    text = mail.read_text()
    assert "Anomaly detected with a click through rate of 400%" in text and "clickstream-sql-lab" in text
    assert "12:06:10 UTC (the SQL application's ROWTIME)" in text
    assert sqlapp_alerts.email_key(mail) == sqlapp_alerts.alert_key(rows["ROWTIME"].iloc[0])
    html = sqlapp_alerts.render(dest.outbox, rows, sqlapp_explain.why(pumped.build, rows["ROWTIME"]))
    assert "Anomaly Detected" in html and "<b>Why</b>" in html and "CLICKCOUNT HIGH" in html
    again = open_dest(tmp_path)  # a second run: duplicates, no new e-mail, the first one is still found
    for e in sqlapp_alerts.events(rows):
        again.invoke(e)
    assert set(again.table()["outcome"]) == {"duplicate"}
    assert sqlapp_alerts.emails_for(again.outbox, rows["ROWTIME"]) == [mail]


def test_follow_invokes_the_handler_as_the_stream_grows_until_the_awaited_email(tmp_path):
    start = datetime(2026, 12, 1, 18, 0, 0, tzinfo=UTC)
    session = ScheduledSession(id="x", site="https://www.mysite.com", kind="sql-lab-extra-clicks",
                               start=start + timedelta(seconds=60), end=start + timedelta(seconds=80))

    def row(second: int, ctr: float = 400.0) -> dict[str, Any]:
        return {"ROWTIME": stamp(pd.Timestamp(start + timedelta(seconds=second))), "CTRPERCENT": ctr,
                "ANOMALY_SCORE": 3.7}

    write_rows(tmp_path, "DESTINATION_SQL_STREAM", "part-0", [row(20, 150.0)])  # there before the follow starts
    dest = open_dest(tmp_path, cooldown_s=0)

    def writer() -> None:
        time.sleep(1.0)
        write_rows(tmp_path, "DESTINATION_SQL_STREAM", "part-1", [row(70), row(80)])  # the session's windows

    thread = threading.Thread(target=writer)
    thread.start()
    followed = sqlapp_alerts.follow(dest, tmp_path, batch_size=10, timeout_s=30,
                                    until=sqlapp_alerts.email_for(dest, session), poll_s=0.05)
    thread.join()
    assert followed.stopped == "the awaited alert went out" and followed.records == 3
    assert "followed DESTINATION_SQL_STREAM" in str(followed)
    assert sqlapp_alerts.emails_for(dest.outbox, [start + timedelta(seconds=70)])
    assert sqlapp_alerts.follow(dest, tmp_path, timeout_s=0.5).records == 0, "nothing invoked twice"


# ---------------------------------------------------------------------------------------------
# Why: the Python twin of RANDOM_CUT_FOREST_WITH_EXPLANATION


def test_the_explanation_is_written_as_the_java_function_writes_it():
    import numpy as np

    text = sqlapp_explain.explanation_json(np.array([3.70044, 0.0, 0.0, 0.0]))
    assert text == ('{"CLICKCOUNT":{"DIRECTION":"HIGH","STRENGTH":"1.0000","ATTRIBUTION_SCORE":"3.7004"},'
                    '"IMPRESSIONCOUNT":{"DIRECTION":"HIGH","STRENGTH":"0.0000","ATTRIBUTION_SCORE":"0.0000"}}')
    assert sqlapp.explain(text) == "CLICKCOUNT HIGH (3.70), IMPRESSIONCOUNT HIGH (0.00)"
    plain = json.loads(sqlapp_explain.explanation_json(np.array([1.0, 0.5, 0.25, 2.0]), directionality=False))
    assert plain == {"CLICKCOUNT": {"ATTRIBUTION_SCORE": "1.2500"}, "IMPRESSIONCOUNT": {"ATTRIBUTION_SCORE": "2.5000"}}


def test_the_extra_clicks_are_clicks_high(pumped):
    explained = sqlapp_explain.explain_counts(pumped.build)
    warming = explained["warming_up"]
    assert warming.sum() == 4 and explained.loc[warming, "anomaly_explanation"].isna().all()
    unusual = explained[explained["anomaly_score"] > 2]
    assert list(unusual["ROWTIME"].dt.strftime("%H:%M:%S")) == ["12:06:10", "12:06:20"]
    assert all(w.startswith("CLICKCOUNT HIGH") for w in unusual["why"])


# ---------------------------------------------------------------------------------------------
# Check your work


def test_the_overview_check_says_whether_the_source_has_the_sql_labs_traffic(pumped, tmp_path):
    """20's check: the source's replay has events (a tick with their count); a missing file is a cross naming it."""
    tick = sqlapp_checks._source(pumped, wait_s=0)
    events = sum(1 for line in pumped.dataset.read_text(encoding="utf-8").splitlines() if line.strip())
    assert tick.ok and f"reads {events:,} events of the SQL lab's replay" in str(tick) and events > 100
    gone = sqlapp.SqlApp(tmp_path / "nowhere.jsonl", tmp_path / "build", t_env=None)
    assert not (cross := sqlapp_checks._source(gone, wait_s=0)).ok and "nowhere.jsonl, which is not there" in str(cross)


def test_the_pumps_check_ticks_on_the_replays_windows_and_crosses_with_what_it_saw(pumped, tmp_path):
    work = sqlapp_checks.pumps(pumped)
    assert work.ok, str(work)
    assert str(work).startswith("Check your work (21_pumps): all done")
    assert "✓ CTRSTREAM holds the CTR of all 51 windows with clicks and impressions (100 to 400 %)" in str(work)
    # a CTRSTREAM that lost a window and got one wrong: crosses that say what was expected and seen
    broken = tmp_path / "build"
    for name in ("CLICKSTREAM", "IMPRESSIONSTREAM", "CTRSTREAM"):
        rows = pumped.stream(name).assign(ROWTIME=lambda f: f["ROWTIME"].map(stamp)).to_dict("records")
        if name == "CTRSTREAM":
            rows = rows[1:]
            rows[10]["CTR"] = 50.0
        write_rows(broken, name, "part-x", rows)
    work = sqlapp_checks.pumps(sqlapp.SqlApp(pumped.dataset, broken, t_env=None))
    assert not work.ok
    crosses = [str(t) for t in work.ticks if not t.ok]
    assert crosses[0].startswith("✗ CTRSTREAM: expected the CTR of 51 windows, seen 50 (first at 12:00:10")
    assert "1 row(s) that differ" in crosses[1]


def test_the_output_pump_check_wants_exactly_the_extra_clicks_why_and_the_email(pumped, tmp_path):
    assert str(sqlapp_checks.output_pump(pumped)).count("✓") == 2  # without a destination: the rows and why
    dest = open_dest(tmp_path)
    for e in sqlapp_alerts.events(pumped.stream("DESTINATION_SQL_STREAM")):
        dest.invoke(e)
    work = sqlapp_checks.output_pump(pumped, dest)
    assert work.ok, str(work)
    text = str(work)
    assert "✓ DESTINATION_SQL_STREAM holds exactly the 2 windows of the extra clicks (12:06:00-12:06:20)" in text
    assert "CLICKCOUNT HIGH (3.70)" in text and "(sent now)" in text
    # no e-mail in the outbox: a cross with what the handler said
    for path in dest.outbox.glob("*.eml"):
        path.unlink()
    tick = sqlapp_checks.output_pump(pumped, dest).ticks[-1]
    assert not tick.ok and "expected one about 12:06:10, 12:06:20" in str(tick) and "smtp sent" in str(tick)


def test_the_output_pump_check_names_a_false_alarm(pumped, tmp_path):
    build = tmp_path / "build"
    for name in ("CLICKSTREAM", "IMPRESSIONSTREAM", "CTRSTREAM", "DESTINATION_SQL_STREAM"):
        rows = pumped.stream(name).assign(ROWTIME=lambda f: f["ROWTIME"].map(stamp)).to_dict("records")
        if name == "DESTINATION_SQL_STREAM":
            rows.append({"ROWTIME": "2023-08-23 12:07:00.000", "CTRPERCENT": 100.0, "ANOMALY_SCORE": 2.1})
        write_rows(build, name, "part-x", rows)
    (tick, *_) = sqlapp_checks.output_pump(sqlapp.SqlApp(pumped.dataset, build, t_env=None)).ticks
    assert not tick.ok and "ending 12:06:10, 12:06:20, seen 3 row(s)" in str(tick) and "12:07:00 CTR 100 %" in str(tick)


def test_a_check_that_cannot_run_is_a_cross_never_an_exception(tmp_path):
    work = sqlapp_checks.pumps(sqlapp.SqlApp(tmp_path / "missing.jsonl", tmp_path, t_env=None))
    assert not work.ok and str(work.ticks[0]).startswith("✗ the check could not run: FileNotFoundError")
    work = sqlapp_checks.output_pump(sqlapp.SqlApp(sqlapp.ensure_dataset(tmp_path), tmp_path, t_env=None))
    assert not work.ok and "CTRSTREAM holds none of them (run 21_pumps first); seen 0 row(s)" in str(work.ticks[0])


# ---------------------------------------------------------------------------------------------
# The notebooks


@pytest.mark.parametrize(("number", "call"), [("21", "clicklab.sqlapp_checks.pumps(app)"),
                                              ("22", "clicklab.sqlapp_checks.output_pump(app, dest)")])
def test_21_and_22_end_with_check_your_work(number: str, call: str):
    (path,) = [p for p in SQL_APP if p.name.startswith(number)]
    nb = cells.read(path)
    assert nb.cells[-1].source == f"print({call})" and cells.LOCAL_ONLY in cells.tags(nb.cells[-1])
    assert nb.cells[-2].source.startswith("**Check your work.**")


def test_22_sends_destination_sql_stream_to_the_alert_lambda_and_shows_the_email():
    source = "\n".join(c.source for c in cells.read(SQL_APP[2]).cells)
    for step in ("destination.open_destination(app.build, cooldown_s=cooldown_seconds, fresh_state=fresh_state, "
                 "live=app.live)",
                 "sqlapp_alerts.events(rows, batch_size)", "dest.invoke(event)", "sqlapp_alerts.follow(dest",
                 "sqlapp_alerts.render(dest.outbox", "dest.close()"):
        assert step in source, step


def test_23_checks_that_the_unusual_windows_are_the_extra_clicks():
    import pandas as pd

    from clicklab import sqlapp_checks

    unusual = pd.DataFrame({"ROWTIME": pd.to_datetime(["2023-08-23 12:06:10", "2023-08-23 12:06:20"], utc=True),
                            "why": ["CLICKCOUNT HIGH (3.70), IMPRESSIONCOUNT LOW (0.10)", "CLICKCOUNT HIGH (3.10)"]})
    assert sqlapp_checks.explanation(unusual).ok
    outage = unusual.assign(why=["IMPRESSIONCOUNT LOW (3.00)", "CLICKCOUNT HIGH (3.10)"])
    work = sqlapp_checks.explanation(outage)
    assert not work.ok and "1 not explained by CLICKCOUNT HIGH first: IMPRESSIONCOUNT LOW" in str(work)
    assert not sqlapp_checks.explanation(unusual.iloc[0:0]).ok
