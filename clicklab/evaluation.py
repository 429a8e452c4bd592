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
import math
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
    in_order: bool = False,
) -> pd.DataFrame:
    """Score ``frame`` (``key``, ``time``, ``value``) with the lab's scorer and both thresholds, in process.

    Rows are taken in time order (stable, so each key's order is kept on ties), one forest and one
    adaptive threshold per key: what the Flink UDFs compute, without Flink. Returns ``key, time,
    value, score, scored`` (False while the key warms up), ``fixed`` (``score > floor``) and
    ``adaptive`` (:class:`clicklab_udf.threshold.AdaptiveThreshold`, its ``spike_ratio``, ``spike_floor``
    and ``run_z`` scaled to the forest's sample size by :func:`clicklab_udf.threshold.options_for` unless
    ``threshold_options`` sets them), in that time order. ``in_order=True`` takes the rows as given
    instead (NAB feeds a detector its records in file order, and a few NAB series step back in time).
    """
    from clicklab_udf.forest import ForestParams, KeyedForests
    from clicklab_udf.threshold import AdaptiveThreshold, options_for

    _require(frame, "frame", ("key", "time", "value"))
    rows = frame if in_order else frame.iloc[np.argsort(to_seconds(frame["time"]), kind="stable")]
    rows = rows.reset_index(drop=True)
    params = params if params is not None else ForestParams()
    forests = KeyedForests(params)
    options = {**options_for(params.sub_sample_size), **dict(threshold_options or {})}
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
                      "adaptive (ANOMALY_DECISIONS)", window_s, grace_s)


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
    """Every ``*.csv`` under ``data`` through ``clicklab score``'s Flink job (one job for all), judged in
    both modes against the labelled windows; see :func:`series_table` (``clicklab evaluate``'s first
    table; :func:`evaluate` adds the NAB scores)."""
    return evaluate(data, labels_file, detector, work, replay=None).detections


# --------------------------------------------------------------------------------------------------
# NAB scores of the lab's detector: NAB's series and the replay's sites (``clicklab evaluate``)
# --------------------------------------------------------------------------------------------------

#: The corpus name of the replay's CTR series (one per site).
REPLAY_CORPUS = "lab-replay"
#: The corpus name of every ``--data`` series together.
ALL_CORPUS = "all"


@dataclass
class Labelled:
    """One labelled series as it is scored: its records in file order and its NAB windows.

    ``frame``: ``timestamp`` (the text of the file, for NAB results files), ``time`` (epoch s) and
    ``value``; ``windows``: the NAB windows as record indices (:func:`clicklab.nab.window_indices`);
    ``label_windows``: the same as times, for :func:`series_table`.
    """

    name: str
    corpus: str
    frame: pd.DataFrame
    windows: list[tuple[int, int]]
    label_windows: list[tuple[Any, Any]]

    def nab_series(self) -> Any:
        from clicklab import nab

        return nab.Series.make(self.name, len(self.frame), self.windows)


