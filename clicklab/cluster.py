"""A Flink standalone cluster on this machine for the lab's live jobs: ``clicklab cluster up|down|status``.

What runs where
    ``clicklab cluster up`` starts Flink's own standalone cluster with the scripts the ``apache-flink`` package
    ships (``pyflink/bin/jobmanager.sh start``, ``taskmanager.sh start``): one JobManager and, by default, two
    TaskManagers, each its own Java process, detached from the command that started them and listening on
    127.0.0.1 only. The JobManager schedules jobs and serves the REST API and the web UI; the TaskManagers run
    the jobs' tasks, and the Python UDFs in them run in this venv's Python (``python.executable``), where
    ``clicklab_udf`` is importable: embedded in the TaskManager in ``thread`` mode (the lab's default), or in
    worker processes in ``process`` mode (``CLICKLAB_PYTHON_MODE=process``). In ``process`` mode the gRPC
    servers a TaskManager opens for its Python workers listen on all interfaces, not only 127.0.0.1: Apache
    Beam binds them to the wildcard address and Flink has no option to change it.

    A notebook (each is its own kernel) or a ``clicklab`` command whose table environment targets the cluster
    (``create_table_env(target="cluster")`` or ``CLICKLAB_FLINK=cluster``) still plans its SQL in its own JVM,
    then submits the job over REST (:func:`session_config`). The job runs in the cluster under the name the
    session gave it (``pipeline.name``, e.g. ``#4 impression stream``) and keeps running when the notebook
    moves on, until it is cancelled (:func:`cancel_named`, the web UI) or the cluster is stopped.

Files, all under ``<build>/flink/``
    ``conf/config.yaml`` our configuration (``FLINK_CONF_DIR``; :func:`flink_config` says why each key is set),
    next to the package's log4j and logback files; ``log/`` one ``.log`` and one ``.out`` per process
    (``flink-clicklab-standalonesession-*`` is the JobManager, ``flink-clicklab-taskexecutor-*`` the
    TaskManagers); ``pid/`` Flink's own pid files (``env.pid.dir``); ``checkpoints/`` and ``savepoints/`` for
    jobs that enable checkpointing; ``tmp/``; and ``cluster.json``, which tells other processes (notebook
    kernels) the REST port of the running cluster.

How to see it
    The web UI (the URL ``clicklab cluster up`` and ``clicklab cluster status`` print) shows the task managers
    and their slots, each job by name with its graph, records, back pressure, checkpoints and exceptions, and
    the processes' logs. ``clicklab cluster status`` prints the URL, task managers, slots and each job's name
    and state. ``clicklab cluster down`` stops every process and checks that none is left and that the REST
    port is closed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import yaml

from clicklab import settings
from clicklab.exceptions import ClicklabError
from clicklab.loopback import LOOPBACK, free_port, locked, port_open

log = logging.getLogger(__name__)

#: Every process of the cluster listens on this address only, and the processes reach each other through it.
#: ``FLINK_IDENT_STRING``: Flink names its pid and log files ``flink-<ident>-<daemon>...``.
IDENT = "clicklab"
_JOBMANAGER = "standalonesession"  # the daemon names of flink-daemon.sh
_TASKMANAGER = "taskexecutor"
_ROLES = {_JOBMANAGER: "JobManager", _TASKMANAGER: "TaskManager"}
_MAIN_CLASSES = {  # what the daemons run (flink-daemon.sh); the scripts' own short java calls run other classes
    "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint": "JobManager",
    "org.apache.flink.runtime.taskexecutor.TaskManagerRunner": "TaskManager",
}

#: States of a job that holds (or waits for) slots: :func:`cancel_named` cancels these.
ACTIVE_STATES = frozenset({"INITIALIZING", "CREATED", "RUNNING", "RESTARTING", "RECONCILING"})
#: States a job never leaves.
TERMINAL_STATES = frozenset({"FINISHED", "CANCELED", "FAILED", "SUSPENDED"})

#: Process memory of the JobManager and of each TaskManager (Flink derives heap, direct memory and metaspace
#: from it), sized for a laptop; Python UDFs in ``thread`` mode add their interpreter's memory to a TaskManager's.
#: The web UI's Task Managers page shows how each one is divided. See :func:`flink_config`.
JOBMANAGER_MEMORY = "1200m"
TASKMANAGER_MEMORY = "2g"


@dataclass(frozen=True)
class FlinkDirs:
    """The cluster's folders and files under ``<build>/flink/``."""

    root: Path

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def pid(self) -> Path:
        return self.root / "pid"

    @property
    def lib(self) -> Path:
        """``FLINK_LIB_DIR``: the package's ``lib/`` jars and ``opt/flink-python``, as links."""
        return self.root / "lib"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def savepoints(self) -> Path:
        return self.root / "savepoints"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def state(self) -> Path:
        """``cluster.json``: how other processes find the running cluster."""
        return self.root / "cluster.json"

    def pid_file(self, daemon: str) -> Path:
        """Flink's own pid file of a daemon (one pid a line; ``flink-daemon.sh`` writes and removes it)."""
        return self.pid / f"flink-{IDENT}-{daemon}.pid"


