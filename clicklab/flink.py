"""Starting Flink and running statements: the table environment, jobs.

PyFlink starts a JVM on first use. Before that we check Java ourselves (:mod:`clicklab.java`), so that a
missing or old Java gives one clear sentence instead of a Java stack trace.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clicklab import settings
from clicklab.exceptions import ClicklabError, SqlError
from clicklab.java import check_java, jdk_tool, parse_java_version  # noqa: F401 - the lab calls them as flink.*

if TYPE_CHECKING:
    from pyflink.table import TableEnvironment, TableResult

log = logging.getLogger(__name__)

#: Where a session's jobs run when ``create_table_env`` is given no ``target``: ``local`` or ``cluster``.
FLINK_TARGET_VARIABLE = "CLICKLAB_FLINK"
FLINK_TARGETS = ("local", "cluster")


def flink_target(target: str | None = None) -> str:
    """``target``, or else ``$CLICKLAB_FLINK``, or else ``local``; anything but ``local``/``cluster`` is refused.

    >>> flink_target("cluster")
    'cluster'
    """
    if target is None:
        target = os.environ.get(FLINK_TARGET_VARIABLE, "").strip() or "local"
        source = f"{FLINK_TARGET_VARIABLE}={target!r}"
    else:
        source = f"target={target!r}"
    if target not in FLINK_TARGETS:
        raise ClicklabError(f"{source}: where Flink jobs run must be one of {', '.join(FLINK_TARGETS)}")
    return target


def create_table_env(
    parallelism: int = 1,
    config: dict[str, str] | None = None,
    target: str | None = None,
    build: Path | None = None,
) -> TableEnvironment:
    """A streaming table environment, in UTC, whose jobs run on a local mini-cluster or on the lab's cluster.

    ``target="local"`` (the default): each job runs in a mini-cluster inside this process's JVM and ends with
    it. ``target="cluster"``: jobs are submitted to the standalone cluster that ``clicklab cluster up`` started
    for ``build`` (default: ``build/``), keep running on their own, and show in its web UI under their
    ``pipeline.name``; ``clicklab cluster status`` lists them. With no ``target``, ``$CLICKLAB_FLINK`` decides
    (``local`` when unset).

    Parallelism 1 by default: the replay is small and one worker keeps every stream file in time
    order, which the CTR join's watermarks rely on.
    """
    remote: dict[str, str] = {}
    if flink_target(target) == "cluster":
        from clicklab import cluster

        # before the JVM starts: no cluster is a one-line error, not a Java connection trace at the first job
        remote = cluster.session_config(cluster.find(build if build is not None else settings.DEFAULT_BUILD))
    check_java()
    # Python UDFs never run inside this process: PyFlink's default on a local mini-cluster
    # ("loopback") has their threads call the JVM on other py4j connections, and the planner then
    # fails at random on the next statement (FLINK-36298). On the cluster they run in its TaskManagers.
    os.environ.setdefault("_python_worker_execution_mode", "process")
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    # the execution target is read when the environment is created: pass it in the settings
    env_settings = EnvironmentSettings.new_instance().in_streaming_mode()
    if remote:
        env_settings = env_settings.with_configuration(Configuration.from_dict(remote))
    from clicklab.planner_thread import share_planner_metadata

    t_env = TableEnvironment.create(env_settings.build())
    share_planner_metadata(t_env)  # any py4j connection can plan its statements (FLINK-36298: see the module)
    conf = t_env.get_config()
    for key, value in remote.items():
        conf.set(key, value)
    conf.set("parallelism.default", str(parallelism))
    if not remote:
        # a failing local job fails at once, with its reason: with checkpointing on, Flink's default restarts it
        # forever and the cell never ends (a replay's failure is no passing fault: a restart fails the same way,
        # and a query's collect would only say "Job restarted"); the cluster has its own (clicklab.cluster)
        conf.set("restart-strategy.type", "none")
    conf.set("table.local-time-zone", "UTC")
    conf.set("table.display.max-column-width", "80")
    # Python UDFs run in worker processes: use this interpreter (the venv), not whatever `python` is on PATH.
    conf.set("python.executable", sys.executable)
    conf.set("python.client.executable", sys.executable)
    mode = os.environ.get("CLICKLAB_PYTHON_MODE", "thread")
    if mode not in ("thread", "process"):
        raise ValueError(f"CLICKLAB_PYTHON_MODE must be 'thread' or 'process', got {mode!r}")
    # "thread": Python UDFs run in an interpreter embedded in the Flink task (no worker process to
    # start per job); it needs this environment's packages on its path.
    conf.set("python.execution-mode", mode)
    if mode == "thread":
        import site

        udf_dir = Path(__file__).resolve().parent.parent / "udf"
        conf.set("python.pythonpath", os.pathsep.join([*site.getsitepackages(), str(udf_dir)]))
    # Vectorized (pandas) UDFs get Arrow batches of up to 10,000 rows (Flink's default: 1,000, capped by a
    # bundle of 1,000): RANDOM_CUT_FOREST scores a batch site by site, and with a hundred sites a batch of
    # 10,000 rows scored 36,000 CTRs in 7.1-7.6 s against 9.6-9.8 s (one job, same run). A bundle still
    # ends after python.fn-execution.bundle.time (1 s), so a slow live stream waits no longer for scores.
    conf.set("python.fn-execution.bundle.size", "100000")
    conf.set("python.fn-execution.arrow.batch.size", "10000")
    for key, value in (config or {}).items():
        conf.set(key, value)
    return t_env


_PYTHON_ERROR = re.compile(r"^[A-Z]\w*(?:Error|Exception): ")  # ValueError: ..., not java.lang.X: ...


def error_message(exc: BaseException) -> str:
    """Flink's reason for a failure, without the Java stack trace.

    PyFlink's exceptions carry the whole Java trace; the useful part is the first line of the
    exception and of its deepest ``Caused by``.
    """
    text = str(exc)
    java = getattr(exc, "java_exception", None)  # py4j's Py4JJavaError keeps the Java exception
    if java is not None:
        text = str(java) + "\n" + text
    lines = [ln.strip().removeprefix(": ").strip() for ln in text.splitlines()]
    heads = [
        ln for ln in lines
        if ln and not ln.startswith(("at ", "...", "An error occurred while calling"))
    ]
    if not heads:
        return text.strip() or type(exc).__name__
    first = heads[0]
    # a Python UDF's own error comes back inside the Java trace as a Python traceback: its last line says it
    python_errors = [ln for ln in heads if _PYTHON_ERROR.match(ln)]
    if python_errors:
        return f"{first} (caused by {python_errors[-1]})"
    causes = [ln for ln in heads if ln.startswith("Caused by:")]
    if causes and causes[-1] != first:
        return f"{first} (caused by {causes[-1][len('Caused by:'):].strip()})"
    return first


def execute(t_env: TableEnvironment, sql: str) -> TableResult:
    """``execute_sql`` with Flink's error turned into a one-line :class:`SqlError`."""
    for attempt in range(3):
        try:
            return t_env.execute_sql(sql)
        except Exception as exc:  # PyFlink raises many exception classes for SQL errors
            message = error_message(exc)
            # a local job's mini-cluster may still be shutting down when the next job is submitted
            if "MiniCluster" in message and attempt < 2:
                time.sleep(1.0)
                continue
            raise SqlError(message) from None
    raise AssertionError("unreachable")


