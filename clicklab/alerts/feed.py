"""How a stream's rows reach the alert Lambda: Lambda-destination events, and following a stream as it grows.

Two streams feed the same handler. Studio's ``anomalydetectionstream`` (:data:`STUDIO`: ``site, rowtime,
ctrpercent, anomaly_score``) and the SQL application's ``DESTINATION_SQL_STREAM`` (``ROWTIME, CTRPERCENT,
ANOMALY_SCORE``, no site: :data:`clicklab.sqlapp_alerts.SQL_APP`). A :class:`Feed` says which columns a row
carries and where its stream's files are; the rest is the same for both:

* :func:`events` builds Kinesis Data Analytics' Lambda-destination events, in time order, ``batch_size``
  records each. Record ids derive from the anomaly the handler will see in the row (its site, or the SQL
  application's name, and its window), so the same rows give the same events: a second run is what a
  retried delivery looks like to the handler.
* :func:`follow` reads the stream as it grows (live) and invokes the handler on each new batch, skipping
  rows whose anomaly this destination already handled, until ``until()`` holds or the time is up.
"""

from __future__ import annotations

import base64
import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from clicklab import streams
from clicklab.alerts import handler
from clicklab.live.folders import ARCHIVE, committed_files

APPLICATION_ARN = "arn:aws:kinesisanalytics:us-east-1:123456789012:application/clickstream-anomaly-lab"
_NAMESPACE = uuid.UUID("6f1c3b52-8a4e-4f0c-9a57-3d1f3f6b0a11")


def timestamp_text(value: Any) -> str:
    """A timestamp as Flink's JSON format writes it: ``2023-08-23 12:06:10.000`` (UTC)."""
    ts = pd.Timestamp(value)
    ts = ts.tz_convert("UTC") if ts.tzinfo else ts
    return ts.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class Destination(Protocol):
    """What :func:`follow` needs of a destination (:class:`clicklab.alerts.destination.Destination` is one)."""

    outcomes: list[Any]

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Feed:
    """A stream the alert Lambda receives: its name, its columns in record order, its time column and its folder;
    ``optional``: columns a record carries when the rows have them (a missing number, NaN, as null)."""

    stream: str
    columns: tuple[str, ...]
    time_column: str
    folder: Callable[[Path], Path]
    optional: tuple[str, ...] = ()

    def row_json(self, row: dict[str, Any]) -> str:
        """One row as its JSON record: its columns, timestamps as Flink's JSON writes them."""
        out = {}
        for key in self.columns:
            value = row[key]
            if isinstance(value, pd.Timestamp | datetime) or key == self.time_column:
                value = timestamp_text(value)
            elif hasattr(value, "item"):
                value = value.item()
            out[key] = value
        for key in self.optional:
            if key in row:
                value = row[key].item() if hasattr(row[key], "item") else row[key]
                out[key] = None if value is None or (isinstance(value, float) and math.isnan(value)) else value
        return json.dumps(out)

    def anomaly_key(self, data: str, application_arn: str) -> tuple[str, datetime]:
        """(site or source, window) of the anomaly the handler reads in a record's ``data``: what it alerts once."""
        anomaly = handler.parse_record({"data": base64.b64encode(data.encode()).decode()}, application_arn)
        return anomaly.site, anomaly.window_start


STUDIO = Feed("anomalydetectionstream", handler.FIELDS, "rowtime",
              lambda build: streams.stream_path(build, "anomalydetectionstream"), optional=handler.USUAL_FIELDS)


def events(rows: pd.DataFrame, batch_size: int = 100, application_arn: str = APPLICATION_ARN,
           feed: Feed = STUDIO) -> list[dict[str, Any]]:
    """The Lambda-destination events for ``feed``'s rows, in time order, ``batch_size`` records each."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    missing = [c for c in feed.columns if c not in rows]
    if missing:
        raise ValueError(f"rows lack column(s) {', '.join(missing)} "
                         f"(expected {feed.stream}: {', '.join(feed.columns)})")
    records = []
    for row in rows.sort_values([feed.time_column, *(c for c in ("site",) if c in rows)]).to_dict("records"):
        data = feed.row_json(row)
        site, window = feed.anomaly_key(data, application_arn)
        records.append({"recordId": str(uuid.uuid5(_NAMESPACE, f"{site}|{window.isoformat()}")),
                        "lambdaDeliveryRecordMetadata": {"retryHint": 0},
                        "data": base64.b64encode(data.encode()).decode()})
    out = []
    for start in range(0, len(records), batch_size):
        batch = records[start:start + batch_size]
        invocation = uuid.uuid5(_NAMESPACE, "|".join(r["recordId"] for r in batch))
        out.append({"invocationId": str(invocation), "applicationArn": application_arn, "records": batch})
    return out


@dataclass(frozen=True)
class Followed:
    """What :func:`follow` did: invocations, records, and why it stopped."""

    invocations: int
    records: int
    seconds: float
    stopped: str
    stream: str = STUDIO.stream

    def __str__(self) -> str:
        return (f"followed {self.stream} for {self.seconds:.0f} s: {self.records} new anomalies in "
                f"{self.invocations} invocation(s); stopped: {self.stopped}")


def follow(destination: Destination, build: Path, batch_size: int = 100, timeout_s: float = 120.0,
           until: Callable[[], bool] | None = None, poll_s: float = 0.25, feed: Feed = STUDIO,
           application_arn: str = APPLICATION_ARN) -> Followed:
    """Read ``feed``'s stream under ``build`` as it grows and invoke the handler on each new batch (live).

    That is what the Lambda's event source mapping (Studio) or destination (SQL application) does. Each
    committed file is read once (the archived ones too, see :mod:`clicklab.live.folders`); rows whose anomaly this
    destination already handled are skipped. Stops after ``timeout_s`` seconds, or as soon as ``until()`` is true.
    """
    folder = feed.folder(build)
    handled = {(o.site, handler.parse_time(o.window_start)) for o in destination.outcomes
               if o.site is not None and o.window_start}
    seen: set[str] = set()
    invocations = records = 0
    started = time.monotonic()
    stopped = f"time limit of {timeout_s:g} s"
    while time.monotonic() - started < timeout_s:
        new = [p for p in committed_files(folder) + committed_files(folder / ARCHIVE)
               if p.name not in seen]
        for path in sorted(new, key=lambda p: p.stat().st_mtime if p.exists() else 0):
            try:
                rows = pd.read_json(path, lines=True, dtype=False)
            except (FileNotFoundError, ValueError):
                continue  # moved to the archive meanwhile: read there on the next pass
            seen.add(path.name)
            if not len(rows):
                continue
            keys = [feed.anomaly_key(feed.row_json(row), application_arn) for row in rows.to_dict("records")]
            fresh = [k not in handled for k in keys]
            for event in events(rows[fresh], batch_size, application_arn, feed) if any(fresh) else []:
                destination.invoke(event)
                invocations += 1
                records += len(event["records"])
            handled |= set(keys)
        if until is not None and until():
            stopped = "the awaited alert went out"
            break
        time.sleep(poll_s)
    return Followed(invocations, records, time.monotonic() - started, stopped, feed.stream)
