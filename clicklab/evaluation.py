"""Judging a detector against labelled anomaly windows (the replay's labels, or NAB's).

Conventions (as in the Numenta Anomaly Benchmark): a labelled anomaly is *detected* when a flagged
point falls in ``[start - tolerance, end]``; how early is ``first flagged time - start`` (negative:
before the labelled start). An *alarm* is the first of a run of consecutive flagged points; an alarm
outside every labelled window (extended by ``grace_s`` after its end, while traffic settles) is a
*false alarm*. False alarms per hour divide by the hours of non-labelled data after warm-up.
"""

from __future__ import annotations

from dataclasses import dataclass

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
