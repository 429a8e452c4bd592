"""``clicklab bench --kafka``: the replay pipeline through Kafka topics, next to its Flink-SQL-only baseline on the
same topics, and the broker's own produce and consume rates on this machine (the ceiling).

Nothing here asserts a time: the figures are printed (``--json`` gives them as one object). The pipeline is the
notebooks' five steps (#4 impressions and bad events, #5 clicks, #6 CTR, #8 scores, #9 anomalies) as bounded
jobs on the topics; the baseline is the same five jobs with the two keyed functions replaced by plain SQL
(:data:`clicklab.bench.BASELINE_REPLACEMENTS`), so ``pipeline_to_baseline`` is what the functions cost. Every run
starts from empty output topics.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from clicklab import badevents, settings
from clicklab.kafka import broker, tables, topics
from clicklab.kafka import session as kafka_session

log = logging.getLogger(__name__)

def broker_ceiling(bootstrap: str, dataset: Path, copies: int = 4) -> dict[str, float]:
    """Produce the replay's lines ``copies`` times to a fresh topic and read them back: records per second each
    way, with the settings the lab's producer uses (``linger.ms`` 20, 1 MB batches, lz4)."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, 4, 1, config=tables.TOPIC_CONFIG)]).values():
        future.result(60)
    lines = [line.encode() for line in badevents.read_lines(dataset)]
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20,
                         "batch.size": 1_000_000, "compression.type": "lz4"})
    start = time.perf_counter()
    for _ in range(copies):
        for i, line in enumerate(lines):
            while True:
                try:
                    producer.produce(name, value=line, key=str(i % 64).encode())
                    break
                except BufferError:
                    producer.poll(0.05)
    producer.flush(300)
    produced_s = time.perf_counter() - start
    total = copies * len(lines)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": name, "enable.auto.commit": False})
    consumer.assign([TopicPartition(name, p, 0) for p in range(4)])
    start, read = time.perf_counter(), 0
    while read < total and time.perf_counter() - start < 300:
        read += sum(1 for m in consumer.consume(10_000, 1.0) if m.error() is None)
    consumed_s = time.perf_counter() - start
    consumer.close()
    for future in admin.delete_topics([name]).values():
        future.result(60)
    return {"records": total, "produce_per_s": total / produced_s, "consume_per_s": read / consumed_s}


def pipeline(bootstrap: str, work: Path, sites: int, seconds: int, impressions_per_s: float,
             parallelism: int = 2) -> dict[str, Any]:
    """Generate a replay, produce it into tickerstream, time the five steps and their baseline on the topics."""
    from clicklab import bench
    from clicklab.generator import benchmark_scenario, generate

    replay = generate(benchmark_scenario(sites, seconds, impressions_per_s, 0.1), 11, work / "bench.jsonl.gz")
    session = kafka_session.open_replay_session(bootstrap, parallelism)
    start = time.perf_counter()
    produced = kafka_session.replay(session, replay.out_path)
    produce_s = time.perf_counter() - start
    steps = bench.lab_statements()
    log.info("Kafka: baseline (no keyed functions) ...")
    baseline_s = kafka_session.run_steps(session, [bench.without_udfs(sql) for sql in steps])
    log.info("Kafka: the lab's pipeline ...")
    pipeline_s = kafka_session.run_steps(session, steps)
    anomalies = len(topics.read_topic(bootstrap, "anomalydetectionstream"))
    return {"events": produced, "parallelism": parallelism, "produce_s": produce_s,
            "baseline_events_per_s": produced / baseline_s, "pipeline_events_per_s": produced / pipeline_s,
            "pipeline_to_baseline": baseline_s / pipeline_s, "anomaly_rows": anomalies}


def run_all(build: Path, quick: bool = False) -> dict[str, Any]:
    """Every figure of ``clicklab bench --kafka``; ``quick`` uses small sizes (for tests of the command)."""
    own = not os.environ.get(broker.BOOTSTRAP_ENV)
    if own:
        broker.up(build)  # resolves the jars first if needed
    try:
        bootstrap = broker.bootstrap(build)
        log.info("broker's own produce and consume rate ...")
        figures: dict[str, Any] = {"broker": broker_ceiling(bootstrap, settings.DEFAULT_DATASET, 1 if quick else 4)}
        sites, seconds, rate = (5, 120, 5.0) if quick else (100, 3600, 7.6)
        figures["pipeline"] = pipeline(bootstrap, build / "bench-kafka", sites, seconds, rate)
    finally:
        if own:
            broker.down(build)
    return figures


def format_figures(f: dict[str, Any]) -> str:
    b, p = f["broker"], f["pipeline"]
    return "\n".join([
        f"broker (ceiling): {b['records']:,} records, produce {b['produce_per_s']:,.0f}/s, "
        f"consume {b['consume_per_s']:,.0f}/s",
        f"replay through Kafka, {p['events']:,} events at parallelism {p['parallelism']}: "
        f"produced into tickerstream in {p['produce_s']:.1f} s",
        f"  pipeline {p['pipeline_events_per_s']:,.0f} events/s, Flink-SQL-only baseline "
        f"{p['baseline_events_per_s']:,.0f} events/s, pipeline_to_baseline {p['pipeline_to_baseline']:.2f}, "
        f"{p['anomaly_rows']} anomaly rows",
    ])
