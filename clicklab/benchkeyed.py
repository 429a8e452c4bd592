"""``clicklab bench --sites N --parallelism P``: the keyed scorer on the cluster, at scale.

One job on the standalone cluster of ``clicklab cluster up``: ``RANDOM_CUT_FOREST(TABLE keyed_input
PARTITION BY site, DESCRIPTOR(ctr))`` with the default forest (100 trees x 256 samples) over ``sites`` sites
x ``windows`` 10-second windows of CTR, written beforehand in time order (one file per group of sites), so
the job measures the scorer and its keyed state, not the windows before it. The source keeps watching its
folder (as a live stream does), so the job keeps its state after the last row, and then is measured:

* ``points_per_s``: rows through the function per second, sustained: from the moment 10 % of the rows are in to
  the moment 90 % are (:func:`sustained_rate`, the row count read every second), so that the JVMs' warm-up at the
  start (their JIT compilers take the cores the scorers need: on two cores that costs parallelism 2 the most) and
  the last partial second are not in it; ``points_per_s_first_to_last``: from the first input row to the last;
* ``state_bytes_per_site``: the function's keyed state in a checkpoint taken after the last row (all
  sites' forests, each with a full sample when ``windows`` >= 256), divided by the sites;
* ``heap_mb_per_1000_sites``: the TaskManagers' Java heap in use after a full GC (``jcmd GC.run``), less
  what it was before the job, per 1,000 sites (the forests in state and the ones a task keeps decoded);
* ``rss_mb_per_1000_sites``: the TaskManagers' resident memory (RSS) then, less what it was before the job, per
  1,000 sites: that GC shrinks the heap to what is in use and 10% (the TaskManagers start with a small heap,
  :data:`TASKMANAGER_JAVA_OPTS`, so that it can), so this is the heap the sites hold and what the job holds off
  the heap, not the heap pages the JVM touched for garbage (with Flink's -Xms = -Xmx, all of its heap);
* ``checkpoint_s``: that checkpoint's duration, trigger to acknowledged;
* ``recovery_s`` (with ``fault=True``): ``kill -9`` of a TaskManager to the job running again from its
  latest checkpoint on the TaskManager left.

:func:`run` does it at parallelism 1 and 2, each job on a cluster started for it (its memory measured before the
job), and returns the ``keyed`` object of ``clicklab bench --json`` (the memory figures of each parallelism as
``parallelism_<P>_heap_mb_per_1000_sites`` ..., the unprefixed ones of the last).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from clicklab import cluster, flink, javaudf, settings
from clicklab.exceptions import ClicklabError

log = logging.getLogger(__name__)

#: Files the input is written to (sites are spread over them, each file in time order).
FILES = 8

START_S = 1_692_792_000  # 2023-08-23 12:00:00 UTC, as the lab replay


def write_input(folder: Path, sites: int, windows: int, seed: int = 0) -> int:
    """CTR rows ``site, time, ctr`` of ``sites`` sites x ``windows`` windows into ``folder``; return the rows."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("part-*.json"):
        old.unlink()
    rng = np.random.default_rng(seed)
    width = max(3, len(str(sites)))
    names = [f"https://site-{i:0{width}d}.example.com" for i in range(1, sites + 1)]
    base = rng.uniform(3, 30, sites)
    handles = [open(folder / f".part-{f}.json.tmp", "w", encoding="utf-8") for f in range(FILES)]  # noqa: SIM115
    try:
        for w in range(windows):
            impressions = rng.poisson(60, sites) + 1
            clicks = rng.binomial(impressions, base / 100)
            ctr = clicks / impressions * 100
            t = START_S + 10 * w
            for i in range(sites):
                handles[i % FILES].write(f'{{"site": "{names[i]}", "time": {t}, "ctr": {ctr[i]:.6f}}}\n')
    finally:
        for h in handles:
            h.close()
    for f in range(FILES):  # appear whole, as the live streams' files do
        (folder / f".part-{f}.json.tmp").rename(folder / f"part-{f}.json")
    return sites * windows


