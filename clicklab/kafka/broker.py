"""A single-node Apache Kafka broker in KRaft mode for the lab, on 127.0.0.1, everything under ``build/kafka/``.

The broker is configuration (``clicklab/kafka/server.properties``, ``log4j2.properties``) run from Kafka's own jars
(:mod:`clicklab.kafka.jars`): ``clicklab kafka up`` formats the data folder once, starts ``kafka.Kafka`` and waits
until it answers a metadata request; ``clicklab kafka down`` stops it and checks that no process, port or lock is
left; the data (the topics) stays for the next ``up``, on the same port, so clients reconnect.

Someone with a Kafka of their own sets ``CLICKLAB_KAFKA_BOOTSTRAP`` (``host:port``): :func:`bootstrap` then returns
it, and nothing is started. ``tests/test_kafka_broker.py`` checks up, a round trip through the broker and down.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from clicklab import settings
from clicklab.exceptions import ClicklabError, JavaError
from clicklab.java import check_java, java_command
from clicklab.kafka import jars as kafka_jars
from clicklab.loopback import LOOPBACK, can_bind, free_port, locked, port_open

BOOTSTRAP_ENV = "CLICKLAB_KAFKA_BOOTSTRAP"
CONFIG_DIR = Path(__file__).resolve().parent
#: The broker's heap: the lab's topics are small; Kafka's own default (1 GiB) is more than a laptop's lab needs.
HEAP = "-Xmx512m"


class KafkaError(ClicklabError):
    """The broker did not start or stop; the message says why and where its log is."""


@dataclass(frozen=True)
class KafkaDirs:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def config(self) -> Path:
        return self.root / "server.properties"

    @property
    def state(self) -> Path:
        """The running broker: pid and ports (removed by ``down``)."""
        return self.root / "state.json"

    @property
    def ports(self) -> Path:
        """The ports last used (kept by ``down``: a restarted broker takes them again, and clients reconnect)."""
        return self.root / "ports.json"


@dataclass(frozen=True)
class BrokerInfo:
    pid: int
    port: int
    controller_port: int
    root: Path

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"


def dirs(build: Path = settings.DEFAULT_BUILD) -> KafkaDirs:
    """``build``'s broker folders, as absolute paths: the broker's command line names its config, which
    :func:`status` and :func:`down` look for from any working folder (a notebook's ``build`` is ``../build``)."""
    return KafkaDirs(Path(build).resolve() / "kafka")


def own_bootstrap() -> str | None:
    """``$CLICKLAB_KAFKA_BOOTSTRAP`` (a Kafka of one's own), or ``None``: the lab starts its broker."""
    return os.environ.get(BOOTSTRAP_ENV, "").strip() or None


def bootstrap(build: Path = settings.DEFAULT_BUILD) -> str:
    """Where the lab's Kafka is: ``$CLICKLAB_KAFKA_BOOTSTRAP`` if set, else the broker ``up`` started for ``build``."""
    own = own_bootstrap()
    if own:
        return own
    info = status(build)
    if info is None:
        raise KafkaError(f"no Kafka broker is running for {build}: run `clicklab kafka up` "
                         f"(or set {BOOTSTRAP_ENV}=host:port to use your own)")
    return info.bootstrap


def _read(path: Path) -> dict[str, int] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _alive(pid: int, d: KafkaDirs) -> bool:
    """``pid`` is this build's broker (not a reused pid)."""
    try:
        proc = psutil.Process(pid)
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE and str(d.config) in " ".join(
            proc.cmdline())
    except psutil.Error:
        return False


def status(build: Path = settings.DEFAULT_BUILD) -> BrokerInfo | None:
    """The running broker of ``build``, or None."""
    d = dirs(build)
    state = _read(d.state)
    if not state or not _alive(state["pid"], d):
        return None
    return BrokerInfo(state["pid"], state["port"], state["controller_port"], d.root)


def _ports(d: KafkaDirs) -> tuple[int, int]:
    """The last ports again if they are free (a restart keeps its address), else new free ones."""
    last = _read(d.ports)
    if last and can_bind(last["port"]) and can_bind(last["controller_port"]):
        return last["port"], last["controller_port"]
    port = free_port()
    controller = free_port()
    while controller == port:
        controller = free_port()
    return port, controller


def write_config(d: KafkaDirs, port: int, controller_port: int) -> Path:
    template = (CONFIG_DIR / "server.properties").read_text(encoding="utf-8")
    d.root.mkdir(parents=True, exist_ok=True)
    d.config.write_text(template.format(port=port, controller_port=controller_port, data=d.data), encoding="utf-8")
    return d.config


def _java(classpath: str, d: KafkaDirs) -> list[str]:
    java = java_command()
    if java is None:
        raise JavaError("Java not found: the Kafka broker needs Java 17 (see environment.yml)")
    return [java, HEAP, "-Xms64m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={d.logs}", f"-Dlog4j2.configurationFile={CONFIG_DIR / 'log4j2.properties'}",
            "-cp", classpath]


def new_cluster_id(random_bytes: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64, never starting with ``-``.

    ``kafka-storage format -t <id>`` reads an id that starts with ``-`` as an option ("argument --cluster-id/-t:
    expected one argument"): one id in 64 did, and the broker failed to start (CI, stop 27). Kafka's own
    ``Uuid.randomUuid`` draws again in that case; so does this.
    """
    while True:
        text = base64.urlsafe_b64encode(random_bytes()).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _format(d: KafkaDirs, classpath: str) -> None:
    """Format the data folder once (KRaft: a cluster id and the controller's metadata log)."""
    if (d.data / "meta.properties").is_file():
        return
    cluster_id = new_cluster_id()
    cmd = [*_java(classpath, d), "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(d.config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise KafkaError(f"formatting {d.data} failed: {(proc.stdout + proc.stderr).strip()[-800:]}")


def _last_lines(path: Path, n: int = 12) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _answers(bootstrap_address: str, timeout_s: float = 3.0) -> bool:
    """The broker answers a metadata request (not only accepts a connection)."""
    from confluent_kafka.admin import AdminClient

    try:
        meta = AdminClient({"bootstrap.servers": bootstrap_address}).list_topics(timeout=timeout_s)
    except Exception:
        return False
    return bool(meta.brokers)


def up(build: Path = settings.DEFAULT_BUILD, timeout_s: float = 120.0) -> BrokerInfo:
    """Start the broker for ``build`` (if it is not running) and wait until it answers; raise :class:`KafkaError`
    with the log's last lines if it does not within ``timeout_s``."""
    d = dirs(build)
    with locked(d.root):
        running = status(build)
        if running is not None:
            return running
        check_java()
        classpath = kafka_jars.resolve(build).classpath()
        port, controller_port = _ports(d)
        write_config(d, port, controller_port)
        _format(d, classpath)
        d.logs.mkdir(parents=True, exist_ok=True)
        out = d.logs / "broker.out"
        with open(out, "ab") as fh:
            proc = subprocess.Popen([*_java(classpath, d), "kafka.Kafka", str(d.config)], stdout=fh,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        info = BrokerInfo(proc.pid, port, controller_port, d.root)
        d.ports.write_text(json.dumps({"port": port, "controller_port": controller_port}), encoding="utf-8")
        d.state.write_text(json.dumps({"pid": proc.pid, "port": port, "controller_port": controller_port}),
                           encoding="utf-8")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                d.state.unlink(missing_ok=True)
                raise KafkaError(f"the Kafka broker exited ({proc.returncode}) while starting; {out}:\n"
                                 f"{_last_lines(out)}\n{d.logs / 'server.log'}:\n{_last_lines(d.logs / 'server.log')}")
            if port_open(port) and _answers(info.bootstrap):
                return info
            time.sleep(0.3)
        _stop(proc.pid, d, 30.0)
        raise KafkaError(f"the Kafka broker did not answer on {info.bootstrap} within {timeout_s:.0f} s; "
                         f"{d.logs / 'server.log'}:\n{_last_lines(d.logs / 'server.log')}")


def _ended(proc: psutil.Process, timeout_s: float) -> bool:
    """Wait until ``proc`` has ended; a zombie has (this process started it and has not reaped it yet: reaped here,
    where it is our child)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(proc.pid, os.WNOHANG)
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _stop(pid: int, d: KafkaDirs, timeout_s: float) -> None:
    """SIGTERM (a controlled shutdown), then SIGKILL after ``timeout_s``."""
    try:
        proc = psutil.Process(pid)
        os.killpg(os.getpgid(pid), signal.SIGTERM)
        if not _ended(proc, timeout_s):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
            if not _ended(proc, 30):
                raise KafkaError(f"the Kafka broker (pid {pid}) did not end after SIGKILL")
    except (psutil.NoSuchProcess, ProcessLookupError):
        pass
    d.state.unlink(missing_ok=True)


def leftovers(build: Path = settings.DEFAULT_BUILD) -> list[str]:
    """What a stopped broker must not leave: a process naming its config, its ports listening, its lock held."""
    d = dirs(build)
    found = [f"process {p.pid}: {' '.join(p.cmdline())[:120]}" for p in psutil.process_iter()
             if _alive(p.pid, d)]
    last = _read(d.ports) or {}
    found += [f"port {port} still accepting" for port in last.values() if port_open(port)]
    lock = d.data / ".lock"
    if lock.is_file():
        with open(lock, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fh, fcntl.LOCK_UN)
            except OSError:
                found.append(f"{lock} still locked")
    return found


def down(build: Path = settings.DEFAULT_BUILD, timeout_s: float = 60.0) -> list[str]:
    """Stop the broker of ``build``; what was stopped (empty if none ran). The topics stay in ``build/kafka/data``.
    Raise :class:`KafkaError` if a process, port or lock is left."""
    d = dirs(build)
    if not d.root.is_dir():
        return []
    with locked(d.root):
        stopped = []
        state = _read(d.state)
        if state and _alive(state["pid"], d):
            _stop(state["pid"], d, timeout_s)
            stopped.append(f"Kafka broker (pid {state['pid']}, {LOOPBACK}:{state['port']})")
        d.state.unlink(missing_ok=True)
        for proc in psutil.process_iter():  # a broker whose state file was lost
            if _alive(proc.pid, d):
                _stop(proc.pid, d, timeout_s)
                stopped.append(f"Kafka broker (pid {proc.pid}, no state file)")
        left = leftovers(build)
        if left:
            raise KafkaError("the Kafka broker left: " + "; ".join(left))
        return stopped