def dirs(build: Path = settings.DEFAULT_BUILD) -> FlinkDirs:
    """The cluster folders of a build folder."""
    return FlinkDirs(Path(build).resolve() / "flink")


@dataclass
class Job:
    """A job as the JobManager reports it (``/jobs/overview``)."""

    id: str
    name: str
    state: str
    start_time: datetime | None
    duration_s: float

    @property
    def active(self) -> bool:
        """The job runs, or is about to (it holds or waits for slots)."""
        return self.state in ACTIVE_STATES


@dataclass
class ClusterInfo:
    """A running cluster: where its web UI is, what it has, what runs on it."""

    url: str
    rest_port: int
    conf_dir: Path
    log_dir: Path
    started: str
    flink_version: str = ""
    taskmanagers: int = 0
    slots_total: int = 0
    slots_available: int = 0
    jobs: list[Job] = field(default_factory=list)

    def describe(self) -> str:
        """Lines for a terminal or a notebook: URL, task managers, slots, and each job's name and state."""
        lines = [
            f"Flink {self.flink_version} web UI: {self.url} (started {self.started})",
            f"{self.taskmanagers} task managers, {self.slots_available} of {self.slots_total} slots free",
        ]
        if not self.jobs:
            lines.append("no jobs")
        for job in self.jobs:
            when = job.start_time.strftime("%Y-%m-%d %H:%M:%S UTC") if job.start_time else "-"
            lines.append(f"  {job.state:<12} {job.name}  (started {when}, id {job.id})")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# REST


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never goes through a proxy


def _rest(port: int, path: str, method: str = "GET", timeout_s: float = 5.0) -> Any:
    request = urllib.request.Request(f"http://{LOOPBACK}:{port}{path}", method=method)
    with _OPENER.open(request, timeout=timeout_s) as response:
        body = response.read()
    return json.loads(body) if body else {}


def rest_get(build: Path, path: str, timeout_s: float = 5.0) -> Any:
    """``GET`` of ``path`` (``/jobs/<id>/...``) on the REST API of the cluster of ``build``, the parsed JSON.

    Raises :class:`ClicklabError` when that cluster is not up, ``OSError`` when the request fails.
    """
    return _rest(find(build).rest_port, path, timeout_s=timeout_s)


def job_details(build: Path, job_id: str) -> dict[str, Any]:
    """A job's details (REST ``/jobs/<id>``): ``state``, ``timestamps`` per state (epoch ms), ``vertices`` with
    their ``metrics`` (``read-records`` ...)."""
    return dict(rest_get(build, f"/jobs/{job_id}"))


def checkpoint_details(build: Path, job_id: str, checkpoint_id: int) -> dict[str, Any]:
    """One checkpoint of a job (REST ``/jobs/<id>/checkpoints/details/<checkpoint>``): per operator (``tasks``,
    by vertex id) its ``state_size`` and ``checkpointed_size``."""
    return dict(rest_get(build, f"/jobs/{job_id}/checkpoints/details/{checkpoint_id}"))


def job_parallelism(build: Path, job_id: str) -> int:
    """The highest parallelism of a job's tasks (REST ``/jobs/<id>``)."""
    return max(int(v["parallelism"]) for v in job_details(build, job_id).get("vertices", []))


def restored_from(build: Path, job_id: str) -> str | None:
    """The savepoint or checkpoint a job started from (REST ``/jobs/<id>/checkpoints``), or ``None``."""
    restored = (rest_get(build, f"/jobs/{job_id}/checkpoints").get("latest") or {}).get("restored")
    return None if not restored else str(restored.get("external_path"))


def _overview(port: int, timeout_s: float = 3.0) -> dict[str, Any] | None:
    """``/overview`` of the cluster on this REST port, or None if nothing answers there."""
    try:
        return _rest(port, "/overview", timeout_s=timeout_s)
    except (OSError, ValueError):  # URLError and timeouts are OSErrors; ValueError: not JSON
        return None


# ---------------------------------------------------------------------------------------------------------------
# configuration and files


def flink_home() -> Path:
    """The Flink distribution inside the ``apache-flink`` package (``bin/``, ``conf/``, ``lib/``, ``opt/``)."""
    spec = importlib.util.find_spec("pyflink")
    if spec is None or not spec.submodule_search_locations:
        raise ClicklabError("the apache-flink package (pyflink) is not installed in this Python")
    return Path(next(iter(spec.submodule_search_locations)))


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return flat


