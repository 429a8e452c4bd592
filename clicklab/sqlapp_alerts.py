"""The SQL application's alert step: ``DESTINATION_SQL_STREAM`` to the alert Lambda, as its destination (``22``).

A Kinesis Data Analytics SQL application hands its output stream's rows to a Lambda destination in the same
contract as Studio's (:mod:`clicklab.alerts.destination`): ``{"invocationId", "applicationArn", "records":
[{"recordId", "lambdaDeliveryRecordMetadata", "data": <base64 JSON row>}]}``. The rows are the application's,
``{"ROWTIME", "CTRPERCENT", "ANOMALY_SCORE"}``, without a site: the handler knows them
(:func:`clicklab.alerts.handler.is_sql_row`) and names the application of ``applicationArn`` in the alert
instead. :func:`events` builds the events, :func:`follow` invokes the handler on the rows as the stream grows
(live), :func:`emails_for` finds the e-mails the local SMTP server stored in ``build/outbox/``, and
:func:`render` shows them with why the window is unusual (:mod:`clicklab.sqlapp_explain`).
"""

from __future__ import annotations

import base64
import email
import email.policy
import html
import json
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from clicklab import settings, streams
from clicklab.alerts import destination, feed, handler, report

#: The stream whose rows the destination receives, and its columns (from :mod:`clicklab.streams`).
STREAM = "DESTINATION_SQL_STREAM"
FIELDS = tuple(c.name for c in streams.SQL_APP_STREAMS[STREAM].columns)
#: The SQL application as the destination's events name it (the handler calls its rows' alerts after it).
APPLICATION_NAME = "clickstream-sql-lab"
APPLICATION_ARN = f"{destination.APPLICATION_ARN.rpartition('/')[0]}/{APPLICATION_NAME}"
#: The e-mail header that names the anomaly an e-mail is about (the handler's :meth:`Anomaly.key`).
ANOMALY_HEADER = "X-Clicklab-Anomaly"



#: How the application's rows reach the Lambda (:mod:`clicklab.alerts.feed`, the same code as Studio's stream).
SQL_APP = feed.Feed(STREAM, FIELDS, "ROWTIME", lambda build: streams.sql_app_path(build, STREAM))
rowtime_text = feed.timestamp_text  # a ROWTIME as Flink's JSON writes it: 2023-08-23 12:06:10.000 (UTC)
row_json = SQL_APP.row_json


def events(rows: pd.DataFrame, batch_size: int = 100, application_arn: str = APPLICATION_ARN) -> list[dict[str, Any]]:
    """The Lambda-destination events for ``DESTINATION_SQL_STREAM``'s rows (:func:`clicklab.alerts.feed.events`)."""
    return feed.events(rows, batch_size, application_arn, SQL_APP)


