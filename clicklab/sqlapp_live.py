"""The SQL application live: notebooks ``20``-``23`` with ``live = True`` (or ``$CLICKLAB_LIVE``), as on AWS.

The SQL lab's Kinesis Data Generator sends one impression and one click a second, continuously: the live
generator (:mod:`clicklab.live.generator`) plays the ``sql_lab`` scenario into ``<build>/streams/tickerstream/``, which
``SOURCE_SQL_STREAM_001`` watches. Every pump (``INSERT INTO``) is then a job on the standalone cluster that keeps
running, as :class:`clicklab.lab.Lab` submits the Studio lab's; a query refreshes its table as rows arrive.
"Open three more KDG windows" is ``clicklab send --session sql-lab-extra-clicks`` (the scenario's session), or
:func:`send_extra_clicks`, which ``22`` calls once the forest has seen :data:`WINDOWS_BEFORE_EXTRA_CLICKS` windows.

One live generator runs per build folder: :func:`start_live` replaces one that plays another scenario (the
Studio lab's, whose jobs it cancels: they would read the SQL lab's traffic) and, for a new generator, empties
the SQL application's stream folders (they held a replay's or an earlier live run's rows) and records when
this live run began in ``<build>/sqlapp/live.json`` (:func:`live_since`); the labels, checks and the run's
summary then look at this run only. A replay session (:func:`clicklab.sqlapp.start`) removes that record.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from clicklab import settings, streams
from clicklab.exceptions import ClicklabError
from clicklab.live import process
from clicklab.live import send as live_send
from clicklab.live.folders import ARCHIVE, committed_files
from clicklab.live.options import live_dir, tickerstream_dir
from clicklab.live.sessions import ScheduledSession
from clicklab.live.watch import wait_for

if TYPE_CHECKING:
    from clicklab.notebook import Lab

log = logging.getLogger(__name__)

#: The SQL lab's scenario (``data/scenarios/sql_lab.yaml``): the replay's traffic and the live generator's.
SCENARIO = "sql_lab"
#: The file that records the live run of the SQL application (in ``<build>/sqlapp/``).
MARKER = "live.json"

#: CTR windows the output pump's forest sees before :func:`send_extra_clicks` sends the extra clicks. The forest
#: (100 trees, 12 samples) scores after 4 windows; with fewer than 14 ordinary windows behind it, its sample of a
#: dozen points already holds the first 400 % window when the second comes, which then scores under 2 (1.4 after
#: 6 windows, 1.9 after 12; the Python twin of the jar's forest, on the SQL lab's constant traffic). From 14 on
#: both windows score over 2, as on the replay (3.7 and 3.1 after 36 windows): 16 leaves a margin.
WINDOWS_BEFORE_EXTRA_CLICKS = 16



def in_time_order(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Rows of a SQL-application stream with ``ROWTIME`` as UTC timestamps, in time order, its ``columns`` only."""
    if "ROWTIME" in df:
        df = df.assign(ROWTIME=pd.to_datetime(df["ROWTIME"], utc=True, format="ISO8601"))
        df = df.sort_values("ROWTIME", kind="stable").reset_index(drop=True)
    return df[[c for c in columns if c in df]]

def marker_path(build: Path) -> Path:
    """``<build>/sqlapp/live.json``: the live run of the SQL application, while there is one."""
    return Path(build) / "sqlapp" / MARKER


