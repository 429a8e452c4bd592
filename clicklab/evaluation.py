"""Judging a detector against labelled anomaly windows: the replay's labels, or NAB's.

Everything here is plain pandas on small frames, so the same rules serve the notebooks, ``clicklab
evaluate`` and the tests.

Inputs:

* ``flags``: one row per scored point: ``key``, ``time`` and ``is_anomaly``; optionally ``scored``
  (False for rows the detector could not judge, e.g. while its forest warms up: those rows count
  neither as alarms nor as hours of normal data).
* ``labels``: one row per labelled anomaly: ``key``, ``start``, ``end`` (optionally ``kind``).

Times may be epoch seconds (numbers) or timestamps (anything :func:`pandas.to_datetime` reads;
naive times are taken as UTC).

Rules:

* **Detection.** A label is *detected* when the key has a flagged point in
  ``[start - before_s, start + max_delay_s]`` (with ``max_delay_s=None``: up to ``end``, NAB's
  convention: anywhere in the window counts). Its *delay* is the time from ``start`` to the first
  flagged point in ``[start - before_s, end]`` (negative: flagged before the labelled start), reported
  even when it is later than ``max_delay_s``. For the lab's 10-second CTR windows (a window is stamped
  with its start): ``before_s=10, max_delay_s=10``, i.e. detected by the window before the labelled
  start, the first labelled window or the one after it.
* **False alarm.** An *alarm* is a flagged point whose previous point (of the same key) was not
  flagged, i.e. the onset of a run of flagged points; a run of six flagged windows is one alarm,
  since an operator is paged once (``onsets=False`` counts every flagged point instead). An alarm is
  false when it lies outside every labelled window of its key, each extended by ``before_s`` before
  its start and ``grace_s`` after its end (traffic takes a moment to settle after an anomaly).
* **Rate.** False alarms per hour divide by the hours of *normal* data: scored points outside every
  extended window, each counting ``step_s`` seconds (default: the key's median spacing of points).
  With several keys the hours add up (key-hours: three sites for one hour are three hours).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# the rules
# --------------------------------------------------------------------------------------------------


def to_seconds(values: Any) -> np.ndarray:
    """Epoch seconds (float) of numbers (taken as epoch seconds already) or timestamps."""
    series = pd.Series(values)
    if len(series) == 0:
        return np.array([], dtype=float)
    if pd.api.types.is_bool_dtype(series):
        raise ValueError("times must be numbers or timestamps, got booleans")
    if pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=float)
    stamps = pd.to_datetime(series, utc=True, format="ISO8601")
    return ((stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype=float)


def _require(frame: pd.DataFrame, name: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} needs columns {', '.join(columns)}; missing: {', '.join(missing)}")


def _by_key(flags: pd.DataFrame) -> dict[Any, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per key, in time order: times (s), flagged, scored."""
    out = {}
    for key, part in flags.groupby("key", sort=False):
        times = to_seconds(part["time"])
        order = np.argsort(times, kind="stable")
        flagged = part["is_anomaly"].to_numpy(dtype=bool)[order]
        scored = part["scored"].to_numpy(dtype=bool)[order] if "scored" in part else np.ones(len(part), bool)
        out[key] = (times[order], flagged, scored)
    return out


def detections(
    flags: pd.DataFrame, labels: pd.DataFrame, *, before_s: float = 0.0, max_delay_s: float | None = None,
) -> pd.DataFrame:
    """One row per label: ``key, kind, start, end, detected, delay_s`` (see the module docstring).

    ``start`` and ``end`` come back as UTC timestamps; ``delay_s`` is NaN when nothing was flagged in
    ``[start - before_s, end]``.
    """
    _require(flags, "flags", ("key", "time", "is_anomaly"))
    _require(labels, "labels", ("key", "start", "end"))
    per_key = _by_key(flags)
    starts, ends = to_seconds(labels["start"]), to_seconds(labels["end"])
    kinds = labels["kind"].tolist() if "kind" in labels else [""] * len(labels)
    rows = []
    for key, kind, start, end in zip(labels["key"], kinds, starts, ends, strict=True):
        times, flagged, _ = per_key.get(key, (np.array([]), np.array([], bool), np.array([], bool)))
        hits = times[flagged & (times >= start - before_s) & (times <= end)]
        delay = float(hits.min() - start) if len(hits) else np.nan
        detected = bool(len(hits)) and (max_delay_s is None or delay <= max_delay_s)
        rows.append({
            "key": key, "kind": kind,
            "start": pd.Timestamp(start, unit="s", tz="UTC"), "end": pd.Timestamp(end, unit="s", tz="UTC"),
            "detected": detected, "delay_s": delay,
        })
    return pd.DataFrame(rows, columns=["key", "kind", "start", "end", "detected", "delay_s"])


