"""Judging a detector against labelled anomaly windows (the replay's labels, or NAB's).

Conventions (as in the Numenta Anomaly Benchmark): a labelled anomaly is *detected* when a flagged
point falls in ``[start - tolerance, end]``; how early is ``first flagged time - start`` (negative:
before the labelled start). An *alarm* is the first of a run of consecutive flagged points; an alarm
outside every labelled window (extended by ``grace_s`` after its end, while traffic settles) is a
*false alarm*. False alarms per hour divide by the hours of non-labelled data after warm-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class Report:
    """Per-label detections and a per-mode summary, as tables."""

    detections: pd.DataFrame
    summary: pd.DataFrame


def _as_seconds(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype="int64")
    return (pd.to_datetime(values, utc=True).astype("int64") // 10**9).to_numpy()


def detections(flags: pd.DataFrame, labels: pd.DataFrame, tolerance_s: float) -> pd.DataFrame:
    """One row per label: ``key, kind, start, detected, delay_s``.

    ``flags``: ``key``, ``time`` (epoch seconds or timestamps), ``is_anomaly``; ``labels``: ``key``,
    ``start``, ``end`` (and optionally ``kind``).
    """
    rows = []
    times = _as_seconds(flags["time"]) if len(flags) else np.array([], dtype="int64")
    for label in labels.itertuples(index=False):
        start, end = _as_seconds(pd.Series([label.start, label.end]))
        mask = (flags["key"].to_numpy() == label.key) & flags["is_anomaly"].to_numpy(dtype=bool)
        mask &= (times >= start - tolerance_s) & (times <= end)
        hit = times[mask]
        rows.append({
            "key": label.key,
            "kind": getattr(label, "kind", ""),
            "start": pd.Timestamp(start, unit="s", tz="UTC"),
            "detected": bool(len(hit)),
            "delay_s": float(hit.min() - start) if len(hit) else np.nan,
        })
    return pd.DataFrame(rows, columns=["key", "kind", "start", "detected", "delay_s"])


def false_alarms(
    flags: pd.DataFrame, labels: pd.DataFrame, tolerance_s: float, grace_s: float, step_s: float,
) -> tuple[int, float]:
    """(false alarms, hours of non-labelled data) over rows with ``scored`` True (after warm-up).

    ``step_s`` is the length of one row (10 s for the CTR windows; a series' interval for NAB).
    """
    alarms, normal_rows = 0, 0
    for key, part in flags.groupby("key", sort=False):
        part = part.sort_values("time")
        times = _as_seconds(part["time"])
        flagged = part["is_anomaly"].to_numpy(dtype=bool)
        scored = part["scored"].to_numpy(dtype=bool) if "scored" in part else np.ones(len(part), bool)
        inside = np.zeros(len(part), bool)
        for label in labels[labels["key"] == key].itertuples(index=False):
            start, end = _as_seconds(pd.Series([label.start, label.end]))
            inside |= (times >= start - tolerance_s) & (times <= end + grace_s)
        onset = flagged & ~np.r_[False, flagged[:-1]]
        alarms += int((onset & ~inside & scored).sum())
        normal_rows += int((~inside & scored).sum())
    return alarms, normal_rows * step_s / 3600


def summarize(name: str, flags: pd.DataFrame, labels: pd.DataFrame, tolerance_s: float, grace_s: float,
              step_s: float) -> tuple[pd.DataFrame, dict]:
    """Detections of one mode and its summary row."""
    det = detections(flags, labels, tolerance_s)
    count, hours = false_alarms(flags, labels, tolerance_s, grace_s, step_s)
    within = det["detected"] & (det["delay_s"] <= tolerance_s)
    return det, {
        "mode": name,
        "labelled": len(det),
        "detected": int(det["detected"].sum()),
        "within one step": int(within.sum()),
        "false alarms": count,
        "normal hours": round(hours, 2),
        "false alarms per hour": round(count / hours, 2) if hours else np.nan,
    }


def compare_modes(scored: pd.DataFrame, flagged: pd.DataFrame, labels: pd.DataFrame, threshold: float,
                  window_s: int = 10, grace_s: float = 60) -> Report:
    """The lab's check: adaptive (``anomalydetectionstream``) against fixed (``score > threshold``).

    ``scored`` is destinationstream (site, time, ctr, score; score 0 while warming up), ``flagged``
    anomalydetectionstream (site, rowtime, ...). Labels: the replay's (site, start, end, kind).
    """
    base = pd.DataFrame({"key": scored["site"], "time": scored["time"].astype("int64"),
                         "scored": scored["score"] != 0.0})
    marked = set(zip(flagged["site"], _as_seconds(flagged["rowtime"]), strict=True)) if len(flagged) else set()
    adaptive = base.assign(is_anomaly=[(k, t) in marked for k, t in zip(base["key"], base["time"], strict=True)])
    fixed = base.assign(is_anomaly=(scored["score"] > threshold).to_numpy())
    labels = labels.rename(columns={"site": "key"})
    det_a, sum_a = summarize("adaptive (IS_ANOMALY)", adaptive, labels, window_s, grace_s, window_s)
    det_f, sum_f = summarize(f"fixed (score > {threshold:g})", fixed, labels, window_s, grace_s, window_s)
    table = det_a.rename(columns={"detected": "adaptive detected", "delay_s": "adaptive delay s"})
    table[["fixed detected", "fixed delay s"]] = det_f[["detected", "delay_s"]].to_numpy()
    return Report(detections=table.rename(columns={"key": "site"}), summary=pd.DataFrame([sum_a, sum_f]))


def read_label_windows(path: Path) -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    """NAB's ``combined_windows.json``: ``{"dir/name.csv": [[start, end], ...]}`` (times in UTC)."""
    import json

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


def evaluate_directory(data: Path, labels_file: Path, detector: object, work: Path,
                       echo: Callable[[str], None] = print) -> pd.DataFrame:
    """Score every ``*.csv`` under ``data`` through ``clicklab score``'s job (one job for all), and
    judge both modes against the labelled windows. One row per series and mode, then totals."""
    from clicklab.exceptions import ClicklabError
    from clicklab.score import read_series, score_frames

    data = Path(data)
    files = {p.relative_to(data).as_posix(): p for p in sorted(data.rglob("*.csv"))}
    if not files:
        raise ClicklabError(f"no .csv series under {data}")
    windows = read_label_windows(labels_file)
    if windows and not set(windows) & set(files):
        example = sorted(windows)[0]
        raise ClicklabError(f"labels file {labels_file} names none of the series under {data} (e.g. {example})")
    frames = {name: read_series(path) for name, path in files.items()}
    echo(f"scoring {sum(len(f) for f in frames.values()):,} points of {len(frames)} series in one Flink job ...")
    scored = score_frames(frames, work, detector)
    threshold = getattr(detector, "threshold", 2.0)
    rows = []
    for name, frame in scored.items():
        times = frame["ms"] // 1000
        step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
        labels = pd.DataFrame(
            [{"key": name, "start": a, "end": b} for a, b in windows.get(name, [])], columns=["key", "start", "end"]
        )
        base = pd.DataFrame({"key": name, "time": times, "scored": ~frame["warming_up"]})
        fixed = (frame["anomaly_score"] > threshold) & ~frame["warming_up"]
        for mode, flags in (
            ("adaptive", base.assign(is_anomaly=frame["is_anomaly"])),
            (f"fixed > {threshold:g}", base.assign(is_anomaly=fixed)),
        ):
            det = detections(flags, labels, 0)
            count, hours = false_alarms(flags, labels, 0, 0, step)
            rows.append({
                "series": name, "mode": mode, "windows": len(det), "detected": int(det["detected"].sum()),
                "median delay h": round(float(det["delay_s"].median()) / 3600, 1) if det["detected"].any() else np.nan,
                "false alarms": count, "normal days": round(hours / 24, 1),
                "false alarms per day": round(count / hours * 24, 2) if hours else np.nan,
            })
    table = pd.DataFrame(rows)
    totals = table.groupby("mode", sort=False)[["windows", "detected", "false alarms", "normal days"]].sum()
    totals["false alarms per day"] = (totals["false alarms"] / totals["normal days"]).round(2)
    totals = totals.reset_index().assign(series="TOTAL")
    return pd.concat([table, totals], ignore_index=True)