def decoded(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows an event carries, decoded (what the Lambda function reads)."""
    return [json.loads(base64.b64decode(r["data"])) for r in event["records"]]


def source(application_arn: str = APPLICATION_ARN) -> str:
    """What the handler calls the rows of this application in place of a site (``SQL application NAME``)."""
    probe = {"CTRPERCENT": 0.0, "ANOMALY_SCORE": 0.0}
    return handler.parse_record({"data": base64.b64encode(json.dumps(probe).encode()).decode()}, application_arn).site


def alert_key(rowtime: Any, application_arn: str = APPLICATION_ARN) -> str:
    """The key the handler gives the anomaly of the row at ``rowtime`` (its e-mail's ``X-Clicklab-Anomaly``)."""
    when = handler.parse_time(rowtime_text(rowtime), "ROWTIME")
    return handler.Anomaly(source(application_arn), when, 0.0, 0.0, site_known=False, time_kind=handler.ROWTIME).key


def email_key(path: Path) -> str | None:
    """The anomaly an ``.eml`` file is about (its ``X-Clicklab-Anomaly`` header, unfolded), or ``None``."""
    with open(path, "rb") as fh:
        header = email.message_from_binary_file(fh, policy=email.policy.default)[ANOMALY_HEADER]
    return None if header is None else " ".join(str(header).split())


def emails_for(outbox: Path | None, rowtimes: Iterable[Any], application_arn: str = APPLICATION_ARN) -> list[Path]:
    """The e-mails in ``outbox`` (``build/outbox/``, the local SMTP server's) about the rows at ``rowtimes``, in order
    of their windows; also those sent in an earlier run (the handler never sends a window twice)."""
    if outbox is None or not Path(outbox).is_dir():
        return []
    keys = {alert_key(t, application_arn): i for i, t in enumerate(sorted(pd.to_datetime(list(rowtimes), utc=True)))}
    found = []
    for path in Path(outbox).glob("*.eml"):
        key = email_key(path)
        if key in keys:
            found.append((keys[key], path.name, path))
    return [path for *_, path in sorted(found)]


def session_windows(rows: pd.DataFrame, session: Any, window_s: int = settings.WINDOW_SECONDS) -> pd.DataFrame:
    """The rows whose window (it ends at ``ROWTIME``) overlaps the session's ``[start, end)``."""
    if session is None or not len(rows):
        return rows.iloc[0:0]
    ends = pd.to_datetime(rows["ROWTIME"], utc=True)
    start, end = pd.Timestamp(session.start), pd.Timestamp(session.end)
    return rows[(ends > start) & (ends - pd.Timedelta(seconds=window_s) < end)]


def email_for(dest: destination.Destination, session: Any) -> Callable[[], bool]:
    """A condition for :func:`follow`: an alert about a window of ``session`` (``start``, ``end``) was sent and,
    with the local SMTP server, its e-mail is in the outbox."""

    mine = source()

    def arrived() -> bool:
        if session is None:
            return False
        lo, hi = session.start, session.end + timedelta(seconds=settings.WINDOW_SECONDS)
        sent = [t for o in dest.outcomes if o.outcome == handler.SENT and o.site == mine and o.window_start
                and lo < (t := handler.parse_time(o.window_start)) < hi]
        return bool(sent) and (dest.outbox is None or bool(emails_for(dest.outbox, sent)))

    return arrived


def follow(dest: destination.Destination, build: Path, batch_size: int = 100, timeout_s: float = 150.0,
           until: Callable[[], bool] | None = None, poll_s: float = 0.25) -> feed.Followed:
    """Read ``DESTINATION_SQL_STREAM`` as it grows and invoke the handler on each new batch (live), as the
    application's Lambda destination does (:func:`clicklab.alerts.feed.follow`, as for Studio's stream)."""
    return feed.follow(dest, build, batch_size, timeout_s, until, poll_s, SQL_APP, APPLICATION_ARN)


def render(outbox: Path | None, rows: pd.DataFrame, why: dict[pd.Timestamp, str] | None = None) -> str:
    """The e-mails about ``rows`` (``DESTINATION_SQL_STREAM``'s) as HTML, each followed by why its window is unusual
    (``why``: words per ``ROWTIME``, :func:`clicklab.sqlapp_explain.why`)."""
    if outbox is None:
        return "<p>no local outbox: the destination is configured from the environment (see README, Alerts)</p>"
    found = emails_for(outbox, rows["ROWTIME"]) if len(rows) else []
    if not found:
        return f"<p>no e-mail about these {len(rows)} row(s) in {html.escape(str(outbox))}</p>"
    by_key = {alert_key(t): pd.Timestamp(t) for t in pd.to_datetime(rows["ROWTIME"], utc=True)}
    parts = []
    for path in found:
        words = (why or {}).get(by_key.get(email_key(path) or ""))
        parts.append(report.render_email(path))
        if words:
            parts.append(f"<p><b>Why</b> (RANDOM_CUT_FOREST_WITH_EXPLANATION on the window's counts): "
                         f"{html.escape(words)}</p>")
    return "".join(parts)
