"""``clicklab score``: any time series through the lab's scoring job.

A CSV series (the Numenta Anomaly Benchmark's ``timestamp,value`` works as is) is checked row by row
in Python (a bad row stops with the file, line and value), written as JSON lines, and replayed
through a PyFlink job: with the default ``compact`` forest the keyed ``RANDOM_CUT_FOREST`` of the notebooks
(Java, the same scores as the pipeline's), then ``IS_ANOMALY``; with another backend the scalar
``RANDOM_CUT_FOREST_WITH_FLAG``. Many series go through one job (one key each), since a Flink job takes
seconds to start. The source is one file read by one task, so each key's rows reach the functions in
file order (time order, as :func:`read_series` checked).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from clicklab import flink, udfs
from clicklab.exceptions import ClicklabError

#: What :func:`score_frames` adds to each row besides the score and the decision: the names of
#: anomalydetectionstream's columns (``lower`` and ``upper`` are reserved words in Flink SQL).
USUAL_COLUMNS = ("expected", "usual_low", "usual_high", "grade")


class SeriesError(ClicklabError, ValueError):
    """A row of an input series is unusable; the message names the file, the line and the value."""


@dataclass(frozen=True)
class Columns:
    """Which CSV columns hold the time, the value and (optionally) the key."""

    timestamp: str = "timestamp"
    value: str = "value"
    key: str | None = None


def _parse_time(text: str) -> datetime:
    return pd.Timestamp(text).to_pydatetime()


def read_series(path: Path, columns: Columns = Columns()) -> pd.DataFrame:
    """Read and check a CSV series: columns ``line``, ``key``, ``timestamp`` (text as given), ``ms``, ``value``.

    Times must not go backwards within a key; values must be finite numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise SeriesError(f"{path}: no such file")
    rows: list[tuple[int, str, str, int, float]] = []
    last: dict[str, tuple[int, str]] = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        for col in (columns.timestamp, columns.value, columns.key):
            if col is not None and col not in header:
                raise SeriesError(f"{path}: no column {col!r} (columns: {', '.join(header) or 'none'})")
        for record in reader:
            line = reader.line_num
            raw_time, raw_value = record[columns.timestamp], record[columns.value]
            key = record[columns.key] if columns.key else ""
            try:
                when = _parse_time(raw_time)
            except (ValueError, TypeError):
                raise SeriesError(f"{path}:{line}: time {raw_time!r} in column {columns.timestamp!r} "
                                  "is not a date and time") from None
            try:
                value = float(raw_value)
            except (ValueError, TypeError):
                value = math.nan
            if not math.isfinite(value):
                raise SeriesError(f"{path}:{line}: value {raw_value!r} in column {columns.value!r} "
                                  "is not a finite number") from None
            ms = int(pd.Timestamp(when).value // 1_000_000)
            if key in last and ms < last[key][0]:
                raise SeriesError(f"{path}:{line}: time {raw_time!r} is before the previous row's "
                                  f"{last[key][1]!r}" + (f" (key {key!r})" if columns.key else ""))
            last[key] = (ms, raw_time)
            rows.append((line, key, raw_time, ms, value))
    if not rows:
        raise SeriesError(f"{path}: no rows")
    return pd.DataFrame(rows, columns=["line", "key", "timestamp", "ms", "value"])


# --- the job: environment, source, sink, functions, statement -----------------------------------

SOURCE_DDL = """CREATE TABLE series (
  seq BIGINT,
  k STRING,
  ms BIGINT,
  v DOUBLE
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json')"""

SINK_DDL = """CREATE TABLE scored (
  seq BIGINT,
  anomaly_score DOUBLE,
  warming_up BOOLEAN,
  is_anomaly BOOLEAN
) WITH ('connector' = 'filesystem', 'path' = '{path}', 'format' = 'json')"""

SCORE_SQL = """INSERT INTO scored
SELECT seq, r.score, r.warming_up, IS_ANOMALY(r.score, k, r.warming_up)
FROM (
  SELECT seq, k, RANDOM_CUT_FOREST_WITH_FLAG(v, k, TO_TIMESTAMP_LTZ(ms, 3)) AS r
  FROM series
)"""


KEYED_SCORE_SQL = """INSERT INTO scored
SELECT seq, anomaly_score, warming_up, IS_ANOMALY(anomaly_score, k, warming_up)
FROM RANDOM_CUT_FOREST(TABLE series PARTITION BY k, DESCRIPTOR(v))"""


def score_job(t_env: Any, source: Path, sink: Path, detector: udfs.Detector) -> None:
    """The scoring job: read ``source`` (JSON lines ``seq,k,ms,v``, each key in time order), write
    ``seq, anomaly_score, warming_up, is_anomaly`` to ``sink``."""
    for table in ("series", "scored"):  # the session may have run this job before
        flink.execute(t_env, f"DROP TABLE IF EXISTS {table}")
    flink.execute(t_env, SOURCE_DDL.format(path=Path(source).resolve()))
    flink.execute(t_env, SINK_DDL.format(path=Path(sink).resolve()))
    keyed = detector.forest_params().backend in udfs.KEYED_BACKENDS
    udfs.register(t_env, detector, keyed=keyed)
    flink.wait(flink.execute(t_env, KEYED_SCORE_SQL if keyed else SCORE_SQL))


def score_frames(
    frames: Mapping[str, pd.DataFrame], work: Path, detector: udfs.Detector | None = None, t_env: Any = None,
) -> dict[str, pd.DataFrame]:
    """Score several checked series (from :func:`read_series`) in one Flink job.

    Each frame's keys are prefixed with its name, so every series and key has its own forest.
    Returns each frame with ``anomaly_score``, ``warming_up``, ``is_anomaly`` and :data:`USUAL_COLUMNS` added, in
    input order (:func:`explain`).
    """
    detector = detector or udfs.Detector()
    work = Path(work)
    source, sink = work / "series", work / "scored"
    for folder in (source, sink):
        if folder.exists():
            for f in folder.iterdir():
                f.unlink()
        folder.mkdir(parents=True, exist_ok=True)
    offsets: dict[str, int] = {}
    seq = 0
    with open(source / "series.jsonl", "w", encoding="utf-8") as out:
        for name, frame in frames.items():
            offsets[name] = seq
            for key, ms, value in zip(frame["key"], frame["ms"], frame["value"], strict=True):
                out.write(json.dumps({"seq": seq, "k": f"{name}\x1f{key}", "ms": int(ms), "v": float(value)}) + "\n")
                seq += 1
    score_job(t_env if t_env is not None else flink.create_table_env(), source, sink, detector)
    parts = [pd.read_json(p, lines=True) for p in sorted(sink.iterdir()) if not p.name.startswith(".")]
    scored = pd.concat(parts).set_index("seq").sort_index() if parts else pd.DataFrame()
    if len(scored) != seq:
        raise ClicklabError(f"the scoring job returned {len(scored)} rows for {seq} input rows")
    out_frames = {}
    for name, frame in frames.items():
        part = scored.iloc[offsets[name]: offsets[name] + len(frame)]
        result = frame.reset_index(drop=True).copy()
        result["anomaly_score"] = part["anomaly_score"].to_numpy()
        result["warming_up"] = part["warming_up"].astype(bool).to_numpy()
        result["is_anomaly"] = part["is_anomaly"].astype(bool).to_numpy()
        out_frames[name] = explain(result, detector)
    return out_frames


def explain(frame: pd.DataFrame, detector: udfs.Detector) -> pd.DataFrame:
    """``frame`` (scored: key, value, anomaly_score, warming_up, is_anomaly, each key in time order) with what
    ``ANOMALY_DECISIONS`` writes into an anomaly row: each row's ``expected`` value and usual range
    (``usual_low``, ``usual_high``) before it, and its ``grade`` (0 unless an anomaly).

    The job decides with ``IS_ANOMALY``, which returns only the flag; the same threshold is replayed here in
    time order per key (the Python twin of the Java function), with the value, and must agree with the job's
    flags (:class:`ClicklabError` names the first row where it does not). The usual range is not clipped:
    a series may be negative (anomalydetectionstream clips a CTR's at 0 %).
    """
    rule = udfs.adaptive_threshold(detector)
    usual = []
    for i, (key, value, score, warm, flag) in enumerate(zip(frame["key"], frame["value"], frame["anomaly_score"],
                                                           frame["warming_up"], frame["is_anomaly"], strict=True)):
        key = str(key)
        if pd.isna(score):
            usual.append((None, None, None, 0.0))
            continue
        mean = rule.mean(key)
        d = rule.update(key, float(score), bool(warm), value=float(value))
        if detector.adaptive:
            if d.is_anomaly != bool(flag):
                raise ClicklabError(f"row {i} (key {key!r}): the job's decision {bool(flag)} differs from the "
                                    f"threshold replayed in time order ({d.is_anomaly}): are the rows in time order?")
            grade = d.grade
        else:
            grade = rule.grade(mean, float(score)) if flag else 0.0
        usual.append((d.expected, d.low, d.high, grade))
    out = frame.copy()
    out[list(USUAL_COLUMNS)] = pd.DataFrame(usual, index=frame.index, dtype="float64")
    return out


def write_scored(frame: pd.DataFrame, output: Path, columns: Columns = Columns()) -> None:
    """``timestamp,value,anomaly_score,is_anomaly,expected,usual_low,usual_high,grade`` (plus the key column), in
    input order."""
    out = pd.DataFrame({columns.timestamp: frame["timestamp"], columns.value: frame["value"]})
    if columns.key:
        out.insert(0, columns.key, frame["key"])
    out["anomaly_score"] = frame["anomaly_score"]
    out["is_anomaly"] = frame["is_anomaly"]
    for column in USUAL_COLUMNS:
        out[column] = frame[column]
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(output, index=False)
