"""Rescaling a keyed step of the lab: stopped with a savepoint at one parallelism, resumed at another.

Flink moves keyed state between tasks by key group when a job resumes from a savepoint at another
parallelism, but only to operators with the same ids as the savepoint's. A SQL statement's operators get
their ids when the planner translates it, and another session (or another parallelism) can give the same
statement other ids: the job then refuses the savepoint, or with ``allowNonRestoredState`` starts with
empty forests. A **compiled plan** fixes the ids:

* ``COMPILE PLAN '<build>/plans/08.json' FOR INSERT INTO destinationstream ...`` writes the statement's plan
  once (:func:`compile_plan`);
* ``EXECUTE PLAN '<build>/plans/08.json'`` runs it at whatever ``parallelism.default`` the session sets;
  resumed from a savepoint (``execution.state-recovery.path``), every operator claims its own state and
  each site's forest lands on the task that now owns the site's key group.

:func:`run_rescaled` does that on the cluster of ``clicklab cluster up``: the step's plan at parallelism 2
until a checkpoint has completed, stop-with-savepoint, then the same plan at parallelism 1 in a fresh
session from the savepoint. ``tests/test_faults.py`` checks that the streams then equal an uninterrupted
run's, row for row and score for score. The README (*Keyed state on a cluster*) gives the same steps for
the SQL client.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from clicklab import cluster, faults, flink, sqltext
from clicklab.exceptions import ClicklabError
from clicklab.notebook import Lab

log = logging.getLogger(__name__)


def plan_path(build: Path, number: str) -> Path:
    """Where the compiled plan of notebook ``number``'s INSERT is kept: ``<build>/plans/<number>.json``."""
    return Path(build) / "plans" / f"{number}.json"


def compile_plan(lab: Lab, number: str) -> Path:
    """Compile the INSERT of notebook ``number`` (``"08"``) in ``lab``'s session into its plan file (written
    anew), and return the file."""
    sql = sqltext.substitute(faults.insert_statement(number), lab.variables())
    path = plan_path(lab.build, number)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    flink.execute(lab.t_env, f"COMPILE PLAN '{path}' FOR {sql}")
    if not path.is_file():
        raise ClicklabError(f"COMPILE PLAN wrote no plan to {path}")
    return path


def execute_plan(lab: Lab, plan: Path, name: str, parallelism: int) -> Any:
    """Submit ``EXECUTE PLAN`` of ``plan`` in ``lab``'s session at ``parallelism``, as job ``name``."""
    conf = lab.t_env.get_config()
    conf.set("parallelism.default", str(parallelism))
    conf.set("pipeline.name", name)
    return lab.t_env.execute_sql(f"EXECUTE PLAN '{plan}'")


def job_parallelism(build: Path, job_id: str) -> int:
    """The highest parallelism of a job's tasks (REST ``/jobs/<id>``)."""
    return max(int(v["parallelism"]) for v in cluster.job_details(build, job_id).get("vertices", []))


def restored_from(build: Path, job_id: str) -> str | None:
    """The savepoint or checkpoint a job started from (REST ``/jobs/<id>/checkpoints``), or ``None``."""
    restored = (cluster.rest_get(build, f"/jobs/{job_id}/checkpoints").get("latest") or {}).get("restored")
    return None if not restored else str(restored.get("external_path"))


def run_rescaled(lab: Lab, number: str, parallelism: int = 2, to_parallelism: int = 1,
                 timeout_s: float = 600.0) -> faults.StepRun:
    """Run notebook ``number``'s INSERT as a compiled plan at ``parallelism`` (its stream emptied first), stop it
    with a savepoint once a checkpoint has completed, and resume the plan from the savepoint at
    ``to_parallelism``; return the resumed job's run (``recovery_s``: savepoint to the resumed job running).

    Raises :class:`ClicklabError` when the first job ends before its savepoint (give it more input), or the
    resumed job did not start from the savepoint or did not end ``FINISHED``.
    """
    if parallelism < 1 or to_parallelism < 1:
        raise ValueError(f"parallelisms must be >= 1, got {parallelism} and {to_parallelism}")
    plan = compile_plan(lab, number)
    target = sqltext.parse_script(sqltext.substitute(faults.insert_statement(number), lab.variables()))[0].target
    lab.reset_stream(target)
    build = lab.build
    name = f"{number} {target} (compiled plan, P={parallelism})"
    start = time.monotonic()
    result = execute_plan(lab, plan, name, parallelism)
    first = str(result.get_job_client().get_job_id())
    cluster.wait_for(lambda: cluster.checkpoints(build, first).completed >= 1,
                     f"a first checkpoint of job {first}", timeout_s)
    if cluster.job_state(build, first) == "FINISHED":
        raise ClicklabError(f"job {first} ({name}) ended before its savepoint: give it more input")
    savepoint = cluster.stop_with_savepoint(build, first, timeout_s)
    struck = time.monotonic()
    log.info("stopped job %s at parallelism %d with savepoint %s", first, parallelism, savepoint)
    resumed = faults.session(lab.dataset, lab.build, lab.detector, config={faults.RESTORE_KEY: savepoint})
    result = execute_plan(resumed, plan, f"{number} {target} (resumed at P={to_parallelism})", to_parallelism)
    job_id = str(result.get_job_client().get_job_id())
    cluster.wait_for(lambda: cluster.job_state(build, job_id) in ("RUNNING", "FAILED", "FINISHED"),
                     f"job {job_id} (resumed from {first}) to run", timeout_s)
    recovery = time.monotonic() - struck
    flink.wait(result)
    state = cluster.job_state(build, job_id)
    if state != "FINISHED":
        raise ClicklabError(f"job {job_id} (resumed from {savepoint}) ended {state}")
    if restored_from(build, job_id) != savepoint:
        raise ClicklabError(f"job {job_id} did not start from {savepoint} (it started from "
                            f"{restored_from(build, job_id)})")
    return faults.StepRun(job_id, time.monotonic() - start, cluster.checkpoints(build, job_id), "rescale",
                          recovery, None, savepoint)
