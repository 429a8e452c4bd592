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

#: SQL names of the lab's functions: :mod:`clicklab.udfs` registers them; the Java jar
#: (:mod:`clicklab.javaudf`) offers the first two.
RANDOM_CUT_FOREST = "RANDOM_CUT_FOREST"
RANDOM_CUT_FOREST_WITH_FLAG = "RANDOM_CUT_FOREST_WITH_FLAG"
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
