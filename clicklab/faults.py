"""The keyed steps of the lab on the standalone cluster, with a fault in the middle: what survives.

The lab's scoring (08) and decisions (09) keep one forest and one threshold per site in Flink's keyed
state. This module runs them as jobs on the cluster of ``clicklab cluster up`` (two TaskManagers),
checkpointing every second, and can inject a fault while a job runs:

* ``"kill"``: ``kill -9`` of a TaskManager that runs one of the job's tasks; the job fails over
  (``restart-strategy``), restores every site's forest from its latest checkpoint on the slots left, reads
  on from the checkpointed position, and the file sink commits each output file exactly once;
* ``"savepoint"``: stop-with-savepoint (not drained), then the same statement resumed from the savepoint.

Scoring reads ctrstream as a watched folder fed in two halves (:mod:`clicklab.feed`): the fault strikes
once the first half's output is committed, by condition and never against the clock, and the second half
arrives only when the job runs again. Every run of 08, with a fault or without, is fed the same way.

``tests/test_faults.py`` checks that the streams of a faulty run equal an uninterrupted run's, row for row
and score for score; ``clicklab bench --json`` reports the checkpoint and recovery times of a run
(``keyed.checkpoint_s``, ``keyed.recovery_s``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from clicklab import cells, cluster, feed, flink, settings, sqltext, streams, udfs
from clicklab.exceptions import ClicklabError
from clicklab.notebook import Lab

log = logging.getLogger(__name__)

#: Faults :func:`run_step` can inject.
FAULTS = ("kill", "savepoint")

#: The notebooks whose INSERT fills each step's stream, in the lab's order.
UPSTREAM = ("04", "05", "06")
KEYED = ("08", "09")

#: TaskManagers the session makes sure the cluster has (one may be killed; the other takes over its tasks).
TASKMANAGERS = 2

#: The option that makes a job start from a savepoint.
RESTORE_KEY = "execution.state-recovery.path"

#: The session's checkpoint interval on the cluster: the file sinks commit at each checkpoint.
CHECKPOINT_INTERVAL = "1 s"

#: The step that reads the fed stream (:mod:`clicklab.feed`); the others read bounded streams to their end.
FED_STEP = "08"

#: How long a source task of the fed job without a file holds back the watermark before it counts as idle
#: (``table.exec.source.idle-timeout``): one task reads each file, the other has none.
FED_IDLE_TIMEOUT = "1 s"


@dataclass(frozen=True)
class StepRun:
    """How one job ran: its id, seconds from submission to its end, its checkpoints, and for a fault when it
    struck and how long the job took to run again (``recovery_s``: from the kill to RUNNING again, or from
    the savepoint to the resumed job RUNNING)."""

    job_id: str
    seconds: float
    checkpoints: cluster.Checkpoints
    fault: str | None = None
    recovery_s: float | None = None
    killed_pid: int | None = None
    savepoint: str | None = None


def insert_statements(number: str) -> list[str]:
    """The ``INSERT`` cells of lab notebook ``number`` (``"04"``), as the notebook has them."""
    path = next(settings.NOTEBOOKS_DIR.glob(f"{number}_*.ipynb"))
    return [c for c in cells.sql_cells(path) if sqltext.parse_script(c)[0].kind == sqltext.INSERT]


def insert_statement(number: str) -> str:
    """The one ``INSERT`` of lab notebook ``number`` (``"08"``)."""
    found = insert_statements(number)
    if len(found) != 1:
        path = next(settings.NOTEBOOKS_DIR.glob(f"{number}_*.ipynb"))
        raise ClicklabError(f"{path.name}: expected one INSERT cell, found {len(found)}")
    return found[0]


def view_statements(number: str) -> list[str]:
    """The ``CREATE TEMPORARY VIEW`` cells of notebook ``number`` (08 and 09 define their ordered views)."""
    path = next(settings.NOTEBOOKS_DIR.glob(f"{number}_*.ipynb"))
    return [c for c in cells.sql_cells(path) if "CREATE TEMPORARY VIEW" in c.upper()]


def session(dataset: Path, build: Path, detector: udfs.Detector | None = None,
            config: dict[str, str] | None = None) -> Lab:
    """A replay session whose jobs run on the cluster of ``build`` (started if needed), checkpointing every
    second, with the lab's tables (ctrstream watched: :func:`clicklab.feed.tables_ddl`), functions and
    ordered views (and ``config`` on top)."""
    cluster.up(build)
    full_strength(build)
    t_env = flink.create_table_env(
        config={"execution.checkpointing.interval": CHECKPOINT_INTERVAL,
                "execution.checkpointing.mode": "EXACTLY_ONCE",
                **(config or {})},
        target="cluster", build=build)
    lab = Lab(dataset, build, t_env)
    lab.create_tables()
    for name, ddl in zip((feed.STREAM, feed.OUTPUT), feed.tables_ddl(build), strict=True):
        lab.run(f"DROP TABLE IF EXISTS {name}")
        lab.run(ddl)
    lab.register_functions(detector)
    for number in KEYED:
        for view in view_statements(number):
            lab.run(sqltext.substitute(view, lab.variables()))
    return lab


def full_strength(build: Path) -> None:
    """Bring the cluster back to :data:`TASKMANAGERS` TaskManagers (an earlier ``"kill"`` fault took one away).

    Every step runs on the same cluster: after a kill, a job at parallelism 2 ran both its subtasks on the one
    TaskManager left, ended within seconds, and the savepoint cases after it found it FINISHED before their fault
    could strike (CI: "ended before the fault")."""
    while len(cluster.taskmanager_pids(build)) < TASKMANAGERS:
        cluster.add_taskmanager(build)


def run_upstream(lab: Lab) -> None:
    """Run 04, 05 and 06 (windows and the CTR join) to their end, at parallelism 1 as the notebooks do, and set
    ctrstream's rows aside for the feed of the scoring runs (:func:`clicklab.feed.set_aside`).

    Parallelism 1 writes ctrstream as one file in the order the notebooks' replay writes it. At parallelism 2
    the CTR join's tasks write rows hours out of event-time order, and the keyed steps' ordering views
    (08's ``ctr_in_time_order``, an OVER window) drop the rows that arrive behind ctrstream's watermark: how
    many depends on the timing of each run, so no two runs would score the same rows.
    """
    lab.t_env.get_config().set("parallelism.default", "1")
    lab.t_env.get_config().set("table.exec.source.idle-timeout", "0 ms")
    for number in UPSTREAM:
        for sql in insert_statements(number):
            lab.run(sqltext.substitute(sql, lab.variables()))
    feed.set_aside(lab.build)


def fed_rows(build: Path) -> int:
    """How many rows a run of the fed step writes: every CTR row set aside, and the first half's end row."""
    return feed.load(build).total


def _submit(lab: Lab, sql: str, name: str, parallelism: int, fed: bool = False) -> Any:
    conf = lab.t_env.get_config()
    conf.set("parallelism.default", str(parallelism))
    conf.set("pipeline.name", name)
    # only the fed job: in a bounded job's read, a source task paused that long (a loaded machine) would let the
    # other's watermark pass its rows, and the ordering views would drop them as late
    conf.set("table.exec.source.idle-timeout", FED_IDLE_TIMEOUT if fed else "0 ms")
    return lab.t_env.execute_sql(sql)


def _resumed(lab: Lab, savepoint: str) -> Lab:
    """A session like ``lab``'s whose next job starts from ``savepoint``. A session of its own: a table
    environment hands its options to its jobs' environment for good, so the option could not be taken back
    for the jobs after it."""
    again = session(lab.dataset, lab.build, lab.detector, config={RESTORE_KEY: savepoint})
    return again


def _job_id(result: Any) -> str:
    return str(result.get_job_client().get_job_id())


def _ran_again_after(build: Path, job_id: str, since_ms: float) -> float | None:
    """When the job was RUNNING again after restarting since ``since_ms`` (epoch ms), or ``None`` (yet);
    raises if it ended without a restart (the fault did not strike it)."""
    job = cluster.job_details(build, job_id)
    stamps = job.get("timestamps", {})
    restarted = stamps.get("RESTARTING", 0)
    if restarted >= since_ms and stamps.get("RUNNING", 0) >= restarted:
        return float(stamps["RUNNING"])
    if job.get("state") in cluster.TERMINAL_STATES and restarted < since_ms:
        raise ClicklabError(f"job {job_id} ended {job.get('state')} without restarting after the fault")
    return None


def run_step(lab: Lab, number: str, parallelism: int = 2, fault: str | None = None,
             timeout_s: float = 600.0, plan: Path | None = None,
             resume_parallelism: int | None = None) -> StepRun:
    """Run the INSERT of notebook ``number`` (``"08"`` or ``"09"``) on the cluster to its end, emptying its
    stream first. 08 is fed its input in two halves (:mod:`clicklab.feed`) and cancelled once its output is
    complete; ``fault`` (:data:`FAULTS`, 08 only) strikes between the halves. 09 reads its input to the end.

    ``plan``: submit ``EXECUTE PLAN`` of that compiled plan of the INSERT instead of the statement (its
    operators keep their ids in any session: :mod:`clicklab.rescale`). ``resume_parallelism``: after a
    ``"savepoint"`` fault, resume at this parallelism (default ``parallelism``). A resumed job must have
    started from the savepoint, or :class:`ClicklabError` is raised.
    """
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"fault must be one of {', '.join(FAULTS)} or None, got {fault!r}")
    if fault is not None and number != FED_STEP:
        raise ValueError(f"faults strike step {FED_STEP} (fed in two halves), not {number}")
    if parallelism < 1 or (resume_parallelism is not None and resume_parallelism < 1):
        raise ValueError(f"parallelisms must be >= 1, got {parallelism} and {resume_parallelism}")
    if resume_parallelism is not None and fault != "savepoint":
        raise ValueError(f"resume_parallelism needs fault='savepoint', got fault={fault!r}")
    sql = sqltext.substitute(insert_statement(number), lab.variables())
    target = sqltext.parse_script(sql)[0].target
    statement = sql if plan is None else f"EXECUTE PLAN '{plan}'"
    full_strength(lab.build)
    lab.reset_stream(target)
    name = f"{number} {target} ({'keyed' if plan is None else 'compiled plan'}, P={parallelism})"
    build = lab.build
    start = time.monotonic()
    if number != FED_STEP:
        result = _submit(lab, statement, name, parallelism)
        job_id = _job_id(result)
        flink.wait(result)
        state = cluster.ended_state(build, job_id)
        log.info("job %s ended %s %.1f s after submission", job_id, state, time.monotonic() - start)
        if state != "FINISHED":
            raise ClicklabError(f"job {job_id} ({name}) ended {state}")
        return StepRun(job_id, time.monotonic() - start, cluster.checkpoints(build, job_id))

    fed = feed.load(build)
    feed.clear(build)
    feed.write(build, feed.FIRST_FILE, fed.first)
    job_id = _job_id(_submit(lab, statement, name, parallelism, fed=True))
    _wait_rows(build, job_id, target, fed.released_by_first, "the first half's output", timeout_s)
    killed = savepoint = recovery = None
    if fault == "kill":
        # the cluster spreads a job's slots over both TaskManagers (taskmanager.load-balance.mode SLOTS), so at
        # parallelism 2 each runs a subtask of every operator: either one is under the job
        struck_ms = time.time() * 1000
        killed = cluster.kill_taskmanager(build)
        log.info("killed TaskManager %s under job %s", killed, job_id)
        # the REST API caches a job's details for a few seconds, long enough to miss a short RESTARTING: read
        # when it restarted and ran again from the job's state timestamps
        running_again = cluster.wait_for(lambda: _ran_again_after(build, job_id, struck_ms),
                                         f"job {job_id} to restart after TaskManager {killed} was killed",
                                         timeout_s)
        recovery = (running_again - struck_ms) / 1000
    elif fault == "savepoint":
        savepoint = cluster.stop_with_savepoint(build, job_id, timeout_s)
        struck = time.monotonic()
        log.info("stopped job %s with savepoint %s", job_id, savepoint)
        again = parallelism if resume_parallelism is None else resume_parallelism
        old = job_id
        job_id = _job_id(_submit(_resumed(lab, savepoint), statement, f"{name} resumed at P={again}", again,
                                 fed=True))
        cluster.wait_for(lambda: cluster.job_state(build, job_id) in ("RUNNING", *cluster.TERMINAL_STATES),
                         f"job {job_id} (resumed from {old}) to run", timeout_s)
        recovery = time.monotonic() - struck
        if (started := cluster.restored_from(build, job_id)) != savepoint:
            raise ClicklabError(f"job {job_id} did not start from {savepoint} (it started from {started})")
    feed.write(build, feed.SECOND_FILE, fed.second)
    _wait_rows(build, job_id, target, fed.total, "every row's output", timeout_s)
    checkpoints = cluster.checkpoints(build, job_id)
    cluster.cancel(build, job_id)
    if (written := feed.committed_rows(build, target)) != fed.total:
        raise ClicklabError(f"job {job_id} ({name}) wrote {written} rows to {target}, expected {fed.total}")
    feed.consolidate(build, target)
    log.info("job %s complete and cancelled %.1f s after submission", job_id, time.monotonic() - start)
    return StepRun(job_id, time.monotonic() - start, checkpoints, fault, recovery, killed, savepoint)


def _wait_rows(build: Path, job_id: str, stream: str, rows: int, what: str, timeout_s: float) -> None:
    """Wait until ``stream``'s committed files hold ``rows`` rows and the job has completed two checkpoints;
    raise naming what was seen when the job ends first, writes more, or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        written, state = feed.committed_rows(build, stream), cluster.job_state(build, job_id)
        seen = f"job {job_id} is {state} and {stream} holds {written} rows"
        if state in cluster.TERMINAL_STATES or written > rows:
            raise ClicklabError(f"waiting for {what} ({rows} rows in {stream}): {seen}")
        if written == rows and cluster.checkpoints(build, job_id).completed >= 2:
            return
        if time.monotonic() > deadline:
            raise ClicklabError(f"waited {timeout_s:g} s for {what} ({rows} rows in {stream}): {seen}")
        time.sleep(0.5)


def rows(build: Path, stream: str) -> pd.DataFrame:
    """A stream's committed rows, sorted by every column (to compare runs)."""
    from clicklab.results import read_stream

    frame = read_stream(build, stream)
    columns = [c.name for c in streams.STREAMS[stream].columns]
    return frame[columns].sort_values(columns, kind="stable").reset_index(drop=True)
