"""The Kinesis Data Analytics **SQL application** form of the lab, runnable (notebooks ``20``-``23``).

The SQL application reads ``SOURCE_SQL_STREAM_001`` and runs four pumps, each a continuous ``INSERT INTO`` of
an in-application stream: ``CLICKPUMP`` and ``IMPRESSIONPUMP`` count per 10-second window, ``CTRPUMP`` joins the
counts into the CTR, ``OUTPUT_PUMP`` scores it with ``RANDOM_CUT_FOREST(CURSOR(...), 100, 12, 100000, 1)`` and keeps
``ANOMALY_SCORE > 2`` in ``DESTINATION_SQL_STREAM``. Here each stream is a table of :data:`clicklab.streams.
SQL_APP_STREAMS` on the filesystem connector under ``<build>/sqlapp/``, and each pump one Flink job.

Its traffic is the SQL lab's (``data/scenarios/sql_lab.yaml``: 1 impression/s and 1 click/s, then three extra
click senders for 20 s), generated on first use into ``<build>/sqlapp/sql_lab.jsonl`` (:func:`ensure_dataset`).

``start`` gives a notebook its session (:class:`SqlApp`, a :class:`clicklab.lab.Lab` whose tables are the SQL
application's); :func:`explain` turns an ``ANOMALY_EXPLANATION`` into the words of an alert; :func:`summarize` is
what ``clicklab run`` prints of the application. Live (``start(..., live=True)``, :mod:`clicklab.sqlapp_live`) the
source is the live generator's SQL-lab traffic and every pump a job on the cluster that keeps running.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from clicklab import flink, settings, sqltext, streams
from clicklab.notebook import Lab, Outcome
from clicklab.sqlapp_live import SCENARIO, in_time_order

#: The scenario of the SQL lab's traffic, and the seed its replay is generated with.
SEED = 42
#: The SQL lab's forest parameters (``RANDOM_CUT_FOREST(CURSOR(...), 100, 12, 100000, 1)``).
FOREST_PRESET = "lab"


def app_dir(build: Path) -> Path:
    """Where the SQL application keeps its replay and its streams: ``<build>/sqlapp/``."""
    return Path(build) / "sqlapp"


def ensure_dataset(build: Path, dataset: Path | str | None = None) -> Path:
    """The replay the source reads: ``dataset`` if given (it must exist), else ``<build>/sqlapp/sql_lab.jsonl``,
    generated from the ``sql_lab`` scenario (seed 42) with its labels if it is not there yet."""
    from clicklab.results import check_dataset

    if dataset is not None:
        return check_dataset(Path(dataset)).resolve()
    path = app_dir(build) / f"{SCENARIO}.jsonl"
    if not path.is_file():
        from clicklab.generator import generate
        from clicklab.scenario import load_scenario

        generate(load_scenario(SCENARIO), SEED, path)
    return path.resolve()


def read_app_stream(build: Path, name: str) -> pd.DataFrame:
    """A SQL-application stream's committed rows (``ROWTIME`` as UTC timestamps), in time order."""
    from clicklab.live.folders import committed_files

    stream = streams.SQL_APP_STREAMS[name]
    columns = [c.name for c in stream.columns]
    files = committed_files(streams.sql_app_path(build, name))
    frames = [pd.read_json(p, lines=True, dtype=False) for p in files if p.stat().st_size]
    return in_time_order(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns), columns)


#: The tables of ``22``'s output pump: the forest reads ``CTRSTREAM`` in ``ROWTIME`` order on a replay (an ``OVER``
#: window sorts it); live the windows arrive in order, and the sort would hold each back until the next one.
CTR_CURSOR, CTR_CURSOR_LIVE = "CTRSTREAM_CURSOR", "CTRSTREAM_ARRIVING"


