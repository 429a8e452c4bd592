"""Faults with the broker in the loop: the lab's broker restarted while the live generator sends and a job reads
and writes exactly-once; no event is lost or counted twice (the producer retries, the job recovers from its
checkpoint and its sink's open transaction is aborted)."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from clicklab import cluster, flink, notebook, settings, sqltext, udfs
from clicklab.faults import insert_statements
from clicklab.kafka import broker, topics
from clicklab.kafka.lab import TopicLab
from clicklab.live import process
from clicklab.live.watch import wait_for

pytestmark = [pytest.mark.flink, pytest.mark.server]


def _impressions_per_window(ticker: pd.DataFrame, until: pd.Timestamp) -> pd.Series:
    """Impressions per site and 10-second window, counted with pandas from tickerstream, before ``until``."""
    rows = ticker[ticker["browseraction"] == "Impression"].copy()
    rows["rowtime"] = pd.to_datetime(rows["event_time"], utc=True).dt.floor(f"{settings.WINDOW_SECONDS}s")
    counts = rows.groupby(["site", "rowtime"]).size()
    return counts[counts.index.get_level_values("rowtime") < until]


def test_a_broker_restart_mid_run_loses_no_event_and_counts_none_twice(kafka_build: Path):
    build = kafka_build
    address = broker.bootstrap(build)
    topics.create(address)
    topics.empty(address, ["tickerstream", "impressionstream"])
    cluster.up(build)
    try:
        t_env = flink.create_table_env(config=notebook.live_config("kafka"), target="cluster", build=build)
        lab = TopicLab(settings.DEFAULT_DATASET, build, t_env, address, live=True)
        lab.create_tables()
        lab.register_functions(udfs.Detector())
        impressions = next(s for s in insert_statements("04") if "INTO impressionstream" in s)
        lab.run(sqltext.substitute(impressions, lab.variables()))
        process.start_background(build, scenario="lab", scale=20, bootstrap=address)

        def windows() -> int:
            return len(topics.read_topic(address, "impressionstream"))

        wait_for("3 impression windows before the restart", lambda: windows() >= 3 or None, timeout_s=180)
        before = windows()
        broker.down(build)
        assert broker.up(build).bootstrap == address  # the same port: clients reconnect
        restarted = time.time()
        # the job recovers and goes on: windows of event time well after the restart
        wait_for("impression windows 30 s after the broker's restart", lambda: (
            (frame := topics.read_topic(address, "impressionstream")).size
            and frame["rowtime"].max().timestamp() > restarted + 30) or None, timeout_s=300)
        assert process.status(build) is not None and process.status(build).running, "the generator gave up"
        process.stop(build)
        ticker = topics.read_topic(address, "tickerstream")
        output = topics.read_topic(address, "impressionstream")
        # every window up to the output's last one, except that last (its count may still grow): exactly pandas'
        last = output["rowtime"].max()
        expected = _impressions_per_window(ticker, last)
        got = output[output["rowtime"] < last].set_index(["site", "rowtime"])["impressioncount"].sort_index()
        assert not got.index.duplicated().any(), got[got.index.duplicated(keep=False)]
        assert len(got) > before
        pd.testing.assert_series_equal(got.astype("int64"), expected.sort_index().astype("int64"),
                                       check_names=False)
    finally:
        process.stop(build)
        cluster.down(build)