#: Seconds between two reads of the job's row count while it runs. Each read has the JobManager fetch every
#: task's metrics; read every 0.2 s that took about a tenth of a core (JobManager, TaskManagers and this process:
#: per-thread CPU from /proc during the job), which at parallelism 2 the scorer's tasks lose and at parallelism 1
#: the idle core absorbs. The count's first and last reads are both this late at most, out of minutes.
POLL_S = 1.0
#: The share of the rows between which the sustained rate is taken (see :func:`sustained_rate`).
SUSTAINED = (0.1, 0.9)

#: The TaskManagers' heap starts small (Flink starts it at its maximum, -Xms = -Xmx), so that a full GC can give
#: back what is free (:func:`_memory`) and their resident memory says what the sites hold, not how much heap the
#: JVM once touched.
TASKMANAGER_JAVA_OPTS = "-Xms256m"


def _jcmd(pid: int, *command: str, timeout_s: float = 120.0) -> str:
    return subprocess.run(["jcmd", str(pid), *command], capture_output=True, text=True, check=False,
                          timeout=timeout_s).stdout


def _heap_used_mb(build: Path) -> float:
    """The TaskManagers' Java heap in use after a full GC, MB; the GC shrinks the heap to what is in use and 10%
    (MaxHeapFreeRatio, a manageable flag, for that GC only)."""
    total = 0.0
    for pid in cluster.taskmanager_pids(build):
        _jcmd(pid, "VM.set_flag", "MinHeapFreeRatio", "0")
        _jcmd(pid, "VM.set_flag", "MaxHeapFreeRatio", "10")
        _jcmd(pid, "GC.run")
        _jcmd(pid, "VM.set_flag", "MaxHeapFreeRatio", "70")  # the JVM's defaults again
        _jcmd(pid, "VM.set_flag", "MinHeapFreeRatio", "40")
        out = _jcmd(pid, "GC.heap_info", timeout_s=60)
        # G1: " garbage-first heap   total 524288K, used 123456K [...]"
        for line in out.splitlines():
            if "used" in line and "total" in line and "heap" in line:
                used = line.split("used", 1)[1].strip().split()[0].rstrip(",")
                total += _kb(used) / 1024
                break
        else:
            raise ClicklabError(f"`jcmd {pid} GC.heap_info` printed no heap total: {out[:200]!r}")
    return total


def _kb(text: str) -> float:
    units = {"K": 1, "M": 1024, "G": 1024 * 1024}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text) / 1024


def _rss_mb(build: Path) -> float:
    """The TaskManagers' resident memory (RSS), MB."""
    return sum(psutil.Process(pid).memory_info().rss for pid in cluster.taskmanager_pids(build)) / 2**20


def _vertex(build: Path, job_id: str, prefix: str) -> dict[str, Any]:
    for vertex in cluster.job_details(build, job_id).get("vertices", []):
        if vertex["name"].startswith(prefix):
            return vertex
    raise ClicklabError(f"job {job_id} has no operator named {prefix}...")


def _records_in(build: Path, job_id: str) -> int:
    return int(_vertex(build, job_id, "ProcessTableFunction")["metrics"].get("read-records", 0))


def _ptf_state_bytes(build: Path, job_id: str, checkpoint_id: int) -> int:
    details = cluster.checkpoint_details(build, job_id, checkpoint_id)
    ptf = _vertex(build, job_id, "ProcessTableFunction")["id"]
    task = details["tasks"][ptf]
    return int(task.get("state_size") or task.get("checkpointed_size") or 0)


def _memory(build: Path) -> dict[str, float]:
    """The TaskManagers' heap in use after a full GC and their resident memory, MB (``heap_mb``, ``rss_mb``)."""
    heap = _heap_used_mb(build)  # the GC first: RSS after it
    # G1 gives the freed heap back to the system in a thread of its own, within a second or two: until RSS settles
    rss, deadline = _rss_mb(build), time.monotonic() + 15
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = _rss_mb(build)
        if abs(now - rss) < 0.01 * rss:
            return {"heap_mb": heap, "rss_mb": now}
        rss = now
    return {"heap_mb": heap, "rss_mb": rss}