def live_since(build: Path) -> datetime | None:
    """When the SQL application's current live run began (UTC), or ``None`` when its streams are a replay's."""
    try:
        return datetime.fromisoformat(json.loads(marker_path(build).read_text(encoding="utf-8"))["since"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def forget_live(build: Path) -> None:
    """A replay session: the streams are the replay's from now on."""
    marker_path(build).unlink(missing_ok=True)


def extra_clicks_kind() -> str:
    """The SQL lab's session, "three more KDG windows": the ``sql_lab`` scenario's one anomaly."""
    from clicklab.scenario import load_scenario

    (extra,) = load_scenario(SCENARIO).anomalies
    return extra.kind


def job_name(name: str) -> str:
    """The name of the job that fills SQL-application stream ``name`` on the cluster (what ``Lab`` submits it as)."""
    return f"INSERT INTO {name}"


# ---------------------------------------------------------------------------------------------
# The tables, live


def folder(build: Path, name: str) -> Path:
    """Where a SQL-application stream's files are, live: the source watches the live generator's folder."""
    if name == streams.SQL_APP_SOURCE:
        return tickerstream_dir(build)
    return streams.sql_app_path(build, name)


def live_ddl(name: str, build: Path, exclude: list[str] | None = None) -> str:
    """``CREATE TABLE`` of a SQL-application stream, live: a watched folder, one-second watermarks, sinks that roll
    and commit at every checkpoint (the settings of :func:`clicklab.streams.live_options`); ``exclude``: files
    already there, which a job started now does not read (a Kinesis consumer at ``LATEST``)."""
    stream = streams.SQL_APP_STREAMS[name]
    path = str(folder(build, name).resolve())
    source = name == streams.SQL_APP_SOURCE
    options = {
        "connector": "filesystem",
        "path": path,
        "format": "json",
        "json.timestamp-format.standard": "SQL",
        "json.fail-on-missing-field": "true" if source else "false",
        "json.ignore-parse-errors": "false",
        "source.monitor-interval": settings.LIVE_MONITOR_INTERVAL,
    }
    if not source:
        options["sink.rolling-policy.rollover-interval"] = settings.LIVE_ROLLOVER
        options["sink.rolling-policy.check-interval"] = settings.LIVE_ROLLOVER
    if exclude:
        names = "|".join(re.escape(n) for n in sorted(exclude))
        options["source.path.regex-pattern"] = f"(?!{re.escape(path)}/({names})$).*"
    lines = [f"  {c.name} {c.type}" for c in stream.columns]
    lines += [f"  {col} AS {expr}" for col, expr in stream.computed]
    if stream.watermark:
        lines.append(f"  WATERMARK FOR {stream.watermark} AS {stream.watermark} - INTERVAL '{stream.live_watermark_s}' "
                     "SECOND")
    body, with_clause = ",\n".join(lines), ",\n".join(f"  '{k}' = '{v}'" for k, v in options.items())
    return f"CREATE TABLE {name} (\n{body}\n) WITH (\n{with_clause}\n)"


def from_now_on(build: Path) -> list[str]:
    """The statements that re-create every SQL-application table so that a job started next reads only new files."""
    out = []
    for name in streams.SQL_APP_STREAMS:
        existing = [p.name for p in committed_files(folder(build, name))]
        out += [f"DROP TABLE IF EXISTS {name}", live_ddl(name, build, exclude=existing)]
    return out


# ---------------------------------------------------------------------------------------------
# Starting the live run


def start_live(build: Path) -> list[str]:
    """Make sure the SQL lab runs live: the cluster, the live generator playing ``sql_lab``, fresh stream folders.

    Returns what it did, in words (nothing when all was running already). See the module's docstring.
    """
    from clicklab import cluster, notebook
    from clicklab.scenario import load_scenario

    done: list[str] = []
    build = Path(build)
    cluster.up(build)
    info = process.status(build)
    wanted = load_scenario(SCENARIO).source
    to_topic = info.options.get("bootstrap") if info is not None else None  # the source watches the folder
    if info is not None and (not info.running or info.scenario != wanted or to_topic):
        if info.running:
            studio = {notebook.job_name(s) for s in streams.STREAM_NAMES}
            cancelled = [j.name for j in cluster.jobs(build)
                         if j.name in studio and j.state not in cluster.TERMINAL_STATES]
            for name in cancelled:
                cluster.cancel_named(build, name)
            why = (f"it sent to the tickerstream topic at {to_topic}; the SQL application's source watches the "
                   f"folder" if info.scenario == wanted else f"the SQL lab plays {wanted}")
            done.append(f"stopped the live generator of scenario {info.scenario} ({why})"
                        + (f" and cancelled the Studio lab's jobs: {', '.join(cancelled)}" if cancelled else ""))
        process.stop(build)
    # the cluster is up; starts the generator if none runs, into the folder the SQL application's source watches
    # (its streams are folders: they are not on Kafka topics yet)
    notebook.start_live(build, scenario=SCENARIO, backend="files")
    info = process.status(build)
    if info is None or not info.running:
        raise ClicklabError(f"the live generator of {build} did not start: see {live_dir(build)}")
    run = f"pid {info.pid} since {info.started}"
    recorded = _read_marker(build)
    if recorded.get("generator") != run:
        for name in streams.SQL_APP_STREAMS:
            if name != streams.SQL_APP_SOURCE:
                cluster.cancel_named(build, job_name(name))  # a job of an earlier run would write into the new folder
                shutil.rmtree(folder(build, name), ignore_errors=True)
                folder(build, name).mkdir(parents=True)
        marker_path(build).write_text(json.dumps({"generator": run, "since": datetime.now(UTC).isoformat()}),
                                      encoding="utf-8")
        done.append(f"live run of the SQL application from now on: its streams under {build / 'sqlapp'} start empty; "
                    f"the live generator ({run}) plays scenario {wanted}")
    return done


def _read_marker(build: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(marker_path(build).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return {}


# ---------------------------------------------------------------------------------------------
# What the live run shows


def rows_since(build: Path, name: str, since_s: float = 0.0) -> pd.DataFrame:
    """A SQL-application stream's rows in files committed at or after ``since_s`` (epoch s), in time order."""

    columns = [c.name for c in streams.SQL_APP_STREAMS[name].columns]
    frames = []
    for path in committed_files(folder(build, name)):
        try:
            if path.stat().st_mtime >= since_s and path.stat().st_size:
                frames.append(pd.read_json(path, lines=True, dtype=False))
        except (FileNotFoundError, ValueError):
            continue
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return in_time_order(frame, columns)


def job_started(build: Path, name: str) -> float | None:
    """When the running job that fills ``name`` started (epoch s), or ``None`` if none runs."""
    from clicklab import cluster

    starts = [j.start_time.timestamp() for j in cluster.jobs(build)
              if j.name == job_name(name) and j.state not in cluster.TERMINAL_STATES and j.start_time]
    return max(starts, default=None)


def labels(build: Path) -> pd.DataFrame:
    """The extra-click sessions sent during this live run (``site, start, end, kind``, as replay labels)."""
    since = live_since(build)
    rows = live_send.labels(build)
    if since is None or not len(rows):
        return rows.iloc[0:0]
    return rows[(rows["kind"] == extra_clicks_kind()) & (rows["start"] >= pd.Timestamp(since))].reset_index(drop=True)


def last_extra_clicks(build: Path) -> ScheduledSession | None:
    """The last extra-click session of this live run, or ``None``."""
    rows = labels(build)
    if not len(rows):
        return None
    row = rows.iloc[-1]
    return ScheduledSession(id="", site=row["site"], kind=row["kind"], start=row["start"].to_pydatetime(),
                            end=row["end"].to_pydatetime())


def send_extra_clicks(app: Lab, timeout_s: float = 240.0,
                      windows: int = WINDOWS_BEFORE_EXTRA_CLICKS) -> ScheduledSession:
    """Live: once the output pump's forest has seen ``windows`` CTR windows, "open three more KDG windows" (the
    extra-click session, from the next window boundary); what the generator scheduled."""
    started = wait_for("the output pump's job (run the INSERT INTO DESTINATION_SQL_STREAM cell)",
                       lambda: job_started(app.build, "DESTINATION_SQL_STREAM"), 30.0)
    seen = wait_for(f"{windows} CTR windows for the output pump's forest (are the pumps of 21 running?)",
                    lambda: (n := len(rows_since(app.build, "CTRSTREAM", started))) >= windows and n,
                    timeout_s, poll_s=1.0)
    log.info("the output pump's forest has seen %d windows: the extra clicks go out", seen)
    return live_send.send(app.build, session=extra_clicks_kind())


def source_events(app: Lab, minutes: float = 10.0) -> pd.DataFrame:
    """The events the source reads (``browseraction``, ``site``, ``event_time``): the replay file, or live the
    last ``minutes`` of the generator's files (its folder and archive)."""
    from clicklab import results

    if not app.live:
        return results.read_events(app.dataset)
    where = folder(app.build, streams.SQL_APP_SOURCE)
    since = time.time() - minutes * 60
    paths = [p for p in committed_files(where) + committed_files(where / ARCHIVE)
             if p.exists() and p.stat().st_mtime >= since]
    frames = [pd.read_json(p, lines=True, dtype=False) for p in sorted(paths) if p.stat().st_size]
    events = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["browseraction", "site",
                                                                                      "event_time"])
    events["event_time"] = pd.to_datetime(events["event_time"], utc=True, format="ISO8601")
    return events


def events_per_window(app: Lab) -> pd.DataFrame:
    """Impressions and clicks per window of the source's events (pandas): what ``20`` plots."""
    events = source_events(app)
    window = events["event_time"].dt.floor(f"{settings.WINDOW_SECONDS}s")
    return events.assign(window=window).groupby(["window", "browseraction"]).size().unstack(fill_value=0)


def scores_to_plot(app: Lab, scores: pd.DataFrame) -> pd.DataFrame:
    """What ``22`` plots (``ROWTIME``, ``CTR``, ``anomaly_score``): on a replay the query's scores; live every window
    ``CTRSTREAM`` holds, scored where ``DESTINATION_SQL_STREAM`` flagged it (the query saw only its last seconds)."""
    if not app.live:
        return scores
    ctr = app.stream("CTRSTREAM")
    flagged = app.stream("DESTINATION_SQL_STREAM")[["ROWTIME", "ANOMALY_SCORE"]]
    merged = ctr.merge(flagged, on="ROWTIME", how="left").rename(columns={"ANOMALY_SCORE": "anomaly_score"})
    return merged[["ROWTIME", "CTR", "anomaly_score"]]


def wait_for_rows(app: Lab, name: str, rows: int = 1, timeout_s: float = 60.0) -> pd.DataFrame:
    """A stream's rows once it holds at least ``rows`` (live, its jobs have just started); ``ClicklabError`` if it
    does not within ``timeout_s`` seconds."""
    return wait_for(f"{rows} row(s) in {name} (is the live generator running? the job that fills it?)",
                    lambda: (frame := app.stream(name)) is not None and len(frame) >= rows and frame, timeout_s)


def stop_live(build: Path) -> list[str]:
    """The end of the live run: cancel the cluster's jobs, stop the live generator and the cluster; what was done.

    Raises :class:`ClicklabError` if a job, the generator or the cluster is still there afterwards.
    """
    from clicklab import cluster

    build = Path(build)
    done = []
    if cluster.status(build) is not None:
        for job in cluster.jobs(build):
            if job.state not in cluster.TERMINAL_STATES:
                cluster.cancel(build, job.id)
                done.append(f"cancelled {job.name}")
    done.append("live generator stopped" if process.stop(build) else "no live generator was running")
    done += [f"stopped {what}" for what in cluster.down(build)] or ["no Flink cluster was running"]
    if cluster.status(build) is not None or process.status(build) is not None:
        raise ClicklabError(f"something of the live run is still there: see `clicklab cluster status --build {build}`")
    return done
