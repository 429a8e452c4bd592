"""The lab's replay through Kafka topics (:mod:`clicklab.kafka`): the replay file produced into tickerstream, the
steps #4-#6 of the notebooks run as bounded jobs at parallelism 2 (per-partition watermarks: no parallelism 1,
no sort), and ctrstream equal to the CTR pandas counts straight from the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from clicklab import settings
from clicklab.kafka import broker, jars, tables, topics

pytestmark = [pytest.mark.server, pytest.mark.flink]


@pytest.fixture(scope="module")
def bootstrap(kafka_build: Path) -> str:
    return broker.bootstrap(kafka_build)


def test_replay_through_kafka_gives_the_independent_ctr_at_parallelism_2(bootstrap: str) -> None:
    from clicklab import bench, flink, results, sqltext

    dataset = settings.DEFAULT_DATASET
    topics.create(bootstrap)
    produced = topics.produce_replay(bootstrap, dataset)
    assert produced == sum(1 for _ in topics._lines(dataset))
    t_env = flink.create_table_env(parallelism=2, config={"execution.checkpointing.interval": "1 s"})
    flink.execute(t_env, f"ADD JAR '{jars.jars(settings.DEFAULT_BUILD).connector()}'")
    for statement in sqltext.split_statements(tables.all_kafka_ddl(bootstrap, bounded=True)):
        flink.execute(t_env, statement)
    variables = {"window_seconds": settings.WINDOW_SECONDS}
    for sql in bench.lab_statements()[:4]:  # 04 (impressions, bad events), 05 (clicks), 06 (CTR)
        flink.wait(flink.execute(t_env, sqltext.substitute(sql, variables)))
    ctr = topics.read_topic(bootstrap, "ctrstream")
    expected = results.reference_ctr(dataset)
    assert len(ctr) == len(expected), f"{len(ctr)} CTR rows, {len(expected)} windows in the replay"
    assert results.compare_ctr(ctr, expected) == []
