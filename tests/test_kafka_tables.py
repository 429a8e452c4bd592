"""The Kafka tables' options as the live and replay sessions ask for them (no broker, no JVM)."""

from __future__ import annotations

import pytest

from clicklab.kafka import tables
from clicklab.kafka.lab import job_group
from clicklab.kafka.topics import key_and_time


def test_a_live_job_reads_in_its_group_from_the_earliest_offset_the_first_time() -> None:
    options = tables.kafka_options("impressionstream", "127.0.0.1:9", "earliest", group=job_group("ctrstream"))
    assert options["scan.startup.mode"] == "group-offsets"
    assert options["properties.group.id"] == "clicklab-job-ctrstream"
    assert options["properties.auto.offset.reset"] == "earliest"
    assert options["scan.watermark.idle-timeout"] == tables.IDLE_TIMEOUT
    assert "scan.bounded.mode" not in options


def test_a_query_reads_from_the_start_position_without_a_group() -> None:
    options = tables.kafka_options("ctrstream", "127.0.0.1:9", "latest")
    assert options["scan.startup.mode"] == "latest-offset"
    assert "properties.group.id" not in options


def test_live_tables_take_the_live_watermark_and_a_replay_the_long_one() -> None:
    live = tables.kafka_ddl("ctrstream", "127.0.0.1:9", live=True)
    replay = tables.kafka_ddl("ctrstream", "127.0.0.1:9", bounded=True)
    assert "INTERVAL '1' SECOND" in live and "'scan.bounded.mode'" not in live
    assert f"INTERVAL '{tables.REPLAY_WATERMARK_S // 86_400}' DAY" in replay


def test_a_bad_start_position_is_named() -> None:
    with pytest.raises(ValueError, match="'trim_horizon'"):
        tables.kafka_options("ctrstream", "127.0.0.1:9", "trim_horizon")  # type: ignore[arg-type]


def test_a_line_is_keyed_by_its_site_and_stamped_with_its_event_time() -> None:
    line = '{"browseraction":"Click","site":"https://www.mysite.com","event_time":"2026-01-02T03:04:05.678Z"}'
    assert key_and_time(line) == ("https://www.mysite.com", 1_767_323_045_678)
    assert key_and_time("not json") == (None, None)


def test_tickerstream_emits_a_watermark_per_line_on_a_replay_and_periodically_live() -> None:
    """Per line, a replay's late lines do not depend on the read's speed; live, one watermark per line held the
    pipeline back (`clicklab bench --live --kafka`: 31 s behind at 21,700 events/s)."""
    assert tables.kafka_options("tickerstream", "127.0.0.1:9", bounded=True)["scan.watermark.emit.strategy"] == \
        "on-event"
    assert "scan.watermark.emit.strategy" not in tables.kafka_options("tickerstream", "127.0.0.1:9")
