"""The lab's topics: created, emptied (a step run again starts from an empty stream), filled with a replay file,
and read back into pandas, all with the Kafka client from PyPI (``confluent-kafka``).

``produce_replay`` writes the replay's lines to ``tickerstream`` as they are (bad lines too: ``04`` sorts them
out), keyed by ``site`` and stamped with their event time, so a partition holds its sites' events in time order.
``read_topic`` reads a stream's committed records up to the end the topic has when it is called.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from clicklab import badevents, streams
from clicklab.exceptions import ClicklabError
from clicklab.kafka.tables import PARTITIONS, TOPIC_CONFIG, topic


class TopicError(ClicklabError):
    """A topic could not be created, emptied, written or read; the message names it."""


def _admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def existing(bootstrap: str, timeout_s: float = 30.0) -> set[str]:
    return set(_admin(bootstrap).list_topics(timeout=timeout_s).topics)


def create(bootstrap: str, names: Iterable[str] = streams.STREAM_NAMES, timeout_s: float = 60.0) -> list[str]:
    """Create the topics of ``names`` that do not exist yet; the ones created."""
    from confluent_kafka.admin import NewTopic

    wanted = [topic(n) for n in names]
    missing = [t for t in wanted if t not in existing(bootstrap)]
    if not missing:
        return []
    admin = _admin(bootstrap)  # kept until its futures are done (a collected client cancels them)
    futures = admin.create_topics([NewTopic(t, PARTITIONS[t], 1, config=TOPIC_CONFIG) for t in missing])
    for name, future in futures.items():
        try:
            future.result(timeout_s)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise TopicError(f"creating topic {name} failed: {exc}") from exc
    return missing


def empty(bootstrap: str, names: Iterable[str], timeout_s: float = 120.0) -> None:
    """Delete and create the topics of ``names`` again: what a step that fills them writes replaces what was there.

    Kafka deletes a topic in the background: this waits until the broker no longer lists it before creating it,
    and until the new one has a leader for every partition before returning (a producer started earlier would
    find no partition, or the old topic)."""
    wanted = [topic(n) for n in names]
    admin = _admin(bootstrap)  # one client for the deletes and every poll below

    def listed() -> set[str]:
        return set(admin.list_topics(timeout=10).topics)

    present = [t for t in wanted if t in listed()]
    deadline = time.monotonic() + timeout_s
    if present:
        for name, future in admin.delete_topics(present).items():
            try:
                future.result(timeout_s)
            except Exception as exc:
                if "UNKNOWN_TOPIC" not in str(exc):
                    raise TopicError(f"deleting topic {name} failed: {exc}") from exc
        _wait(lambda: not set(present) & listed(), f"{', '.join(present)} deleted", deadline)
    while True:
        try:
            create(bootstrap, wanted)
            break
        except TopicError as exc:
            if "marked for deletion" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    _wait(lambda: _ready(admin, wanted), f"{', '.join(wanted)} created with a leader for each partition",
          deadline)


def _ready(admin: Any, names: list[str]) -> bool:
    listed = admin.list_topics(timeout=10).topics
    return all(n in listed and len(listed[n].partitions) == PARTITIONS[n]
               and all(p.leader >= 0 for p in listed[n].partitions.values()) for n in names)


def _wait(check: Callable[[], bool], what: str, deadline: float) -> None:
    while not check():
        if time.monotonic() > deadline:
            raise TopicError(f"timed out waiting for: {what}")
        time.sleep(0.1)


_SITE = re.compile(r'"site"\s*:\s*"([^"\\]*)"')
_EVENT_TIME = re.compile(r'"event_time"\s*:\s*"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z"')


def key_and_time(line: str) -> tuple[str | None, int | None]:
    """A line's ``site`` (its key) and event time in epoch ms (its record's timestamp), where they can be read."""
    site = _SITE.search(line)
    when = _EVENT_TIME.search(line)
    ms = None
    if when:
        try:
            ms = round(datetime.fromisoformat(when.group(1)).replace(tzinfo=UTC).timestamp() * 1000)
        except ValueError:
            ms = None
    return (site.group(1) if site else None), ms


def produce_replay(bootstrap: str, dataset: Path, name: str = "tickerstream") -> int:
    """Write the replay file's lines to ``name``'s topic, keyed by site, stamped with their event time; the
    number of lines. Raise :class:`TopicError` if some are not acknowledged."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20,
                         "batch.size": 1_000_000, "compression.type": "lz4"})
    failed: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(str(err))

    count = 0
    for line in badevents.read_lines(Path(dataset)):  # as Flink's raw format reads them: empty lines too
        key, ms = key_and_time(line)
        while True:
            try:
                producer.produce(topic(name), value=line.encode(), key=key.encode() if key else None,
                                 timestamp=ms or 0, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.1)
        count += 1
    left = producer.flush(120)
    if left or failed:
        raise TopicError(f"{name}: {left} of {count} lines of {dataset} unsent, {len(failed)} refused "
                         f"({failed[:1]})")
    return count


