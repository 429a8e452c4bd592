"""The live generator's events into the ``tickerstream`` topic, as the Kinesis Data Generator's ``PutRecords``.

:class:`TopicSink` is where :class:`clicklab.live.generator.LiveGenerator` sends each batch of events when the
streams are topics: every line a record, keyed by ``site`` and stamped with its event time (as
:func:`clicklab.kafka.topics.produce_replay` does with a replay), through an idempotent producer (a retried send
is written once). A batch is flushed before :meth:`TopicSink.write` returns, so the generator's status counts only
acknowledged events, and a job sees a batch as soon as the broker has it: no file to commit, no checkpoint to
wait for on the way in.

A restarted generator continues after the newest event the topic holds (:meth:`TopicSink.last_event_ms`), as it
does after the newest file. Old events are the topic's retention's business
(:data:`clicklab.kafka.tables.TOPIC_CONFIG`), so there is no housekeeping.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from clicklab.kafka.tables import topic
from clicklab.kafka.topics import TopicError, key_and_time

#: How long (seconds) a batch may take to be acknowledged before the generator stops with an error.
FLUSH_TIMEOUT_S = 30.0


class TopicSink:
    """Sends the live generator's events to stream ``name``'s topic at ``bootstrap``: a
    :class:`clicklab.live.sink.Sink` (see the module's docstring)."""

    #: Batches need no spacing (files do: Flink's file source reads the files one scan finds in any order).
    min_spacing = 0.0

    def __init__(self, bootstrap: str, name: str = "tickerstream") -> None:
        self.bootstrap = bootstrap
        self.name = topic(name)
        self._producer: Any = None
        self._failed: list[str] = []

    def describe(self) -> str:
        return f"topic {self.name} ({self.bootstrap})"

    def open(self) -> None:
        from confluent_kafka import Producer

        self._producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True,
                                   "linger.ms": 5, "compression.type": "lz4",
                                   "client.id": f"clicklab-generator-{uuid.uuid4()}"})

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(FLUSH_TIMEOUT_S)
            self._producer = None

    def _delivered(self, err: object, _msg: object) -> None:
        if err is not None:
            self._failed.append(str(err))

    def write(self, first_ms: int, chunks: Iterable[bytes]) -> bool:
        """Send one batch (chunks of JSON lines, in time order) and wait until the broker has every line; False
        when it had none."""
        if self._producer is None:
            self.open()
        producer = self._producer
        count = 0
        for chunk in chunks:
            for line in chunk.splitlines():
                key, ms = key_and_time(line.decode())
                while True:
                    try:
                        producer.produce(self.name, value=line, key=key.encode() if key else None,
                                         timestamp=ms or first_ms, on_delivery=self._delivered)
                        break
                    except BufferError:  # the local queue is full: let it drain
                        producer.poll(0.05)
                count += 1
            producer.poll(0)
        if not count:
            return False
        left = producer.flush(FLUSH_TIMEOUT_S)
        if left or self._failed:
            failed, self._failed = self._failed, []
            raise TopicError(f"{self.describe()}: {left} of {count} events unacknowledged after "
                             f"{FLUSH_TIMEOUT_S:g} s, {len(failed)} refused ({failed[:1]}): is the broker running?")
        return True

    def last_event_ms(self) -> int | None:
        """The event time (epoch ms) of the newest record in the topic, or None when it is empty."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"clicklab-last-{uuid.uuid4()}",
                             "enable.auto.commit": False})
        try:
            meta = consumer.list_topics(self.name, timeout=30).topics[self.name]
            if meta.error is not None:
                return None
            newest = None
            for p in meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(self.name, p), timeout=30)
                if high <= low:
                    continue
                consumer.assign([TopicPartition(self.name, p, high - 1)])
                for msg in consumer.consume(1, 10.0):
                    kind, ms = msg.timestamp()
                    if msg.error() is None and kind and ms > 0:
                        newest = ms if newest is None else max(newest, ms)
            return newest
        finally:
            consumer.close()

    def housekeeping(self, keep_s: float) -> None:
        """Nothing to do: the topic's retention removes old events."""
