"""``cluster.cancel_all`` (what 12_cleanup does first, live): every job that has not ended is cancelled, whatever its
state, and it returns once the cluster lists none. On a real standalone cluster of its own (a tmp build folder).

Like tests/test_cluster.py it submits jobs to a cluster: run it in a pytest process of its own (Makefile, test).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clicklab import cluster
from clicklab.exceptions import ClicklabError
from clicklab.live.watch import wait_for

pytestmark = pytest.mark.flink


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    build = tmp_path_factory.mktemp("cancel") / "build"
    try:
        cluster.up(build)
        yield build
    finally:
        cluster.down(build)
    assert cluster.status(build) is None


def _submit(build: Path) -> dict[str, str]:
    """Two jobs: one RUNNING for good, one that fails at its first row and waits an hour to restart (RESTARTING)."""
    from clicklab.flink import create_table_env

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLICKLAB_PYTHON_MODE", "thread")
        t_env = create_table_env(target="cluster", build=build)
    t_env.execute_sql("CREATE TEMPORARY TABLE src (x BIGINT) WITH ('connector' = 'datagen', "
                      "'rows-per-second' = '5', 'fields.x.min' = '0', 'fields.x.max' = '9')")
    t_env.execute_sql("CREATE TEMPORARY TABLE sink (y BIGINT) WITH ('connector' = 'blackhole')")
    t_env.execute_sql("CREATE TEMPORARY TABLE int_sink (y INT) WITH ('connector' = 'blackhole')")
    conf = t_env.get_config()
    conf.set("pipeline.name", "#5 endless")
    t_env.execute_sql("INSERT INTO sink SELECT x FROM src")
    conf.set("pipeline.name", "#6 failing")
    for key, value in {"restart-strategy.type": "fixed-delay", "restart-strategy.fixed-delay.attempts": "1000",
                       "restart-strategy.fixed-delay.delay": "1 h"}.items():
        conf.set(key, value)  # this job's own restart strategy: it stays RESTARTING
    t_env.execute_sql("INSERT INTO int_sink SELECT CAST(CONCAT('n', CAST(x AS STRING)) AS INT) FROM src")

    def states() -> dict[str, str] | None:
        got = {job.name: job.state for job in reversed(cluster.jobs(build))}  # newest first: the newest wins
        wanted = {"#5 endless": "RUNNING", "#6 failing": "RESTARTING"}
        return got if all(got.get(name) == state for name, state in wanted.items()) else None

    return wait_for("one job RUNNING and one RESTARTING", states, 120)


def test_cancel_all_cancels_running_and_restarting_jobs_and_waits_until_none_is_left(build: Path) -> None:
    _submit(build)
    asked = cluster.cancel_all(build, timeout_s=120)
    assert sorted((job.name, job.state) for job in asked) == [("#5 endless", "RUNNING"), ("#6 failing", "RESTARTING")]
    # returned once none is left: no job in any state but Flink's terminal ones
    assert {job.name: job.state for job in cluster.jobs(build)} == {"#5 endless": "CANCELED",
                                                                    "#6 failing": "CANCELED"}
    assert cluster.cancel_all(build) == []  # nothing left to cancel


def test_cancel_all_names_the_jobs_left_at_its_deadline(build: Path) -> None:
    _submit(build)
    with pytest.raises(ClicklabError, match=r"2 job\(s\) have not ended 0 s after they were cancelled: .*#6 failing"):
        cluster.cancel_all(build, timeout_s=0)  # the deadline passes at once: the jobs are still ending
    cluster.cancel_all(build, timeout_s=120)
    assert {job.state for job in cluster.jobs(build)} == {"CANCELED"}