def count(bootstrap: str, name: str) -> int:
    """How many records a stream's topic holds (end less start offsets, all partitions; 0 if it is missing)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"clicklab-count-{uuid.uuid4()}"})
    try:
        meta = consumer.list_topics(topic(name), timeout=30).topics[topic(name)]
        if meta.error is not None:
            return 0
        total = 0
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic(name), p), timeout=30)
            total += high - low
        return total
    finally:
        consumer.close()


def read_values(bootstrap: str, name: str, timeout_s: float = 120.0,
                times: list[float] | None = None) -> list[bytes]:
    """A stream's committed record values, up to the end its topic has now (partition by partition); ``times``,
    when given, gets each record's timestamp (epoch s) in the same order."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"clicklab-read-{uuid.uuid4()}",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    values: list[bytes] = []
    try:
        meta = consumer.list_topics(topic(name), timeout=30).topics[topic(name)]
        if meta.error is not None:
            raise TopicError(f"{name}: {meta.error}")
        ends = {}
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic(name), p), timeout=30)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic(name), p, 0) for p in ends])
        done: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(done) < len(ends):
            if time.monotonic() > deadline:
                raise TopicError(f"{name}: read {len(values)} records in {timeout_s:.0f} s and not yet its end")
            for msg in consumer.consume(10_000, 0.5):
                if msg.error() is not None:
                    continue
                values.append(msg.value())
                if times is not None:
                    times.append(msg.timestamp()[1] / 1000)
                if msg.offset() + 1 >= ends[msg.partition()]:
                    done.add(msg.partition())
            for p, end in ends.items():  # read_committed stops before aborted or control records at the end
                if p not in done and consumer.position([TopicPartition(topic(name), p)])[0].offset >= end:
                    done.add(p)
    finally:
        consumer.close()
    return values


def read_topic(bootstrap: str, name: str, timeout_s: float = 120.0, with_time: bool = False) -> pd.DataFrame:
    """A stream's committed records, up to the end its topic has now, as a DataFrame of the stream's columns.

    tickerstream (lines as they came): its lines that are JSON objects, with the fields of its columns.
    ``with_time``: also ``committed_at``, each record's timestamp (epoch s): when a job's sink wrote it (its
    transaction commits at the job's next checkpoint, a fraction of a second later)."""
    stream = streams.STREAMS[name]
    columns = [c.name for c in stream.columns] + (["committed_at"] if with_time else [])
    rows: list[dict] = []
    times: list[float] = []
    for value, at in zip(read_values(bootstrap, name, timeout_s, times), times, strict=True):
        try:
            row = json.loads(value)
        except ValueError:
            if not stream.raw_table:
                raise
            continue
        if isinstance(row, dict):
            rows.append({**row, "committed_at": at} if with_time else row)
    df = pd.DataFrame(rows, columns=columns)
    for c in stream.columns:
        if c.type.startswith("TIMESTAMP") and not stream.raw_table:
            df[c.name] = pd.to_datetime(df[c.name], utc=True, format="ISO8601")
    return df
