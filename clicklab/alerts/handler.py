"""The lab's alert Lambda: anomalies from Kinesis Data Analytics in, e-mail and SMS out, without floods.

This one file is the Lambda function. It imports only the standard library and boto3, so
``clicklab alerts package`` ships it alone as ``lambda_function.py`` and Lambda calls
``lambda_handler(event, context)``. The rest of clicklab imports it; it imports nothing of clicklab.

Three event shapes are accepted, told apart by their top-level key:

1. Kinesis Data Analytics' Lambda-destination contract (``records``, lower case)::

       {"invocationId": "...", "applicationArn": "...",
        "records": [{"recordId": "...", "lambdaDeliveryRecordMetadata": {"retryHint": 0},
                     "data": "<base64 of one JSON row of anomalydetectionstream>"}]}

   answered with one entry per record, same ids::

       {"records": [{"recordId": "...", "result": "Ok" | "DeliveryFailed"}]}

2. A Kinesis event source mapping on the stream Studio's ``anomalydetectionstream`` sink writes
   (``Records``, upper case; ``Records[].kinesis.data`` is the base64 of one JSON row), answered with a
   partial batch response (the mapping needs ``FunctionResponseTypes: [ReportBatchItemFailures]``)::

       {"batchItemFailures": [{"itemIdentifier": "<sequenceNumber>"}, ...]}

   listing the records whose delivery failed, so that Lambda retries from there; what went out already
   is a ``duplicate`` on the retry and is not sent again. A malformed record is logged and left out of
   the list: retrying it cannot help, and reporting it would hold the shard back for good.

3. The rows of the SQL application (the SQL lab's ``DESTINATION_SQL_STREAM``), in either envelope: upper-case
   columns ``CTRPERCENT``, ``ANOMALY_SCORE`` and possibly ``ROWTIME``, and no site. The alert then says the
   site is unknown and names where the row came from (the application of ``applicationArn``, or the
   stream of ``eventSourceARN``), which also keys the cooldown. Without ``ROWTIME`` the time shown is when
   the row arrived, and the record id (or sequence number) is what makes a retry a duplicate.

Configuration comes from environment variables, as on Lambda:

* ``ALERT_TOPIC_ARN``: the SNS topic (its e-mail and SMS subscriptions reach people). boto3 reads
  ``AWS_ENDPOINT_URL`` (any AWS-compatible endpoint) and the region and credentials as usual.
* ``ALERT_SMTP_HOST``, ``ALERT_SMTP_PORT`` (25), ``ALERT_SMTP_FROM``, ``ALERT_SMTP_TO`` (comma-separated),
  ``ALERT_SMTP_STARTTLS`` (``1``), ``ALERT_SMTP_USER``, ``ALERT_SMTP_PASSWORD``: e-mail sent directly over
  SMTP, a second channel for users without AWS.
* ``ALERT_STATE_TABLE``: a DynamoDB table (partition key ``pk``, string) that keeps what was sent and each
  site's cooldown, with conditional writes; without it, ``ALERT_STATE_FILE`` (a JSON file, default
  ``build/alerts/state.json``). Both survive restarts.
* ``ALERT_COOLDOWN_SECONDS``: at most one alert per site and channel per this many seconds of event
  time (default 600); the anomalies folded into the cooldown are counted in the next alert.
* ``ALERT_WINDOW_SECONDS``: the window length (10, as in the lab's SQL), for the window shown.
* ``ALERT_MAX_ATTEMPTS`` (4) and ``ALERT_BACKOFF_SECONDS`` (0.2): throttling, 5xx and connection errors
  are retried with exponential backoff and jitter; after the last attempt the record is DeliveryFailed.

Outcomes per record and channel: ``sent``, ``suppressed`` (cooldown), ``duplicate`` (this site and
window was already handled: a retried invocation or a second run), ``failed`` and ``malformed``.
A record is ``Ok`` unless a channel failed or the record could not be read.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.message
import email.utils
import json
import logging
import math
import os
import random
import smtplib
import socket
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import boto3
import botocore.config
import botocore.exceptions

log = logging.getLogger("clicklab.alerts")
log.setLevel(logging.INFO)

#: The lab's e-mail subject and sentence.
SUBJECT = "Anomaly Detected"
LAB_SENTENCE = "Anomaly detected with a click through rate of {ctr}% and an anomaly score of {score}"
#: The columns of anomalydetectionstream a record must carry.
FIELDS = ("site", "rowtime", "ctrpercent", "anomaly_score")
#: What a row of anomalydetectionstream may add (issue 23): the site's usual CTR and range before the window, and
#: how unusual the score is (0-1). NULL or absent (Studio's fixed threshold): the alert gives the lab's sentence alone.
USUAL_FIELDS = ("expected", "usual_low", "usual_high", "grade")
#: The columns of the SQL application's DESTINATION_SQL_STREAM (the SQL lab); ``ROWTIME`` is optional.
SQL_FIELDS = ("CTRPERCENT", "ANOMALY_SCORE")
#: A SQL application row may carry why (RANDOM_CUT_FOREST_WITH_EXPLANATION's column): the alert says it in words.
SQL_EXPLANATION = "ANOMALY_EXPLANATION"
SQL_ROWTIME = "ROWTIME"
#: The two envelopes: Kinesis Data Analytics' Lambda destination, and a Kinesis event source mapping.
DESTINATION_EVENT, KINESIS_EVENT = "destination", "kinesis"
#: What an anomaly's time is: a window start (Studio's rows), a SQL row's ROWTIME, or its arrival.
WINDOW, ROWTIME, ARRIVAL = "window", "rowtime", "arrival"
SMS_LIMIT = 160
DEFAULT_COOLDOWN_SECONDS = 600
DEFAULT_WINDOW_SECONDS = 10
DEFAULT_STATE_FILE = "build/alerts/state.json"
OK, FAILED = "Ok", "DeliveryFailed"
SENT, SUPPRESSED, DUPLICATE, FAILURE, MALFORMED = "sent", "suppressed", "duplicate", "failed", "malformed"

#: Error codes that mean "try again later".
RETRYABLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "ProvisionedThroughputExceededException", "ServiceUnavailable",
    "InternalError", "InternalFailure", "InternalServerError", "KMSThrottling",
})


class BadRecord(ValueError):
    """A record that cannot be read: not base64, not JSON, a field missing or of the wrong type."""


class DeliveryError(RuntimeError):
    """A channel could not deliver, after its retries."""


# ---------------------------------------------------------------------------------------------
# Records and messages


@dataclass(frozen=True)
class Anomaly:
    """One row of anomalydetectionstream: a site's window whose CTR scored as an anomaly."""

    site: str  # without a site (SQL rows): where the row came from, e.g. "SQL application clickstream"
    window_start: datetime  # UTC; see ``time_kind``
    ctr: float
    score: float
    site_known: bool = True
    time_kind: str = WINDOW  # WINDOW, ROWTIME or ARRIVAL
    record_key: str | None = None  # with ARRIVAL: the record's id, what makes a retried record a duplicate
    expected: float | None = None  # the site's usual CTR before the window (percent), when the row says
    usual_low: float | None = None
    usual_high: float | None = None
    grade: float | None = None  # how unusual, 0-1
    why: str | None = None  # a SQL row's ANOMALY_EXPLANATION in words ("CLICKCOUNT HIGH (3.47), ...")

    @property
    def key(self) -> str:
        """Identifies the anomaly: at most one alert per (site, window), ever (per record without a time)."""
        if self.time_kind == ARRIVAL and self.record_key:
            return f"{self.site}|record {self.record_key}"
        return f"{self.site}|{self.window_start.strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z"


