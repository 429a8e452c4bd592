"""The benchmark's baseline must be the lab's own jobs without the Python functions."""

import pytest

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


def test_keyed_text_gives_points_per_s_per_parallelism_and_memory_once():
    """`clicklab bench --sites N` (no --json): one points/s line per parallelism; the per-parallelism memory
    figures of the `keyed` object are not printed as points/s."""
    from clicklab import benchkeyed

    keyed = {"sites": 10_000, "windows": 300, "parallelism_1_points_per_s": 14_000.0,
             "parallelism_2_points_per_s": 21_000.0, "parallelism_1_points_per_s_first_to_last": 13_000.0,
             "parallelism_2_points_per_s_first_to_last": 18_200.0, "parallelism_1_heap_mb_per_1000_sites": 146.5,
             "parallelism_1_rss_mb_per_1000_sites": 170.0, "parallelism_2_heap_mb_per_1000_sites": 146.4,
             "parallelism_2_rss_mb_per_1000_sites": 175.0, "state_bytes_per_site": 4962.0,
             "heap_mb_per_1000_sites": 146.4, "rss_mb_per_1000_sites": 175.0, "checkpoint_s": 0.07,
             "recovery_s": 2.3}
    text = benchkeyed.format_keyed(keyed)
    points = [line for line in text.splitlines() if "points/s" in line and "P=2 / P=1" not in line]
    sustained = "points/s   sustained (10-90 % of the rows);"
    assert points == [f"  parallelism 1:     14,000 {sustained} 13,000 first to last row",
                      f"  parallelism 2:     21,000 {sustained} 18,200 first to last row"], text
    assert "P=2 / P=1: 1.50 (first to last row: 1.40)" in text
    assert "resident (RSS): 175.0 MB" in text and "state per site (checkpoint): 4.8 KB" in text


def test_the_sustained_rate_leaves_out_a_slow_start_and_a_partial_last_second():
    from clicklab.benchkeyed import sustained_rate

    # 5 s of warm-up at 100 rows/s, then 1,000 rows/s, then the last 50 rows in a partial poll
    samples = [(float(t), 100 * t) for t in range(6)] + [(5.0 + t, 500 + 1000 * t) for t in range(1, 10)]
    samples.append((14.5, 9550))
    assert sustained_rate(samples, 9550) == pytest.approx(1000.0)
    assert 9550 / 14.5 < 700  # what first to last would say
    # every row between two polls: the two polls' slope; a single poll: no rate
    assert sustained_rate([(0.0, 0), (2.0, 6000)], 6000) == pytest.approx(3000.0)
    assert sustained_rate([(5.0, 6000)], 6000) is None
    # the first poll already past 10 %: from that poll
    assert sustained_rate([(0.0, 2000), (1.0, 3000), (2.0, 4000), (3.0, 5000)], 5000) == pytest.approx(1000.0)