def _job_status(result: TableResult) -> str | None:
    client = result.get_job_client()
    if client is None:
        return None
    try:
        return client.get_job_status().result().name
    except Exception:  # a local job's mini-cluster shuts down when the job ends
        return None


def cancel(result: TableResult) -> None:
    """Cancel the result's job if it is still running."""
    client = result.get_job_client()
    if client is None:
        return
    with contextlib.suppress(Exception):  # a job that already ended has nothing to cancel
        client.cancel().result()


def wait(result: TableResult, poll_s: float = 0.2) -> float:
    """Wait for the job of an INSERT to end; Ctrl-C (a kernel interrupt) cancels it.

    Returns the seconds waited. A failed job raises :class:`SqlError` with Flink's reason.
    """
    start = time.monotonic()
    try:
        while _job_status(result) not in (None, "FINISHED", "FAILED", "CANCELED"):
            time.sleep(poll_s)
        result.wait()
    except KeyboardInterrupt:
        cancel(result)
        raise
    except SqlError:
        raise
    except Exception as exc:
        raise SqlError(error_message(exc)) from None
    return time.monotonic() - start


@dataclass
class Collected:
    """Rows a query returned: ``changes`` as (row kind, values); why collection stopped."""

    columns: list[str]
    changes: list[tuple[str, tuple]] = field(default_factory=list)
    stopped: str = "end of stream"
    seconds: float = 0.0