def read_labelled_file(path: Path, name: str) -> pd.DataFrame:
    """A NAB-style CSV (``timestamp,value``) in file order: ``timestamp`` (text), ``time`` (s), ``value``.

    Unlike ``clicklab score``, times may step back (NAB's ``machine_temperature_system_failure`` does
    once): NAB scores records in file order. A bad time or value is a ``ValueError`` naming the
    file, line and column.
    """
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    _require(raw, str(path), ("timestamp", "value"))
    if raw.empty:
        raise ValueError(f"{path}: no rows")
    values = pd.to_numeric(raw["value"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"{path}:{row + 2}: value {raw['value'].iloc[row]!r} in column 'value' is not a finite number")
    stamps = pd.to_datetime(raw["timestamp"], utc=True, format="ISO8601", errors="coerce")
    if stamps.isna().any():
        row = int(np.argmax(stamps.isna().to_numpy()))
        raise ValueError(f"{path}:{row + 2}: time {raw['timestamp'].iloc[row]!r} in column 'timestamp' "
                         "is not a date and time")
    seconds = ((stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype=float)
    return pd.DataFrame({"timestamp": raw["timestamp"], "time": seconds, "value": values})


def labelled_files(data: Path, labels_file: Path) -> dict[str, Labelled]:
    """Every ``*.csv`` under ``data`` with its windows from ``labels_file`` (NAB's ``combined_windows.json``).

    The corpus of a series is its first folder (NAB's category). A series the labels file does not
    name has no windows (logged).
    """
    from clicklab import nab

    windows = read_label_windows(labels_file)
    out = {}
    for name, path in _series_files(data, windows, labels_file).items():
        frame = read_labelled_file(path, name)
        if name not in windows:
            log.warning("%s: not in %s: scored as a series without anomalies", name, labels_file)
        spans = windows.get(name, [])
        out[name] = Labelled(name, name.split("/")[0] if "/" in name else ALL_CORPUS, frame,
                             nab.window_indices(frame["time"], spans, name), spans)
    return out


def replay_labelled(dataset: Path, labels_file: Path) -> dict[str, Labelled]:
    """The replay's CTR per site and 10-second window (:func:`clicklab.results.reference_ctr`) as labelled
    series, one per site (``lab-replay/<site>``).

    A label (``site,start,end,kind``) is a point of NAB's at its ``start``: its window is NAB's
    (:func:`clicklab.nab.windows_from_labels`, 10 % of the site's windows shared by its labels,
    centred on the start), extended to the labelled ``end`` when the anomaly lasts longer than the
    window's second half (a 3-minute click drop: flags during it are not false alarms).
    """
    from clicklab import nab
    from clicklab.results import reference_ctr

    labels = pd.read_csv(labels_file)
    _require(labels, str(labels_file), ("site", "start", "end"))
    ctr = reference_ctr(dataset)
    out = {}
    for site, part in ctr.groupby("site", sort=True):
        part = part.sort_values("time", kind="stable")
        times = to_seconds(part["time"])
        mine = labels[labels["site"] == site]
        starts, ends = to_seconds(mine["start"]), to_seconds(mine["end"])
        spans = [list(w) for w in nab.windows_from_labels(times, starts, f"{labels_file}: site {site}")]
        for start, end in zip(starts, ends, strict=True):
            at = int(np.searchsorted(times, start, "left"))
            last = int(np.searchsorted(times, end, "right")) - 1
            for span in spans:
                if span[0] <= at <= span[1]:
                    span[1] = max(span[1], last)
        merged: list[tuple[int, int]] = []
        for first, last in sorted(tuple(w) for w in spans):
            if merged and first <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], last))
            else:
                merged.append((first, last))
        name = f"{REPLAY_CORPUS}/{site}"
        frame = pd.DataFrame({"timestamp": pd.to_datetime(times, unit="s", utc=True).strftime("%Y-%m-%d %H:%M:%S"),
                              "time": times, "value": part["ctr"].to_numpy(dtype=float)})
        out[name] = Labelled(name, REPLAY_CORPUS, frame, merged, [(times[a], times[b]) for a, b in merged])
    if not out:
        raise ValueError(f"{dataset}: no CTR windows")
    return out


