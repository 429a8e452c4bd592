"""Watching topics as a reader sees them: each committed record with the moment it became readable.

A live job's exactly-once sink writes its records in a Kafka transaction that commits at the job's next
checkpoint; a ``read_committed`` reader (every reader of the lab) sees them only then. So when a row "arrived" is
when a reader first got it, not the record's timestamp (the moment the job wrote it, before the commit).
:class:`TopicWatcher` reads the given topics from their end in a thread of its own and notes that moment for each
record (``seen_at``, epoch seconds): ``clicklab bench --live`` on topics times its hops with it, as it times files by
their commit (modification) time.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

import pandas as pd

from clicklab.kafka.tables import topic


class TopicWatcher:
    """Reads ``names``' topics (committed records, from their end when :meth:`start` is called) until :meth:`stop`."""

    def __init__(self, bootstrap: str, names: Iterable[str]) -> None:
        self.bootstrap = bootstrap
        self.names = [topic(n) for n in names]
        self._rows: dict[str, list[dict[str, Any]]] = {n: [] for n in self.names}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="topic-watcher", daemon=True)

    def start(self, timeout_s: float = 60.0) -> TopicWatcher:
        """Start reading; return once every partition is assigned (records from then on are seen)."""
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(f"watching {', '.join(self.names)} at {self.bootstrap}: no partition assigned in "
                               f"{timeout_s:g} s")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        from confluent_kafka import OFFSET_END, Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"clicklab-watch-{uuid.uuid4()}",
                             "enable.auto.commit": False, "isolation.level": "read_committed",
                             "fetch.wait.max.ms": 50})
        try:
            parts = []
            for name in self.names:
                meta = consumer.list_topics(name, timeout=30).topics[name]
                parts += [TopicPartition(name, p, OFFSET_END) for p in meta.partitions]
            consumer.assign(parts)
            self._ready.set()
            while not self._stop.is_set():
                for msg in consumer.consume(10_000, 0.1):
                    if msg.error() is not None:
                        continue
                    seen = time.time()
                    try:
                        row = json.loads(msg.value())
                    except ValueError:
                        continue
                    if isinstance(row, dict):
                        with self._lock:
                            self._rows[msg.topic()].append({**row, "seen_at": seen})
        finally:
            consumer.close()

    def rows(self, name: str) -> pd.DataFrame:
        """The records of stream ``name`` seen so far, with ``seen_at`` (``rowtime`` parsed, UTC)."""
        with self._lock:
            frame = pd.DataFrame(list(self._rows[topic(name)]))
        if "rowtime" in frame:
            frame["rowtime"] = pd.to_datetime(frame["rowtime"], utc=True, format="ISO8601")
        return frame
