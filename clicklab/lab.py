"""The lab's Flink session on its streams: :class:`Lab` runs a script of SQL statements as a notebook cell does.

On a **replay** each ``INSERT`` runs to its end and the next notebook reads what it wrote; **live** every ``INSERT``
is a job on the standalone cluster that keeps running when its cell returns. :func:`clicklab.notebook.start` makes
one (``clicklab.kafka.lab.TopicLab`` when the streams are Kafka topics).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from clicklab import cells, flink, settings, sqltext, streams, udfs
from clicklab.exceptions import ClicklabError
from clicklab.results import read_stream

#: Caps every query's ``--timeout`` (seconds) when set: queries on live streams never end by themselves, and
#: ``clicklab run --live`` sets it so that the notebooks' view cells do not each wait a minute.
QUERY_SECONDS_VARIABLE = "CLICKLAB_QUERY_SECONDS"


@dataclass
class Outcome:
    """What one statement did: a message, and for queries all rows collected as a DataFrame
    (``shown`` of them are displayed)."""

    statement: sqltext.Statement
    message: str
    frame: pd.DataFrame | None = None
    shown: int = 0


def job_name(stream: str) -> str:
    """The name of the job that fills ``stream``: its notebook's lab title (``#5: Generate the Click ...``)."""
    if streams.STREAMS[stream].job:  # a second job of its notebook (04 also fills badevents)
        return streams.STREAMS[stream].job
    filled_by = streams.STREAMS[stream].filled_by
    path = settings.NOTEBOOKS_DIR / f"{filled_by}.ipynb"
    step = cells.info(path).step if path.is_file() else None
    return step or f"INSERT INTO {stream}"