_ROW_KINDS = {"INSERT": "+I", "UPDATE_BEFORE": "-U", "UPDATE_AFTER": "+U", "DELETE": "-D"}


def collect(
    result: TableResult,
    max_changes: int,
    timeout_s: float,
    convert: Callable[[Any], Any] = lambda v: v,
    on_progress: Callable[[Collected], None] | None = None,
    progress_every_s: float = 1.0,
    cancel_at_deadline: Callable[[], object] | None = None,
) -> Collected:
    """Collect a query's rows until it ends, ``max_changes`` rows or ``timeout_s`` seconds.

    ``on_progress``, if given, is called with what was collected so far when rows arrive, at most
    every ``progress_every_s`` seconds (a live table refreshes from it), and once at the end.

    Rows are read on the calling thread. A watchdog thread cancels the job at the deadline, so a source that
    goes quiet cannot block the notebook; Ctrl-C cancels it too.

    ``cancel_at_deadline``: how the watchdog cancels the job (a cluster's REST API:
    :func:`clicklab.cluster.cancel`); without it, through the gateway. A call from the watchdog's thread takes a
    py4j connection of its own, which later statements of the session may get: :mod:`clicklab.planner_thread`
    lets them plan on it (without that, the next query failed with ``NullPointerException:
    metadataHandlerProvider``, as 23 did in the browser test on a loaded machine).
    """
    columns = list(result.get_resolved_schema().get_column_names())
    out = Collected(columns=columns)
    start = time.monotonic()
    finished = threading.Event()
    cancelled = threading.Event()  # the watchdog cancelled the job (a cluster's REST API): reading it then fails

    def watchdog() -> None:
        if not finished.wait(timeout_s):
            cancelled.set()
            try:
                (cancel_at_deadline or (lambda: cancel(result)))()
            except Exception as exc:  # the job may have ended meanwhile: the main thread cancels it again
                log.warning("cancelling a query's job at its deadline failed: %s", exc)

    guard = threading.Thread(target=watchdog, name="flink-query-deadline", daemon=True)
    guard.start()
    shown = time.monotonic()
    try:
        with result.collect() as rows:
            for row in rows:
                kind = _ROW_KINDS.get(row.get_row_kind().name, "+I")
                out.changes.append((kind, tuple(convert(v) for v in row)))
                if on_progress is not None and time.monotonic() - shown >= progress_every_s:
                    shown = time.monotonic()
                    out.seconds = shown - start
                    on_progress(out)
                if len(out.changes) >= max_changes:
                    out.stopped = f"row limit of {max_changes}"
                    break
                if time.monotonic() - start > timeout_s:
                    out.stopped = f"time limit of {timeout_s:g} s"
                    break
    except KeyboardInterrupt:
        cancel(result)
        raise
    except Exception as exc:
        if not cancelled.is_set():
            raise SqlError(error_message(exc)) from None
    finally:
        finished.set()
    if cancelled.is_set():
        out.stopped = f"time limit of {timeout_s:g} s"
    if out.stopped != "end of stream":
        cancel(result)
    out.seconds = time.monotonic() - start
    if on_progress is not None:
        on_progress(out)
    return out