def sustained_rate(samples: list[tuple[float, int]], rows: int,
                   between: tuple[float, float] = SUSTAINED) -> float | None:
    """Rows per second between the moments ``between`` (shares of ``rows``) were reached, interpolated linearly
    between the samples ``(time, rows so far)`` around them; None when the samples cannot tell (all the rows came
    in between two of them).

    >>> round(sustained_rate([(0.0, 0), (1.0, 100), (2.0, 1100), (3.0, 1200)], 1200), 6)  # a slow first second
    1000.0
    """
    def moment(target: float) -> tuple[float, float]:
        for (t0, c0), (t1, c1) in itertools.pairwise(samples):
            if c0 <= target <= c1 and c1 > c0:
                return t0 + (t1 - t0) * (target - c0) / (c1 - c0), target
        t, c = min(samples, key=lambda s: abs(s[1] - target))
        return t, float(c)

    if len(samples) < 2:
        return None
    (t_lo, c_lo), (t_hi, c_hi) = moment(rows * between[0]), moment(rows * between[1])
    return (c_hi - c_lo) / (t_hi - t_lo) if t_hi > t_lo and c_hi > c_lo else None


def run_one(build: Path, sites: int, windows: int, parallelism: int, fault: bool = False,
            timeout_s: float = 1800.0, before: dict[str, float] | None = None) -> dict[str, Any]:
    """One measured job (see the module docstring); the cluster must be up. ``before``: the TaskManagers'
    :func:`_memory` before any job ran on them; measured now if not given."""
    from clicklab import faults
    from clicklab_udf.forest import ForestParams

    folder = build / "bench-keyed" / "ctr"
    rows = write_input(folder, sites, windows)
    while len(cluster.taskmanager_pids(build)) < faults.TASKMANAGERS:
        cluster.add_taskmanager(build)
    t_env = flink.create_table_env(parallelism, config={"execution.checkpointing.interval": "5 s"},
                                   target="cluster", build=build)
    javaudf.register_keyed(t_env, ForestParams(), settings.ANOMALY_THRESHOLD, adaptive=True)
    for statement in (
        "DROP TABLE IF EXISTS keyed_input", "DROP TABLE IF EXISTS keyed_sink",
        f"""CREATE TABLE keyed_input (site STRING, `time` BIGINT, ctr DOUBLE,
              rowtime AS TO_TIMESTAMP_LTZ(`time` * 1000, 3), WATERMARK FOR rowtime AS rowtime - INTERVAL '10' SECOND)
            WITH ('connector' = 'filesystem', 'path' = '{folder}', 'format' = 'json',
                  'source.monitor-interval' = '1 s')""",
        "CREATE TABLE keyed_sink (site STRING, `time` BIGINT, score DOUBLE) WITH ('connector' = 'blackhole')",
    ):
        flink.execute(t_env, statement)
    if before is None:
        before = _memory(build)
    t_env.get_config().set("pipeline.name", f"bench keyed: {sites} sites, P={parallelism}")
    result = t_env.execute_sql(
        "INSERT INTO keyed_sink SELECT site, `time`, anomaly_score FROM "
        "RANDOM_CUT_FOREST(TABLE keyed_input PARTITION BY site, DESCRIPTOR(ctr))")
    job_id = str(result.get_job_client().get_job_id())
    out: dict[str, Any] = {"sites": sites, "windows": windows, "points": rows, "parallelism": parallelism}
    try:
        cluster.wait_for(lambda: _records_in(build, job_id) > 0, f"job {job_id} to score its first row", timeout_s,
                         POLL_S)
        first = time.monotonic()
        last_count, last_change = 0, first
        samples: list[tuple[float, int]] = []
        while (count := _records_in(build, job_id)) < rows:
            samples.append((time.monotonic(), count))
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            if time.monotonic() - last_change > 60:
                raise ClicklabError(f"job {job_id} scored {count:,} of {rows:,} rows and then nothing for a minute")
            time.sleep(POLL_S)
        samples.append((time.monotonic(), count))
        out["points_per_s_first_to_last"] = rows / (samples[-1][0] - first)
        sustained = sustained_rate(samples, rows)
        out["points_per_s"] = out["points_per_s_first_to_last"] if sustained is None else sustained
        done_ckpt = cluster.checkpoints(build, job_id).completed
        cluster.wait_for(lambda: cluster.checkpoints(build, job_id).completed >= done_ckpt + 2,
                         f"two checkpoints of job {job_id} after its last row", timeout_s)
        latest = cluster.checkpoints(build, job_id)
        if latest.last_id is None or latest.last_duration_s is None:
            raise ClicklabError(f"job {job_id} reports no completed checkpoint")
        out["state_bytes_per_site"] = _ptf_state_bytes(build, job_id, latest.last_id) / sites
        out["checkpoint_s"] = latest.last_duration_s
        after = _memory(build)
        out["heap_mb_per_1000_sites"] = (after["heap_mb"] - before["heap_mb"]) * 1000 / sites
        out["rss_mb_per_1000_sites"] = (after["rss_mb"] - before["rss_mb"]) * 1000 / sites
        if fault:
            struck_ms = time.time() * 1000
            cluster.kill_taskmanager(build)
            ran = cluster.wait_for(lambda: faults._ran_again_after(build, job_id, struck_ms),
                                   f"job {job_id} to run again after a TaskManager was killed", timeout_s)
            out["recovery_s"] = (ran - struck_ms) / 1000
    finally:
        cluster.cancel(build, job_id)
    return out