class Lab:
    """A Flink session on the lab's streams (:attr:`catalog`).

    ``dataset`` is the replay file tickerstream reads; ``build`` holds ``streams/<name>/``; ``live``
    selects the live mode (see the module's docstring).
    """

    def __init__(self, dataset: Path, build: Path, t_env: Any, live: bool = False) -> None:
        self.dataset = Path(dataset).resolve()
        self.build = Path(build).resolve()
        self.t_env = t_env
        self.live = live
        self.detector: udfs.Detector | None = None
        self._view_inputs: dict[str, set[str]] = {}  # a view this session defined -> the streams it reads

    #: The streams this session's SQL reads and writes, by name.
    catalog: dict[str, streams.Stream] = streams.STREAMS

    def register_functions(self, detector: udfs.Detector | None = None) -> udfs.Detector:
        """Register ``RANDOM_CUT_FOREST``, ``ANOMALY_DECISIONS`` and the rest (see :mod:`clicklab.udfs`) here."""
        self.detector = udfs.register(self.t_env, detector)
        return self.detector

    @property
    def ddl(self) -> str:
        """The statements of the lab's #1: each stream's table dropped if it exists, then created (from
        :mod:`clicklab.streams`), so the cell that runs them can run again."""
        def create(name: str) -> str:
            if self.live:
                return streams.live_ddl(name, self.build)
            return streams.local_ddl(name, self.build, self.dataset)

        return "\n\n".join("".join(f"{drop};\n" for drop in streams.drop_statements(name)) + create(name) + ";"
                           for name in streams.STREAM_NAMES)

    def variables(self) -> dict[str, Any]:
        """Names the lab's SQL may use as ``{name}``: the one source of its parameters.

        ``ctr_input`` and ``scores_input`` are the tables the keyed functions of 08 and 09 read. On a replay
        they are the views ``ctr_in_time_order`` and ``scores_in_time_order`` (08 and 09 define them): a
        forest must learn its site's windows in event-time order, and a replay writes a one-sided window
        after later ones, so an OVER window puts each site's rows in order first. Live the windows arrive
        in time order (a one-sided window one window late), and waiting for the watermark would hold every
        window back until the next one arrives (10 seconds), so the functions read ``ctrstream`` and
        ``destinationstream`` as they arrive.
        """
        return {
            "window_seconds": settings.WINDOW_SECONDS,
            "anomaly_threshold": settings.ANOMALY_THRESHOLD,
            "ddl": self.ddl,
            "ctr_input": "ctrstream" if self.live else "ctr_in_time_order",
            "scores_input": "destinationstream" if self.live else "scores_in_time_order",
        }

    def create_tables(self) -> None:
        """Register the seven streams in this session (:attr:`ddl` drops them first, so it can run again)."""
        self.run(self.ddl)

    def stream_path(self, name: str) -> Path:
        """The folder a stream of this session's keeps its files in."""
        return streams.stream_path(self.build, name)

    def reset_stream(self, name: str) -> Path:
        """Empty a local stream's folder, so re-running the step that fills it overwrites it."""
        folder = self.stream_path(name)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        return folder

    def stream(self, name: str) -> pd.DataFrame:
        """A stream's committed rows, read with pandas (for plots and checks; live: the retained history)."""
        return read_stream(self.build, name)

    def committed(self, name: str) -> pd.DataFrame:
        """A stream's rows with ``committed_at``, when each was committed (epoch s): live, when it showed."""
        from clicklab.live.watch import rows_committed

        return rows_committed(self.build, name)

    def job_started(self, stream: str) -> float | None:
        """Live: when the running job that fills ``stream`` started (epoch s, from the cluster); ``None`` on a replay
        or if none runs. Rows committed before it are a replaced job's."""
        from clicklab import cluster

        info = cluster.status(self.build) if self.live else None
        if info is None:
            return None
        name = job_name(stream)
        starts = [j.start_time.timestamp() for j in info.jobs if j.name == name and j.active and j.start_time]
        return max(starts) if starts else None

    def follow_alerts(self, dest: Any, batch_size: int = 100, timeout_s: float = 120.0,
                      until: Callable[[], bool] | None = None) -> Any:
        """Live ``11_alerts``: invoke the alert handler ``dest`` on anomalydetectionstream's new rows as they come,
        as the Lambda's event source does, until ``until()`` holds or ``timeout_s`` passed; what it did."""
        from clicklab.alerts import destination

        return destination.follow(dest, self.build, batch_size=batch_size, timeout_s=timeout_s, until=until)

    def where(self, name: str) -> str:
        """Where a stream's records are kept, for messages: its folder, relative to the build's parent."""
        return str(streams.stream_path(self.build, name).relative_to(self.build.parent))

    def wrote(self, name: str) -> None:
        """Note that the step filling stream ``name`` ran to its end (files: its folder says so already)."""

    def is_written(self, name: str) -> bool:
        """Whether the step that fills stream ``name`` has run (replay): files, when its folder exists."""
        return self.stream_path(name).is_dir()

    def jobs(self) -> pd.DataFrame:
        """The jobs on the cluster (live): name, state, since when, id."""
        from clicklab import cluster

        rows = [{"name": j.name, "state": j.state, "started": j.start_time, "id": j.id}
                for j in cluster.jobs(self.build)]
        return pd.DataFrame(rows, columns=["name", "state", "started", "id"])

    def run(
        self,
        script: str,
        max_rows: int = 20,
        timeout_s: float = 60.0,
        max_changes: int = 100_000,
        on_rows: Callable[[pd.DataFrame, str], None] | None = None,
    ) -> list[Outcome]:
        """Run a script of statements in order; stop at the first failure (it raises).

        * DDL runs at once.
        * ``INSERT INTO <stream>``, replay: empties the stream's folder, runs the job to its end (the
          replay is bounded) and reports rows written; Ctrl-C cancels the job. Live: cancels the running
          job of the same name (an earlier run of the cell), submits the job to the cluster under its
          lab name (:func:`job_name`) and returns while it runs.
        * Queries show at most ``max_rows`` rows and stop after ``timeout_s`` seconds or
          ``max_changes`` changes, whichever comes first; the job is then cancelled. ``on_rows`` is
          called with the current table and a note as rows arrive (about once a second), so a live
          table can refresh in place.
        """
        cap = os.environ.get(QUERY_SECONDS_VARIABLE)
        if cap:
            timeout_s = min(timeout_s, float(cap))
        outcomes = []
        for statement in sqltext.parse_script(script):
            outcomes.append(self._run_one(statement, max_rows, timeout_s, max_changes, on_rows))
        return outcomes

    def _from_now_on(self, st: sqltext.Statement) -> None:
        """Live, before job ``st`` starts: re-create the tables so that it reads only files that appear from now on."""
        from clicklab.live.folders import committed_files

        for name in streams.STREAM_NAMES:
            existing = [p.name for p in committed_files(streams.stream_path(self.build, name))]
            for statement in [*streams.drop_statements(name),
                              *sqltext.split_statements(streams.live_ddl(name, self.build, exclude=existing))]:
                flink.execute(self.t_env, statement)

    def _submit(self, st: sqltext.Statement) -> Outcome:
        """Live: replace the job that fills ``st.target`` on the cluster, and return while it runs."""
        from clicklab import cluster

        name = job_name(st.target) if st.target in streams.STREAMS else f"INSERT INTO {st.target}"
        replaced = cluster.cancel_named(self.build, name)
        self.t_env.get_config().set("pipeline.name", name)
        result = flink.execute(self.t_env, st.sql)
        client = result.get_job_client()
        job_id = str(client.get_job_id()) if client is not None else "?"
        info = cluster.status(self.build)
        where = f"{info.url}/#/job/running/{job_id}/overview" if info is not None else job_id
        again = f" (replaced the job of the last run: {', '.join(replaced)})" if replaced else ""
        return Outcome(st, f"job '{name}' is running on the cluster and keeps running{again}: {where}")

    def _rest_cancel(self, result: Any) -> Callable[[], object] | None:
        """On a cluster: cancelling ``result``'s job through its REST API (see :func:`flink.collect`)."""
        from clicklab import cluster

        client = result.get_job_client()
        if client is None or not cluster.submits_to_cluster(self.t_env):
            return None
        job_id = str(client.get_job_id())
        return lambda: cluster.cancel(self.build, job_id)

    def inputs(self, sql: str, target: str | None = None) -> set[str]:
        """The streams of :attr:`catalog` a statement reads, also through the views this session defined."""
        found: set[str] = set()
        for name in sqltext.names_used(sql) - {target}:
            if name in self._view_inputs:
                found |= self._view_inputs[name]
            elif name in self.catalog:
                found.add(name)
        return found

    def missing_input(self, name: str) -> str | None:
        """Why stream ``name`` cannot be read yet (the notebook that fills it has not run), or ``None``.

        On a replay a stream is there once the notebook that fills it has written its folder (an empty one is
        fine: ``badevents`` of a clean replay). Live it is there while that notebook's job runs on the cluster:
        a live job reads only what arrives after it starts, so a stream nothing fills would stay empty.
        """
        stream = self.catalog[name]
        notebook = stream.filled_by
        if not (settings.NOTEBOOKS_DIR / f"{notebook}.ipynb").is_file():
            return None  # filled from outside the notebooks (tickerstream: the replay or the live generator)
        if not self.live:
            if self.is_written(name):
                return None
            return f"{name} has not been written yet: run {notebook} first (it fills {name}), then this cell again"
        from clicklab import cluster

        job = job_name(name)
        if any(j.name == job and j.state not in cluster.TERMINAL_STATES for j in cluster.jobs(self.build)):
            return None
        return (f"{name} is not being filled: run {notebook} first (its job '{job}' is not running on the cluster), "
                "then this cell again")

    def _check_inputs(self, st: sqltext.Statement) -> None:
        """Stop with a message naming the notebook to run first when a stream the statement reads is missing."""
        problems = [why for name in sorted(self.inputs(st.sql, st.target)) if (why := self.missing_input(name))]
        if problems:
            raise ClicklabError("; ".join(problems))

    def _run_one(self, st: sqltext.Statement, max_rows: int, timeout_s: float, max_changes: int,
                 on_rows: Callable[[pd.DataFrame, str], None] | None = None) -> Outcome:
        first_line = sqltext.strip_comments(st.sql).strip().splitlines()[0][:80]
        if st.kind == sqltext.INSERT and st.target == "tickerstream":
            raise ValueError("tickerstream is where the events come in (the replay file, or the live generator): "
                             "it is read, never written")
        if st.kind in (sqltext.INSERT, sqltext.QUERY):
            self._check_inputs(st)
        elif (view := sqltext.view_name(st.sql)) is not None:
            self._view_inputs[view] = self.inputs(st.sql, view)
        if self.live and st.kind in (sqltext.INSERT, sqltext.QUERY):
            self._from_now_on(st)
        if st.kind == sqltext.INSERT and self.live:
            return self._submit(st)
        if st.kind == sqltext.INSERT and st.target in streams.STREAMS:
            self.reset_stream(st.target)
        started = time.monotonic()
        if self.live and st.kind == sqltext.QUERY:
            self.t_env.get_config().set("pipeline.name", f"query: {first_line[:60]}")
        result = flink.execute(self.t_env, st.sql)
        if st.kind == sqltext.DDL:
            return Outcome(st, f"OK: {first_line}")
        if st.kind == sqltext.INSERT:
            flink.wait(result)
            seconds = time.monotonic() - started
            if st.target in streams.STREAMS:
                self.wrote(st.target)
                rows = len(self.stream(st.target))
                return Outcome(st, f"INSERT INTO {st.target}: {rows:,} rows written to {self.where(st.target)} "
                                   f"in {seconds:.1f} s")
            return Outcome(st, f"{first_line}: job finished in {seconds:.1f} s")

        def table(got: flink.Collected, running: bool) -> tuple[pd.DataFrame, str]:
            frame = pd.DataFrame(sqltext.materialize(got.changes), columns=got.columns)
            updates = any(kind != sqltext.INSERT_KIND for kind, _ in got.changes)
            note = f"{len(frame):,} rows" + (" (updating result)" if updates else "")
            if len(frame) > max_rows:
                note += f", first {max_rows} shown"
            if running:
                note += ", refreshing as rows arrive (Ctrl-C stops)"
            elif got.stopped != "end of stream":
                note += f"; stopped at the {got.stopped}"
            return frame, f"{note} ({got.seconds:.1f} s)"

        progress = None
        if on_rows is not None:
            def progress(got: flink.Collected) -> None:
                on_rows(*table(got, running=True))

        got = flink.collect(result, max_changes=max_changes, timeout_s=timeout_s, on_progress=progress,
                            cancel_at_deadline=self._rest_cancel(result))
        frame, note = table(got, running=False)
        return Outcome(st, note, frame, shown=min(max_rows, len(frame)))