def score_labelled(series: Mapping[str, Labelled], detector: Any, work: Path | None = None,
                   in_process: bool = False) -> dict[str, pd.DataFrame]:
    """Score every series in file order: one Flink job for all (``clicklab score``'s), or in this process
    (``in_process``: :func:`flag_scores`, the same functions; progress logged per series).

    Returns per series ``time, score, scored, flagged`` (what ``IS_ANOMALY`` decides: the adaptive
    threshold, or ``score > threshold`` with ``adaptive=False``) and ``fixed`` (``score > threshold``).
    """
    import time

    threshold = getattr(detector, "threshold", 2.0)
    total = sum(len(s.frame) for s in series.values())
    out = {}
    if in_process:
        params = detector.forest_params() if hasattr(detector, "forest_params") else None
        began = time.monotonic()
        done = 0
        for number, (name, labelled) in enumerate(series.items(), 1):
            # the key the Flink job gives it (clicklab.score.score_frames): the same forest seed, the same scores
            frame = labelled.frame.assign(key=f"{name}\x1f")[["key", "time", "value"]]
            flagged = flag_scores(frame, params, threshold, getattr(detector, "threshold_options", None),
                                  in_order=True)
            done += len(frame)
            log.info("scored %d/%d series in process (%s points of %s, %.0f s): %s", number, len(series),
                     f"{done:,}", f"{total:,}", time.monotonic() - began, name)
            out[name] = pd.DataFrame({
                "time": labelled.frame["time"].to_numpy(), "score": flagged["score"].to_numpy(),
                "scored": flagged["scored"].to_numpy(bool),
                "flagged": flagged["adaptive" if getattr(detector, "adaptive", True) else "fixed"].to_numpy(bool),
                "fixed": flagged["fixed"].to_numpy(bool),
            })
        return out
    from clicklab.score import score_frames

    frames = {name: pd.DataFrame({"key": "", "ms": np.round(s.frame["time"].to_numpy() * 1000).astype(np.int64),
                                  "value": s.frame["value"].to_numpy()}) for name, s in series.items()}
    log.info(f"scoring {total:,} points of {len(frames)} series in one Flink job ...")
    began = time.monotonic()
    for name, frame in score_frames(frames, work if work is not None else Path("build") / "evaluate",
                                    detector).items():
        warming = frame["warming_up"].to_numpy(bool)
        out[name] = pd.DataFrame({
            "time": series[name].frame["time"].to_numpy(), "score": frame["anomaly_score"].to_numpy(dtype=float),
            "scored": ~warming, "flagged": frame["is_anomaly"].to_numpy(bool),
            "fixed": (frame["anomaly_score"] > threshold).to_numpy() & ~warming,
        })
    log.info("scored in %.0f s", time.monotonic() - began)
    return out


def _nab_score(scored: Mapping[str, pd.DataFrame], names: list[str], corpus: list[Any], column: str | None,
               profile: Any) -> Any:
    """The NAB score of one corpus: the forest's scores at the best threshold (``column=None``), or a mode's flags."""
    from clicklab import nab

    if column is None:
        return nab.best_threshold({n: scored[n]["score"].to_numpy(dtype=float) for n in names}, corpus, profile)
    return nab.corpus_score({n: scored[n][column].to_numpy(bool) for n in names}, corpus, profile)


