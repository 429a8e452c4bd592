"""The alert group on Kafka (:mod:`clicklab.kafka.alert_consumer`): the real handler, with its local SNS and SMTP
servers, gets Kinesis event-source-mapping batches from ``anomalydetectionstream``; offsets are committed only
after it answers; ``batchItemFailures`` are read again; a member that dies before committing sends nothing
twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from clicklab.alerts import destination, feed
from clicklab.kafka import alert_consumer, broker, topics

pytestmark = pytest.mark.server

ANOMALIES = [("https://www.mysite.com", "2023-08-23 12:06:10", 500.0, 6.48),
             ("https://news.example.com", "2023-08-23 12:20:00", 300.0, 4.2),
             ("https://shop.example.com", "2023-08-23 12:40:00", 250.0, 3.1)]


class Killed(Exception):
    """The consumer's process dying after the function ran and before the mapping committed."""


def _fill(bootstrap: str) -> None:
    from confluent_kafka import Producer

    topics.empty(bootstrap, [alert_consumer.TOPIC])
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for site, rowtime, ctr, score in ANOMALIES:  # one partition, so the batches are predictable
        row = {"site": site, "rowtime": pd.Timestamp(rowtime, tz="UTC"), "ctrpercent": ctr, "anomaly_score": score}
        producer.produce(alert_consumer.TOPIC, key=site.encode(), value=feed.STUDIO.row_json(row).encode(),
                         partition=0)
    assert producer.flush(60) == 0


def _committed(bootstrap: str, group: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return consumer.committed([TopicPartition(alert_consumer.TOPIC, 0)], timeout=30)[0].offset
    finally:
        consumer.close()


def test_each_anomaly_is_one_email_and_a_member_that_died_before_committing_sends_nothing_twice(
        kafka_build: Path, tmp_path: Path) -> None:
    bootstrap = broker.bootstrap(kafka_build)
    _fill(bootstrap)
    with destination.open_destination(tmp_path / "build", env={}, fresh_state=True) as dest:
        def run_then_die(event: dict[str, Any]) -> dict[str, Any]:
            dest.invoke(event)
            raise Killed

        first = alert_consumer.AlertConsumer(bootstrap, run_then_die, group="alerts-kill")
        with pytest.raises(Killed):
            first.run(lambda: False, timeout_s=120)
        first.close()
        assert len(dest.emails()) == len(ANOMALIES), "the first member's invocation sent no e-mail per anomaly"
        assert _committed(bootstrap, "alerts-kill") < 0, "the dead member committed"

        with alert_consumer.AlertConsumer(bootstrap, dest.invoke, group="alerts-kill") as second:
            second.run(lambda: sum(len(b.offsets) for b in second.batches) >= len(ANOMALIES), timeout_s=120)
        assert sum(len(b.offsets) for b in second.batches) == len(ANOMALIES), second.batches
        again = dest.table().iloc[-len(ANOMALIES):]
        assert list(again["outcome"]) == ["duplicate"] * len(ANOMALIES), again
        assert len(dest.emails()) == len(ANOMALIES), "a redelivered batch sent an e-mail twice"
        sent = "\n".join(p.read_text(encoding="utf-8") for p in dest.emails())
        assert "Anomaly detected with a click through rate of 500%" in sent
        assert _committed(bootstrap, "alerts-kill") == len(ANOMALIES)


def test_batch_item_failures_are_read_again_from_the_first_failed_record(kafka_build: Path) -> None:
    """The function (scripted here: the mapping is what is tested) fails the second record once, then the third
    every time: the second is sent again with the third; the third is passed after ``max_retries``."""
    bootstrap = broker.bootstrap(kafka_build)
    _fill(bootstrap)
    seen: list[list[int]] = []
    failures = {1: 1, 2: 99}  # offset -> times it fails

    def function(event: dict[str, Any]) -> dict[str, Any]:
        offsets = [alert_consumer.offset_of(r["kinesis"]["sequenceNumber"]) for r in event["Records"]]
        assert all(r["eventSource"] == "aws:kinesis" and r["kinesis"]["data"] for r in event["Records"])
        seen.append(offsets)
        failed = []
        for offset in offsets:
            if failures.get(offset, 0) > 0:
                failures[offset] -= 1
                failed.append({"itemIdentifier": alert_consumer.sequence_number(offset)})
        return {"batchItemFailures": failed}

    with alert_consumer.AlertConsumer(bootstrap, function, group="alerts-retry", max_retries=2,
                                      retry_backoff_s=0.1) as consumer:
        consumer.run(lambda: _committed(bootstrap, "alerts-retry") == len(ANOMALIES), timeout_s=120)
    assert seen[0] == [0, 1, 2], seen
    assert seen[1][:2] == [1, 2], f"after offset 1 failed, the batch did not start again there: {seen}"
    assert [s[0] for s in seen[2:]] == [2, 2], f"offset 2 was not retried twice, then passed: {seen}"
    assert _committed(bootstrap, "alerts-retry") == len(ANOMALIES)
