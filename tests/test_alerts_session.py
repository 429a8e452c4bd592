"""What a learner hits in a lab session with the alerts (issue 21), against the real local moto and SMTP servers.

* a session starts from fresh alert state (``fresh_state``, ``clicklab reset``), and within it the same
  anomalies are still ``duplicate``;
* live, a burst sent again gets its e-mail, while the cooldown still folds the rest;
* opening the destination again for the same build stops the servers of the first one.

Tests that start a server carry the ``server`` marker; test_alerts' guard makes sure the others start none.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pandas as pd
import pytest

from clicklab import settings
from clicklab.alerts import bursts, destination, handler, local, report, reset
from tests.test_alerts import _servers_only_where_marked  # noqa: F401 (the guard, as an autouse fixture here too)

MYSITE = "https://www.mysite.com"
server = pytest.mark.server


def anomalies(*rows: tuple[str, str]) -> pd.DataFrame:
    """anomalydetectionstream rows: (site, UTC time of the window)."""
    return pd.DataFrame({"site": [site for site, _ in rows], "ctrpercent": [500.0] * len(rows),
                         "anomaly_score": [6.48] * len(rows),
                         "rowtime": pd.to_datetime([when for _, when in rows], utc=True)})


def outcomes(dest: destination.Destination, start: int = 0) -> list[tuple[str, str]]:
    """(channel, outcome) of what ``dest`` did, from outcome ``start`` on."""
    return [(o.channel, o.outcome) for o in dest.outcomes[start:]]


def write_labels(build: Path, *sessions: tuple[str, str, str]) -> None:
    """``<build>/live/labels.csv`` as the live generator writes it: (site, start, end) of each session played."""
    path = bursts.labels_path(build)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{site},{start},{end},studio-lab-burst\n" for site, start, end in sessions)
    path.write_text("site,start,end,kind\n" + rows, encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# opening the destination again (notebook 11's server cell run twice)


@server
def test_opening_again_for_the_same_build_stops_the_first_servers(tmp_path):
    build = tmp_path.resolve()
    first = destination.open_destination(build, env={})
    other = destination.open_destination(tmp_path / "other", env={})  # another build: left alone
    second = None
    try:
        before = first.local.ports()
        assert all(local.port_open(port) for port in before.values()) and first.opened == []
        second = destination.open_destination(build, env={}, live=True)
        assert not any(local.port_open(port) for port in before.values())  # the first set no longer answers
        now = second.local.ports()
        assert set(now.values()).isdisjoint(before.values()) and all(local.port_open(p) for p in now.values())
        assert all(local.port_open(p) for p in other.local.ports().values())
        assert second.opened == [f"closed the destination opened before for {build}: stopped its servers (moto on "
                                 f"127.0.0.1:{before['moto']}, smtp on 127.0.0.1:{before['smtp']}); nothing listens "
                                 "there any more"]
        assert destination._OPEN[build] is second
        # the new set works; live, its state is the burst-aware one, on the replay the plain file
        assert isinstance(second.state, bursts.BurstCooldown) and isinstance(first.state, handler.FileState)
        list(destination.send(anomalies((MYSITE, "2023-08-23 13:05:00")), second))
        assert outcomes(second) == [("sns", "sent"), ("smtp", "sent")] and len(second.emails()) == 1
    finally:
        for dest in (second, other):
            if dest is not None:
                dest.close()
    assert build not in destination._OPEN and (tmp_path / "other").resolve() not in destination._OPEN
    first.close()  # closed already: nothing to do, its ports are still checked free
    third = destination.open_destination(build, env={})  # after a close there is nothing to close
    third.close()
    assert third.opened == []


# ---------------------------------------------------------------------------------------------
# fresh alert state for a session


@server
def test_fresh_state_sends_the_class_its_alerts_and_the_session_still_says_duplicate(tmp_path):
    stream = settings.streams_dir(tmp_path) / "anomalydetectionstream" / "part-0"
    stream.parent.mkdir(parents=True)
    stream.write_text("{}\n")
    frame = anomalies((MYSITE, "2023-08-23 13:05:00"))
    with destination.open_destination(tmp_path, env={}) as rehearsal:  # yesterday's rehearsal, or `make run`
        list(destination.send(frame, rehearsal))
        report.write(tmp_path, rehearsal.table(), rehearsal.description)
        assert outcomes(rehearsal) == [("sns", "sent"), ("smtp", "sent")]
    with destination.open_destination(tmp_path, env={}) as kept:  # fresh_state=False: as a Lambda function does
        list(destination.send(frame, kept))
        assert outcomes(kept) == [("sns", "duplicate"), ("smtp", "duplicate")] and kept.emails() == []
    with destination.open_destination(tmp_path, env={}, fresh_state=True) as dest:  # notebook 11 from the top
        state = tmp_path.resolve() / "alerts" / "state.json"
        assert dest.opened[:3] == [
            f"removed {state}: the alert state (1 anomaly alerted, the cooldowns of 1 site(s)): nothing counts as "
            "already sent any more",
            f"removed {report.report_path(tmp_path.resolve())}: notebook 11's report (the alert counts of "
            "`clicklab run`'s summary)",
            f"removed {local.outbox_dir(tmp_path.resolve()) / '*.eml'}: 1 e-mail(s) the local SMTP server received"]
        assert f"kept {settings.streams_dir(tmp_path.resolve())}: the streams notebooks 01-10 wrote (12_cleanup " \
               "removes them)" in dest.opened
        assert dest.opened[-1] == f"kept {settings.DEFAULT_DATASET}: the replay (reset removes nothing outside " \
                                  "the build folder)"
        assert stream.is_file()
        list(destination.send(frame, dest))  # the invoke cell
        assert outcomes(dest) == [("sns", "sent"), ("smtp", "sent")] and len(dest.emails()) == 1
        list(destination.send(frame, dest))  # the invoke cell again, or the "No duplicates" cell: same session
        assert outcomes(dest, 2) == [("sns", "duplicate"), ("smtp", "duplicate")] and len(dest.emails()) == 1


@server
def test_fresh_state_empties_the_local_dynamodb_table_that_moto_keeps_per_process(tmp_path):
    env = {"ALERT_STATE_TABLE": f"alert-state-{uuid.uuid4().hex[:8]}"}
    frame = anomalies((MYSITE, "2023-08-23 13:05:00"))
    with destination.open_destination(tmp_path, env=env) as first:
        list(destination.send(frame, first))
    with destination.open_destination(tmp_path, env=env) as again:  # a new moto server, the same process's data
        list(destination.send(frame, again))
        assert outcomes(again) == [("sns", "duplicate"), ("smtp", "duplicate")]
    with destination.open_destination(tmp_path, env=env, fresh_state=True) as fresh:
        assert f"emptied DynamoDB table {env['ALERT_STATE_TABLE']} in moto: the alert state starts fresh" \
               in fresh.opened
        list(destination.send(frame, fresh))
        assert outcomes(fresh) == [("sns", "sent"), ("smtp", "sent")]


def test_reset_removes_state_report_and_emails_and_says_what_it_keeps(tmp_path):
    alerts = tmp_path / "alerts"
    alerts.mkdir()
    (alerts / "state.json").write_text(json.dumps({"version": 1, "alerts": {
        f"sns|{MYSITE}|2023-08-23T13:05:00.000Z": {"status": "sent"},
        f"sns|{MYSITE}|2023-08-23T13:05:10.000Z": {"status": "suppressed"}}, "sites": {f"sns|{MYSITE}": {}}}))
    (alerts / "state.json.lock").touch()
    (alerts / "state.jsonab12.tmp").write_text("{")  # a write cut short
    (alerts / "report.json").write_text("{}")
    outbox = local.outbox_dir(tmp_path)
    outbox.mkdir()
    for name in ("a.eml", "b.eml"):
        (outbox / name).write_text("Subject: Anomaly Detected\n\n")
    for folder in ("streams", "executed", "live", "mystery"):
        (tmp_path / folder).mkdir()
    done = reset.reset(tmp_path, dataset=tmp_path / "replay.jsonl.gz")
    assert done.lines() == [
        f"removed {alerts / 'state.json'}: the alert state (1 anomaly alerted, the cooldowns of 1 site(s)): nothing "
        "counts as already sent any more",
        f"removed {alerts / 'state.jsonab12.tmp'}: an unfinished write of the alert state",
        f"removed {alerts / 'report.json'}: notebook 11's report (the alert counts of `clicklab run`'s summary)",
        f"removed {outbox / '*.eml'}: 2 e-mail(s) the local SMTP server received",
        f"kept {alerts / 'state.json.lock'}: the alert state's lock file (empty)",
        f"kept {tmp_path / 'executed'}: the executed notebooks of `clicklab run`",
        f"kept {tmp_path / 'live'}: the live generator's labels (the bursts you sent) and status",
        f"kept {tmp_path / 'mystery'}: not the alert step's",
        f"kept {tmp_path / 'streams'}: the streams notebooks 01-10 wrote (12_cleanup removes them)",
        f"kept {tmp_path / 'replay.jsonl.gz'}: the replay (reset removes nothing outside the build folder)"]
    assert sorted(p.name for p in alerts.iterdir()) == ["state.json.lock"] and list(outbox.iterdir()) == []
    again = reset.reset(tmp_path, dataset=tmp_path / "replay.jsonl.gz")
    assert again.removed == [] and again.lines()[0] == (f"nothing to remove: no alert state, alert report or "
                                                        f"received e-mail in {tmp_path}")


def test_reset_names_a_dynamodb_table_it_does_not_touch(tmp_path):
    lines = reset.reset(tmp_path, state_table="my-alert-state").lines()
    assert lines[1].startswith("kept DynamoDB table my-alert-state (ALERT_STATE_TABLE): a table on AWS is never "
                               "touched here")


# ---------------------------------------------------------------------------------------------
# live: a burst sent again gets its e-mail; the cooldown still folds the rest


class Kept:
    """A channel that keeps what it is given (the cooldown's logic, no server)."""

    name = "kept"

    def __init__(self) -> None:
        self.sent: list[handler.Alert] = []

    def send(self, alert: handler.Alert) -> str:
        self.sent.append(alert)
        return f"m-{len(self.sent)}"


#: An ordinary anomaly, another 2 min later, a burst at 12:03:05 (3 windows), the burst sent again at
#: 12:05:00 (2 windows) and an anomaly 2 min after it: all within 10 minutes of the first.
TIMES = ["12:00:00", "12:02:00", "12:03:00", "12:03:10", "12:03:20", "12:05:00", "12:05:10", "12:07:00"]


def _run(tmp_path: Path, live: bool) -> list[tuple[str, str, int]]:
    events = destination.events(anomalies(*[(MYSITE, f"2026-12-01 {t}") for t in TIMES]))
    cfg = handler.Config(state_file=str(tmp_path / f"state-{live}.json"), cooldown_s=600, window_s=10)
    state = handler.FileState(cfg.state_file)
    if live:
        state = bursts.BurstCooldown(state, tmp_path, cfg.cooldown_s, cfg.window_s)
    _, done = handler.process(events[0], cfg, [Kept()], state)
    return [(o.window_start[11:19], o.outcome, o.folded) for o in done]


def test_live_each_burst_opens_a_new_cooldown_and_the_replay_keeps_ten_minutes(tmp_path):
    write_labels(tmp_path, (MYSITE, "2026-12-01T12:03:05Z", "2026-12-01T12:03:35Z"),
                 (MYSITE, "2026-12-01T12:05:00Z", "2026-12-01T12:05:20Z"),
                 ("https://shop.example.com", "2026-12-01T12:01:00Z", "2026-12-01T12:01:30Z"))  # another site
    assert _run(tmp_path, live=True) == [
        ("12:00:00", "sent", 0), ("12:02:00", "suppressed", 0),  # no session since 12:00: the cooldown holds
        ("12:03:00", "sent", 1),  # the burst's first window (it began 5 s before the session): its e-mail
        ("12:03:10", "suppressed", 0), ("12:03:20", "suppressed", 0),  # the rest of the burst: folded
        ("12:05:00", "sent", 2),  # the burst sent again: its e-mail too, with the two folded windows
        ("12:05:10", "suppressed", 0), ("12:07:00", "suppressed", 0)]
    assert _run(tmp_path, live=False) == [("12:00:00", "sent", 0)] + [(t, "suppressed", 0) for t in TIMES[1:]]


def test_live_a_sql_application_takes_every_session_played(tmp_path):
    write_labels(tmp_path, (MYSITE, "2026-12-01T12:03:05Z", "2026-12-01T12:03:35Z"))
    state = bursts.BurstCooldown(handler.FileState(str(tmp_path / "state.json")), tmp_path, 600, 10)
    starts = state.session_starts("SQL application clickstream-sql-lab")
    assert [t.strftime("%H:%M:%S") for t in starts] == ["12:03:05"]
    assert state.session_starts("https://shop.example.com") == []


@pytest.mark.parametrize("sessions", [(), ((MYSITE, "2026-12-01T12:20:00Z", "2026-12-01T12:20:30Z"),),
                                      ((MYSITE, "2026-12-01T11:50:00Z", "2026-12-01T11:50:30Z"),)],
                         ids=["no session", "a session after them", "a session before them"])
def test_live_without_a_session_among_the_anomalies_is_the_plain_cooldown(tmp_path, sessions):
    if sessions:
        write_labels(tmp_path, *sessions)
    assert _run(tmp_path, live=True) == [("12:00:00", "sent", 0)] + [(t, "suppressed", 0) for t in TIMES[1:]]


@server
@pytest.mark.parametrize("live", [True, False], ids=["live", "replay"])
def test_live_the_burst_sent_again_gets_its_email_while_following_the_stream(tmp_path, live):
    """Notebook 11's follow cell, run again after the burst was sent again: live it ends with the burst's e-mail."""
    from datetime import UTC, datetime, timedelta

    from clicklab import streams
    from clicklab.live.sessions import ScheduledSession
    from tests.test_live import write_rows

    t0 = datetime(2026, 12, 1, 18, 0, 0, tzinfo=UTC)
    folder = streams.stream_path(tmp_path, "anomalydetectionstream")

    def row(second: int) -> dict[str, object]:
        when = (t0 + timedelta(seconds=second)).strftime("%Y-%m-%d %H:%M:%S")
        return {"site": MYSITE, "rowtime": when, "ctrpercent": 500.0, "anomaly_score": 4.2}

    def session(second: int) -> ScheduledSession:
        start = t0 + timedelta(seconds=second)
        return ScheduledSession("", MYSITE, "studio-lab-burst", start, start + timedelta(seconds=30))

    first, again = session(65), session(185)  # the burst, and the burst sent again two minutes later
    write_labels(tmp_path, (MYSITE, first.start.isoformat(), first.end.isoformat()))
    write_rows(folder, "part-0", [row(0), row(60), row(70)])  # an ordinary anomaly, then the burst's windows
    with destination.open_destination(tmp_path, env={}, cooldown_s=600, live=live) as dest:
        followed = destination.follow(dest, tmp_path, timeout_s=30 if live else 2,
                                      until=destination.email_for(dest, first))
        assert followed.stopped == ("the awaited alert went out" if live else "time limit of 2 s")
        write_labels(tmp_path, (MYSITE, first.start.isoformat(), first.end.isoformat()),
                     (MYSITE, again.start.isoformat(), again.end.isoformat()))
        write_rows(folder, "part-1", [row(180), row(190)])
        followed = destination.follow(dest, tmp_path, timeout_s=30 if live else 2,
                                      until=destination.email_for(dest, again))
        assert followed.stopped == ("the awaited alert went out" if live else "time limit of 2 s")
        sent = dest.table().query("channel == 'smtp' and outcome == 'sent'")["window_start"].tolist()
        assert sent == (["2026-12-01T18:00:00.000Z", "2026-12-01T18:01:00.000Z", "2026-12-01T18:03:00.000Z"] if live
                        else ["2026-12-01T18:00:00.000Z"])
        assert len(dest.emails()) == len(sent)
