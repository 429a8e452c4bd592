"""Reading what the lab produced, and the independent reference it is checked against.

Everything here is plain pandas: no Flink. ``reference_ctr`` recomputes the CTR of every site and
window straight from the replay file, so a test (and ``clicklab run``) can compare it with what
Flink wrote to ``ctrstream``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from clicklab import settings
from clicklab.exceptions import DatasetError
from clicklab.streams import STREAMS, stream_path


def check_dataset(dataset: Path) -> Path:
    """Refuse a missing, empty or unreadable replay file before Flink starts; name the path."""
    path = Path(dataset)
    if not path.is_file():
        raise DatasetError(f"replay dataset not found: {path}")
    try:
        if path.suffix == ".gz":
            import gzip

            with gzip.open(path, "rt", encoding="utf-8") as fh:
                first = fh.readline()
        else:
            with open(path, encoding="utf-8") as fh:
                first = fh.readline()
        record = json.loads(first) if first.strip() else None
    except (OSError, UnicodeDecodeError, EOFError, json.JSONDecodeError) as exc:
        raise DatasetError(f"replay dataset {path} is not readable JSON lines: {exc}") from None
    if record is None:
        raise DatasetError(f"replay dataset {path} is empty")
    missing = [k for k in ("browseraction", "site", "event_time") if k not in record]
    if missing:
        raise DatasetError(f"replay dataset {path}: first record has no field {', '.join(missing)}")
    return path


def read_events(dataset: Path) -> pd.DataFrame:
    """The replay file's good events as a DataFrame: ``browseraction``, ``site``, ``event_time`` (UTC).

    Bad lines, and late ones, are left out as Flink's ``tickerstream`` leaves them out (:mod:`clicklab.badevents`).
    """
    from clicklab.badevents import good_records

    df = pd.DataFrame(good_records(dataset))
    if df.empty:
        df = pd.DataFrame({"browseraction": [], "site": [], "event_time": []})
    df["event_time"] = pd.to_datetime(df["event_time"], utc=True, format="ISO8601")
    return df


def read_labels(path: Path) -> pd.DataFrame:
    """A labels file (``site,start,end,kind``), times as UTC timestamps; empty if there is none."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame({"site": [], "start": [], "end": [], "kind": []})
    df = pd.read_csv(path)
    for col in ("start", "end"):
        df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
    return df


def read_stream(build: Path, name: str) -> pd.DataFrame:
    """All rows Flink has committed to a local stream (in-progress files are skipped).

    Live, that includes the files the stream's folder has archived (``.archive/``, see :mod:`clicklab.live.folders`).
    """
    from clicklab.live.folders import ARCHIVE, committed_files

    stream = STREAMS[name]
    folder = stream_path(build, name)
    files = sorted(committed_files(folder) + committed_files(folder / ARCHIVE))
    columns = [c.name for c in stream.columns]
    frames = [frame for p in files if (frame := _read_part(p, folder / ARCHIVE)) is not None]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    for c in stream.columns:
        if c.type.startswith("TIMESTAMP") and c.name in df:
            df[c.name] = pd.to_datetime(df[c.name], utc=True, format="ISO8601")  # badevents: with or without ms
    return df[[c for c in columns if c in df]]


def _read_part(path: Path, archive: Path) -> pd.DataFrame | None:
    """One committed file of a stream; live, a file the housekeeping moved to ``archive`` (or deleted) after it
    was listed is read there (or skipped) instead of failing the read. ``None``: empty or gone."""
    for candidate in (path, archive / path.name):
        try:
            if candidate.stat().st_size:
                return pd.read_json(candidate, lines=True, dtype=False)
            return None
        except FileNotFoundError:
            continue
    return None


def reference_counts(events: pd.DataFrame, window_s: int = settings.WINDOW_SECONDS) -> pd.DataFrame:
    """Clicks and impressions per site and tumbling window, computed with pandas.

    Columns: ``site``, ``time`` (window start, epoch seconds), ``clickcount``, ``impressioncount``.
    Only windows with at least one event appear.
    """
    epoch_ms = events["event_time"].astype("int64") // 10**6
    window = (epoch_ms // (window_s * 1000)) * window_s
    table = (
        pd.DataFrame({"site": events["site"], "time": window, "action": events["browseraction"]})
        .groupby(["site", "time", "action"]).size().unstack("action", fill_value=0)
    )
    for action in ("Click", "Impression"):
        if action not in table:
            table[action] = 0
    table = table.rename(columns={"Click": "clickcount", "Impression": "impressioncount"})
    return table[["clickcount", "impressioncount"]].reset_index().sort_values(["time", "site"])


def ctr_percent(clicks: pd.Series, impressions: pd.Series) -> pd.Series:
    """CTR in percent; a window without impressions counts as one impression (see the README)."""
    return clicks / impressions.clip(lower=1) * 100.0


def reference_ctr(dataset: Path) -> pd.DataFrame:
    """The CTR of every site and window, straight from the replay file."""
    counts = reference_counts(read_events(dataset))
    counts["ctr"] = ctr_percent(counts["clickcount"], counts["impressioncount"])
    return counts[["site", "time", "ctr", "clickcount", "impressioncount"]].reset_index(drop=True)


def compare_ctr(produced: pd.DataFrame, expected: pd.DataFrame) -> list[str]:
    """Differences between a ctrstream and the reference, as readable lines (empty: identical)."""
    keys = ["site", "time"]
    merged = expected.merge(produced, on=keys, how="outer", suffixes=("_expected", "_flink"), indicator=True)
    problems: list[str] = []
    for _, row in merged[merged["_merge"] == "left_only"].head(10).iterrows():
        problems.append(f"missing in ctrstream: site {row['site']} window {row['time']}")
    for _, row in merged[merged["_merge"] == "right_only"].head(10).iterrows():
        problems.append(f"not in the replay: site {row['site']} window {row['time']}")
    both = merged[merged["_merge"] == "both"]
    for col in ("clickcount", "impressioncount", "ctr"):
        a, b = both[f"{col}_expected"].astype(float), both[f"{col}_flink"].astype(float)
        bad = both[(a - b).abs() > 1e-9 * a.abs().clip(lower=1)]
        for _, row in bad.head(10).iterrows():
            problems.append(
                f"{col} differs for site {row['site']} window {row['time']}: "
                f"expected {row[f'{col}_expected']}, ctrstream has {row[f'{col}_flink']}"
            )
    duplicated = produced.duplicated(keys).sum()
    if duplicated:
        problems.append(f"ctrstream has {duplicated} duplicate (site, window) rows")
    return problems
