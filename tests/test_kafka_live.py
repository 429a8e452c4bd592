"""The live lab on Kafka topics (``clicklab run --live --streams kafka``): traffic first, then the jobs, which read
tickerstream from the earliest offset as the lab's paragraphs read their Kinesis stream from ``TRIM_HORIZON``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from clicklab import cluster, runner
from clicklab.kafka import broker, topics
from clicklab.live import process
from tests.conftest import burst_emails, email_texts

pytestmark = [pytest.mark.flink, pytest.mark.server]

#: Seconds of traffic the generator has sent (backfilled) before the first job starts.
BACKFILL_S = 90


def test_live_on_topics_reads_the_traffic_sent_before_the_jobs_and_sends_the_bursts_email(kafka_build: Path):
    build = kafka_build
    address = broker.bootstrap(build)
    topics.create(address)
    process.start_background(build, scenario="lab", backfill_s=BACKFILL_S, bootstrap=address)
    started = time.time()
    report = runner.run(build=build, live=True,  # the default streams: topics
                        only=["01", "04", "05", "06", "08", "09", "10", "11"])
    summary = report.summary
    assert summary.ok, summary.render()
    assert summary.events > 0 and set(summary.latency) == {"anomaly row", "e-mail"}, summary.render()
    # one alert for the burst, on its first flagged window: a window the burst filled whole (about the lab's 500 %),
    # and what was usual for the site (issue 23)
    assert burst_emails(build / "outbox"), [text[:400] for text in email_texts(build / "outbox")]
    # the run stopped the cluster, the generator and the broker; the topics stay with the broker's data
    assert cluster.status(build) is None and process.status(build) is None and broker.status(build) is None
    address = broker.up(build).bootstrap
    impressions = topics.read_topic(address, "impressionstream")
    ctr = topics.read_topic(address, "ctrstream")
    first_window = impressions["rowtime"].min().timestamp()
    # read from the earliest offset: the first windows are those of the backfilled traffic, sent before any job ran
    assert first_window < started - BACKFILL_S / 2, (first_window, started)
    # each window once (exactly-once sinks, read_committed)
    for name, frame, window in (("impressionstream", impressions, "rowtime"), ("ctrstream", ctr, "time")):
        dupes = frame[frame.duplicated(["site", window], keep=False)]
        assert dupes.empty, f"{name}: {dupes.head()}"

    runner.run(build=build, live=True, backend="kafka", only=["12"])
    assert broker.status(build) is None and broker.leftovers(build) == []
    assert cluster.status(build) is None and cluster.processes(build) == {} and process.status(build) is None