def flink_config(d: FlinkDirs, rest_port: int, rpc_port: int, slots: int,
                 taskmanager_memory: str = TASKMANAGER_MEMORY) -> dict[str, str]:
    """Our keys of ``config.yaml`` (on top of the package's, whose Java 17 ``--add-opens`` options we keep).

    Loopback only: ``*.bind-host`` / ``rest.bind-address`` are where a process listens, ``*.address`` /
    ``taskmanager.host`` what it tells the others. The JobManager's RPC and REST ports are free ports picked at
    start (the TaskManagers and clients must know them); every other port (TaskManager RPC and data, blob
    server, metrics query service) is left to the system (``0``), on the same bind address.

    Memory: a TaskManager of 2 GiB with 4 slots, a JobManager of 1.2 GiB. Streaming SQL with the heap state
    backend uses managed memory only for Python workers in ``process`` mode (they take their share of it), so a
    smaller managed fraction than Flink's 0.4 leaves more heap for keyed state (windows, joins).
    """
    return {
        "jobmanager.rpc.address": LOOPBACK,
        "jobmanager.bind-host": LOOPBACK,
        "jobmanager.rpc.port": str(rpc_port),
        "rest.address": LOOPBACK,
        "rest.bind-address": LOOPBACK,
        "rest.port": str(rest_port),
        "rest.bind-port": str(rest_port),
        "taskmanager.host": LOOPBACK,
        "taskmanager.bind-host": LOOPBACK,
        "taskmanager.rpc.port": "0",
        "taskmanager.data.port": "0",
        "blob.server.port": "0",
        "metrics.internal.query-service.port": "0",
        # a TaskManager that starts before the JobManager listens retries after this (Flink: 10 s, which
        # would double the start); on loopback a retry a second costs nothing
        "cluster.registration.error-delay": "1 s",
        "taskmanager.numberOfTaskSlots": str(slots),
        # a job's slots go to the TaskManager with the most free slots: the lab's jobs spread over both
        "taskmanager.load-balance.mode": "SLOTS",
        "parallelism.default": "1",
        "jobmanager.memory.process.size": JOBMANAGER_MEMORY,
        "taskmanager.memory.process.size": taskmanager_memory,
        "taskmanager.memory.managed.fraction": "0.25",
        # Python UDFs run in the TaskManagers in this Python, where pyflink and clicklab_udf are installed
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        # everything the processes write stays under <build>/flink/ (`make clean` removes it)
        "env.log.dir": str(d.log),
        "env.pid.dir": str(d.pid),
        "io.tmp.dirs": str(d.tmp),
        "web.tmpdir": str(d.tmp / "web"),
        # jobs that enable checkpointing (the session does, per job) write here; a failed task restarts
        # a few times before its job fails, as on a real cluster
        "execution.checkpointing.dir": d.checkpoints.as_uri(),
        "execution.checkpointing.savepoint-dir": d.savepoints.as_uri(),
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": "3",
        "restart-strategy.fixed-delay.delay": "2 s",
        # the REST API's operator metrics (records in/out) are fetched every half second (Flink: 10 s), so
        # `clicklab bench --sites` times a job's progress to half a second
        "metrics.fetcher.update-interval": "500",
        # a job's details and checkpoint counts are cached for 3 s (web.refresh-interval): a job that ended, or
        # its first checkpoint, could look otherwise for that long to the REST clients here (tests, faults)
        "rest.cache.execution-graph.timeout": "200 ms",
        "rest.cache.checkpoint-statistics.timeout": "200 ms",
        # a TaskManager that dies is noticed within seconds (Flink: 50 s), so its jobs restart soon
        "heartbeat.interval": "1 s",
        "heartbeat.timeout": "6 s",
    }


def _link_lib(d: FlinkDirs) -> None:
    """The processes' class path: the package's ``lib/`` and ``flink-python`` from ``opt/``.

    The package keeps ``flink-python`` (the Python operators, and pemja for ``thread`` mode) in ``opt/``, and the
    scripts put only ``lib/`` on the class path: without it a job with a Python UDF fails at submission
    (ClassNotFoundException of its Python operator). In the class path, rather than shipped with each job,
    its classes and native library are loaded once per TaskManager.
    """
    home = flink_home()
    jars = sorted((home / "lib").glob("*.jar")) + sorted((home / "opt").glob("flink-python*.jar"))
    d.lib.mkdir(parents=True, exist_ok=True)
    for old in d.lib.iterdir():
        old.unlink()
    for jar in jars:
        (d.lib / jar.name).symlink_to(jar)


def _write_conf(d: FlinkDirs, rest_port: int, rpc_port: int, slots: int, taskmanager_memory: str,
                taskmanager_java_opts: str = "") -> Path:
    package_conf = flink_home() / "conf"
    for folder in (d.conf, d.log, d.pid, d.checkpoints, d.savepoints, d.tmp):
        folder.mkdir(parents=True, exist_ok=True)
    _link_lib(d)
    for name in os.listdir(package_conf):  # Flink looks for log4j*.properties and logback*.xml in FLINK_CONF_DIR
        if name.startswith(("log4j", "logback")):
            (d.conf / name).write_bytes((package_conf / name).read_bytes())
    keys = _flatten(yaml.safe_load((package_conf / "config.yaml").read_text(encoding="utf-8")) or {})
    keys.update(flink_config(d, rest_port, rpc_port, slots, taskmanager_memory))
    if taskmanager_java_opts:  # after Flink's own -Xmx/-Xms on the TaskManagers' command line: these win
        keys["env.java.opts.taskmanager"] = taskmanager_java_opts
    path = d.conf / "config.yaml"
    header = "# Written by `clicklab cluster up` at every start (clicklab/cluster.py, flink_config): edit that.\n"
    path.write_text(header + yaml.safe_dump(keys, sort_keys=True, width=10_000), encoding="utf-8")
    return path