def python_route(points: int = 100_000, sites: int = 1_000, state_bytes: int = 16_449) -> dict[str, Any]:
    """The other route to keyed state, measured for its state alone: a PyFlink DataStream
    ``KeyedProcessFunction`` that only reads and writes ``state_bytes`` of ``ValueState`` per row (what a Python
    forest's state would cost; no scoring at all), on a local Flink at parallelism 1. Returns rows/s of the
    marginal ``points`` (a first job of a tenth of them pays the start-up and the Python workers)."""
    import os
    import sys

    os.environ.setdefault("_python_worker_execution_mode", "process")
    from pyflink.common import Configuration, Types
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.datastream.functions import KeyedProcessFunction
    from pyflink.datastream.state import ValueStateDescriptor

    class StateOnly(KeyedProcessFunction):
        def open(self, runtime_context: Any) -> None:
            self.state = runtime_context.get_state(
                ValueStateDescriptor("forest", Types.PRIMITIVE_ARRAY(Types.BYTE())))

        def process_element(self, value: Any, ctx: Any) -> Any:
            held = self.state.value()
            self.state.update(held if held is not None else bytes(state_bytes))
            yield value

    def job(n: int) -> float:
        conf = Configuration()
        conf.set_string("python.executable", sys.executable)
        env = StreamExecutionEnvironment.get_execution_environment(conf)
        env.set_parallelism(1)
        rows = env.from_collection([(f"site-{i % sites}", float(i)) for i in range(n)],
                                   type_info=Types.TUPLE([Types.STRING(), Types.DOUBLE()]))
        out = rows.key_by(lambda r: r[0], key_type=Types.STRING()).process(
            StateOnly(), output_type=Types.TUPLE([Types.STRING(), Types.DOUBLE()]))
        out.filter(lambda r: False).print()
        start = time.monotonic()
        env.execute("python keyed state only")
        return time.monotonic() - start

    small = max(1, points // 10)
    small_s, full_s = job(small), job(points)
    return {"points": points, "sites": sites, "state_bytes": state_bytes,
            "rows_per_s": (points - small) / max(full_s - small_s, 1e-9)}


def run(build: Path = settings.DEFAULT_BUILD, sites: int = 10_000, windows: int = 300,
        parallelism: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    """The ``keyed`` figures: one job per parallelism; the last one also measures recovery. The cluster of
    ``build`` is started for each job and stopped at the end."""
    if sites < 1 or windows < 1:
        raise ValueError(f"sites and windows must be >= 1, got {sites} and {windows}")
    # a forest held decoded takes up to ~190 KB of heap (CompactForest.approximateHeapBytes at 100 x 256, its state
    # included): TaskManagers with room for the sites, whatever the lab's 2 GB default
    memory = f"{2 + math.ceil(sites * 0.4 / 1024)}g"  # at parallelism 1 one TaskManager holds every site
    from clicklab import faults

    runs = {}
    try:
        for p in parallelism:
            # each job on TaskManagers of its own, measured before it: a JVM keeps the heap pages it has touched
            # (resident), and a cancelled job's tasks may hold their state a while after it ended
            cluster.down(build)
            cluster.up(build, taskmanager_memory=memory, taskmanager_java_opts=TASKMANAGER_JAVA_OPTS)
            while len(cluster.taskmanager_pids(build)) < faults.TASKMANAGERS:
                cluster.add_taskmanager(build)
            before = _memory(build)
            log.info("keyed scorer: %s sites x %s windows at parallelism %s ...", f"{sites:,}", windows, p)
            runs[p] = run_one(build, sites, windows, p, fault=p == parallelism[-1], before=before)
    finally:
        cluster.down(build)  # the bench's own cluster (gigabytes of heap): nothing of it left running
    last = runs[parallelism[-1]]
    keyed: dict[str, Any] = {"sites": sites, "windows": windows}
    for p, r in runs.items():
        keyed[f"parallelism_{p}_points_per_s"] = r["points_per_s"]
    for p, r in runs.items():
        keyed[f"parallelism_{p}_points_per_s_first_to_last"] = r["points_per_s_first_to_last"]
    for p, r in runs.items():
        for key in ("heap_mb_per_1000_sites", "rss_mb_per_1000_sites"):
            keyed[f"parallelism_{p}_{key}"] = r[key]
    keyed.update({k: last[k] for k in ("state_bytes_per_site", "heap_mb_per_1000_sites", "rss_mb_per_1000_sites",
                                       "checkpoint_s", "recovery_s") if k in last})
    return keyed


def format_keyed(k: dict[str, Any]) -> str:
    lines = [f"Keyed RANDOM_CUT_FOREST on the cluster ({k['sites']:,} sites x {k['windows']} windows, "
             "100 trees x 256):"]
    for key, value in k.items():
        if key.startswith("parallelism_") and key.endswith("_points_per_s"):
            p = key.split("_")[1]
            whole = k.get(f"parallelism_{p}_points_per_s_first_to_last")
            lines.append(f"  parallelism {p}: {value:>10,.0f} points/s   sustained (10-90 % of the rows)"
                         + (f"; {whole:,.0f} first to last row" if whole else ""))
    if "parallelism_1_points_per_s" in k and "parallelism_2_points_per_s" in k:
        ratio = k["parallelism_2_points_per_s"] / k["parallelism_1_points_per_s"]
        text = f"  P=2 / P=1: {ratio:.2f}"
        if "parallelism_1_points_per_s_first_to_last" in k and "parallelism_2_points_per_s_first_to_last" in k:
            whole = k["parallelism_2_points_per_s_first_to_last"] / k["parallelism_1_points_per_s_first_to_last"]
            text += f" (first to last row: {whole:.2f})"
        lines.append(text + "   (target >= 1.5; >= 20,000 points/s at P=2)")
    lines += [
        f"  state per site (checkpoint): {k['state_bytes_per_site'] / 1024:,.1f} KB   (target <= 200 KB)",
        f"  heap per 1,000 sites: {k['heap_mb_per_1000_sites']:,.1f} MB   "
        f"resident (RSS): {k['rss_mb_per_1000_sites']:,.1f} MB   (target <= 200 KB per site: 195 MB)",
        f"  checkpoint: {k['checkpoint_s']:.2f} s",
    ]
    if "recovery_s" in k:
        lines.append(f"  recovery (TaskManager killed -> running again): {k['recovery_s']:.1f} s")
    return "\n".join(lines)


def dumps(k: dict[str, Any]) -> str:
    return json.dumps(k, indent=1)
