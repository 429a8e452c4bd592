"""What a lab notebook calls: start a Flink session with the lab's tables, and run SQL in it.

Each notebook begins with ``lab = clicklab.notebook.start(dataset, build)``; its SQL cells then use
the ``%%flink_sql`` magic (see :mod:`clicklab.magics`), which ``start`` binds to that session.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from clicklab import flink, settings, sqltext, streams, udfs
from clicklab.results import check_dataset, read_stream


@dataclass
class Outcome:
    """What one statement did: a message, and for queries all rows collected as a DataFrame
    (``shown`` of them are displayed)."""

    statement: sqltext.Statement
    message: str
    frame: pd.DataFrame | None = None
    shown: int = 0


class Lab:
    """A Flink session on the lab's streams.

    ``dataset`` is the replay file tickerstream reads; ``build`` holds ``streams/<name>/``.
    """

    def __init__(self, dataset: Path, build: Path, t_env: Any) -> None:
        self.dataset = Path(dataset).resolve()
        self.build = Path(build).resolve()
        self.t_env = t_env
        self.detector: udfs.Detector | None = None

    def register_functions(self, detector: udfs.Detector | None = None) -> udfs.Detector:
        """Register ``RANDOM_CUT_FOREST`` and ``IS_ANOMALY`` (see :mod:`clicklab.udfs`) in this session."""
        self.detector = udfs.register(self.t_env, detector)
        return self.detector

    @property
    def ddl(self) -> str:
        """The ``CREATE TABLE`` statements of the six streams (from :mod:`clicklab.streams`)."""
        return streams.all_local_ddl(self.build, self.dataset)

    def variables(self) -> dict[str, Any]:
        """Names the lab's SQL may use as ``{name}``: the one source of its parameters."""
        return {
            "window_seconds": settings.WINDOW_SECONDS,
            "anomaly_threshold": settings.ANOMALY_THRESHOLD,
            "ddl": self.ddl,
        }

    def create_tables(self) -> None:
        """Register the six streams in this session (drops them first, so it can run again)."""
        for name in streams.STREAM_NAMES:
            flink.execute(self.t_env, f"DROP TABLE IF EXISTS {name}")
        self.run(self.ddl)

    def reset_stream(self, name: str) -> Path:
        """Empty a local stream's folder, so re-running the step that fills it overwrites it."""
        folder = streams.stream_path(self.build, name)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        return folder

    def stream(self, name: str) -> pd.DataFrame:
        """A stream's committed rows, read with pandas (for plots and checks)."""
        return read_stream(self.build, name)

    def run(
        self,
        script: str,
        max_rows: int = 20,
        timeout_s: float = 60.0,
        max_changes: int = 100_000,
    ) -> list[Outcome]:
        """Run a script of statements in order; stop at the first failure (it raises).

        * DDL runs at once.
        * ``INSERT INTO <stream>`` empties the stream's folder, runs the job to its end (the replay
          is bounded) and reports rows written; Ctrl-C cancels the job.
        * Queries show at most ``max_rows`` rows and stop after ``timeout_s`` seconds or
          ``max_changes`` changes, whichever comes first; the job is then cancelled.
        """
        outcomes = []
        for statement in sqltext.parse_script(script):
            outcomes.append(self._run_one(statement, max_rows, timeout_s, max_changes))
        return outcomes

    def _run_one(self, st: sqltext.Statement, max_rows: int, timeout_s: float, max_changes: int) -> Outcome:
        first_line = sqltext.strip_comments(st.sql).strip().splitlines()[0][:80]
        if st.kind == sqltext.INSERT and st.target in streams.STREAMS:
            if st.target == "tickerstream":
                raise ValueError("tickerstream is the replay file: it is read, never written")
            self.reset_stream(st.target)
        started = time.monotonic()
        result = flink.execute(self.t_env, st.sql)
        if st.kind == sqltext.DDL:
            return Outcome(st, f"OK: {first_line}")
        if st.kind == sqltext.INSERT:
            flink.wait(result)
            seconds = time.monotonic() - started
            if st.target in streams.STREAMS:
                rows = len(self.stream(st.target))
                where = streams.stream_path(self.build, st.target).relative_to(self.build.parent)
                return Outcome(st, f"INSERT INTO {st.target}: {rows:,} rows written to {where} in {seconds:.1f} s")
            return Outcome(st, f"{first_line}: job finished in {seconds:.1f} s")
        got = flink.collect(result, max_changes=max_changes, timeout_s=timeout_s)
        rows = sqltext.materialize(got.changes)
        frame = pd.DataFrame(rows, columns=got.columns)
        updates = any(kind != sqltext.INSERT_KIND for kind, _ in got.changes)
        note = f"{len(frame):,} rows" + (" (updating result)" if updates else "")
        if len(frame) > max_rows:
            note += f", first {max_rows} shown"
        if got.stopped != "end of stream":
            note += f"; stopped at the {got.stopped}"
        return Outcome(st, f"{note} ({got.seconds:.1f} s)", frame, shown=min(max_rows, len(frame)))


def start(
    dataset: str | Path = settings.DEFAULT_DATASET,
    build: str | Path = settings.DEFAULT_BUILD,
    create_tables: bool = True,
    detector: udfs.Detector | None = None,
) -> Lab:
    """Start the notebook's Flink session on a replay file; register the lab's streams and functions.

    ``detector`` sets the Random Cut Forest's parameters and the anomaly threshold (defaults: the
    lab's, see :class:`clicklab.udfs.Detector`).

    Checks the dataset and Java first, so a bad path or a missing Java is one clear message.
    In IPython it also loads the ``%%flink_sql`` magic and defines the lab's parameters
    (``window_seconds``, ``anomaly_threshold``) as notebook variables for ``{name}`` substitution.
    """
    dataset = check_dataset(Path(dataset))
    build = Path(build)
    build.mkdir(parents=True, exist_ok=True)
    lab = Lab(dataset, build, flink.create_table_env())
    if create_tables:
        lab.create_tables()
    lab.register_functions(detector)
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: no magics to load
        return lab
    shell = get_ipython()
    if shell is not None:
        from clicklab import magics

        magics.load(shell, lab)
        shell.user_ns.update({k: v for k, v in lab.variables().items() if k not in shell.user_ns})
    return lab
