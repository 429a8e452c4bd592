"""A Flink session on the lab's topics for a replay: bounded Kafka tables, the lab's functions and the ordered
views of 08 and 09, and the notebooks' steps run in it (``clicklab bench --kafka``, ``tests/test_kafka_pipeline.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clicklab import flink, settings, sqltext, udfs
from clicklab.kafka import jars, tables, topics

#: The streams the steps write (emptied before each run of them).
OUTPUTS = tuple(name for name in tables.PARTITIONS if name != "tickerstream")


@dataclass
class ReplaySession:
    bootstrap: str
    t_env: Any
    variables: dict[str, Any]


def open_replay_session(bootstrap: str, parallelism: int = 2) -> ReplaySession:
    """The topics created, a table environment at ``parallelism`` with the Kafka connector, checkpoints every
    second (an exactly-once sink commits at a checkpoint, and at the end of a bounded job), the seven tables read
    bounded from the earliest offset, the lab's functions and the views of 08 and 09."""
    from clicklab import bench

    topics.create(bootstrap)
    t_env = flink.create_table_env(parallelism=parallelism, config={"execution.checkpointing.interval": "1 s"})
    flink.execute(t_env, f"ADD JAR '{jars.jars(settings.DEFAULT_BUILD).connector()}'")
    for statement in sqltext.split_statements(tables.all_kafka_ddl(bootstrap, bounded=True)):
        flink.execute(t_env, statement)
    udfs.register(t_env, udfs.Detector())
    variables = {"window_seconds": settings.WINDOW_SECONDS, "anomaly_threshold": settings.ANOMALY_THRESHOLD,
                 "ctr_input": "ctr_in_time_order", "scores_input": "scores_in_time_order"}
    for view in bench.view_statements():
        for statement in sqltext.split_statements(sqltext.substitute(view, variables)):
            flink.execute(t_env, statement)
    return ReplaySession(bootstrap, t_env, variables)


def replay(session: ReplaySession, dataset: Path) -> int:
    """Empty every topic and produce ``dataset`` into tickerstream; the number of lines."""
    topics.empty(session.bootstrap, list(tables.PARTITIONS))
    return topics.produce_replay(session.bootstrap, dataset)


def run_steps(session: ReplaySession, statements: list[str]) -> float:
    """Empty the output topics and run ``statements`` (the notebooks' INSERTs) one job after the other, each to
    its end; the seconds they took."""
    topics.empty(session.bootstrap, list(OUTPUTS))
    began = time.perf_counter()
    for sql in statements:
        flink.wait(flink.execute(session.t_env, sqltext.substitute(sql, session.variables)))
    return time.perf_counter() - began
