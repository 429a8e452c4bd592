"""The lab's session on Kafka topics, for a replay: what ``clicklab.notebook.start`` returns when the streams are
topics (the default; see :func:`clicklab.notebook.stream_backend`).

The notebooks do not change: their SQL reads and writes the same seven tables, now on Flink's Kafka connector
(:mod:`clicklab.kafka.tables`), read bounded from the earliest offset so each ``INSERT`` ends as on files.

* :func:`open_topics` makes sure of the broker (``clicklab kafka up``, or ``$CLICKLAB_KAFKA_BOOTSTRAP``), the
  connector's jar and the topics, and produces the replay into ``tickerstream`` once per replay file: each
  notebook's kernel calls it, and only the first one produces (``<build>/kafka/replay.json`` remembers what the
  topic holds).
* Running an ``INSERT`` again empties its topic first (a step replaces what it wrote, as on files); a stream
  counts as written once its step's job has ended (``<build>/kafka/written/<stream>``), so "run 04 first" is
  still said before a step reads a stream nothing has filled.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from clicklab import flink, sqltext
from clicklab.kafka import broker, jars, tables, topics
from clicklab.kafka.notes import replay_marker, written_marker
from clicklab.lab import Lab

#: What the session's jobs need: checkpoints (an exactly-once Kafka sink commits its transaction at each one, and
#: at the end of a bounded job).
CONFIG = {"execution.checkpointing.interval": "1 s", "execution.checkpointing.mode": "EXACTLY_ONCE"}


def _replay_id(dataset: Path, bootstrap: str) -> dict[str, Any]:
    stat = Path(dataset).stat()
    return {"dataset": str(Path(dataset).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "bootstrap": bootstrap}


def open_topics(dataset: Path, build: Path) -> str:
    """The broker up (or yours), the jars resolved, the seven topics there and ``dataset`` in ``tickerstream``;
    the bootstrap address. Produces the replay only when the topic does not hold this file yet."""
    address = open_live(build)
    marker = replay_marker(build)
    wanted = _replay_id(dataset, address)
    try:
        held = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        held = None
    if held is None or {k: held.get(k) for k in wanted} != wanted or topics.count(address, "tickerstream") != held.get(
            "lines"):
        marker.unlink(missing_ok=True)
        topics.empty(address, ["tickerstream"])
        lines = topics.produce_replay(address, dataset)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({**wanted, "lines": lines}), encoding="utf-8")
    return address


def job_group(target: str) -> str:
    """The consumer group of the live job that fills stream ``target`` (its offsets are committed at checkpoints)."""
    return f"{tables.TRANSACTIONAL_PREFIX}-job-{target}"


def open_live(build: Path) -> str:
    """The broker up (or yours), the jars resolved and the seven topics there, for the live lab; the bootstrap
    address. Nothing is produced: the live generator sends into tickerstream."""
    jars.resolve(build)
    address = broker.bootstrap(build) if broker.own_bootstrap() else broker.up(build).bootstrap
    topics.create(address)
    return address


class TopicLab(Lab):
    """A session whose streams are the topics at ``bootstrap`` (see the module's docstring).

    Live, every job reads its topics unbounded, from the earliest offset the first time; the job that fills a
    stream reads in the consumer group :func:`job_group`, so running its cell again continues where the job it
    replaces committed (no event read twice, none missed), while a query reads from the earliest offset each time.
    """

    def __init__(self, dataset: Path, build: Path, t_env: Any, bootstrap: str, live: bool = False,
                 start: tables.StartPosition = "earliest") -> None:
        super().__init__(dataset, build, t_env, live=live)
        self.bootstrap = bootstrap
        self.start_position = start
        if t_env is not None:
            flink.execute(t_env, f"ADD JAR '{jars.jars(self.build).connector()}'")

    def _ddl(self, group: str | None = None) -> str:
        if self.live:
            return tables.all_kafka_ddl(self.bootstrap, self.start_position, live=True, group=group)
        return tables.all_kafka_ddl(self.bootstrap, bounded=True)

    @property
    def ddl(self) -> str:
        return self._ddl()

    def _from_now_on(self, st: sqltext.Statement) -> None:
        """Live, before job ``st`` starts: the tables it reads in its own consumer group (an ``INSERT``), or from
        the start position (a query)."""
        group = job_group(st.target) if st.kind == sqltext.INSERT and st.target else None
        for statement in sqltext.split_statements(self._ddl(group)):
            flink.execute(self.t_env, statement)

    def where(self, name: str) -> str:
        return f"topic {tables.topic(name)} ({self.bootstrap})"

    def reset_stream(self, name: str) -> Path:
        written_marker(self.build, name).unlink(missing_ok=True)
        topics.empty(self.bootstrap, [name])
        return written_marker(self.build, name)

    def wrote(self, name: str) -> None:
        marker = written_marker(self.build, name)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()

    def is_written(self, name: str) -> bool:
        return written_marker(self.build, name).is_file()

    def stream(self, name: str) -> pd.DataFrame:
        return topics.read_topic(self.bootstrap, name)

    def committed(self, name: str) -> pd.DataFrame:
        return topics.read_topic(self.bootstrap, name, with_time=True)

    def follow_alerts(self, dest: Any, batch_size: int = 100, timeout_s: float = 120.0,
                      until: Callable[[], bool] | None = None) -> Any:
        """Live ``11_alerts`` on topics: the alert consumer group (the Lambda's event source mapping) invokes
        ``dest`` with Kinesis-style batches, committing its offsets once the handler answered."""
        from clicklab.kafka import alert_consumer

        return alert_consumer.follow(dest, self.bootstrap, batch_size=batch_size, timeout_s=timeout_s, until=until)

