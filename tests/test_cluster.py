"""The lab's Flink standalone cluster (clicklab/cluster.py): what `clicklab cluster up|down|status` promises.

One cluster for the module, in a tmp build folder, started through the CLI as a user would; its finalizer stops
it with ``down`` whatever happened. ``test_down_leaves_no_process_or_port`` runs last and stops it itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from clicklab import cli, cluster
from clicklab.exceptions import ClicklabError

pytestmark = pytest.mark.flink

LOOPBACK_ADDRESSES = {"127.0.0.1", "::ffff:127.0.0.1"}  # Java listens on IPv6 sockets mapped to 127.0.0.1
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Running:
    build: Path
    printed: str  # what `clicklab cluster up` printed
    url: str  # the web UI URL it printed
    info: cluster.ClusterInfo


def _get(url: str) -> dict:
    with _NO_PROXY.open(url, timeout=10) as response:
        return json.loads(response.read())


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(args))
    return code, out.getvalue(), err.getvalue()


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout_s:g} s")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory):
    build = tmp_path_factory.mktemp("cluster") / "build"
    try:
        code, out, err = _cli("cluster", "up", "--build", str(build))
        assert code == 0, err
        match = re.search(r"web UI: (http://127\.0\.0\.1:\d+)", out)
        assert match, out
        info = cluster.status(build)
        assert info is not None
        yield Running(build=build, printed=out, url=match.group(1), info=info)
    finally:
        cluster.down(build)


@pytest.fixture(scope="module")
def remote_env(running: Running):
    """A table environment whose jobs go to the module's cluster (Python UDFs in thread mode, the lab's default)."""
    from clicklab.flink import create_table_env

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLICKLAB_PYTHON_MODE", "thread")
        return create_table_env(target="cluster", build=running.build)


def _listeners(build: Path) -> list[tuple[str, str, int]]:
    """(role, ip, port) of every listening TCP socket of the cluster's processes and their children."""
    owners = dict(cluster.processes(build))
    for pid in list(owners):
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(pid).children(recursive=True):
                owners[child.pid] = f"child of {owners[pid]}"
    found = []
    for pid, role in owners.items():
        with contextlib.suppress(psutil.NoSuchProcess):
            for conn in psutil.Process(pid).net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.append((role, conn.laddr.ip, conn.laddr.port))
    return found


def test_up_prints_a_web_ui_that_reports_two_taskmanagers(running: Running) -> None:
    assert running.info.taskmanagers == 2
    assert running.info.slots_total == 8
    assert running.url == running.info.url
    overview = _get(running.url + "/overview")
    assert overview["taskmanagers"] == 2
    assert overview["flink-version"].startswith("2.")
    assert "CLICKLAB_FLINK=cluster" in running.printed


def test_everything_listens_on_loopback_only(running: Running) -> None:
    listeners = _listeners(running.build)
    roles = {role for role, _, _ in listeners}
    assert {"JobManager", "TaskManager"} <= roles
    assert running.info.rest_port in {port for _, _, port in listeners}
    assert [x for x in listeners if x[1] not in LOOPBACK_ADDRESSES] == []


def test_sql_with_a_python_udf_runs_on_the_cluster_under_its_name(running: Running, remote_env) -> None:
    from pyflink.table import DataTypes
    from pyflink.table.udf import udf

    remote_env.create_temporary_function("twice", udf(lambda x: x * 2, result_type=DataTypes.BIGINT()))
    remote_env.get_config().set("pipeline.name", "#4 impression stream")
    result = remote_env.execute_sql("SELECT x, twice(x) AS y FROM (VALUES (1), (2), (3)) AS t(x)")
    with result.collect() as rows:
        assert sorted(tuple(row) for row in rows) == [(1, 2), (2, 4), (3, 6)]

    def finished():
        return [j for j in cluster.jobs(running.build) if j.name == "#4 impression stream" and j.state == "FINISHED"]

    (job,) = _wait_for(finished, 30, "the job is not FINISHED under its name")
    assert job.start_time is not None


def test_cancel_named_cancels_a_running_job(running: Running, remote_env) -> None:
    from pyflink.table import DataTypes
    from pyflink.table.udf import udf

    remote_env.create_temporary_function("plus_one", udf(lambda x: x + 1, result_type=DataTypes.BIGINT()))
    remote_env.execute_sql("CREATE TEMPORARY TABLE endless_src (x BIGINT) WITH ('connector' = 'datagen', "
                           "'rows-per-second' = '50', 'fields.x.min' = '0', 'fields.x.max' = '1000')")
    remote_env.execute_sql("CREATE TEMPORARY TABLE endless_sink (y BIGINT) WITH ('connector' = 'blackhole')")
    name = "#5 endless"
    remote_env.get_config().set("pipeline.name", name)
    remote_env.execute_sql("INSERT INTO endless_sink SELECT plus_one(x) FROM endless_src")

    def running_jobs():
        return [j for j in cluster.jobs(running.build) if j.name == name and j.state == "RUNNING"]

    (job,) = _wait_for(running_jobs, 60, "the endless job is not RUNNING")
    # with a job's tasks and its Python UDF running, still nothing listens beyond loopback
    assert [x for x in _listeners(running.build) if x[1] not in LOOPBACK_ADDRESSES] == []
    code, out, _ = _cli("cluster", "status", "--build", str(running.build))
    assert code == 0
    assert re.search(rf"RUNNING\s+{re.escape(name)}", out), out

    assert cluster.cancel_named(running.build, name) == [job.id]
    states = {j.id: j.state for j in cluster.jobs(running.build)}
    assert states[job.id] == "CANCELED"
    assert cluster.cancel_named(running.build, name) == []  # nothing of that name runs any more


