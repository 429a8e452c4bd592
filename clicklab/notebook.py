"""What a lab notebook calls: start a Flink session with the lab's tables, and run SQL in it.

Each notebook begins with ``lab = clicklab.notebook.start(dataset, build)``; its SQL cells then use
the ``%%flink_sql`` magic (see :mod:`clicklab.magics`), which ``start`` binds to that session.

Two modes. On a **replay** (the default) tickerstream is a finished file, each ``INSERT`` runs to its
end in a local Flink and the next notebook reads what it wrote. **Live** (``start(..., live=True)``)
events arrive in real time from the live generator, every ``INSERT`` is a job submitted to the
standalone cluster (``clicklab cluster up``) that keeps running when its cell returns, as a Studio
paragraph does; running the cell again replaces its job; queries refresh their table as rows arrive.

Where the streams are kept is decided here too (:func:`stream_backend`): Kafka topics on the lab's broker, as
they are Kinesis streams on AWS (:mod:`clicklab.kafka.lab`; the default), or, on request, folders under
``build/streams/`` (``files``); :func:`reader` reads a build's streams back from either.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from clicklab import flink, settings, streams, udfs
from clicklab.exceptions import ClicklabError
from clicklab.lab import QUERY_SECONDS_VARIABLE, Lab, Outcome, job_name
from clicklab.results import check_dataset, read_stream

#: What the notebooks and the modules around them take from here (the session itself is :mod:`clicklab.lab`).
__all__ = ["BACKENDS", "BACKEND_VARIABLE", "DEFAULT_BACKEND", "LIVE_VARIABLE", "QUERY_SECONDS_VARIABLE", "Lab",
           "Outcome", "is_live", "job_name", "live_config", "reader", "start", "start_live", "stream_backend"]


#: ``live=None`` in a notebook's parameters: this environment variable decides (``1``: live; ``make lab-live`` sets it).
LIVE_VARIABLE = "CLICKLAB_LIVE"

#: Where the streams are kept when ``start(backend=None)``: this environment variable decides (unset or ``kafka``:
#: topics on the lab's broker or ``$CLICKLAB_KAFKA_BOOTSTRAP``; ``files``: folders under ``build/streams/``).
BACKEND_VARIABLE = "CLICKLAB_STREAMS"
BACKENDS = settings.STREAM_BACKENDS
DEFAULT_BACKEND = settings.DEFAULT_STREAM_BACKEND


def stream_backend(choice: str | None = None) -> str:
    """``choice``, or when it is ``None`` ``$CLICKLAB_STREAMS`` (default :data:`DEFAULT_BACKEND`); one of
    :data:`BACKENDS`."""
    value = (choice if choice is not None else os.environ.get(BACKEND_VARIABLE, "")).strip().lower() \
        or DEFAULT_BACKEND
    if value not in BACKENDS:
        where = "backend" if choice is not None else f"${BACKEND_VARIABLE}"
        raise ClicklabError(f"{where} must be one of {', '.join(BACKENDS)}, got {value!r}")
    return value


def reader(build: Path, backend: str | None = None, with_time: bool = False) -> Callable[[str], pd.DataFrame]:
    """``read(name)``: all committed rows of stream ``name`` of ``build``, from its topic or its folder, as
    :func:`stream_backend` decides ``backend``; ``with_time``: with ``committed_at``, when each row was committed
    (epoch s), for live latencies."""
    if stream_backend(backend) == "kafka":
        from clicklab.kafka import broker, topics

        return lambda name: topics.read_topic(broker.bootstrap(build), name, with_time=with_time)
    if with_time:
        from clicklab.live.watch import rows_committed

        return lambda name: rows_committed(build, name)
    return lambda name: read_stream(build, name)


def is_live(live: bool | None = None) -> bool:
    """``live``, or when it is ``None`` whether ``$CLICKLAB_LIVE`` is ``1``/``true``/``yes``."""
    if live is None:
        return os.environ.get(LIVE_VARIABLE, "").strip().lower() in ("1", "true", "yes")
    return bool(live)


def live_config(backend: str | None = None) -> dict[str, str]:
    """The session configuration of live jobs on ``backend``'s streams (:func:`stream_backend`): checkpoints, at
    each of which a sink commits what it wrote (a file, or a Kafka transaction), and on topics a watermark every
    :data:`clicklab.settings.KAFKA_LIVE_WATERMARK_INTERVAL`. Each hop of the pipeline waits for one commit: the
    interval is most of a hop's latency (``clicklab bench --live [--kafka] --scale 1 --json`` measures it)."""
    if stream_backend(backend) == "files":
        return {"execution.checkpointing.interval": settings.LIVE_CHECKPOINT_INTERVAL,
                "execution.checkpointing.mode": "EXACTLY_ONCE"}
    return {"execution.checkpointing.interval": settings.KAFKA_LIVE_CHECKPOINT_INTERVAL,
            "execution.checkpointing.mode": "EXACTLY_ONCE",
            "pipeline.auto-watermark-interval": settings.KAFKA_LIVE_WATERMARK_INTERVAL}