def _read_state(d: FlinkDirs) -> dict[str, Any] | None:
    try:
        state = json.loads(d.state.read_text(encoding="utf-8"))
        int(state["rest_port"])
        return state
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _script_env(d: FlinkDirs) -> dict[str, str]:
    # a notebook kernel or a UDF worker may carry PyFlink's or another Flink's variables: not for the cluster
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLINK_", "PYFLINK_", "_FLINK", "_python"))}
    env["FLINK_CONF_DIR"] = str(d.conf)
    env["FLINK_LIB_DIR"] = str(d.lib)
    env["FLINK_IDENT_STRING"] = IDENT
    return env


def _run_script(d: FlinkDirs, script: str, *args: str, timeout_s: float = 120.0) -> str:
    """Run one of Flink's scripts with our configuration, in a session of its own (so that Ctrl-C in the
    terminal or a kernel interrupt never reaches the cluster's processes, which the script leaves running)."""
    command = [str(flink_home() / "bin" / script), *args]
    try:
        proc = subprocess.run(command, env=_script_env(d), capture_output=True, text=True, timeout=timeout_s,
                              start_new_session=True, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ClicklabError(f"`{script} {' '.join(args)}` failed: {exc}") from None
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        reason = _reason(output) or f"exit status {proc.returncode}"
        raise ClicklabError(f"`{script} {' '.join(args)}` failed: {reason}; read the logs in {d.log}")
    return output


# ---------------------------------------------------------------------------------------------------------------
# processes


def _recorded_pids(d: FlinkDirs) -> list[int]:
    """The pids in Flink's pid files (``flink-daemon.sh start`` adds a line, ``stop-all`` removes the file)."""
    pids: list[int] = []
    for daemon in _ROLES:
        with contextlib.suppress(OSError):
            pids += [int(word) for word in d.pid_file(daemon).read_text().split() if word.isdigit()]
    return pids


def _role(proc: psutil.Process, d: FlinkDirs) -> str | None:
    """JobManager or TaskManager if the process is a Flink daemon started with our configuration
    (``--configDir <build>/flink/conf``), else None."""
    try:
        cmdline = proc.cmdline()
        if proc.status() == psutil.STATUS_ZOMBIE or str(d.conf) not in cmdline:
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return next((role for cls, role in _MAIN_CLASSES.items() if cls in cmdline), None)


def processes(build: Path = settings.DEFAULT_BUILD) -> dict[int, str]:
    """The cluster's live Java processes, pid -> role, from Flink's pid files in ``<build>/flink/pid/``.

    Daemons started with our configuration whose pid is in no pid file (a start interrupted between launch
    and pid file) are found by their command line and listed too.
    """
    d = dirs(build)
    found: dict[int, str] = {}
    for pid in _recorded_pids(d):
        with contextlib.suppress(psutil.NoSuchProcess):
            role = _role(psutil.Process(pid), d)
            if role:
                found[pid] = role
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid not in found and str(d.conf) in (proc.info.get("cmdline") or []):
            role = _role(proc, d)
            if role:
                found[proc.pid] = role
    return found


def _latest_log(d: FlinkDirs, daemon: str, since: float = 0.0) -> Path:
    """The daemon's newest log file, or the log folder if it has none written since ``since`` (a time stamp)."""
    logs = sorted((p.stat().st_mtime, p) for p in d.log.glob(f"flink-{IDENT}-{daemon}-*.log"))
    return logs[-1][1] if logs and logs[-1][0] >= since else d.log


def _reason(text: str) -> str:
    """Flink's reason in a script's output or a log: the exception with a message (its deepest ``Caused by``),
    else the last ERROR line; shortened to one line."""
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("at ", "..."))]
    exceptions = [ln for ln in lines if re.search(r"(Exception|Error): ", ln)]
    causes = [ln for ln in exceptions if ln.startswith("Caused by:")]
    errors = [ln for ln in lines if "ERROR" in ln]
    best = causes[-1] if causes else exceptions[0] if exceptions else errors[-1] if errors else ""
    best = re.sub(r"^(Caused by: |Exception in thread \S+ )", "", best)
    return best[:300] + ("..." if len(best) > 300 else "")


def _last_error(path: Path) -> str:
    """Flink's reason for a failure in a process's log (or its .out file)."""
    for candidate in (path.with_suffix(".out"), path):
        with contextlib.suppress(OSError):
            reason = _reason(candidate.read_text(encoding="utf-8", errors="replace")) if candidate.is_file() else ""
            if reason:
                return reason
    return ""


# ---------------------------------------------------------------------------------------------------------------
# up, down, status


def up(build: Path = settings.DEFAULT_BUILD, taskmanagers: int = 2, slots: int = 4,
       timeout_s: float = 120.0, taskmanager_memory: str = TASKMANAGER_MEMORY,
       taskmanager_java_opts: str = "") -> ClusterInfo:
    """Start the cluster (one JobManager, ``taskmanagers`` TaskManagers of ``slots`` slots) and wait until all
    TaskManagers have registered; return it, with the web UI's URL. ``taskmanager_java_opts``: more options of
    the TaskManagers' JVMs (``env.java.opts.taskmanager``; ``clicklab bench --sites`` lets their heap shrink).

    If the cluster of this build folder is already up (``cluster.json`` and the REST API answers), return it
    as it is, whatever ``taskmanagers`` and ``slots`` say (:func:`down` first to change them). A
    ``cluster.json`` that points to nothing, and processes of an earlier failed start, are cleaned up first.
    A failed start stops what it started and raises :class:`ClicklabError` naming the log to read.
    """
    if taskmanagers < 1 or slots < 1:
        raise ClicklabError(f"a cluster needs at least 1 TaskManager of 1 slot, not {taskmanagers} of {slots}")
    d = dirs(build)
    with locked(d.root):
        return _up(d, taskmanagers, slots, timeout_s, taskmanager_memory, taskmanager_java_opts)


