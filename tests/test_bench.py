"""The benchmark's baseline must be the lab's own jobs without the Python functions."""

from clicklab import bench, sqltext


def test_pipeline_is_the_notebooks_insert_statements_in_order():
    targets = [sqltext.parse_script(sql)[0].target for sql in bench.lab_statements()]
    assert targets == ["impressionstream", "badevents", "clickstream", "ctrstream", "destinationstream",
                       "anomalydetectionstream"]


def test_baseline_replaces_every_udf_call_and_nothing_else():
    for sql in bench.lab_statements():
        plain = bench.without_udfs(sql)
        assert "RANDOM_CUT_FOREST" not in plain and "ANOMALY_DECISIONS" not in plain
        if "RANDOM_CUT_FOREST" not in sql and "ANOMALY_DECISIONS" not in sql:
            assert plain == sql
