from pathlib import Path

import pytest

from clicklab import streams


def test_six_streams_in_lab_order_with_lab_columns_then_badevents():
    assert streams.STREAM_NAMES == (
        "tickerstream", "impressionstream", "clickstream", "ctrstream", "destinationstream", "anomalydetectionstream",
        "badevents",
    )
    assert streams.STREAMS["badevents"].column_names == ["line", "reason", "rowtime"]
    assert streams.STREAMS["tickerstream"].column_names[:2] == ["browseraction", "site"]
    assert "rowtime" in streams.STREAMS["tickerstream"].column_names
    assert streams.STREAMS["impressionstream"].column_names == ["site", "rowtime", "impressioncount"]
    assert streams.STREAMS["clickstream"].column_names == ["site", "rowtime", "clickcount"]
    assert streams.STREAMS["ctrstream"].column_names[:3] == ["site", "time", "ctr"]
    assert [c.name for c in streams.STREAMS["destinationstream"].columns] == ["site", "time", "ctr", "score"]
    assert streams.STREAMS["anomalydetectionstream"].column_names == ["site", "rowtime", "ctrpercent", "anomaly_score",
                                                                  "expected", "usual_low", "usual_high", "grade"]


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


def test_kinesis_ddl_has_the_local_columns_and_the_labs_stream_names():
    for name, stream in streams.STREAMS.items():
        ddl = streams.kinesis_ddl(name, "1.15", "us-west-2")
        if stream.raw_table:  # tickerstream: a view of its raw table's good events, with the lab's columns
            assert f"CREATE VIEW {name} AS" in ddl and "'format' = 'raw'" in ddl
            assert all(f"AS {streams._quote(c.name)}" in ddl for c in stream.columns)
        else:
            assert all(f"{streams._quote(c.name)} {c.type}" in ddl for c in stream.columns)
            assert "'format' = 'json'" in ddl
        assert f"'stream' = '{name}'" in ddl and "'aws.region' = 'us-west-2'" in ddl
        assert "'scan.stream.initpos' = 'LATEST'" in ddl
    ticker = streams.kinesis_ddl("tickerstream")
    assert "rowtime TIMESTAMP(3) METADATA FROM 'timestamp' VIRTUAL" in ticker  # arrival time, as in the lab
    assert "WATERMARK FOR rowtime AS rowtime - INTERVAL '1' SECOND" in ticker
    assert "rowtime AS CAST(TO_TIMESTAMP_LTZ(`time`, 0) AS TIMESTAMP(3))" in streams.kinesis_ddl("ctrstream")


def test_kinesis_ddl_option_names_per_flink_version():
    old = streams.kinesis_ddl("clickstream", "1.18")
    assert "'connector' = 'kinesis'" in old and "'stream' = 'clickstream'" in old and "scan.stream.initpos" in old
    new = streams.kinesis_ddl("clickstream", "1.19", "eu-west-1", account_id="123456789012")
    assert "'connector' = 'kinesis'" in new
    assert "'stream.arn' = 'arn:aws:kinesis:eu-west-1:123456789012:stream/clickstream'" in new
    assert "'source.init.position' = 'LATEST'" in new and "'stream' =" not in new and "initpos" not in new
    legacy = streams.kinesis_ddl("tickerstream", "1.19")  # metadata needs the legacy source (FLINK-36671)
    assert "'connector' = 'kinesis-legacy'" in legacy and "METADATA FROM 'timestamp'" in legacy
    with pytest.raises(ValueError, match="account id"):
        streams.kinesis_ddl("clickstream", "1.19")
    with pytest.raises(ValueError, match="12 digits"):
        streams.kinesis_ddl("clickstream", "1.19", account_id="12345")
    with pytest.raises(ValueError, match=r"MAJOR\.MINOR"):
        streams.kinesis_ddl("clickstream", "latest")


@pytest.mark.flink
def test_flink_accepts_the_kinesis_ddl(t_env):
    """Flink parses and registers the tables (the connector itself is only looked up when a job runs)."""
    from clicklab.sqltext import split_statements

    for name in streams.STREAM_NAMES:
        raw = streams.STREAMS[name].raw_table
        t_env.execute_sql(f"DROP TEMPORARY TABLE IF EXISTS kinesis_{raw or name}")
        ddl = streams.kinesis_ddl(name, "1.15")
        table, *view = split_statements(ddl)
        table = table.replace(f"CREATE TABLE {raw or name} ", f"CREATE TEMPORARY TABLE kinesis_{raw or name} ")
        t_env.execute_sql(table)
        columns = [row[0] for row in t_env.execute_sql(f"DESCRIBE kinesis_{raw or name}").collect()]
        if raw:  # tickerstream: its raw table, and the view of its good events, the local DDL's (Flink needs the
            # Kinesis connector to plan a view on this table; every Flink test plans the local one)
            assert columns == ["line", streams.FAST_PATH_COLUMN, "reason", "parsed_time", "rowtime"]
            assert view == [streams.ticker_view_sql(name, ("browseraction", "site"))]
        else:
            assert columns == streams.STREAMS[name].column_names and view == []
        t_env.execute_sql(f"DROP TEMPORARY TABLE kinesis_{raw or name}")


def test_what_an_aws_user_deletes_names_every_stream_the_template_creates():
    """12_cleanup's AWS list names the seven streams (the lab's six and badevents), as the template creates them."""
    import yaml

    from clicklab.alerts.cleanup import AWS_RESOURCES

    template = yaml.safe_load((Path(__file__).parents[1] / "scripts" / "clickstream-lab.yaml").read_text())
    created = {r["Properties"]["Name"] for r in template["Resources"].values() if r["Type"] == "AWS::Kinesis::Stream"}
    listed = next(what for what, _ in AWS_RESOURCES if what.startswith("Kinesis data streams"))
    assert created == set(streams.STREAM_NAMES) and all(name in listed for name in streams.STREAM_NAMES)