def test_a_query_past_its_deadline_is_cancelled_without_a_second_gateway_connection(running: Running, remote_env,
                                                                                   tmp_path: Path) -> None:
    """A query whose source goes quiet is cancelled at its deadline by a watchdog thread. A gateway call from
    that thread would open a second py4j connection, served by a Java thread without the planner's
    thread-local; the pool then hands it to a later statement, which fails at random with
    ``NullPointerException: metadataHandlerProvider`` (seen in the live lab). On a cluster the watchdog cancels
    over REST: the pool keeps its one connection and the session's next statements plan."""
    from pyflink.java_gateway import get_gateway

    from clicklab.notebook import Lab

    remote_env.execute_sql("CREATE TEMPORARY TABLE quiet_src (x BIGINT) WITH ('connector' = 'datagen', "
                           "'rows-per-second' = '20', 'fields.x.min' = '0', 'fields.x.max' = '9')")
    lab = Lab(tmp_path / "none.jsonl", running.build, remote_env)
    pool = get_gateway()._gateway_client.deque
    before = len(pool)
    remote_env.get_config().set("pipeline.name", "#6 quiet query")
    (outcome,) = lab.run("SELECT x FROM quiet_src WHERE x < 0", timeout_s=8)
    assert "stopped at the time limit of 8 s" in outcome.message
    assert len(pool) == before
    assert [j.state for j in cluster.jobs(running.build) if j.name == "#6 quiet query"] == ["CANCELED"]
    for n in range(5):
        (again,) = lab.run(f"SELECT x + {n} AS y FROM (VALUES (1), (2)) AS t(x)")
        assert sorted(again.frame["y"]) == [1 + n, 2 + n]


def test_bench_sites_prints_the_keyed_figures_and_leaves_no_cluster_running(tmp_path: Path) -> None:
    """`clicklab bench --sites N --json` (small: 40 sites x 40 windows): the `keyed` object's figures, each a
    plausible number, and the bench's own cluster stopped afterwards (it holds gigabytes of heap)."""
    build = tmp_path / "build"
    code, out, err = _cli("bench", "--sites", "40", "--windows", "40", "--parallelism", "2", "--json",
                          "--build", str(build))
    assert code == 0, err
    keyed = json.loads(out)["keyed"]
    assert (keyed["sites"], keyed["windows"]) == (40, 40)
    for key in ("parallelism_1_points_per_s", "parallelism_2_points_per_s", "parallelism_1_points_per_s_first_to_last",
                "parallelism_2_points_per_s_first_to_last"):
        assert keyed[key] > 0, keyed
    # 40 windows fill 40 of a forest's 1,024 pool slots: a few hundred bytes of state, far under a full pool's 16 KB
    assert 100 < keyed["state_bytes_per_site"] < 16_500, keyed
    assert keyed["checkpoint_s"] >= 0 and keyed["recovery_s"] > 0, keyed
    assert cluster.status(build / "bench" / "cluster") is None
    assert cluster.processes(build / "bench" / "cluster") == {}


def test_up_again_returns_the_same_cluster(running: Running) -> None:
    before = cluster.processes(running.build)
    start = time.monotonic()
    again = cluster.up(running.build)
    assert time.monotonic() - start < 10
    assert (again.url, again.rest_port, again.taskmanagers) == (running.info.url, running.info.rest_port, 2)
    assert cluster.processes(running.build) == before


def test_down_leaves_no_process_or_port(running: Running) -> None:
    d = cluster.dirs(running.build)
    pids = [int(p) for f in d.pid.glob("flink-*.pid") for p in f.read_text().split()]
    assert len(pids) == 3  # Flink's own pid files: one JobManager, two TaskManagers

    stopped = cluster.down(running.build)

    assert sorted(s.split()[0] for s in stopped) == ["JobManager", "TaskManager", "TaskManager"]
    assert [pid for pid in pids if psutil.pid_exists(pid)] == []
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", running.info.rest_port), 5):
        pass
    assert not d.state.exists()
    assert cluster.status(running.build) is None
    assert cluster.down(running.build) == []  # nothing running: says so, succeeds
    code, _, err = _cli("cluster", "status", "--build", str(running.build))
    assert code == 1
    assert err.count("\n") == 1 and "no Flink cluster is running" in err and "Traceback" not in err


def test_a_cluster_session_without_a_cluster_is_a_one_line_error(tmp_path: Path, monkeypatch) -> None:
    from clicklab.flink import create_table_env

    with pytest.raises(ClicklabError, match=r"^no Flink cluster is running: run `clicklab cluster up") as err:
        create_table_env(target="cluster", build=tmp_path)
    assert "\n" not in str(err.value)
    monkeypatch.setenv("CLICKLAB_FLINK", "cluster")
    with pytest.raises(ClicklabError, match="no Flink cluster is running"):
        create_table_env(build=tmp_path)
    monkeypatch.setenv("CLICKLAB_FLINK", "yarn")
    with pytest.raises(ClicklabError, match=r"CLICKLAB_FLINK='yarn'.*local, cluster"):
        create_table_env(build=tmp_path)
