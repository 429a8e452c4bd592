from pathlib import Path

import pytest

from clicklab import streams


def test_six_streams_in_lab_order_with_lab_columns():
    assert streams.STREAM_NAMES == (
        "tickerstream", "impressionstream", "clickstream", "ctrstream", "destinationstream", "anomalydetectionstream",
    )
    assert streams.STREAMS["tickerstream"].column_names[:2] == ["browseraction", "site"]
    assert "rowtime" in streams.STREAMS["tickerstream"].column_names
    assert streams.STREAMS["impressionstream"].column_names == ["site", "rowtime", "impressioncount"]
    assert streams.STREAMS["clickstream"].column_names == ["site", "rowtime", "clickcount"]
    assert streams.STREAMS["ctrstream"].column_names[:3] == ["site", "time", "ctr"]
    assert [c.name for c in streams.STREAMS["destinationstream"].columns] == ["site", "time", "ctr", "score"]
    assert streams.STREAMS["anomalydetectionstream"].column_names == ["site", "rowtime", "ctrpercent", "anomaly_score"]


def test_local_ddl_points_tickerstream_at_the_replay_and_others_at_build(tmp_path: Path):
    ddl = streams.local_ddl("tickerstream", tmp_path / "build", tmp_path / "replay.jsonl.gz")
    assert f"'path' = '{(tmp_path / 'replay.jsonl.gz').resolve()}'" in ddl
    assert "WATERMARK FOR rowtime AS rowtime - INTERVAL '1' SECOND" in ddl
    ddl = streams.local_ddl("ctrstream", tmp_path / "build", tmp_path / "replay.jsonl.gz")
    assert f"'path' = '{(tmp_path / 'build' / 'streams' / 'ctrstream').resolve()}'" in ddl
    assert "`time` BIGINT" in ddl  # a reserved word, quoted


def test_stream_path_refuses_unknown_names(tmp_path: Path):
    with pytest.raises(ValueError, match="ctrstrem"):
        streams.stream_path(tmp_path, "ctrstrem")
