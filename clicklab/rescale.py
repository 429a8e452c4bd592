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

import dataclasses
from pathlib import Path

from clicklab import faults, flink, sqltext
from clicklab.exceptions import ClicklabError
from clicklab.notebook import Lab


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


def run_rescaled(lab: Lab, number: str, parallelism: int = 2, to_parallelism: int = 1,
                 timeout_s: float = 600.0) -> faults.StepRun:
    """Run notebook ``number``'s INSERT as a compiled plan at ``parallelism`` (its stream emptied first), stop it
    with a savepoint once a checkpoint has completed, and resume the plan from the savepoint at
    ``to_parallelism``; return the resumed job's run (``recovery_s``: savepoint to the resumed job running).

    Raises :class:`ClicklabError` when the first job ends before its savepoint (give it more input), or the
    resumed job did not start from the savepoint or did not end ``FINISHED``.
    """
    run = faults.run_step(lab, number, parallelism, "savepoint", timeout_s, plan=compile_plan(lab, number),
                          resume_parallelism=to_parallelism)
    return dataclasses.replace(run, fault="rescale")