def nab_table(series: Mapping[str, Labelled], scored: Mapping[str, pd.DataFrame], modes: Mapping[str, str],
              profiles: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """NAB scores per corpus and detector: each category, ``all`` the non-replay series together, and the replay.

    Detectors: the forest's scores with the best threshold chosen afterwards per corpus and profile
    (``scores (best threshold)``), and each of ``modes`` (display name -> boolean column of ``scored``)
    as decided. Columns: ``corpus, series, windows, detector``, the standard profile's ``standard``,
    ``threshold`` (the chosen one), ``TP`` (windows detected), ``FN``, ``FP`` (detections outside
    windows), then ``low FP`` and ``low FN`` (the other two profiles' scores).
    """
    from clicklab import nab

    profiles = dict(profiles or nab.PROFILES)
    standard = profiles.get("standard")
    if standard is None:
        raise ValueError(f"NAB profiles need 'standard' (got {', '.join(profiles)})")
    others = {"low FP": profiles.get("reward_low_FP_rate"), "low FN": profiles.get("reward_low_FN_rate")}
    categories = sorted({s.corpus for s in series.values()} - {REPLAY_CORPUS})
    corpora = {c: [n for n, s in series.items() if s.corpus == c] for c in categories}
    if len(categories) > 1:
        corpora[ALL_CORPUS] = [n for n, s in series.items() if s.corpus != REPLAY_CORPUS]
    replay = [n for n, s in series.items() if s.corpus == REPLAY_CORPUS]
    if replay:
        corpora[REPLAY_CORPUS] = replay
    rows = []
    for corpus, names in corpora.items():
        corpus_series = [series[n].nab_series() for n in names]
        detectors = {"scores (best threshold)": None, **modes}
        for detector, column in detectors.items():
            main = _nab_score(scored, names, corpus_series, column, standard)
            row = {"corpus": corpus, "series": len(names), "windows": main.windows, "detector": detector,
                   "standard": round(main.score, 1),
                   "threshold": "" if main.threshold is None else ("none" if math.isinf(main.threshold)
                                                                   else f"{main.threshold:.4g}"),
                   "TP": main.raw.tp, "FN": main.raw.fn, "FP": main.raw.fp}
            for label, profile in others.items():
                row[label] = (round(_nab_score(scored, names, corpus_series, column, profile).score, 1)
                              if profile is not None else np.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def write_nab_results(series: Mapping[str, Labelled], scored: Mapping[str, pd.DataFrame], modes: Mapping[str, str],
                      out: Path) -> list[Path]:
    """NAB results files for ``../shared/nab/nab_score.py``: ``out/<detector>/<name>`` with
    ``timestamp,anomaly_score`` (the forest's score in ``scores/``, decisions as 0/1 in one folder per
    mode: ``adaptive/``, ``fixed/``); the replay's series are left out (they are not NAB files)."""
    folders = {"scores": None, **{("fixed" if col == "fixed" else "adaptive"): col for col in modes.values()}}
    written = []
    for folder, column in folders.items():
        for name, labelled in series.items():
            if labelled.corpus == REPLAY_CORPUS:
                continue
            values = scored[name]["score"] if column is None else scored[name][column].astype(int)
            path = Path(out) / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"timestamp": labelled.frame["timestamp"], "anomaly_score": values.to_numpy()}).to_csv(
                path, index=False)
            written.append(path)
    return written


@dataclass
class Evaluation:
    """``clicklab evaluate``'s tables: detections and false alarms of ``--data`` (:func:`series_table`), NAB
    scores (:func:`nab_table`); and what they were computed from."""

    detections: pd.DataFrame
    nab: pd.DataFrame
    series: dict[str, Labelled]
    scored: dict[str, pd.DataFrame]
    modes: dict[str, str]


def evaluate(
    data: Path | None, labels_file: Path | None, detector: Any, work: Path | None = None, *,
    replay: Path | None = None, replay_labels: Path | None = None, in_process: bool = False,
    profiles: Mapping[str, Any] | None = None,
) -> Evaluation:
    """``clicklab evaluate``: the labelled series under ``data`` (with ``labels_file``) and, with ``replay``,
    the replay's CTR per site (labels: ``replay_labels``, default next to it) scored in one go
    (:func:`score_labelled`), judged per series (:func:`series_table`, ``data`` only) and with NAB's score
    (:func:`nab_table`)."""
    from clicklab.exceptions import ClicklabError
    from clicklab.generator import default_labels_path

    series: dict[str, Labelled] = {}
    try:
        if data is not None:
            if labels_file is None:
                raise ClicklabError(f"--labels is needed with --data {data}")
            series.update(labelled_files(data, labels_file))
        if replay is not None:
            series.update(replay_labelled(replay, replay_labels or default_labels_path(replay)))
    except ValueError as exc:
        raise ClicklabError(str(exc)) from None
    if not series:
        raise ClicklabError("nothing to evaluate: give --data and --labels, or a replay")
    threshold = getattr(detector, "threshold", 2.0)
    scored = score_labelled(series, detector, work, in_process)
    adaptive = "adaptive" if getattr(detector, "adaptive", True) else f"fixed (score > {threshold:g})"
    modes = {adaptive: "flagged", f"fixed > {threshold:g}": "fixed"}
    files = [n for n, s in series.items() if s.corpus != REPLAY_CORPUS]
    detections = series_table({n: scored[n] for n in files}, {n: series[n].label_windows for n in files}, modes)
    return Evaluation(detections, nab_table(series, scored, modes, profiles), series, scored, modes)