def _up(d: FlinkDirs, taskmanagers: int, slots: int, timeout_s: float, taskmanager_memory: str,
        taskmanager_java_opts: str = "") -> ClusterInfo:
    current = status(d.root.parent)
    if current is not None:
        log.info("the Flink cluster of %s is already up", d.root)
        return current
    from clicklab.java import check_java

    check_java()
    leftovers = _down(d, timeout_s=30.0)
    if leftovers:
        log.info("cleaned up an earlier cluster: %s", ", ".join(leftovers))
    rest_port, rpc_port = free_port(), free_port()
    _write_conf(d, rest_port, rpc_port, slots, taskmanager_memory, taskmanager_java_opts)
    url = f"http://{LOOPBACK}:{rest_port}"
    state = {
        "url": url, "rest_port": rest_port, "rpc_port": rpc_port, "conf_dir": str(d.conf), "log_dir": str(d.log),
        "taskmanagers": taskmanagers, "slots": slots, "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "python": sys.executable,
    }
    d.state.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")  # so that `down` finds the port
    try:
        log.info("starting a Flink JobManager and %d TaskManagers (config %s)", taskmanagers, d.conf / "config.yaml")
        _start_daemons(d, taskmanagers)
        _wait_ready(d, rest_port, taskmanagers, timeout_s, slots)
    except BaseException:
        with contextlib.suppress(Exception):
            _down(d, timeout_s=30.0)
        raise
    info = status(d.root.parent)
    if info is None:
        raise ClicklabError(f"the Flink cluster stopped right after it started; read {_latest_log(d, _JOBMANAGER)}")
    return info


def _start_daemons(d: FlinkDirs, taskmanagers: int) -> None:
    """``jobmanager.sh start`` and ``taskmanager.sh start`` (once per TaskManager), at the same time: each script
    spends seconds reading the configuration with Java, and a TaskManager retries until the JobManager is up.
    ``flink-daemon.sh`` serialises the pid file writes itself (flock on the pid folder)."""
    bin_dir = flink_home() / "bin"
    started = time.time()
    scripts = [("jobmanager.sh", _JOBMANAGER)] + [("taskmanager.sh", _TASKMANAGER)] * taskmanagers
    running = [
        (script, daemon, subprocess.Popen(
            [str(bin_dir / script), "start"], env=_script_env(d), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, start_new_session=True))
        for script, daemon in scripts
    ]
    outputs = []
    try:
        for _, _, proc in running:
            outputs.append(proc.communicate(timeout=120)[0])
    except BaseException:
        # Ctrl-C: the scripts (in sessions of their own) still launch their daemon; let them, so that the
        # cleanup that follows finds every daemon in the pid files
        for _, _, proc in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=120)
        raise
    failed = []
    for (script, daemon, proc), out in zip(running, outputs, strict=True):
        if proc.returncode != 0:
            reason = _reason(out) or f"exit status {proc.returncode}"
            failed.append(f"`{script} start` failed: {reason}; read {_latest_log(d, daemon, started)}")
    if failed:
        raise ClicklabError(failed[0])


def _wait_ready(d: FlinkDirs, rest_port: int, taskmanagers: int, timeout_s: float, slots: int = 1) -> None:
    """Until ``taskmanagers`` TaskManagers registered and all their ``slots`` each are offered: a TaskManager
    registers before it reports its slots, and a job submitted in between sees fewer (CI saw 2 TaskManagers
    with 4 of 8 slots)."""
    deadline = time.monotonic() + timeout_s
    registered = 0
    short = 0  # consecutive looks that found a daemon missing: a process just launched may not show its
    #            Java command line yet (the shell that starts it has not exec'd), so one look is not enough
    while time.monotonic() < deadline:
        overview = _overview(rest_port, timeout_s=2.0)
        if overview is not None:
            registered = int(overview.get("taskmanagers", 0))
            if registered >= taskmanagers and int(overview.get("slots-total", 0)) >= taskmanagers * slots:
                return
        alive = processes(d.root.parent)
        complete = (_ROLES[_JOBMANAGER] in alive.values()
                    and list(alive.values()).count(_ROLES[_TASKMANAGER]) >= taskmanagers)
        short = 0 if complete else short + 1
        if short < 3:
            time.sleep(0.5)
            continue
        if _ROLES[_JOBMANAGER] not in alive.values():
            log_file = _latest_log(d, _JOBMANAGER)
            reason = _last_error(log_file)
            raise ClicklabError(f"the Flink JobManager stopped{f' ({reason})' if reason else ''}; read {log_file}")
        if list(alive.values()).count(_ROLES[_TASKMANAGER]) < taskmanagers:
            log_file = _latest_log(d, _TASKMANAGER)
            reason = _last_error(log_file)
            raise ClicklabError(f"a Flink TaskManager stopped{f' ({reason})' if reason else ''}; read {log_file}")
        time.sleep(0.5)
    raise ClicklabError(
        f"{registered} of {taskmanagers} Flink TaskManagers registered within {timeout_s:g} s; "
        f"read {_latest_log(d, _TASKMANAGER)} and {_latest_log(d, _JOBMANAGER)}"
    )


