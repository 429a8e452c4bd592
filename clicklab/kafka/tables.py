"""The lab's streams as Kafka topics: one topic per stream, tables on Flink's Kafka SQL connector.

Columns, watermarks and tickerstream's raw table with its view of the good events come from
:mod:`clicklab.streams` (one definition for every backend); this module gives the Kafka side:

* a topic per stream, :data:`PARTITIONS` partitions (a stream keyed by ``site`` spreads its sites over them, as a
  Kinesis stream over its shards); ``badevents`` has one;
* values are JSON (tickerstream: the line as it came, format ``raw``), the key is ``site`` where a stream has
  one;
* reading starts at ``earliest-offset`` (Kinesis ``TRIM_HORIZON``) or ``latest-offset`` (``LATEST``), and a
  replay reads bounded (``scan.bounded.mode = latest-offset``: up to the end the topic had when the job
  started), so its job ends;
* watermarks are per partition: Flink's Kafka source tracks each partition's event time and emits the
  smallest; live, a partition with no records for :data:`IDLE_TIMEOUT` stops holding it back (a replay reads
  bounded, and a partition that ends stops holding it back then: an idle timeout, in processing time, would
  make a replay's results depend on the machine's speed);
* writing is exactly-once: each stream's records are committed in a Kafka transaction at the job's
  checkpoint, and every reader reads ``read_committed``.
"""

from __future__ import annotations

from typing import Literal

from clicklab import streams

StartPosition = Literal["earliest", "latest"]

#: Partitions per topic. A stream keyed by site spreads over several: its jobs run in parallel, each partition
#: with its own watermark. tickerstream and badevents have one, as the lab's Kinesis streams have one shard: a
#: late event is then late against the stream's one watermark, in the order the producer sent the lines, so
#: which lines are late (and go to badevents) does not depend on how sites hash to partitions, and the Python
#: twin of the checks (:mod:`clicklab.badevents`) finds exactly the same ones.
SINGLE_PARTITION = ("tickerstream", "badevents")
PARTITIONS: dict[str, int] = {name: (1 if name in SINGLE_PARTITION else 4) for name in streams.STREAM_NAMES}
#: Topic settings: retention by size, never by time (a replay's records are stamped with their event time, years
#: ago, and time-based retention would delete them as they arrive); 256 MiB per partition bounds a long live run.
TOPIC_CONFIG: dict[str, str] = {"retention.ms": "-1", "retention.bytes": str(256 * 2**20)}
#: A partition with no new records for this long no longer holds the watermark back (live).
IDLE_TIMEOUT = "5 s"
#: A replay's watermark delay on the streams the lab's jobs write: longer than a replay, so a job's windows,
#: joins and ordering views fire when its bounded read ends (the end of input moves the watermark to the end),
#: all in event-time order, and a record can never fall behind the watermark. With the streams' own delays the
#: watermark moves while the read goes on, every 200 ms of processing time and per partition, and a replay is
#: read in well under a second: 06's one-sided windows then came hours late, and 08's ordering view dropped
#: some of them, how many depending on the machine's speed. tickerstream keeps its delay (its late lines go to
#: badevents, a watermark after every line: deterministic).
REPLAY_WATERMARK_S = 99 * 86_400  # the longest interval Flink's planner takes (two digits of days)
#: Kafka's default transaction timeout (1 h) is over many brokers' maximum (15 min): a sink's transactions
#: time out after this (longer than any checkpoint interval of the lab).
TRANSACTION_TIMEOUT_MS = 600_000
#: The prefix of every transactional id of the lab's sinks (then the stream's name).
TRANSACTIONAL_PREFIX = "clicklab"

_START = {"earliest": "earliest-offset", "latest": "latest-offset"}


def topic(name: str) -> str:
    """The topic of a stream (its name, as the Kinesis stream's)."""
    if name not in streams.STREAMS:
        raise ValueError(f"unknown stream {name!r}; the lab's streams are {', '.join(streams.STREAM_NAMES)}")
    return name


