"""Parameters and paths of the lab, defined once and used by notebooks, CLI and tests."""

from __future__ import annotations

from pathlib import Path

#: The repository checkout this package lives in (the package is installed editable).
REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "data"
NOTEBOOKS_DIR = REPO / "notebooks"
SCENARIOS_DIR = DATA_DIR / "scenarios"

#: The bundled replay dataset (generated from the `lab` scenario, seed 42) and its labels.
DEFAULT_DATASET = DATA_DIR / "lab_replay.jsonl.gz"
DEFAULT_BUILD = REPO / "build"

#: Length of the tumbling event-time windows, in seconds (the lab uses 10).
WINDOW_SECONDS = 10

#: How late an event may arrive, in seconds, before its window has closed (the watermark delay
#: of tickerstream). The replay is ordered by time, so one second is plenty.
WATERMARK_DELAY_SECONDS = 1

#: Watermark delay of the derived window streams when they are read back (impressionstream,
#: clickstream): one whole window, so that the CTR join never drops a window written late.
WINDOW_STREAM_WATERMARK_SECONDS = 2 * WINDOW_SECONDS

#: Watermark delay of ctrstream when read back. The CTR join writes a one-sided window only once
#: the watermark has passed it, up to two windows after later windows; a minute covers that.
CTR_WATERMARK_SECONDS = 60

#: Where the Studio lab's streams are kept: Kafka topics (the default; the lab's broker, or
#: ``$CLICKLAB_KAFKA_BOOTSTRAP``), or folders of JSON lines under ``build/streams/`` on request
#: (``clicklab run --streams files``, ``$CLICKLAB_STREAMS=files``). :func:`clicklab.notebook.stream_backend` decides.
STREAM_BACKENDS = ("kafka", "files")
DEFAULT_STREAM_BACKEND = "kafka"

# ---------------------------------------------------------------------------------------------
# Live mode (events arrive in real time; jobs run side by side on the standalone cluster)

#: How often a live stream's readers look for new files (``source.monitor-interval``).
LIVE_MONITOR_INTERVAL = "200 ms"
#: Checkpoint interval of live jobs: a row-format file sink commits what it wrote at each checkpoint.
LIVE_CHECKPOINT_INTERVAL = "500 ms"
#: Live on Kafka topics: each sink commits its transaction at a checkpoint, and a reader (``read_committed``) sees
#: a row only then, so each of the pipeline's four hops waits for one; a watermark every this often (Flink's default
#: is 200 ms). ``clicklab bench --live --kafka --scale 1 --json`` measures the hops.
KAFKA_LIVE_CHECKPOINT_INTERVAL = "100 ms"
KAFKA_LIVE_WATERMARK_INTERVAL = "50 ms"
#: How old a part file may get before the sink rolls it (and how often it checks): without these the
#: sink keeps a file open, so commits nothing, for 30 minutes.
LIVE_ROLLOVER = "200 ms"
#: How late an event may arrive at tickerstream, live (the generator writes in time order).
LIVE_WATERMARK_DELAY_SECONDS = 1
#: A live stream folder holds only the files of the last this many seconds; older ones move to its
#: hidden ``.archive/`` (Flink's readers skip hidden names): a running job has long read them, and the
#: list of files a starting job leaves out stays short (see ``streams.live_ddl``).
LIVE_FOLDER_SECONDS = 60
#: How long archived files are kept (the history that tables and plots read back), in seconds.
LIVE_RETENTION_SECONDS = 600

#: SQL names of the lab's functions (:mod:`clicklab.udfs` registers them). ``RANDOM_CUT_FOREST`` and
#: ``ANOMALY_DECISIONS`` are the keyed process table functions of the Java jar (:mod:`clicklab.javaudf`):
#: ``RANDOM_CUT_FOREST(TABLE t PARTITION BY site, DESCRIPTOR(ctr))``. In Studio (no process table functions
#: before Flink 2.1) ``RANDOM_CUT_FOREST(ctr, site)`` is the jar's scalar function. ``RANDOM_CUT_FOREST_WITH_FLAG``
#: and ``IS_ANOMALY`` are scalar functions (Python, or Java for the first), for ``clicklab score``.
RANDOM_CUT_FOREST = "RANDOM_CUT_FOREST"
ANOMALY_DECISIONS = "ANOMALY_DECISIONS"
RANDOM_CUT_FOREST_WITH_FLAG = "RANDOM_CUT_FOREST_WITH_FLAG"
#: Kinesis Data Analytics' ``RANDOM_CUT_FOREST_WITH_EXPLANATION``: the keyed forest over several columns, with a JSON
#: ``anomaly_explanation`` (per column ``ATTRIBUTION_SCORE``, ``STRENGTH``, ``DIRECTION`` HIGH/LOW); Java, keyed state.
RANDOM_CUT_FOREST_WITH_EXPLANATION = "RANDOM_CUT_FOREST_WITH_EXPLANATION"
IS_ANOMALY = "IS_ANOMALY"

#: Anomaly score above which a CTR is an anomaly (the lab uses 2).
ANOMALY_THRESHOLD = 2.0

#: Java major version PyFlink needs at least.
MIN_JAVA = 11


def labels_path_for(dataset: Path) -> Path:
    """The labels file that goes with a replay dataset: `X.jsonl.gz` -> `X.labels.csv`."""
    name = dataset.name
    for suffix in (".jsonl.gz", ".json.gz", ".jsonl", ".json", ".gz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return dataset.with_name(name + ".labels.csv")


def streams_dir(build: Path) -> Path:
    """Where the local filesystem streams live: `<build>/streams/<stream>/`."""
    return Path(build) / "streams"

#: Numbered notebooks from this number on are the Kinesis Data Analytics SQL application's form of the lab
#: (``20_``-``23_``, :mod:`clicklab.sqlapp`); those before it are the Studio lab's (the Zeppelin note exports those).
SQL_APP_NOTEBOOKS_FROM = "20"


def is_sql_app_notebook(path: Path) -> bool:
    """Whether a numbered notebook (``NN_topic.ipynb``) belongs to the SQL application's form of the lab."""
    return Path(path).name[:2] >= SQL_APP_NOTEBOOKS_FROM