class SqlApp(Lab):
    """A Flink session on the SQL application's streams: a replay's, or live (:mod:`clicklab.sqlapp_live`)."""

    #: The streams this session's SQL reads and writes.
    catalog = streams.SQL_APP_STREAMS

    @property
    def ddl(self) -> str:
        """The ``CREATE TABLE`` statements of the source and the in-application streams (each dropped first)."""
        return "\n\n".join(f"DROP TABLE IF EXISTS {name};\n{self.table_ddl(name)};" for name in streams.SQL_APP_STREAMS)

    def table_ddl(self, name: str) -> str:
        """One stream's ``CREATE TABLE``: on the replay file and the stream folders, or live."""
        if self.live:
            from clicklab import sqlapp_live

            return sqlapp_live.live_ddl(name, self.build)
        return streams.sql_app_ddl(name, self.build, self.dataset)

    def variables(self) -> dict[str, Any]:
        """``{window_seconds}``, ``{anomaly_threshold}``, ``{sql_app_ddl}`` (all the tables), per stream
        ``{ddl_<stream in lower case>}`` (``{ddl_clickstream}``: drop and create), from :mod:`clicklab.streams`, and
        ``{ctr_cursor}``, the view ``22``'s output pump reads (:data:`CTR_CURSOR`, live :data:`CTR_CURSOR_LIVE`)."""
        per_stream = {f"ddl_{name.lower()}": f"DROP TABLE IF EXISTS {name};\n{self.table_ddl(name)}"
                      for name in streams.SQL_APP_STREAMS}
        return {"window_seconds": settings.WINDOW_SECONDS, "anomaly_threshold": settings.ANOMALY_THRESHOLD,
                "sql_app_ddl": self.ddl, "ctr_cursor": CTR_CURSOR_LIVE if self.live else CTR_CURSOR, **per_stream}

    def create_tables(self) -> None:
        self.run(self.ddl)

    def stream_path(self, name: str) -> Path:
        return streams.sql_app_path(self.build, name)

    def stream(self, name: str) -> pd.DataFrame:
        return read_app_stream(self.build, name)

    def missing_input(self, name: str) -> str | None:
        """Why stream ``name`` cannot be read yet, or ``None``; live: whether the job that fills it runs."""
        stream = self.catalog[name]
        if not self.live or not (settings.NOTEBOOKS_DIR / f"{stream.filled_by}.ipynb").is_file():
            return super().missing_input(name)
        from clicklab import sqlapp_live

        if sqlapp_live.job_started(self.build, name) is not None:
            return None
        return (f"{name} is not being filled: run {stream.filled_by} first (its job "
                f"'{sqlapp_live.job_name(name)}' is not running on the cluster), then this cell again")

    def _from_now_on(self, st: sqltext.Statement) -> None:
        """Live: re-create the tables so that the next job reads only files that appear from now on."""
        from clicklab import sqlapp_live

        for statement in sqlapp_live.from_now_on(self.build):
            flink.execute(self.t_env, statement)

    def _run_one(self, st: sqltext.Statement, max_rows: int, timeout_s: float, max_changes: int,
                 on_rows: Any = None) -> Outcome:
        if st.kind == sqltext.INSERT and st.target == streams.SQL_APP_SOURCE:
            raise ValueError(f"{streams.SQL_APP_SOURCE} is the application's input (the SQL lab's traffic): "
                             "it is read, never written")
        if self.live or st.kind != sqltext.INSERT or st.target not in streams.SQL_APP_STREAMS:
            return super()._run_one(st, max_rows, timeout_s, max_changes, on_rows)
        self.reset_stream(st.target)
        started = time.monotonic()
        flink.wait(flink.execute(self.t_env, st.sql))
        rows = len(self.stream(st.target))
        where = self.stream_path(st.target).relative_to(self.build.parent)
        return Outcome(st, f"INSERT INTO {st.target}: {rows:,} rows written to {where} in "
                           f"{time.monotonic() - started:.1f} s")


def start(dataset: str | Path | None = None, build: str | Path = settings.DEFAULT_BUILD,
          forest_preset: str = FOREST_PRESET, live: bool | None = False) -> SqlApp:
    """Start a notebook's session on the SQL application: its streams, the keyed functions, the ``%%flink_sql`` magic.

    ``dataset``: the replay the source reads (``None``: the SQL lab's, generated by :func:`ensure_dataset`);
    ``forest_preset``: the forest parameters the functions take when a call gives none (the calls of ``22`` and
    ``23`` give the lab's list). ``live=True`` (``None``: ``$CLICKLAB_LIVE`` decides, :func:`clicklab.notebook.
    is_live`): the source is the live generator's traffic and the session's jobs go to the cluster; both are
    started if they are not running (:func:`clicklab.sqlapp_live.start_live`, which prints what it did).
    """
    from clicklab import notebook, sqlapp_live, udfs
    from clicklab_udf.forest import ForestParams

    build = Path(build).resolve()
    if notebook.is_live(live):
        build.mkdir(parents=True, exist_ok=True)
        for line in sqlapp_live.start_live(build):
            print(line)
        t_env = flink.create_table_env(config=notebook.live_config("files"), target="cluster", build=build)
        app = SqlApp(sqlapp_live.folder(build, streams.SQL_APP_SOURCE), build, t_env, live=True)
    else:
        source = ensure_dataset(build, dataset)
        sqlapp_live.forget_live(build)
        app = SqlApp(source, build, flink.create_table_env())
    app.create_tables()
    app.register_functions(udfs.Detector(forest=ForestParams.preset(forest_preset)))
    try:
        from IPython import get_ipython
    except ImportError:
        return app
    shell = get_ipython()
    if shell is not None:
        from clicklab import magics

        magics.load(shell, app)
        shell.user_ns.update({k: v for k, v in app.variables().items() if k not in shell.user_ns})
    return app