def down(build: Path = settings.DEFAULT_BUILD, timeout_s: float = 30.0) -> list[str]:
    """Stop the cluster: ``taskmanager.sh stop-all``, ``jobmanager.sh stop-all``, then make sure.

    Processes still there after ``timeout_s`` (and Python workers the TaskManagers started) are killed; then
    the REST port must refuse connections and ``cluster.json`` is removed. Returns what was stopped, e.g.
    ``["TaskManager (pid 4242)", ...]``; an empty list when nothing was running.
    """
    d = dirs(build)
    with locked(d.root):
        return _down(d, timeout_s)


def _down(d: FlinkDirs, timeout_s: float) -> list[str]:
    state = _read_state(d)
    daemons = processes(d.root.parent)
    workers: list[psutil.Process] = []  # Python workers (process mode) and scripts under the TaskManagers
    for pid in daemons:
        with contextlib.suppress(psutil.Error):
            workers += psutil.Process(pid).children(recursive=True)
    stopped = [f"{role} (pid {pid})" for pid, role in sorted(daemons.items(), key=lambda kv: kv[1] != "TaskManager")]
    for daemon, script in ((_TASKMANAGER, "taskmanager.sh"), (_JOBMANAGER, "jobmanager.sh")):
        if d.pid_file(daemon).exists():
            try:
                _run_script(d, script, "stop-all", timeout_s=timeout_s + 30)
            except ClicklabError as exc:
                log.warning("%s; killing the processes", exc)
    remaining = []
    for pid in daemons:
        with contextlib.suppress(psutil.NoSuchProcess):
            remaining.append(psutil.Process(pid))
    remaining += workers
    _, alive = psutil.wait_procs(remaining, timeout=timeout_s)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            log.warning("pid %d did not stop: killing it", proc.pid)
            proc.kill()
    _, alive = psutil.wait_procs(alive, timeout=10)
    if alive:
        raise ClicklabError(f"could not stop pid {', '.join(str(p.pid) for p in alive)}; read the logs in {d.log}")
    for daemon in _ROLES:
        d.pid_file(daemon).unlink(missing_ok=True)
    if state is not None and "JobManager" in daemons.values():  # the port was ours: it must close now
        port = int(state["rest_port"])
        deadline = time.monotonic() + 10
        while port_open(port):
            if time.monotonic() > deadline:
                raise ClicklabError(f"port {port} still accepts connections after the cluster stopped; "
                                    f"see which program listens there (e.g. `ss -ltnp | grep {port}`)")
            time.sleep(0.2)
    d.state.unlink(missing_ok=True)
    return stopped


def _info(state: dict[str, Any], overview: dict[str, Any], job_list: list[Job]) -> ClusterInfo:
    return ClusterInfo(
        url=state.get("url") or f"http://{LOOPBACK}:{state['rest_port']}",
        rest_port=int(state["rest_port"]),
        conf_dir=Path(state.get("conf_dir", "")),
        log_dir=Path(state.get("log_dir", "")),
        started=state.get("started", ""),
        flink_version=str(overview.get("flink-version", "")),
        taskmanagers=int(overview.get("taskmanagers", 0)),
        slots_total=int(overview.get("slots-total", 0)),
        slots_available=int(overview.get("slots-available", 0)),
        jobs=job_list,
    )


def status(build: Path = settings.DEFAULT_BUILD) -> ClusterInfo | None:
    """The running cluster of this build folder (web UI URL, task managers, slots, jobs), or None."""
    state = _read_state(dirs(build))
    if state is None:
        return None
    overview = _overview(int(state["rest_port"]))
    if overview is None:
        return None
    return _info(state, overview, _jobs(int(state["rest_port"])))


def find(build: Path = settings.DEFAULT_BUILD) -> ClusterInfo:
    """The running cluster, or a one-line :class:`ClicklabError` saying how to start one."""
    info = status(build)
    if info is None:
        hint = "" if Path(build).resolve() == settings.DEFAULT_BUILD.resolve() else f" --build {build}"
        raise ClicklabError(f"no Flink cluster is running: run `clicklab cluster up{hint}`")
    return info


#: ``execution.target`` of a session whose jobs go to a cluster over REST (:func:`session_config`).
REMOTE_TARGET = "remote"


def submits_to_cluster(t_env: Any) -> bool:
    """Whether the table environment ``t_env`` submits its jobs to a cluster (:func:`session_config`)."""
    return bool(t_env.get_config().get("execution.target", "") == REMOTE_TARGET)


def session_config(info: ClusterInfo) -> dict[str, str]:
    """Table-environment options that submit the session's jobs to this cluster over REST.

    The client plans the SQL in its own JVM and submits the job graph with the Python UDFs' code; the
    cluster's TaskManagers run the UDFs in the Python of ``python.executable``.
    """
    return {
        "execution.target": REMOTE_TARGET,
        "rest.address": LOOPBACK,
        "rest.port": str(info.rest_port),
    }


