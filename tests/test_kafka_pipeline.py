"""The lab's replay through Kafka topics (:mod:`clicklab.kafka`): a replay file produced into tickerstream, the
notebooks' steps run as bounded jobs at parallelism 2 (per-partition watermarks: no parallelism 1 needed), and
the results checked against what is known independently: ctrstream equal to the CTR pandas counts from the file;
with 1,000 fuzzed bad lines mixed in, badevents holds exactly those lines with their reasons and every good
result equals the clean run's."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from clicklab import badevents, settings
from clicklab.kafka import broker, topics
from clicklab.kafka import session as kafka_session

pytestmark = [pytest.mark.server, pytest.mark.flink]

#: A slice of the replay with the labelled burst at 13:05, after the forest's warm-up (as tests/test_badevents.py).
SLICE = ("2023-08-23T12:52:00Z", "2023-08-23T13:07:00Z")
RESULTS = ("impressionstream", "clickstream", "ctrstream", "destinationstream", "anomalydetectionstream")


@pytest.fixture(scope="module")
def session(kafka_build: Path) -> kafka_session.ReplaySession:
    return kafka_session.open_replay_session(broker.bootstrap(kafka_build), parallelism=2)


def run_steps(session: kafka_session.ReplaySession, dataset: Path, steps: int | None = None
              ) -> dict[str, pd.DataFrame]:
    """Produce ``dataset`` into tickerstream, run the notebooks' INSERTs (the first ``steps``), and read back every
    stream they wrote, sorted."""
    from clicklab import bench

    assert kafka_session.replay(session, dataset) == len(badevents.read_lines(dataset))
    kafka_session.run_steps(session, bench.lab_statements()[:steps])
    out = {}
    for name in kafka_session.OUTPUTS:
        frame = topics.read_topic(session.bootstrap, name)
        out[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return out


def test_replay_through_kafka_gives_the_independent_ctr_at_parallelism_2(session: kafka_session.ReplaySession) -> None:
    from clicklab import results

    got = run_steps(session, settings.DEFAULT_DATASET, steps=4)  # 04 (impressions, bad events), 05, 06
    expected = results.reference_ctr(settings.DEFAULT_DATASET)
    assert len(got["ctrstream"]) == len(expected), f"{len(got['ctrstream'])} CTR rows, {len(expected)} windows"
    assert results.compare_ctr(got["ctrstream"], expected) == []
    assert got["badevents"].empty


def test_fuzzed_lines_go_to_badevents_and_leave_every_good_result_unchanged(session: kafka_session.ReplaySession,
                                                                             tmp_path: Path) -> None:
    clean, fuzzed = tmp_path / "clean.jsonl.gz", tmp_path / "fuzzed.jsonl.gz"
    badevents.mix_file(settings.DEFAULT_DATASET, clean, 0, start=SLICE[0], end=SLICE[1])
    bad = badevents.mix_file(settings.DEFAULT_DATASET, fuzzed, 1000, seed=11, start=SLICE[0], end=SLICE[1])
    clean_run = run_steps(session, clean)
    fuzzed_run = run_steps(session, fuzzed)
    got = fuzzed_run["badevents"]
    assert Counter(zip(got["line"], got["reason"], strict=True)) == Counter((b.line, b.reason) for b in bad)
    assert clean_run["badevents"].empty
    for name in RESULTS:
        pd.testing.assert_frame_equal(fuzzed_run[name], clean_run[name], obj=name)
    anomalies = clean_run["anomalydetectionstream"]
    assert (anomalies["site"] == "https://www.mysite.com").any(), "the slice's labelled burst was not flagged"