def key_field(name: str) -> str | None:
    """The column a stream's records are keyed by (``site``), or None (tickerstream's lines are keyed by the
    producer; badevents has none)."""
    stream = streams.STREAMS[name]
    if stream.raw_table or name == "badevents":
        return None
    return "site" if any(c.name == "site" for c in stream.columns) else None


def kafka_options(name: str, bootstrap: str, start: StartPosition = "earliest",
                  bounded: bool = False, group: str | None = None) -> dict[str, str]:
    """The ``WITH`` options of a stream's table: read from ``start`` (bounded on a replay), written exactly-once.

    ``group``: a live job's consumer group. The job then starts where the group's offsets are, which its
    checkpoints commit, and from ``start`` only when the group has none: the first run of a step reads from the
    earliest offset (``TRIM_HORIZON``), and running the step again continues where the job it replaces stopped,
    neither reading an event twice nor missing one (its sink's uncommitted transaction is aborted)."""
    if start not in _START:
        raise ValueError(f"start position must be 'earliest' (TRIM_HORIZON) or 'latest' (LATEST), got {start!r}")
    options = {
        "connector": "kafka",
        "topic": topic(name),
        "properties.bootstrap.servers": bootstrap,
        "properties.isolation.level": "read_committed",
        "scan.startup.mode": _START[start],
        "format": "json",
        "json.timestamp-format.standard": "SQL",
        "json.fail-on-missing-field": "false",
        "json.ignore-parse-errors": "false",
        "sink.delivery-guarantee": "exactly-once",
        "sink.transactional-id-prefix": f"{TRANSACTIONAL_PREFIX}-{name}",
        # a pool of transactional ids reused across checkpoints; the default (INCREMENTING) opens a new id at every
        # checkpoint, and the broker keeps each for a week: 6 live jobs at 2 checkpoints a second left 43,000 an hour
        "sink.transaction-naming-strategy": "POOLING",
        "properties.transaction.timeout.ms": str(TRANSACTION_TIMEOUT_MS),
    }
    if group is not None:
        options.update({"scan.startup.mode": "group-offsets", "properties.group.id": group,
                        "properties.auto.offset.reset": start})
    if bounded:
        options["scan.bounded.mode"] = "latest-offset"
    else:
        options["scan.watermark.idle-timeout"] = IDLE_TIMEOUT
    if streams.STREAMS[name].raw_table and bounded:
        # a replay: a watermark after every line, not every 200 ms of processing time: a line is late against the
        # lines before it, whatever the speed of the read (a replay is read in well under a second, and a periodic
        # watermark then lagged the lines by seconds of event time: late lines went through as good ones). Live,
        # lines come in real time and the periodic watermark follows them; one per line cost the live pipeline
        # its pace (`clicklab bench --live --kafka` at 21,700 events/s: the first hop 31 s behind and falling back)
        options["scan.watermark.emit.strategy"] = "on-event"
    key = key_field(name)
    if key:
        options.update({"key.format": "raw", "key.fields": key, "value.fields-include": "ALL"})
    return streams.raw_format(name, options)


def kafka_ddl(name: str, bootstrap: str, start: StartPosition = "earliest", bounded: bool = False,
              live: bool = False, group: str | None = None) -> str:
    """``CREATE TABLE`` of one stream on its topic (tickerstream: its raw table and the view of its good events).

    Bounded (a replay), the streams the lab's jobs write take the watermark delay :data:`REPLAY_WATERMARK_S`:
    see its comment. ``live``: the streams' live delays (events arrive in time order, a second late at most).
    ``group``: see :func:`kafka_options`."""
    delay = REPLAY_WATERMARK_S if bounded and not streams.STREAMS[name].raw_table else None
    return streams.table_ddl(name, kafka_options(name, bootstrap, start, bounded, group), live=live, delay_s=delay)


def all_kafka_ddl(bootstrap: str, start: StartPosition = "earliest", bounded: bool = False, live: bool = False,
                  group: str | None = None) -> str:
    """The seven streams' tables, each dropped first (so the script can run again), as one script."""
    return "\n\n".join("".join(f"{drop};\n" for drop in streams.drop_statements(name))
                       + kafka_ddl(name, bootstrap, start, bounded, live, group) + ";"
                       for name in streams.STREAM_NAMES)