# ---------------------------------------------------------------------------------------------------------------
# jobs


def _job(raw: dict[str, Any]) -> Job:
    start = raw.get("start-time", -1)
    return Job(
        id=raw["jid"], name=raw.get("name", ""), state=raw.get("state", ""),
        start_time=datetime.fromtimestamp(start / 1000, UTC) if start and start > 0 else None,
        duration_s=max(0, raw.get("duration", 0)) / 1000,
    )


def _jobs(port: int) -> list[Job]:
    try:
        raw = _rest(port, "/jobs/overview").get("jobs", [])
    except (OSError, ValueError) as exc:
        raise ClicklabError(f"the Flink cluster at http://{LOOPBACK}:{port} does not answer ({exc})") from None
    return sorted((_job(j) for j in raw), key=lambda j: j.start_time or datetime.min.replace(tzinfo=UTC),
                  reverse=True)


def jobs(build: Path = settings.DEFAULT_BUILD) -> list[Job]:
    """The cluster's jobs, newest first: running ones and those that ended (the web UI keeps them a while)."""
    return _jobs(find(build).rest_port)


def cancel(build: Path, job_id: str, timeout_s: float = 60.0) -> str:
    """Cancel a job (REST ``PATCH /jobs/<id>?mode=cancel``) and wait until it has ended; return its last state."""
    port = find(build).rest_port
    try:
        state = _rest(port, f"/jobs/{job_id}").get("state", "")
        if state not in TERMINAL_STATES:
            _rest(port, f"/jobs/{job_id}?mode=cancel", method="PATCH")
    except urllib.error.HTTPError as exc:
        raise ClicklabError(f"cannot cancel job {job_id}: HTTP {exc.code} from the Flink cluster") from None
    deadline = time.monotonic() + timeout_s
    while state not in TERMINAL_STATES:
        if time.monotonic() > deadline:
            raise ClicklabError(f"job {job_id} is still {state} {timeout_s:g} s after it was cancelled; "
                                f"see {find(build).url}/#/job/running/{job_id}")
        time.sleep(0.3)
        state = _rest(port, f"/jobs/{job_id}").get("state", "")
    return state


def cancel_named(build: Path, name: str, timeout_s: float = 60.0) -> list[str]:
    """Cancel every running (or starting, or restarting) job of exactly this name; return their ids.

    A notebook cell that starts a job calls this first, so that running the cell again replaces its job
    instead of adding a second one.
    """
    ids = [job.id for job in jobs(build) if job.name == name and job.active]
    for job_id in ids:
        cancel(build, job_id, timeout_s)
    return ids


def cancel_all(build: Path, timeout_s: float = 60.0, poll_s: float = 0.3) -> list[Job]:
    """Cancel every job of the cluster that has not ended; return once none is left, or raise at the deadline.

    "Not ended" is every state but :data:`TERMINAL_STATES`, the states Flink's ``JobStatus.isTerminalState()``
    calls terminal: FINISHED, CANCELED and FAILED (globally terminal) and SUSPENDED (locally terminal: its
    JobManager gave the job up, it holds no slot and answers no cancel). So INITIALIZING, CREATED, RUNNING,
    FAILING, RESTARTING and RECONCILING are cancelled, a CANCELLING job is waited for (not asked again), and so
    is any state a later Flink adds. The job list is read again until it shows no job that has not ended, so a
    job submitted meanwhile is cancelled too; a job that ends by itself between the list and the request (Flink
    then answers 404 or 409) is simply gone. Returns the jobs asked to cancel, with the state they had then.
    """
    port = find(build).rest_port
    asked: dict[str, Job] = {}
    refused: dict[str, str] = {}  # job id -> the last HTTP error its cancel request got
    deadline = time.monotonic() + timeout_s
    while True:
        left = [job for job in _jobs(port) if job.state not in TERMINAL_STATES]
        if not left:
            return list(asked.values())
        for job in left:
            if job.state == "CANCELLING" or (job.id in asked and job.id not in refused):
                continue
            try:
                _rest(port, f"/jobs/{job.id}?mode=cancel", method="PATCH")
                refused.pop(job.id, None)
            except urllib.error.HTTPError as exc:  # ended meanwhile (404, 409), or refused: the list says which
                refused[job.id] = f"HTTP {exc.code}"
            asked.setdefault(job.id, job)
        if time.monotonic() > deadline:
            states = ", ".join(f"{job.name or job.id} ({job.id}) {job.state}"
                               + (f", cancel answered {refused[job.id]}" if job.id in refused else "")
                               for job in left)
            raise ClicklabError(f"{len(left)} job(s) have not ended {timeout_s:g} s after they were cancelled: "
                                f"{states}; see {find(build).url}/#/overview")
        time.sleep(poll_s)


# ---------------------------------------------------------------------------------------------------------------
# checkpoints, savepoints, failures


@dataclass(frozen=True)
class Checkpoints:
    """What a job's checkpoints look like (REST ``/jobs/<id>/checkpoints``)."""

    completed: int
    failed: int
    last_duration_s: float | None  # the latest completed checkpoint: trigger to acknowledged
    last_state_bytes: int | None  # its full state size (all operators, all subtasks)
    last_path: str | None
    last_id: int | None = None  # its id (:func:`checkpoint_details`)


