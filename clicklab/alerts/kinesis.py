"""Kinesis Data Streams for the alert handler: read a stream back, and build the event Lambda would send.

The AWS route wires the handler to ``anomalydetectionstream`` with an event source mapping
(``scripts/clickstream-lab.yaml``): Lambda polls the stream and invokes the function with the records of one
shard. :func:`read_stream` reads what a stream holds (every shard, from ``TRIM_HORIZON``) with
``get_records``, and :func:`lambda_event` turns those records into the event of that mapping, field for
field as Lambda builds it, so the handler can be run on what really went through Kinesis (moto locally,
see ``tests/test_scripts.py``).
"""

from __future__ import annotations

import base64
import time
from datetime import datetime
from typing import Any

from clicklab.exceptions import ClicklabError

#: How long :func:`read_stream` keeps asking a shard that answers with no records but is not at its end.
EMPTY_READS = 3


def stream_arn(client: Any, stream: str) -> str:
    """The ARN of ``stream``; :class:`ClicklabError` naming the stream when it does not exist."""
    try:
        return client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    except client.exceptions.ResourceNotFoundException:
        raise ClicklabError(f"Kinesis stream {stream!r} does not exist") from None


def read_stream(client: Any, stream: str, limit: int = 10_000) -> dict[str, list[dict[str, Any]]]:
    """Every record ``stream`` holds, per shard id, oldest first (``get_records`` from ``TRIM_HORIZON``).

    A shard is read until ``get_records`` says it is caught up (``MillisBehindLatest`` 0) and answers empty,
    or ends (no next iterator).
    """
    out: dict[str, list[dict[str, Any]]] = {}
    shards = client.list_shards(StreamName=stream)["Shards"]
    for shard in shards:
        records: list[dict[str, Any]] = []
        iterator = client.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                             ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        empty = 0
        while iterator and empty < EMPTY_READS:
            page = client.get_records(ShardIterator=iterator, Limit=limit)
            records += page["Records"]
            iterator = page.get("NextShardIterator")
            if page["Records"]:
                empty = 0
            elif page.get("MillisBehindLatest", 0) == 0:
                empty += 1
            else:
                time.sleep(0.05)
        out[shard["ShardId"]] = records
    return out


def _epoch(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def lambda_event(records: list[dict[str, Any]], source_arn: str, shard_id: str = "shardId-000000000000",
                 region: str | None = None, invoke_identity_arn: str = "arn:aws:iam::123456789012:role/lambda"
                 ) -> dict[str, Any]:
    """The event a Kinesis event source mapping sends for ``records`` of one shard (as ``get_records`` gives them).

    ``Records[].kinesis.data`` is the record's bytes in base64, ``sequenceNumber`` what a batch item failure
    names (``{"batchItemFailures": [{"itemIdentifier": ...}]}``).
    """
    region = region or source_arn.split(":")[3]
    return {"Records": [
        {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": r["PartitionKey"],
                "sequenceNumber": r["SequenceNumber"],
                "data": base64.b64encode(r["Data"]).decode("ascii"),
                "approximateArrivalTimestamp": _epoch(r["ApproximateArrivalTimestamp"]),
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{r['SequenceNumber']}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": invoke_identity_arn,
            "awsRegion": region,
            "eventSourceARN": source_arn,
        }
        for r in records
    ]}
