""""Check your work" for the SQL application: the last cell of ``20``, ``21`` and ``22`` (as :mod:`clicklab.checks`
for the Studio lab's notebooks, whose :class:`~clicklab.checks.Tick` and :class:`~clicklab.checks.Work` these return).

``print(sqlapp_checks.pumps(app))`` and ``print(sqlapp_checks.output_pump(app, dest))`` print a tick (✓) or a
cross (✗) per check, in plain words; a cross says what was expected and what was seen. A check never raises (one
that cannot run is a cross with the reason); the :class:`~clicklab.checks.Work` it returns is what a test asserts on.

On a replay the checks compare with the replay file, counted independently with pandas, and its labels: the pumps'
windows and CTRs exactly, and ``DESTINATION_SQL_STREAM`` holding exactly the windows of the extra clicks. Live they
wait, up to ``wait_s`` seconds, for what the running jobs should show: CTR rows since ``CTRPUMP`` started; the
extra clicks' windows scored, at least one flagged and no other window; the alert's e-mail in ``build/outbox/``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from clicklab import results, settings, sqlapp, sqlapp_alerts, sqlapp_explain, sqlapp_live
from clicklab.alerts import handler
from clicklab.checks import Tick, Work, tables_tick

if TYPE_CHECKING:
    from clicklab.alerts.destination import Destination
    from clicklab.sqlapp import SqlApp

W = pd.Timedelta(seconds=settings.WINDOW_SECONDS)


def _work(notebook: str, checks: Callable[[], list[Tick]]) -> Work:
    try:
        ticks = checks()
    except Exception as exc:  # a check that cannot run is a cross with its reason, never a traceback
        ticks = [Tick(False, f"the check could not run: {type(exc).__name__}: {exc}")]
    return Work(notebook, ticks)


def _hms(times: Any) -> str:
    return ", ".join(pd.Timestamp(t).strftime("%H:%M:%S") for t in times) or "none"


def _wait(condition: Callable[[], Any], wait_s: float, poll_s: float = 1.0) -> Any:
    """``condition()`` once it is true, or its last value when ``wait_s`` has passed."""
    deadline = time.monotonic() + wait_s
    while True:
        got = condition()
        if got or time.monotonic() >= deadline:
            return got
        time.sleep(poll_s)


# ---------------------------------------------------------------------------------------------
# 20: the application's streams


def tables(app: SqlApp, wait_s: float = 30.0) -> Work:
    """``20``: every stream of the application is a table of this session, and its source has the SQL lab's traffic
    (a replay: the file's events; live: the generator's file of the SQL lab's KDG sessions)."""
    return _work("20_sql_app_overview", lambda: _tables(app, wait_s))


def _tables(app: SqlApp, wait_s: float) -> list[Tick]:
    from clicklab import streams

    tables = tables_tick(app.t_env, streams.SQL_APP_STREAM_NAMES, create="the CREATE cells above")
    return [tables] if not tables.ok else [tables, _source(app, wait_s)]


def _source(app: SqlApp, wait_s: float) -> Tick:
    """The source has lines to read: the replay file, or live the generator's committed files of the SQL lab."""
    from clicklab import streams
    from clicklab.live.folders import committed_files

    name = streams.SQL_APP_SOURCE
    if app.live:
        where = sqlapp_live.folder(app.build, name)
        files = _wait(lambda: [p for p in committed_files(where) if p.stat().st_size], wait_s)
        return Tick(bool(files), f"{name} has the live SQL lab traffic ({len(files)} files so far)" if files else
                    f"{name} has no traffic under {where} after {wait_s:.0f} s: is the live generator running? "
                    "(this notebook's first cell starts it)")
    path = app.dataset
    if not path.is_file():
        return Tick(False, f"{name} reads {path}, which is not there")
    with open(path, encoding="utf-8") as fh:
        events = sum(1 for line in fh if line.strip())
    return Tick(events > 0, f"{name} reads {events:,} events of the SQL lab's replay ({path.name})")


# ---------------------------------------------------------------------------------------------
# 21: CLICKPUMP, IMPRESSIONPUMP, CTRPUMP


def pumps(app: SqlApp, wait_s: float = 90.0) -> Work:
    """``21``: the pumps' windows and CTRs (replay: exactly the replay file's; live: rows arrive), and every CTR
    row is its window's clicks / impressions x 100."""
    return _work("21_pumps", lambda: _pumps(app, wait_s))


def _pumps(app: SqlApp, wait_s: float) -> list[Tick]:
    ticks: list[Tick] = []
    if app.live:
        since = sqlapp_live.job_started(app.build, "CTRSTREAM")
        if since is None:
            return [Tick(False, "CTRSTREAM: expected the job of CTRPUMP running on the cluster, seen none "
                                "(run the INSERT INTO CTRSTREAM cell)")]
        got = _wait(lambda: len(sqlapp_live.rows_since(app.build, "CTRSTREAM", since)), wait_s)
        ticks.append(Tick(got > 0, f"CTRSTREAM receives rows live: {got} window(s) since CTRPUMP started" if got else
                          f"CTRSTREAM: expected a window's row within {wait_s:g} s of CTRPUMP's start, seen none "
                          "(is the live generator running? `clicklab generate --live --status`)"))
    else:
        counts = results.reference_counts(results.read_events(app.dataset)).groupby("time").sum(numeric_only=True)
        counts.index = pd.to_datetime(counts.index, unit="s", utc=True) + W  # a window's row carries its end
        for name, column, source in (("CLICKSTREAM", "CLICKCOUNT", "clickcount"),
                                     ("IMPRESSIONSTREAM", "IMPRESSIONCOUNT", "impressioncount")):
            want = counts[source][counts[source] > 0].astype(float)
            got = app.stream(name).set_index("ROWTIME")[column]
            same = len(got) == len(want) and got.index.equals(want.index) and (got == want).all()
            ticks.append(Tick(same, f"{name} holds the {len(want)} windows of the replay file, each with its count" if
                              same else f"{name}: expected {len(want)} windows (the replay file's, counted with "
                              f"pandas), seen {len(got)} ({_first_difference(got, want)})"))
        both = counts[(counts["clickcount"] > 0) & (counts["impressioncount"] > 0)]
        want = results.ctr_percent(both["clickcount"], both["impressioncount"])
        got = app.stream("CTRSTREAM").set_index("ROWTIME")["CTR"]
        same = len(got) == len(want) and got.index.equals(want.index) and ((got - want).abs() < 1e-9).all()
        ticks.append(Tick(same, f"CTRSTREAM holds the CTR of all {len(want)} windows with clicks and impressions "
                                f"({got.min():g} to {got.max():g} %)" if same else
                          f"CTRSTREAM: expected the CTR of {len(want)} windows, seen {len(got)} "
                          f"({_first_difference(got, want)})"))
    ticks.append(_ctr_is_its_counts(app))
    return ticks


def _first_difference(got: pd.Series, want: pd.Series) -> str:
    for t in want.index.union(got.index):
        g, w = got.get(t), want.get(t)
        if g is None or w is None or abs(float(g) - float(w)) > 1e-9:
            return f"first at {pd.Timestamp(t):%H:%M:%S}: expected {w}, seen {g}"
    return "same windows, in another order"


def _ctr_is_its_counts(app: SqlApp) -> Tick:
    counts = sqlapp_explain.counts(app.build).set_index("ROWTIME")
    ctr = app.stream("CTRSTREAM").set_index("ROWTIME")["CTR"]
    ctr = ctr[ctr.index.isin(counts.index)]
    want = counts.loc[ctr.index, "CLICKCOUNT"] / counts.loc[ctr.index, "IMPRESSIONCOUNT"] * 100
    wrong = ctr[(ctr - want).abs() > 1e-9]
    return Tick(len(ctr) > 0 and wrong.empty,
                f"every CTR row is its window's CLICKCOUNT / IMPRESSIONCOUNT x 100 ({len(ctr)} rows)" if len(ctr) and
                wrong.empty else f"CTR = CLICKCOUNT / IMPRESSIONCOUNT x 100: expected for every row of CTRSTREAM, "
                                 f"seen {len(wrong)} row(s) that differ ({_hms(wrong.index[:3])}) of {len(ctr)}")


# ---------------------------------------------------------------------------------------------
# 22: OUTPUT_PUMP and the alert


def output_pump(app: SqlApp, dest: Destination | None = None, wait_s: float = 120.0) -> Work:
    """``22``: ``DESTINATION_SQL_STREAM`` holds the extra clicks' windows (replay: exactly those; live: at least one
    of the session's, no other), why (clicks HIGH), and with ``dest`` the alert's e-mail in the outbox."""
    return _work("22_output_pump", lambda: _output_pump(app, dest, wait_s))


def _output_pump(app: SqlApp, dest: Destination | None, wait_s: float) -> list[Tick]:
    if app.live:
        ticks, flagged = _flagged_live(app, wait_s)
    else:
        ticks, flagged = _flagged_replay(app)
    if len(flagged):
        ticks.append(_why(app, flagged))
        if dest is not None:
            ticks.append(_email(dest, flagged))
    return ticks


def _rows(rows: pd.DataFrame) -> str:
    return "; ".join(f"{r.ROWTIME:%H:%M:%S} CTR {r.CTRPERCENT:g} %, score {r.ANOMALY_SCORE:.2f}"
                     for r in rows.itertuples()) or "no row"


def _flagged_replay(app: SqlApp) -> tuple[list[Tick], pd.DataFrame]:
    labels = sqlapp.window_labels(app.build)
    ctr = app.stream("CTRSTREAM")
    expected = sqlapp.flagged_windows(ctr.rename(columns={"CTR": "CTRPERCENT"}), labels)
    expected = list(expected.loc[expected["labelled"], "ROWTIME"])
    rows = app.stream("DESTINATION_SQL_STREAM")
    same = bool(expected) and list(rows["ROWTIME"]) == expected
    spans = ", ".join(f"{r.start:%H:%M:%S}-{r.end:%H:%M:%S}" for r in labels.itertuples()) or "none"
    if not expected:
        return [Tick(False, f"DESTINATION_SQL_STREAM: expected the windows of the extra clicks ({spans}), but "
                            f"CTRSTREAM holds none of them (run 21_pumps first); seen {len(rows)} row(s)")], rows
    tick = Tick(same, f"DESTINATION_SQL_STREAM holds exactly the {len(expected)} windows of the extra clicks "
                      f"({spans}): {_rows(rows)}" if same else
                f"DESTINATION_SQL_STREAM: expected exactly the windows of the extra clicks ({spans}) ending "
                f"{_hms(expected)}, seen {len(rows)} row(s): {_rows(rows)}")
    return [tick], rows


def _flagged_live(app: SqlApp, wait_s: float) -> tuple[list[Tick], pd.DataFrame]:
    session = sqlapp_live.last_extra_clicks(app.build)
    if session is None:
        return [Tick(False, f"the extra clicks: expected a {sqlapp_live.extra_clicks_kind()} session sent during "
                            "this live run, seen none (run the cell that sends them, or `clicklab send --session "
                            f"{sqlapp_live.extra_clicks_kind()}`)")], pd.DataFrame()
    last = pd.Timestamp(session.end) + 2 * W  # the window after the session's last one has been scored by then

    def scored() -> bool:
        ctr = app.stream("CTRSTREAM")
        return bool(len(ctr)) and ctr["ROWTIME"].max() >= last

    done = _wait(scored, wait_s)
    rows = app.stream("DESTINATION_SQL_STREAM")
    since = sqlapp_live.live_since(app.build)
    rows = rows[rows["ROWTIME"] >= pd.Timestamp(since)] if since is not None and len(rows) else rows
    mine = sqlapp_alerts.session_windows(rows, session)
    others = rows.drop(mine.index)
    windows = math.ceil((pd.Timestamp(session.end) - pd.Timestamp(session.start)) / W)
    what = f"the extra clicks ({session.start:%H:%M:%S}-{session.end:%H:%M:%S})"
    ticks = [Tick(len(mine) > 0, f"{what} are flagged: {len(mine)} of their {windows} windows, {_rows(mine)}"
                  if len(mine) else f"{what}: expected one of their windows in DESTINATION_SQL_STREAM, seen none"
                  + ("" if done else f" (their windows were not all scored within {wait_s:g} s)")),
             Tick(others.empty, "no other window is flagged" if others.empty else
                  f"expected no other window in DESTINATION_SQL_STREAM, seen {len(others)}: {_rows(others)}")]
    return ticks, mine


def _why(app: SqlApp, flagged: pd.DataFrame) -> Tick:
    words = sqlapp_explain.why(app.build, flagged["ROWTIME"])
    first = words.get(pd.Timestamp(flagged["ROWTIME"].iloc[0]))
    ok = bool(first) and first.startswith("CLICKCOUNT HIGH")
    return Tick(ok, f"why (RANDOM_CUT_FOREST_WITH_EXPLANATION on the window's counts): {first}: more clicks, not "
                    "fewer impressions" if ok else
                f"why: expected CLICKCOUNT HIGH first (the extra clicks), seen {first or 'no explanation'}")


def _email(dest: Destination, flagged: pd.DataFrame) -> Tick:
    keys = {sqlapp_alerts.alert_key(t) for t in flagged["ROWTIME"]}
    mine = sqlapp_alerts.source()
    outcomes = [o for o in dest.outcomes if o.site == mine and o.window_start
                and sqlapp_alerts.alert_key(handler.parse_time(o.window_start)) in keys]
    said = ", ".join(f"{o.channel} {o.outcome}" for o in outcomes) or "no invocation for them"
    if dest.outbox is None:
        sent = any(o.outcome in (handler.SENT, handler.DUPLICATE) for o in outcomes)
        return Tick(sent, f"the alert went out ({dest.description}): {said}" if sent else
                    f"the alert: expected it sent, seen {said}")
    emails = sqlapp_alerts.emails_for(dest.outbox, flagged["ROWTIME"])
    if emails:
        when = "sent now" if any(o.outcome == handler.SENT for o in outcomes) else "sent in an earlier run"
        return Tick(True, f"the alert's e-mail is in {dest.outbox}: {', '.join(p.name for p in emails)} ({when})")
    hint = (" (sent in an earlier run whose e-mail is gone: `clicklab reset` starts the alerts afresh)"
            if any(o.outcome == handler.DUPLICATE for o in outcomes) else "")
    return Tick(False, f"the alert's e-mail: expected one about {_hms(flagged['ROWTIME'])} in {dest.outbox}, seen "
                       f"none; the handler said: {said}{hint}")


# ---------------------------------------------------------------------------------------------
# 23: RANDOM_CUT_FOREST_WITH_EXPLANATION


def explanation(unusual: pd.DataFrame) -> Work:
    """The windows over the threshold (23's ``unusual``, with its ``why``) are there and are the extra clicks:
    each explained first by ``CLICKCOUNT HIGH``."""

    def checks() -> list[Tick]:
        if unusual.empty:
            return [Tick(False, "no window scored over the threshold: is the extra-clicks window in the streams?")]
        clicks_first = unusual["why"].astype(str).str.startswith("CLICKCOUNT HIGH")
        return [Tick(True, f"{len(unusual)} window(s) over the threshold: {_hms(unusual['ROWTIME'])}"),
                Tick(bool(clicks_first.all()), "each is explained first by CLICKCOUNT HIGH (the extra clicks)"
                     if clicks_first.all() else
                     f"{int((~clicks_first).sum())} not explained by CLICKCOUNT HIGH first: "
                     + "; ".join(unusual.loc[~clicks_first, "why"].astype(str).head(2)))]

    return _work("23_anomaly_explanation", checks)
