"""The alert Lambda's event source mapping, on Kafka: a consumer group on ``anomalydetectionstream``.

On AWS, an event source mapping polls the Kinesis stream and invokes the function with a batch of one shard's
records (``Records[].kinesis.data``, base64), and with ``ReportBatchItemFailures`` the function answers
``{"batchItemFailures": [{"itemIdentifier": <sequence number>}]}``: the mapping then checkpoints before the
first failed record and sends it (and the records after it) again. :class:`AlertConsumer` does the same with a
Kafka consumer group, a partition standing for a shard and an offset for a sequence number:

* a batch is up to ``batch_size`` records of one partition, as :func:`clicklab.alerts.kinesis.lambda_event`
  builds it for Kinesis (the handler cannot tell the two apart);
* the group's offset is committed only after the function answered, and only up to the first failed record;
  the partition is then read again from there, after ``retry_backoff_s``, at most ``max_retries`` times (then
  the record is logged and passed, as ``MaximumRetryAttempts`` does);
* a consumer that dies before it commits leaves the batch to the next member of the group, which invokes the
  function with it again: the handler's state (a site and window is claimed once) keeps the e-mail from going
  out twice.

``tests/test_kafka_alerts.py`` runs it against the real handler with its local SNS and SMTP servers.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clicklab.alerts import kinesis
from clicklab.alerts.feed import Followed

log = logging.getLogger(__name__)

#: The stream the alerts are read from, and the group that reads it (one per destination).
TOPIC = "anomalydetectionstream"
GROUP = "clicklab-alerts"
#: The ARN the events name as their source (the lab's stream, as ``scripts/clickstream-lab.yaml`` creates it).
SOURCE_ARN = f"arn:aws:kinesis:us-east-1:123456789012:stream/{TOPIC}"

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


def sequence_number(offset: int) -> str:
    """A Kinesis-like sequence number for an offset: digits, ordered as the offsets are."""
    return f"{offset:021d}"


def offset_of(sequence: str) -> int:
    return int(sequence)


@dataclass
class Batch:
    """One invocation: the partition, the offsets it carried and the ones the function reported failed."""

    partition: int
    offsets: list[int]
    failed: list[int]
    committed: int  # the group's offset for the partition after it (the next record to read)


@dataclass
class AlertConsumer:
    """A member of the alert group (see the module's docstring). Use as a context manager, or :meth:`close`."""

    bootstrap: str
    invoke: Invoke
    group: str = GROUP
    topic: str = TOPIC
    batch_size: int = 100
    max_wait_s: float = 1.0
    max_retries: int = 3
    retry_backoff_s: float = 1.0
    batches: list[Batch] = field(default_factory=list)
    _attempts: dict[tuple[int, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from confluent_kafka import Consumer

        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        self._consumer = Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": self.group, "client.id": f"alerts-{uuid.uuid4()}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest", "isolation.level": "read_committed",
        })
        self._consumer.subscribe([self.topic])

    def __enter__(self) -> AlertConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Leave the group (what is not committed goes to the next member)."""
        self._consumer.close()

    def poll(self, timeout_s: float | None = None) -> list[Batch]:
        """Read what arrived (up to ``batch_size`` records a partition), invoke the function once per partition,
        commit; the batches handled (none if nothing arrived within ``timeout_s``)."""
        messages = self._consumer.consume(self.batch_size, self.max_wait_s if timeout_s is None else timeout_s)
        by_partition: dict[int, list[Any]] = {}
        for msg in messages:
            if msg.error() is not None:
                log.warning("%s: %s", self.topic, msg.error())
                continue
            by_partition.setdefault(msg.partition(), []).append(msg)
        done = []
        for partition, msgs in sorted(by_partition.items()):
            done.append(self._handle(partition, msgs))
        self.batches += done
        return done

    def _handle(self, partition: int, msgs: list[Any]) -> Batch:
        from confluent_kafka import TopicPartition

        records = [{"PartitionKey": (m.key() or b"").decode() or str(partition),
                    "SequenceNumber": sequence_number(m.offset()), "Data": m.value(),
                    "ApproximateArrivalTimestamp": _arrival(m)} for m in msgs]
        event = kinesis.lambda_event(records, SOURCE_ARN, shard_id=f"shardId-{partition:012d}")
        response = self.invoke(event)
        failed = sorted(offset_of(f["itemIdentifier"]) for f in (response or {}).get("batchItemFailures", []))
        retry_from = None
        for offset in failed:
            key = (partition, offset)
            self._attempts[key] = self._attempts.get(key, 0) + 1
            if self._attempts[key] <= self.max_retries:
                retry_from = offset
                break
            log.error("%s partition %d offset %d: still failing after %d retries; passed (MaximumRetryAttempts)",
                      self.topic, partition, offset, self.max_retries)
        next_offset = retry_from if retry_from is not None else msgs[-1].offset() + 1
        position = TopicPartition(self.topic, partition, next_offset)
        self._consumer.commit(offsets=[position], asynchronous=False)
        if retry_from is not None:  # read again from the first failed record, after a pause
            time.sleep(self.retry_backoff_s)
            self._consumer.seek(position)
        return Batch(partition, [m.offset() for m in msgs], failed, next_offset)

    def run(self, until: Callable[[], bool], timeout_s: float) -> list[Batch]:
        """Poll until ``until()`` holds or ``timeout_s`` passed; every batch handled."""
        deadline = time.monotonic() + timeout_s
        handled: list[Batch] = []
        while not until() and time.monotonic() < deadline:
            handled += self.poll()
        return handled


def _arrival(msg: Any) -> float:
    """The record's timestamp in epoch seconds (Kinesis' ``approximateArrivalTimestamp``)."""
    kind, ms = msg.timestamp()
    return ms / 1000 if kind and ms > 0 else datetime.now(UTC).timestamp()


def follow(destination: Any, bootstrap: str, batch_size: int = 100, timeout_s: float = 120.0,
           until: Callable[[], bool] | None = None, group: str = GROUP) -> Followed:
    """Live ``11_alerts`` on topics: the alert group reads ``anomalydetectionstream`` from where it committed (the
    first time: the earliest offset) and invokes ``destination`` on each batch, until ``until()`` holds or
    ``timeout_s`` passed (what :func:`clicklab.alerts.feed.follow` does on files)."""
    started = time.monotonic()
    stopped = f"time limit of {timeout_s:g} s"
    with AlertConsumer(bootstrap, destination.invoke, group=group, batch_size=batch_size) as consumer:
        while time.monotonic() - started < timeout_s:
            consumer.poll(0.25)
            if until is not None and until():
                stopped = "the awaited alert went out"
                break
        batches = consumer.batches
    return Followed(len(batches), sum(len(b.offsets) for b in batches), time.monotonic() - started, stopped, TOPIC)