class FalseAlarms(NamedTuple):
    """False alarms, the hours of normal data they happened in, and their rate per hour."""

    count: int
    hours: float
    per_hour: float


def false_alarms(
    flags: pd.DataFrame, labels: pd.DataFrame, *, before_s: float = 0.0, grace_s: float = 0.0,
    step_s: float | None = None, onsets: bool = True,
) -> FalseAlarms:
    """Alarms outside every labelled window, and their rate per hour of normal data (module docstring)."""
    _require(flags, "flags", ("key", "time", "is_anomaly"))
    _require(labels, "labels", ("key", "start", "end"))
    if step_s is not None and not step_s > 0:
        raise ValueError(f"step_s must be > 0, got {step_s!r}")
    count, seconds = 0, 0.0
    starts, ends = to_seconds(labels["start"]), to_seconds(labels["end"])
    for key, (times, flagged, scored) in _by_key(flags).items():
        inside = np.zeros(len(times), bool)
        for label_key, start, end in zip(labels["key"], starts, ends, strict=True):
            if label_key == key:
                inside |= (times >= start - before_s) & (times <= end + grace_s)
        alarm = flagged & ~np.r_[False, flagged[:-1]] if onsets else flagged
        count += int((alarm & scored & ~inside).sum())
        step = step_s if step_s is not None else (float(np.median(np.diff(times))) if len(times) > 1 else 0.0)
        seconds += int((scored & ~inside).sum()) * step
    hours = seconds / 3600
    return FalseAlarms(count, hours, count / hours if hours else float("nan"))


# --------------------------------------------------------------------------------------------------
# scoring in this process (no Flink): the same scorer and thresholds as the UDFs
# --------------------------------------------------------------------------------------------------