def parse_time(value: Any, field_name: str = "rowtime") -> datetime:
    """A UTC timestamp from Flink's JSON (``2023-08-23 12:02:00`` / ``...T...Z``) or epoch seconds."""
    if isinstance(value, bool):
        raise BadRecord(f"field {field_name!r} is not a timestamp: {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise BadRecord(f"field {field_name!r} is not a timestamp: {value!r}")
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str):
        raise BadRecord(f"field {field_name!r} is not a timestamp: {value!r}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadRecord(f"field {field_name!r} is not a timestamp: {value!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _number(row: dict[str, Any], name: str) -> float:
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRecord(f"field {name!r} is not a finite number: {value!r}")
    return float(value)


def explanation_words(explanation: Any) -> str:
    """An ``ANOMALY_EXPLANATION`` (Kinesis Data Analytics' JSON) in words: the columns by attribution, the largest
    first, with their direction; :class:`ValueError` says what is wrong.

    >>> explanation_words('{"CLICKCOUNT":{"DIRECTION":"HIGH","STRENGTH":"1.0000","ATTRIBUTION_SCORE":"3.4702"},'
    ...                   '"IMPRESSIONCOUNT":{"DIRECTION":"LOW","STRENGTH":"0.5314","ATTRIBUTION_SCORE":"0.0010"}}')
    'CLICKCOUNT HIGH (3.47), IMPRESSIONCOUNT LOW (0.00)'
    """
    text = explanation if isinstance(explanation, str) else json.dumps(explanation)
    try:
        columns = json.loads(text)
        ranked = sorted(columns.items(), key=lambda kv: -float(kv[1]["ATTRIBUTION_SCORE"]))
        return ", ".join(f"{name} {parts.get('DIRECTION', '')} ({float(parts['ATTRIBUTION_SCORE']):.2f})"
                         .replace("  ", " ") for name, parts in ranked)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"ANOMALY_EXPLANATION {text[:80]!r}: not Kinesis Data Analytics' form ({exc})") from None


def _optional_number(row: dict[str, Any], name: str) -> float | None:
    """A field that may be absent or null (None); present, it must be a finite number."""
    return None if row.get(name) is None else _number(row, name)


def decode_row(data: Any, where: str = "data") -> dict[str, Any]:
    """A record's base64 ``data`` as the JSON object it carries; :class:`BadRecord` says what is wrong."""
    if not isinstance(data, str):
        raise BadRecord(f"record has no base64 {where!r} string (got {type(data).__name__})")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRecord(f"{where} is not base64: {exc}") from None
    try:
        row = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRecord(f"{where} is not JSON: {exc}") from None
    if not isinstance(row, dict):
        raise BadRecord(f"{where} is not a JSON object: {type(row).__name__}")
    return row


def is_sql_row(row: dict[str, Any]) -> bool:
    """A row of the SQL application's DESTINATION_SQL_STREAM: upper-case columns and no ``site``."""
    return "site" not in row and any(f in row for f in (*SQL_FIELDS, SQL_ROWTIME))


def row_anomaly(row: dict[str, Any], source: str, arrived: datetime, record_key: str) -> Anomaly:
    """The anomaly of one decoded row: a Studio row (``site``, ``rowtime``, ...) or a SQL application row.

    ``source`` names where the row came from (``SQL application NAME``, ``stream NAME``): a SQL row has no
    site, so the alert says so and uses ``source`` in its place. ``arrived`` is the time shown when a SQL row
    has no ``ROWTIME``; ``record_key`` (the record id) then identifies it.
    """
    if is_sql_row(row):
        missing = [f for f in SQL_FIELDS if row.get(f) is None]
        if missing:
            raise BadRecord(f"data (a SQL application row) misses field {', '.join(repr(m) for m in missing)}")
        ctr, score = _number(row, "CTRPERCENT"), _number(row, "ANOMALY_SCORE")
        why = None
        if row.get(SQL_EXPLANATION) is not None:
            try:
                why = explanation_words(row[SQL_EXPLANATION])
            except ValueError as exc:
                raise BadRecord(f"field {SQL_EXPLANATION!r}: {exc}") from None
        if row.get(SQL_ROWTIME) is not None:
            return Anomaly(source, parse_time(row[SQL_ROWTIME], SQL_ROWTIME), ctr, score, site_known=False,
                           time_kind=ROWTIME, why=why)
        return Anomaly(source, arrived, ctr, score, site_known=False, time_kind=ARRIVAL, record_key=record_key,
                       why=why)
    missing = [f for f in FIELDS if row.get(f) is None]
    if missing:
        raise BadRecord(f"data misses field {', '.join(repr(m) for m in missing)}")
    if not isinstance(row["site"], str) or not row["site"].strip():
        raise BadRecord(f"field 'site' is not a non-empty string: {row['site']!r}")
    usual = {name: _optional_number(row, name) for name in USUAL_FIELDS}
    return Anomaly(row["site"], parse_time(row["rowtime"]), _number(row, "ctrpercent"),
                   _number(row, "anomaly_score"), **usual)


def _arn_name(arn: Any, kind: str) -> str:
    """``arn:...:application/NAME`` -> ``SQL application NAME``; no ARN -> ``SQL application (unnamed)``."""
    name = arn.rpartition("/")[2] if isinstance(arn, str) and "/" in arn else ""
    return f"{kind} {name}" if name else f"{kind} (unnamed)"


def parse_record(record: dict[str, Any], application_arn: str | None = None,
                 arrived: datetime | None = None) -> Anomaly:
    """One record of a Lambda-destination event: its ``data`` decoded; :class:`BadRecord` says what is wrong."""
    row = decode_row(record.get("data"))
    return row_anomaly(row, _arn_name(application_arn, "SQL application"), arrived or datetime.now(UTC),
                       str(record.get("recordId", "")))


def kinesis_sequence(record: Any) -> str | None:
    """The sequence number of one record of a Kinesis event (what a batch item failure names), or None."""
    if isinstance(record, dict) and isinstance(record.get("kinesis"), dict):
        seq = record["kinesis"].get("sequenceNumber")
        return seq if isinstance(seq, str) and seq else None
    return None


def parse_kinesis_record(record: dict[str, Any]) -> Anomaly:
    """One record of a Kinesis event-source-mapping event (``kinesis.data``); :class:`BadRecord` if unreadable."""
    kinesis = record.get("kinesis")
    if not isinstance(kinesis, dict):
        raise BadRecord(f"record has no 'kinesis' object (got {type(kinesis).__name__})")
    row = decode_row(kinesis.get("data"), "kinesis.data")
    stamp = kinesis.get("approximateArrivalTimestamp")
    arrived = parse_time(stamp, "kinesis.approximateArrivalTimestamp") if stamp is not None else datetime.now(UTC)
    return row_anomaly(row, _arn_name(record.get("eventSourceARN"), "stream"), arrived,
                       str(kinesis.get("sequenceNumber", "")))


def format_percent(ctr: float) -> str:
    """500.0 -> '500', 33.3333 -> '33.33': as a person writes a percentage."""
    text = f"{ctr:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def about(value: float) -> str:
    """A usual value as a person says it: 9.03 -> '9', 9.54 -> '9.5', 12.6 -> '13', 0.42 -> '0.42'.

    >>> about(9.03), about(9.54), about(12.6), about(6.38), about(0.42), about(0.0)
    ('9', '9.5', '13', '6.4', '0.42', '0')
    """
    if abs(value) >= 10:  # 13 % rather than 12.6 %
        return f"{value:.0f}"
    text = f"{value:.1f}" if abs(value) >= 1 else f"{value:.2f}"
    text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _duration(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds % 60 == 0 and seconds else f"{seconds} s"


@dataclass(frozen=True)
class Alert:
    """The message about one anomaly: e-mail subject and body, and the SMS line."""

    anomaly: Anomaly
    folded: int = 0  # anomalies of this site kept quiet by the cooldown since the previous alert
    window_seconds: int = DEFAULT_WINDOW_SECONDS
    cooldown_seconds: int = DEFAULT_COOLDOWN_SECONDS

    @property
    def subject(self) -> str:
        return SUBJECT

    @property
    def lab_sentence(self) -> str:
        return LAB_SENTENCE.format(ctr=format_percent(self.anomaly.ctr), score=repr(self.anomaly.score))

    @property
    def window_text(self) -> str:
        start = self.anomaly.window_start
        end = start + timedelta(seconds=self.window_seconds)
        return f"{start:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} UTC"

    @property
    def site_text(self) -> str:
        a = self.anomaly
        return a.site if a.site_known else f"unknown (the rows of {a.site} carry no site)"

    @property
    def time_line(self) -> str:
        a = self.anomaly
        if a.time_kind == ROWTIME:
            return f"Time:   {a.window_start:%Y-%m-%d %H:%M:%S} UTC (the SQL application's ROWTIME)"
        if a.time_kind == ARRIVAL:
            return f"Time:   {a.window_start:%Y-%m-%d %H:%M:%S} UTC (arrival: the row has no ROWTIME)"
        return f"Window: {self.window_text} ({self.window_seconds}-second window)"

    @property
    def usual_sentence(self) -> str | None:
        """What was usual for the site ("CTR 500 % where about 9 % (6.4-12 %) is usual"), when the row says."""
        a = self.anomaly
        if a.expected is None or a.usual_low is None or a.usual_high is None:
            return None
        way = "above" if a.ctr > a.usual_high else "below" if a.ctr < a.usual_low else "within"
        return (f"CTR {format_percent(a.ctr)} % where about {about(a.expected)} % "
                f"({about(max(a.usual_low, 0.0))}-{about(a.usual_high)} %) is usual: {way} the site's usual range.")

    @property
    def grade_line(self) -> str | None:
        if self.anomaly.grade is None:
            return None
        return (f"Grade:  {self.anomaly.grade:.2f} (0 to 1: how far the score is from the site's ordinary score "
                "toward the highest the forest gives)")

    @property
    def body(self) -> str:
        lines = [self.lab_sentence, ""]
        if self.usual_sentence:
            lines += [self.usual_sentence, ""]
        if self.anomaly.why:
            lines += [f"Why: {self.anomaly.why} (the columns' attributions, the largest first).", ""]
        lines += [f"Site:   {self.site_text}", self.time_line]
        if self.grade_line:
            lines.append(self.grade_line)
        if self.folded:
            noun = "anomaly" if self.folded == 1 else "anomalies"
            lines += ["", f"Also {self.folded} more {noun} on this site since the previous alert, not sent "
                          f"separately (at most one alert per site every {_duration(self.cooldown_seconds)})."]
        return "\n".join(lines) + "\n"

    @property
    def sms(self) -> str:
        """One line within 160 characters; a long site name is shortened, never the numbers."""
        folded = f" (+{self.folded} folded)" if self.folded else ""
        when = f"{self.anomaly.window_start:%Y-%m-%d %H:%M:%S}Z"
        a = self.anomaly
        usual = ("" if a.usual_low is None or a.usual_high is None
                 else f" (usual {about(max(a.usual_low, 0.0))}-{about(a.usual_high)}%)")
        rest = f": CTR {format_percent(a.ctr)}%{usual}, score {a.score:.2f}, {when}{folded}"
        site = self.anomaly.site.removeprefix("https://").removeprefix("http://")
        if not self.anomaly.site_known:
            site = f"(site unknown, {site})"
        room = SMS_LIMIT - len(SUBJECT) - 1 - len(rest)
        if len(site) > room:
            site = site[: max(room - 1, 0)] + "…"
        return f"{SUBJECT} {site}{rest}"[:SMS_LIMIT]


# ---------------------------------------------------------------------------------------------
# Retries


def retryable(exc: BaseException) -> bool:
    """Throttling, 5xx and lost connections are worth another attempt; a 4xx refusal is not."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error.get("Code") in RETRYABLE_CODES or status >= 500 or status == 429
    return isinstance(exc, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError
                      | smtplib.SMTPServerDisconnected | smtplib.SMTPConnectError | ConnectionError
                      | socket.timeout) or (isinstance(exc, smtplib.SMTPResponseException)
                                            and 400 <= exc.smtp_code < 500)


def with_retries(call: Any, what: str, max_attempts: int, backoff_s: float) -> Any:
    """``call()``; on a retryable error wait ``backoff * 2**k`` (with jitter) and try again."""
    for attempt in range(1, max_attempts + 1):
        try:
            return call()
        except Exception as exc:
            if not retryable(exc) or attempt == max_attempts:
                raise DeliveryError(f"{what}: {type(exc).__name__}: {exc} "
                                    f"(attempt {attempt} of {max_attempts})") from exc
            delay = backoff_s * 2 ** (attempt - 1) * (0.5 + random.random() / 2)
            log.warning("%s: %s: %s; attempt %d of %d, retrying in %.2f s",
                        what, type(exc).__name__, exc, attempt, max_attempts, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def client_config(timeout_s: float = 5.0) -> botocore.config.Config:
    """boto3 clients retry nothing themselves: :func:`with_retries` counts and logs every attempt."""
    return botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                  connect_timeout=timeout_s, read_timeout=timeout_s)


# ---------------------------------------------------------------------------------------------
# Channels


class Channel(Protocol):
    name: str

    def send(self, alert: Alert) -> str:
        """Deliver once (no retries); return an id of what was sent."""


@dataclass
class SnsChannel:
    """Publish to an SNS topic; its subscriptions (e-mail, SMS) get their own text (MessageStructure json)."""

    topic_arn: str
    client: Any
    name: str = "sns"

    def send(self, alert: Alert) -> str:
        message = json.dumps({"default": alert.body, "email": alert.body, "sms": alert.sms})
        response = self.client.publish(TopicArn=self.topic_arn, Subject=alert.subject, Message=message,
                                       MessageStructure="json")
        return response["MessageId"]


def mime_message(alert: Alert, sender: str, recipients: list[str]) -> email.message.EmailMessage:
    """A real MIME e-mail: plain text and an HTML alternative, a Message-ID and a Date."""
    msg = email.message.EmailMessage()
    msg["Subject"] = alert.subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = email.utils.formatdate(usegmt=True)
    msg["Message-ID"] = email.utils.make_msgid(domain=sender.rpartition("@")[2] or "clicklab.local")
    msg["X-Clicklab-Anomaly"] = alert.anomaly.key
    msg.set_content(alert.body)
    esc = alert.body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    first, _, rest = esc.partition("\n")
    msg.add_alternative(f"<html><body><p><b>{first}</b></p><pre>{rest.strip()}</pre></body></html>\n",
                        subtype="html")
    return msg


@dataclass
class SmtpChannel:
    """E-mail directly over SMTP (optionally STARTTLS and login)."""

    host: str
    port: int
    sender: str
    recipients: list[str]
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout_s: float = 10.0
    name: str = "smtp"

    def send(self, alert: Alert) -> str:
        msg = mime_message(alert, self.sender, self.recipients)
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(msg)
        return str(msg["Message-ID"])


# ---------------------------------------------------------------------------------------------
# State: what was sent, and each site's cooldown


@dataclass
class SiteState:
    last_sent: datetime | None = None  # event time of the window last alerted
    folded: int = 0


class State(Protocol):
    def claim(self, channel: str, anomaly: Anomaly) -> bool:
        """Take (channel, site, window) for this invocation; False when it was handled already."""

    def site(self, channel: str, site: str) -> SiteState: ...

    def suppressed(self, channel: str, anomaly: Anomaly) -> None: ...

    def sent(self, channel: str, anomaly: Anomaly, folded: int, message_id: str) -> None: ...

    def release(self, channel: str, anomaly: Anomaly, reason: str) -> None:
        """Delivery failed: a later attempt may claim it again."""


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class FileState:
    """State in one JSON file, rewritten atomically and under a file lock (several processes may share it)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Any:
        import fcntl

        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = self._read()
                yield data
                self._write(data)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"version": 1, "alerts": {}, "sites": {}}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise RuntimeError(f"alert state file {self.path} is unreadable: {exc}") from None
        if not isinstance(data, dict) or not {"alerts", "sites"} <= set(data):
            raise RuntimeError(f"alert state file {self.path} is not a clicklab alert state")
        return data

    def _write(self, data: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def claim(self, channel: str, anomaly: Anomaly) -> bool:
        key = f"{channel}|{anomaly.key}"
        with self._locked() as data:
            if data["alerts"].get(key, {}).get("status") in (SENT, SUPPRESSED):
                return False
            data["alerts"][key] = {"status": "pending", "at": _iso(datetime.now(UTC))}
        return True

    def site(self, channel: str, site: str) -> SiteState:
        item = self._read()["sites"].get(f"{channel}|{site}")
        if not item:
            return SiteState()
        return SiteState(parse_time(item["last_sent"]) if item.get("last_sent") else None, int(item.get("folded", 0)))

    def suppressed(self, channel: str, anomaly: Anomaly) -> None:
        with self._locked() as data:
            data["alerts"][f"{channel}|{anomaly.key}"] = {"status": SUPPRESSED, "at": _iso(datetime.now(UTC))}
            item = data["sites"].setdefault(f"{channel}|{anomaly.site}", {"last_sent": None, "folded": 0})
            item["folded"] = int(item.get("folded", 0)) + 1

    def sent(self, channel: str, anomaly: Anomaly, folded: int, message_id: str) -> None:
        with self._locked() as data:
            data["alerts"][f"{channel}|{anomaly.key}"] = {"status": SENT, "at": _iso(datetime.now(UTC)),
                                                          "message_id": message_id}
            item = data["sites"].setdefault(f"{channel}|{anomaly.site}", {"last_sent": None, "folded": 0})
            last = parse_time(item["last_sent"]) if item.get("last_sent") else None
            if last is None or anomaly.window_start > last:
                item["last_sent"] = _iso(anomaly.window_start)
            item["folded"] = max(int(item.get("folded", 0)) - folded, 0)

    def release(self, channel: str, anomaly: Anomaly, reason: str) -> None:
        with self._locked() as data:
            data["alerts"][f"{channel}|{anomaly.key}"] = {"status": FAILURE, "at": _iso(datetime.now(UTC)),
                                                          "reason": reason[:500]}


class DynamoState:
    """State in a DynamoDB table (partition key ``pk``): conditional writes make a (site, window) one alert.

    Items: ``alert#<channel>#<site>#<window>`` with ``status`` pending/sent/suppressed/failed, and
    ``site#<channel>#<site>`` with ``last_sent`` and ``folded``. A claim is a conditional put that only
    succeeds if nobody holds the alert (or its holder failed, or gave no news for ``stale_s`` seconds).
    """

    def __init__(self, table: str, client: Any, max_attempts: int = 4, backoff_s: float = 0.2,
                 stale_s: float = 300.0) -> None:
        self.table, self.client, self.stale_s = table, client, stale_s
        self.max_attempts, self.backoff_s = max_attempts, backoff_s

    def _call(self, what: str, **kwargs: Any) -> Any:
        method = getattr(self.client, what)
        return with_retries(lambda: method(TableName=self.table, **kwargs), f"DynamoDB {what} on {self.table}",
                            self.max_attempts, self.backoff_s)

    def claim(self, channel: str, anomaly: Anomaly) -> bool:
        now = time.time()
        try:
            self._call(
                "put_item",
                Item={"pk": {"S": f"alert#{channel}#{anomaly.key}"}, "status": {"S": "pending"},
                      "claimed_at": {"N": str(now)}},
                ConditionExpression=("attribute_not_exists(pk) OR #s = :failed"
                                     " OR (#s = :pending AND claimed_at < :stale)"),
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":failed": {"S": FAILURE}, ":pending": {"S": "pending"},
                                           ":stale": {"N": str(now - self.stale_s)}},
            )
        except DeliveryError as exc:
            cause = exc.__cause__
            if isinstance(cause, botocore.exceptions.ClientError) and \
                    cause.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def site(self, channel: str, site: str) -> SiteState:
        item = self._call("get_item", Key={"pk": {"S": f"site#{channel}#{site}"}}, ConsistentRead=True).get("Item")
        if not item:
            return SiteState()
        last = item.get("last_sent", {}).get("S")
        return SiteState(parse_time(last) if last else None, int(item.get("folded", {}).get("N", "0")))

    def _set_alert(self, channel: str, anomaly: Anomaly, status: str, **extra: str) -> None:
        item = {"pk": {"S": f"alert#{channel}#{anomaly.key}"}, "status": {"S": status},
                "at": {"S": _iso(datetime.now(UTC))}}
        item.update({k: {"S": v} for k, v in extra.items()})
        self._call("put_item", Item=item)

    def suppressed(self, channel: str, anomaly: Anomaly) -> None:
        self._call("update_item", Key={"pk": {"S": f"site#{channel}#{anomaly.site}"}},
                   UpdateExpression="ADD folded :one", ExpressionAttributeValues={":one": {"N": "1"}})
        self._set_alert(channel, anomaly, SUPPRESSED)

    def sent(self, channel: str, anomaly: Anomaly, folded: int, message_id: str) -> None:
        self._set_alert(channel, anomaly, SENT, message_id=message_id)
        key = {"pk": {"S": f"site#{channel}#{anomaly.site}"}}
        self._call("update_item", Key=key, UpdateExpression="ADD folded :minus",
                   ExpressionAttributeValues={":minus": {"N": str(-folded)}})
        with contextlib.suppress(DeliveryError):  # a later window already holds last_sent: keep it
            self._call("update_item", Key=key, UpdateExpression="SET last_sent = :t",
                       ConditionExpression="attribute_not_exists(last_sent) OR last_sent < :t",
                       ExpressionAttributeValues={":t": {"S": _iso(anomaly.window_start)}})

    def release(self, channel: str, anomaly: Anomaly, reason: str) -> None:
        self._set_alert(channel, anomaly, FAILURE, reason=reason[:500])


# ---------------------------------------------------------------------------------------------
# The handler


@dataclass
class Config:
    """What the handler needs; :meth:`from_env` reads it as Lambda would."""

    topic_arn: str | None = None
    state_table: str | None = None
    state_file: str = DEFAULT_STATE_FILE
    cooldown_s: int = DEFAULT_COOLDOWN_SECONDS
    window_s: int = DEFAULT_WINDOW_SECONDS
    max_attempts: int = 4
    backoff_s: float = 0.2
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "clicklab-alerts@localhost"
    smtp_to: list[str] = field(default_factory=list)
    smtp_starttls: bool = False
    smtp_user: str | None = None
    smtp_password: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Config:
        env = dict(os.environ if env is None else env)

        def integer(name: str, default: int, low: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None
            if value < low:
                raise ValueError(f"environment variable {name}={value} must be at least {low}")
            return value

        backoff = env.get("ALERT_BACKOFF_SECONDS", "").strip()
        try:
            backoff_s = float(backoff) if backoff else 0.2
        except ValueError:
            raise ValueError(f"environment variable ALERT_BACKOFF_SECONDS={backoff!r} is not a number") from None
        return cls(
            topic_arn=env.get("ALERT_TOPIC_ARN") or None,
            state_table=env.get("ALERT_STATE_TABLE") or None,
            # on Lambda only /tmp is writable (and lives as long as the instance: use ALERT_STATE_TABLE there)
            state_file=env.get("ALERT_STATE_FILE") or (
                "/tmp/clicklab-alert-state.json" if env.get("AWS_LAMBDA_FUNCTION_NAME") else DEFAULT_STATE_FILE),
            cooldown_s=integer("ALERT_COOLDOWN_SECONDS", DEFAULT_COOLDOWN_SECONDS, 0),
            window_s=integer("ALERT_WINDOW_SECONDS", DEFAULT_WINDOW_SECONDS, 1),
            max_attempts=integer("ALERT_MAX_ATTEMPTS", 4, 1),
            backoff_s=backoff_s,
            smtp_host=env.get("ALERT_SMTP_HOST") or None,
            smtp_port=integer("ALERT_SMTP_PORT", 25, 1),
            smtp_from=env.get("ALERT_SMTP_FROM") or "clicklab-alerts@localhost",
            smtp_to=[a.strip() for a in env.get("ALERT_SMTP_TO", "").split(",") if a.strip()],
            smtp_starttls=env.get("ALERT_SMTP_STARTTLS", "") in ("1", "true", "yes"),
            smtp_user=env.get("ALERT_SMTP_USER") or None,
            smtp_password=env.get("ALERT_SMTP_PASSWORD") or None,
        )


def build_channels(config: Config, session: Any = None) -> list[Channel]:
    """The channels the configuration names: SNS (topic ARN) and/or SMTP (host and recipients)."""
    channels: list[Channel] = []
    if config.topic_arn:
        session = session or boto3.session.Session()
        channels.append(SnsChannel(config.topic_arn, session.client("sns", config=client_config())))
    if config.smtp_host:
        if not config.smtp_to:
            raise ValueError("ALERT_SMTP_HOST is set but ALERT_SMTP_TO names no recipient")
        channels.append(SmtpChannel(config.smtp_host, config.smtp_port, config.smtp_from, config.smtp_to,
                                    config.smtp_starttls, config.smtp_user, config.smtp_password))
    if not channels:
        raise ValueError("no alert channel configured: set ALERT_TOPIC_ARN (SNS) and/or ALERT_SMTP_HOST and "
                         "ALERT_SMTP_TO (e-mail over SMTP)")
    return channels


def build_state(config: Config, session: Any = None) -> State:
    if config.state_table:
        session = session or boto3.session.Session()
        return DynamoState(config.state_table, session.client("dynamodb", config=client_config()),
                           config.max_attempts, config.backoff_s)
    return FileState(config.state_file)


@dataclass
class Outcome:
    """What happened to one record on one channel."""

    record_id: str
    channel: str
    outcome: str  # sent, suppressed, duplicate, failed, malformed
    site: str | None = None
    window_start: str | None = None
    ctr: float | None = None
    score: float | None = None
    folded: int = 0
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _deliver(anomaly: Anomaly, record_id: str, channel: Channel, state: State, config: Config) -> Outcome:
    out = Outcome(record_id, channel.name, FAILURE, anomaly.site, _iso(anomaly.window_start), anomaly.ctr,
                  anomaly.score)
    try:
        if not state.claim(channel.name, anomaly):
            out.outcome, out.detail = DUPLICATE, "this site and window was handled before"
            return out
    except Exception as exc:  # the state store is unreachable: nothing was sent, try again later
        out.detail = f"state store: {type(exc).__name__}: {exc}"
        log.error("record %s (%s) on %s: %s", record_id, anomaly.key, channel.name, out.detail)
        return out
    try:
        site = state.site(channel.name, anomaly.site)
        gap = None if site.last_sent is None else abs((anomaly.window_start - site.last_sent).total_seconds())
        if gap is not None and gap < config.cooldown_s:
            state.suppressed(channel.name, anomaly)
            out.outcome, out.detail = SUPPRESSED, f"cooldown: last alert for this site {gap:.0f} s before"
            return out
        alert = Alert(anomaly, site.folded, config.window_s, config.cooldown_s)
        message_id = with_retries(lambda: channel.send(alert), f"{channel.name} send", config.max_attempts,
                                  config.backoff_s)
        out.outcome, out.folded, out.detail = SENT, site.folded, str(message_id)
        try:
            state.sent(channel.name, anomaly, site.folded, str(message_id))
        except Exception as exc:  # sent, but not recorded: say so; the claim keeps it from being resent soon
            log.error("record %s: sent on %s but the state was not updated: %s", record_id, channel.name, exc)
        return out
    except Exception as exc:
        out.outcome, out.detail = FAILURE, f"{type(exc).__name__}: {exc}" if not isinstance(exc, DeliveryError) \
            else str(exc)
        log.error("record %s (%s) on %s: DeliveryFailed: %s", record_id, anomaly.key, channel.name, out.detail)
        with contextlib.suppress(Exception):
            state.release(channel.name, anomaly, out.detail)
        return out


def event_kind(event: Any) -> str:
    """:data:`DESTINATION_EVENT` (``records``) or :data:`KINESIS_EVENT` (``Records``); ValueError otherwise."""
    if isinstance(event, dict):
        if isinstance(event.get("Records"), list):
            return KINESIS_EVENT
        if isinstance(event.get("records"), list):
            return DESTINATION_EVENT
    raise ValueError("event has no 'records' list (a Kinesis Data Analytics Lambda-destination event) and no "
                     "'Records' list (a Kinesis event-source-mapping event)")


def _read(kind: str, event: dict[str, Any], i: int, record: Any, arrived: datetime) -> tuple[str, Anomaly]:
    """``(record id, anomaly)`` of record ``i``; raises :class:`BadRecord` (its id: ``#i`` when it has none)."""
    if kind == KINESIS_EVENT:
        record_id = kinesis_sequence(record) or f"#{i}"
    else:
        record_id = str(record.get("recordId", f"#{i}")) if isinstance(record, dict) else f"#{i}"
    try:
        if not isinstance(record, dict):
            raise BadRecord(f"record is not an object: {type(record).__name__}")
        if kind == KINESIS_EVENT:
            return record_id, parse_kinesis_record(record)
        return record_id, parse_record(record, event.get("applicationArn"), arrived)
    except BadRecord as exc:
        raise BadRecord(record_id, str(exc)) from None


def process(event: dict[str, Any], config: Config, channels: list[Channel], state: State
            ) -> tuple[dict[str, Any], list[Outcome]]:
    """Handle one invocation: the Lambda response and what happened per record and channel.

    Records are taken in event-time order (so the cooldown counts forward), answered in input order.
    A bad record or a failed channel never stops the others. The response follows the event's envelope
    (:func:`event_kind`): ``records`` with a result each, or the ``batchItemFailures`` of a Kinesis batch
    (failed deliveries only: a malformed record is logged, never retried).
    """
    kind = event_kind(event)
    records = event["Records" if kind == KINESIS_EVENT else "records"]
    arrived = datetime.now(UTC)
    outcomes: list[Outcome] = []
    results: dict[int, str] = {}
    malformed: set[int] = set()
    parsed: list[tuple[int, str, Anomaly]] = []
    for i, record in enumerate(records):
        try:
            record_id, anomaly = _read(kind, event, i, record, arrived)
        except BadRecord as exc:
            record_id, reason = exc.args
            log.error("record %s: %s: %s", record_id, "malformed, skipped" if kind == KINESIS_EVENT
                      else "DeliveryFailed", reason)
            outcomes.append(Outcome(record_id, "-", MALFORMED, detail=reason))
            results[i] = FAILED
            malformed.add(i)
            continue
        parsed.append((i, record_id, anomaly))
    for i, record_id, anomaly in sorted(parsed, key=lambda p: (p[2].window_start, p[2].site, p[0])):
        ok = True
        for channel in channels:
            outcome = _deliver(anomaly, record_id, channel, state, config)
            outcomes.append(outcome)
            ok = ok and outcome.outcome != FAILURE
            log.info("record %s %s %s on %s: %s", record_id, anomaly.site, _iso(anomaly.window_start),
                     channel.name, outcome.outcome)
        results[i] = OK if ok else FAILED
    if kind == KINESIS_EVENT:
        failures = [{"itemIdentifier": kinesis_sequence(r)} for i, r in enumerate(records)
                    if results[i] == FAILED and i not in malformed]
        return {"batchItemFailures": failures}, outcomes
    response = {"records": [
        {"recordId": r.get("recordId") if isinstance(r, dict) else None, "result": results[i]}
        for i, r in enumerate(records)
    ]}
    return response, outcomes


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda entry point: configuration from the environment, the response of :func:`process`."""
    config = Config.from_env()
    response, _ = process(event, config, build_channels(config), build_state(config))
    return response


#: Lambda's default handler name (``lambda_function.lambda_handler``).
lambda_handler = handler