def explain(explanation: str | None) -> str:
    """An ``ANOMALY_EXPLANATION`` in words (:func:`clicklab.alerts.handler.explanation_words`, which the alert uses).

    >>> explain('{"CLICKCOUNT":{"DIRECTION":"HIGH","STRENGTH":"1.0000","ATTRIBUTION_SCORE":"3.4702"},'
    ...         '"IMPRESSIONCOUNT":{"DIRECTION":"LOW","STRENGTH":"0.5314","ATTRIBUTION_SCORE":"0.0010"}}')
    'CLICKCOUNT HIGH (3.47), IMPRESSIONCOUNT LOW (0.00)'
    """
    from clicklab.alerts.handler import explanation_words

    if not explanation:
        return "no explanation (warming up, or not a number)"
    return explanation_words(explanation)


def window_labels(build: Path) -> pd.DataFrame:
    """The labelled windows of the SQL lab's replay: ``kind``, ``start``, ``end`` (UTC); during a live run the
    extra-click sessions sent (:func:`clicklab.sqlapp_live.labels`)."""
    from clicklab import sqlapp_live
    from clicklab.results import read_labels

    if sqlapp_live.live_since(build) is not None:
        return sqlapp_live.labels(build)
    path = settings.labels_path_for(ensure_dataset(build))
    return read_labels(path) if path.is_file() else pd.DataFrame(columns=["site", "start", "end", "kind"])


def flagged_windows(destination: pd.DataFrame, labels: pd.DataFrame,
                    window_s: int = settings.WINDOW_SECONDS) -> pd.DataFrame:
    """``DESTINATION_SQL_STREAM``'s rows with ``labelled``: whether their window (it ends at ``ROWTIME``) overlaps a
    labelled anomaly."""
    out = destination.copy()
    ends = pd.to_datetime(out["ROWTIME"], utc=True)
    starts = ends - pd.Timedelta(seconds=window_s)
    inside = pd.Series(False, index=out.index)
    for _, label in labels.iterrows():
        inside |= (starts < pd.Timestamp(label["end"])) & (ends > pd.Timestamp(label["start"]))
    out["labelled"] = inside.to_numpy()
    return out


def summarize(build: Path) -> dict[str, Any] | None:
    """What the SQL application produced (``None``: its notebooks did not run): windows, anomalies, and which
    labelled windows ``DESTINATION_SQL_STREAM`` flagged."""
    folder = app_dir(build)
    if not (folder / "ctrstream").is_dir():
        return None
    ctr = read_app_stream(build, "CTRSTREAM")
    destination = read_app_stream(build, "DESTINATION_SQL_STREAM")
    labels = window_labels(build)
    flagged = flagged_windows(destination, labels)
    ends = pd.to_datetime(ctr["ROWTIME"], utc=True) if len(ctr) else pd.Series([], dtype="datetime64[ns, UTC]")
    labelled = 0
    for _, label in labels.iterrows():
        labelled += int(((ends - pd.Timedelta(seconds=settings.WINDOW_SECONDS) < pd.Timestamp(label["end"]))
                         & (ends > pd.Timestamp(label["start"]))).sum())
    return {
        "ctr windows": len(ctr),
        "anomalies": [(row.ROWTIME.strftime("%H:%M:%S"), float(row.CTRPERCENT), float(row.ANOMALY_SCORE),
                       bool(row.labelled)) for row in flagged.itertuples()],
        "labelled windows": labelled,
        "labelled windows flagged": int(flagged["labelled"].sum()) if len(flagged) else 0,
        "false alarms": int((~flagged["labelled"]).sum()) if len(flagged) else 0,
    }