def checkpoints(build: Path, job_id: str) -> Checkpoints:
    """The checkpoint counts of a job and its latest completed checkpoint."""
    raw = rest_get(build, f"/jobs/{job_id}/checkpoints")
    counts = raw.get("counts", {})
    last = (raw.get("latest") or {}).get("completed") or {}
    size = last.get("checkpointed_size") if last.get("state_size") is None else last.get("state_size")
    return Checkpoints(
        completed=int(counts.get("completed", 0)),
        failed=int(counts.get("failed", 0)),
        last_duration_s=last["end_to_end_duration"] / 1000 if "end_to_end_duration" in last else None,
        last_state_bytes=int(size) if size is not None else None,
        last_path=last.get("external_path"),
        last_id=int(last["id"]) if "id" in last else None,
    )


def job_state(build: Path, job_id: str) -> str:
    """A job's state (``RUNNING``, ``RESTARTING``, ``FINISHED`` ...)."""
    return str(job_details(build, job_id).get("state", ""))


def ended_state(build: Path, job_id: str, timeout_s: float = 30.0) -> str:
    """A job's final state, once the REST API shows one (it may lag the client's view of the end a little)."""
    return str(wait_for(lambda: (state := job_state(build, job_id)) in TERMINAL_STATES and state,
                        f"job {job_id} to show an end state", timeout_s))


def wait_for(check: Any, what: str, timeout_s: float = 120.0, poll_s: float = 0.2) -> Any:
    """Poll ``check()`` until it returns something true; return it, or raise :class:`ClicklabError` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ClicklabError(f"waited {timeout_s:g} s for {what}")
        time.sleep(poll_s)


def stop_with_savepoint(build: Path, job_id: str, timeout_s: float = 120.0) -> str:
    """Stop a job with a savepoint (REST ``POST /jobs/<id>/stop``, not drained: windows stay open in the
    savepoint); return the savepoint's path, from which the same job resumes
    (``execution.state-recovery.path``).

    Flink refuses the savepoint while some of the job's tasks are starting or finishing (a bounded source
    task with no split left declines it while it waits for its last checkpoint: ``task is closing``), and
    then fails the job over to its latest checkpoint. This raises :class:`ClicklabError` with Flink's cause
    and does not ask again: where a stop was refused twice or more before one was taken, the resumed job's
    file sink held rows twice (README, *Keyed state on a cluster*). Stop a job once it has checkpointed.
    """
    port = find(build).rest_port
    body = json.dumps({"drain": False, "targetDirectory": dirs(build).savepoints.as_uri()}).encode()
    request = urllib.request.Request(f"http://{LOOPBACK}:{port}/jobs/{job_id}/stop", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with _OPENER.open(request, timeout=10) as response:
        trigger = json.loads(response.read())["request-id"]

    def done() -> dict[str, Any] | None:
        status = _rest(port, f"/jobs/{job_id}/savepoints/{trigger}")
        return status if status.get("status", {}).get("id") == "COMPLETED" else None

    operation = wait_for(done, f"the savepoint of job {job_id}", timeout_s).get("operation", {})
    if "failure-cause" in operation:
        cause = operation["failure-cause"].get("stack-trace", "").strip()
        raise ClicklabError(f"stop-with-savepoint of job {job_id} failed, and Flink fails the job over to its "
                            f"latest checkpoint: {cause.splitlines()[0] if cause else 'no cause given'}")
    return str(operation["location"])


def taskmanager_pids(build: Path = settings.DEFAULT_BUILD) -> list[int]:
    """The process ids of the cluster's TaskManagers."""
    return sorted(pid for pid, role in processes(build).items() if role == _ROLES[_TASKMANAGER])


def kill_taskmanager(build: Path = settings.DEFAULT_BUILD, pid: int | None = None) -> int:
    """``kill -9`` one TaskManager (the first, or ``pid``), as a machine that dies would; return its pid.

    Its jobs fail over: they restart (``restart-strategy``) from their latest checkpoint on the slots left.
    ``add_taskmanager`` starts a new one.
    """
    pids = taskmanager_pids(build)
    if not pids:
        raise ClicklabError("the cluster has no TaskManager to kill")
    victim = pids[0] if pid is None else pid
    if victim not in pids:
        raise ClicklabError(f"process {victim} is not a TaskManager of this cluster (they are {pids})")
    os.kill(victim, signal.SIGKILL)
    return victim


def add_taskmanager(build: Path = settings.DEFAULT_BUILD, timeout_s: float = 60.0) -> None:
    """Start one more TaskManager on the running cluster and wait until it has registered."""
    d = dirs(build)
    info = find(build)
    overview = _overview(info.rest_port) or {}
    before, slots_before = int(overview.get("taskmanagers", 0)), int(overview.get("slots-total", 0))

    def registered_with_slots() -> bool:  # a TaskManager registers before it offers its slots (see _wait_ready)
        now = _overview(info.rest_port) or {}
        return int(now.get("taskmanagers", 0)) > before and int(now.get("slots-total", 0)) > slots_before

    _run_script(d, "taskmanager.sh", "start")
    wait_for(registered_with_slots, "a new TaskManager to register and offer its slots", timeout_s)