def start_live(build: Path, scenario: str = "lab", backend: str | None = None) -> str | None:
    """Make sure the live lab runs: the standalone cluster, the streams (folders, or the broker and its topics)
    and the live generator sending into tickerstream; the Kafka bootstrap address when the streams are topics.

    Each is started only if it is not running yet, so every live notebook can call this; a generator that sends
    elsewhere (the SQL application's writes the folder) is replaced. On topics the
    generator may run before any job: the jobs read tickerstream from the earliest offset, as the lab's
    paragraphs read their Kinesis stream from ``TRIM_HORIZON``.
    """
    from clicklab import cluster
    from clicklab.live import process

    address = None
    if stream_backend(backend) == "kafka":
        from clicklab.kafka import lab as kafka_lab

        address = kafka_lab.open_live(build)
    cluster.up(build)
    if address is None:
        for name in streams.STREAM_NAMES:
            streams.stream_path(build, name).mkdir(parents=True, exist_ok=True)
    info = process.status(build)
    if info is not None and info.running and info.options.get("bootstrap") != address:
        # e.g. the SQL application's generator, which writes the folder: these jobs would read nothing
        process.stop(build)
        print(f"stopped the live generator that sent to {info.options.get('bootstrap') or 'the tickerstream folder'}"
              f": this lab reads tickerstream from {f'the topic at {address}' if address else 'the folder'}",
              flush=True)
        info = None
    if info is None:
        process.start_background(build, scenario=scenario, bootstrap=address)
    return address


def start(
    dataset: str | Path = settings.DEFAULT_DATASET,
    build: str | Path = settings.DEFAULT_BUILD,
    create_tables: bool = True,
    detector: udfs.Detector | None = None,
    live: bool | None = False,
    flink_session: bool = True,
    backend: str | None = None,
) -> Lab:
    """Start the notebook's Flink session; register the lab's streams and functions.

    ``dataset`` is the replay file tickerstream reads; ``live=True`` instead starts (if needed) the
    cluster and the live generator (:func:`start_live`) and sends this session's jobs to the cluster
    (``live=None``: :func:`is_live` decides).
    ``detector`` sets the Random Cut Forest's parameters and the anomaly threshold (defaults: the
    lab's, see :class:`clicklab.udfs.Detector`).

    ``backend``: where the streams are kept, ``"files"`` or ``"kafka"`` (:func:`stream_backend`; ``None``:
    ``$CLICKLAB_STREAMS`` decides). On Kafka (a replay) the broker, the topics and the replay in tickerstream are
    made sure of first (:func:`clicklab.kafka.lab.open_topics`).

    ``flink_session=False``: no Flink session (no JVM, a few seconds quicker), for a notebook that only reads
    the streams with pandas (``lab.stream``), as ``11_alerts`` does; its SQL cells would have no session.

    Checks the dataset and Java first, so a bad path or a missing Java is one clear message.
    In IPython it also loads the ``%%flink_sql`` magic and defines the lab's parameters
    (``window_seconds``, ``anomaly_threshold``) as notebook variables for ``{name}`` substitution.
    """
    dataset = check_dataset(Path(dataset))
    build = Path(build)
    build.mkdir(parents=True, exist_ok=True)
    live = is_live(live)
    store = stream_backend(backend)
    if store == "kafka":
        from clicklab.kafka import lab as kafka_lab

        if live:
            address = start_live(build, backend=store)
            t_env = flink.create_table_env(config=live_config(store), target="cluster", build=build) \
                if flink_session else None
        else:
            address = kafka_lab.open_topics(dataset, build)
            t_env = flink.create_table_env(config=kafka_lab.CONFIG) if flink_session else None
        lab = kafka_lab.TopicLab(dataset, build, t_env, address, live=live)
        if not flink_session:
            return lab
    elif not flink_session:
        return Lab(dataset, build, None, live=live)
    elif live:
        start_live(build, backend=store)
        t_env = flink.create_table_env(config=live_config(store), target="cluster", build=build)
        lab = Lab(dataset, build, t_env, live=live)
    else:
        lab = Lab(dataset, build, flink.create_table_env(), live=live)
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