def flag_scores(
    frame: pd.DataFrame, params: Any = None, floor: float = 2.0, threshold_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Score ``frame`` (``key``, ``time``, ``value``) with the lab's scorer and both thresholds, in process.

    Rows are taken in time order (stable, so each key's order is kept on ties), one forest and one
    adaptive threshold per key: what the Flink UDFs compute, without Flink. Returns ``key, time,
    value, score, scored`` (False while the key warms up), ``fixed`` (``score > floor``) and
    ``adaptive`` (:class:`clicklab_udf.threshold.AdaptiveThreshold`, its ``spike_ratio`` scaled to
    the forest's sample size by :func:`clicklab_udf.threshold.spike_ratio_for` unless
    ``threshold_options`` sets it), in that time order.
    """
    from clicklab_udf.forest import ForestParams, KeyedForests
    from clicklab_udf.threshold import AdaptiveThreshold, spike_ratio_for

    _require(frame, "frame", ("key", "time", "value"))
    rows = frame.iloc[np.argsort(to_seconds(frame["time"]), kind="stable")].reset_index(drop=True)
    params = params if params is not None else ForestParams()
    forests = KeyedForests(params)
    options = {"spike_ratio": spike_ratio_for(params.sub_sample_size), **dict(threshold_options or {})}
    threshold = AdaptiveThreshold(floor=floor, **options)
    scores, scored, adaptive = [], [], []
    for key, time, value in zip(rows["key"], rows["time"], rows["value"], strict=True):
        result = forests.score(key, value, time)
        scores.append(result.score)
        scored.append(not result.warming_up)
        adaptive.append(threshold.update(key, result.score, result.warming_up).is_anomaly)
    out = rows[["key", "time", "value"]].copy()
    out["score"] = scores
    out["scored"] = scored
    out["fixed"] = out["scored"] & (out["score"] > floor)
    out["adaptive"] = adaptive
    return out


@dataclass
class Report:
    """Per-label detections and a per-mode summary, as tables."""

    detections: pd.DataFrame
    summary: pd.DataFrame


def _mode_summary(mode: str, flags: pd.DataFrame, labels: pd.DataFrame, window_s: float,
                  grace_s: float) -> tuple[pd.DataFrame, dict[str, Any]]:
    det = detections(flags, labels, before_s=window_s, max_delay_s=window_s)
    alarms = false_alarms(flags, labels, before_s=window_s, grace_s=grace_s, step_s=window_s)
    return det, {
        "mode": mode,
        "labelled": len(det),
        "detected within one window": int(det["detected"].sum()),
        "false alarms": alarms.count,
        "normal site-hours": round(alarms.hours, 2),
        "false alarms per site-hour": round(alarms.per_hour, 2),
    }


def _two_modes(base: pd.DataFrame, adaptive: Any, fixed: Any, labels: pd.DataFrame, floor: float,
               adaptive_name: str, window_s: float, grace_s: float) -> Report:
    det_a, sum_a = _mode_summary(adaptive_name, base.assign(is_anomaly=adaptive), labels, window_s, grace_s)
    det_f, sum_f = _mode_summary(f"fixed (score > {floor:g})", base.assign(is_anomaly=fixed), labels, window_s,
                                 grace_s)
    table = det_a.rename(columns={"key": "site", "detected": "adaptive detected", "delay_s": "adaptive delay s"})
    table["fixed detected"] = det_f["detected"].to_numpy()
    table["fixed delay s"] = det_f["delay_s"].to_numpy()
    return Report(detections=table, summary=pd.DataFrame([sum_a, sum_f]))


def evaluate_replay(
    dataset: Path, labels: pd.DataFrame, params: Any = None, floor: float = 2.0,
    threshold_options: Mapping[str, Any] | None = None, window_s: int = 10, grace_s: float = 60,
) -> Report:
    """The lab's check without Flink: CTR per site and window from the replay file (pandas), scored in
    process, judged against ``labels`` (``site, start, end, kind``) in both modes."""
    from clicklab.results import reference_ctr

    ctr = reference_ctr(dataset)
    flagged = flag_scores(ctr.rename(columns={"site": "key", "ctr": "value"}), params, floor, threshold_options)
    base = flagged[["key", "time", "scored"]]
    return _two_modes(base, flagged["adaptive"].to_numpy(), flagged["fixed"].to_numpy(),
                      labels.rename(columns={"site": "key"}), floor, "adaptive", window_s, grace_s)


def compare_modes(scored: pd.DataFrame, flagged: pd.DataFrame, labels: pd.DataFrame, threshold: float,
                  window_s: int = 10, grace_s: float = 60) -> Report:
    """The lab's check on the streams: adaptive (``anomalydetectionstream``) against fixed (``score > threshold``).

    ``scored`` is destinationstream (``site, time, ctr, score``; score 0 while warming up),
    ``flagged`` anomalydetectionstream (``site, rowtime, ...``); ``labels`` the replay's
    (``site, start, end, kind``).
    """
    base = pd.DataFrame({"key": scored["site"], "time": to_seconds(scored["time"]),
                         "scored": (scored["score"] != 0.0).to_numpy()})
    marked = set(zip(flagged["site"], to_seconds(flagged["rowtime"]), strict=True)) if len(flagged) else set()
    adaptive = [(k, t) in marked for k, t in zip(base["key"], base["time"], strict=True)]
    fixed = (scored["score"] > threshold).to_numpy()
    return _two_modes(base, adaptive, fixed, labels.rename(columns={"site": "key"}), threshold,
                      "adaptive (IS_ANOMALY)", window_s, grace_s)


# --------------------------------------------------------------------------------------------------
# labelled series (NAB)
# --------------------------------------------------------------------------------------------------


def read_label_windows(path: Path) -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    """NAB's ``combined_windows.json``: ``{"dir/name.csv": [[start, end], ...]}`` (times in UTC)."""
    from clicklab.exceptions import ClicklabError

    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ClicklabError(f"labels file {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ClicklabError(f"labels file {path}: expected an object of file name -> list of [start, end]")
    out = {}
    for name, windows in raw.items():
        try:
            out[name] = [(pd.Timestamp(a, tz="UTC"), pd.Timestamp(b, tz="UTC")) for a, b in windows]
        except (TypeError, ValueError) as exc:
            raise ClicklabError(f"labels file {path}: entry {name!r}: {exc}") from None
    return out


def series_table(
    scored: Mapping[str, pd.DataFrame], windows: Mapping[str, list], modes: Mapping[str, str],
) -> pd.DataFrame:
    """Judge scored series against their label windows (NAB's convention: anywhere in the window).

    ``scored``: per series name a frame with ``time``, ``scored`` and one boolean column per mode;
    ``modes``: display name -> column. One row per series and mode (windows, detected, median delay
    in hours, false alarms, normal days, false alarms per day), then one ``TOTAL`` row per mode.
    """
    rows = []
    for name, frame in scored.items():
        labels = pd.DataFrame([{"key": name, "start": a, "end": b} for a, b in windows.get(name, [])],
                              columns=["key", "start", "end"])
        for mode, column in modes.items():
            flags = pd.DataFrame({"key": name, "time": frame["time"], "is_anomaly": frame[column].to_numpy(bool),
                                  "scored": frame["scored"].to_numpy(bool)})
            det = detections(flags, labels)
            alarms = false_alarms(flags, labels)
            delays = det.loc[det["detected"], "delay_s"]
            rows.append({
                "series": name, "mode": mode, "windows": len(det), "detected": int(det["detected"].sum()),
                "median delay h": round(float(delays.median()) / 3600, 1) if len(delays) else np.nan,
                "false alarms": alarms.count, "normal days": round(alarms.hours / 24, 1),
                "false alarms per day": round(alarms.per_hour * 24, 2),
            })
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    totals = table.groupby("mode", sort=False)[["windows", "detected", "false alarms", "normal days"]].sum()
    totals["false alarms per day"] = (totals["false alarms"] / totals["normal days"]).round(2)
    totals = totals.reset_index().assign(series="TOTAL")
    return pd.concat([table, totals], ignore_index=True)


def _series_files(data: Path, windows: Mapping[str, list], labels_file: Path) -> dict[str, Path]:
    from clicklab.exceptions import ClicklabError

    data = Path(data)
    files = {p.relative_to(data).as_posix(): p for p in sorted(data.rglob("*.csv"))}
    if not files:
        raise ClicklabError(f"no .csv series under {data}")
    if windows and not set(windows) & set(files):
        raise ClicklabError(f"labels file {labels_file} names none of the series under {data} "
                            f"(e.g. {sorted(windows)[0]})")
    return files


def evaluate_series_in_process(
    data: Path, labels_file: Path, params: Any = None, floor: float = 2.0,
    threshold_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Every ``*.csv`` (``timestamp,value``) under ``data`` scored in process, judged in both modes
    against ``labels_file`` (NAB's ``combined_windows.json``); see :func:`series_table`."""
    windows = read_label_windows(labels_file)
    scored = {}
    for name, path in _series_files(data, windows, labels_file).items():
        series = pd.read_csv(path)
        _require(series, str(path), ("timestamp", "value"))
        frame = pd.DataFrame({"key": name, "time": to_seconds(series["timestamp"]), "value": series["value"]})
        scored[name] = flag_scores(frame, params, floor, threshold_options)
    return series_table(scored, windows, {"adaptive": "adaptive", f"fixed > {floor:g}": "fixed"})


def evaluate_directory(data: Path, labels_file: Path, detector: Any, work: Path) -> pd.DataFrame:
    """``clicklab evaluate``: every ``*.csv`` under ``data`` through ``clicklab score``'s Flink job (one
    job for all), judged in both modes against the labelled windows; see :func:`series_table`."""
    from clicklab.score import read_series, score_frames

    windows = read_label_windows(labels_file)
    files = _series_files(data, windows, labels_file)
    frames = {name: read_series(path) for name, path in files.items()}
    log.info(f"scoring {sum(len(f) for f in frames.values()):,} points of {len(frames)} series in one Flink job ...")
    threshold = getattr(detector, "threshold", 2.0)
    scored = {}
    for name, frame in score_frames(frames, work, detector).items():
        scored[name] = pd.DataFrame({
            "time": frame["ms"].to_numpy() / 1000.0,
            "scored": ~frame["warming_up"].to_numpy(bool),
            "flagged": frame["is_anomaly"].to_numpy(bool),
            "fixed": (frame["anomaly_score"] > threshold).to_numpy() & ~frame["warming_up"].to_numpy(bool),
        })
    adaptive = "adaptive" if getattr(detector, "adaptive", True) else f"IS_ANOMALY (fixed > {threshold:g})"
    return series_table(scored, windows, {adaptive: "flagged", f"fixed > {threshold:g}": "fixed"})
