"""The Numenta Anomaly Benchmark's score (NAB), written from NAB's published method.

NAB (Lavin and Ahmad, *Evaluating Real-time Anomaly Detection Algorithms: the Numenta Anomaly
Benchmark*, 2015, and the NAB repository's README and wiki) judges a detector on labelled series:

* **Windows.** Each labelled anomaly (a point in time) gets a window centred on it, of
  ``int(0.1 * n / k)`` records for a series of ``n`` records with ``k`` labels (clipped at the
  series' ends; overlapping windows merged): :func:`windows_from_labels`. NAB ships the windows
  (``labels/combined_windows.json``), which :func:`window_indices` maps onto the series' records.
* **Probation.** The first ``min(floor(0.15 n), 0.15 * 5000)`` records of a series are the
  detector's to learn on: nothing there is scored (:func:`probation_length`).
* **Weights.** ``c(x) = 2 / (1 + exp(5 x)) - 1`` (:func:`scaled_sigmoid`), and ``-1`` for
  ``x > 3``. A detection at record ``i`` inside a window of ``W`` records ending at record ``R``
  has relative position ``x = -(R - i + 1) / W`` (``-1`` at the window's first record, near 0 at
  its last) and is worth ``tp * c(x) / c(-1)``: the profile's TP weight at the window's start, less
  the later it comes. Only the best (earliest) detection of a window counts; a window without one
  costs ``-fn``. A detection outside every window costs ``fp * c((i - R) / (W - 1))`` measured from
  the end of the window before it (nearly nothing just after a window, ``-fp`` three window lengths
  on), and ``-fp`` when no window precedes it. Every such detection counts.
* **Profiles.** The weights ``tp, fp, fn`` of NAB's ``config/profiles.json``: ``standard`` (1, 0.11,
  1), ``reward_low_FP_rate`` (1, 0.22, 1) and ``reward_low_FN_rate`` (1, 0.11, 2):
  :data:`PROFILES`, :func:`read_profiles`.
* **Raw score** of a series: the sum of the above; of a corpus: the sum over its series.
* **Normalised score** ``100 * (raw - null) / (perfect - null)``: ``perfect`` is ``tp`` per window
  (every window detected at its first record, nothing else), ``null`` the best raw score of a
  detector that outputs one constant (it flags every scored record or none: in practice none, i.e.
  ``-fn`` per window). The null detector scores 0 and the perfect one 100.
* **Threshold.** A detector that outputs anomaly *scores* is judged with the threshold (a record is
  a detection when its score is ``>=`` it) that gives the corpus its best raw score, one threshold for
  all series of the corpus, chosen afterwards: :func:`best_threshold` tries every distinct score and
  "flag nothing" (on a tie, the higher threshold).

Everything here is numpy on arrays; series are given by name so that every error names the series
and the field at fault (``ValueError``). ``clicklab evaluate`` prints these scores for the lab's
detector (``clicklab.evaluation.nab_table``); ``../shared/nab/nab_score.py``, an independent
implementation, checks them (``tests/test_nab.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: NAB's share of a series' records that its labels' windows cover together.
WINDOW_FRACTION = 0.10
#: NAB's probationary share of a series, and the record count past which it stops growing.
PROBATION_FRACTION = 0.15
PROBATION_CAP_RECORDS = 5000
#: Raw scores closer than this are a tie (the higher threshold wins).
TIE_EPS = 1e-9


@dataclass(frozen=True)
class Profile:
    """A NAB cost profile: what a true positive earns, a false positive and a missed window cost."""

    name: str
    tp: float = 1.0
    fp: float = 0.11
    fn: float = 1.0


#: NAB's three profiles (``config/profiles.json`` of the NAB repository).
PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", 1.0, 0.11, 1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
}


def read_profiles(path: Path) -> dict[str, Profile]:
    """NAB's ``config/profiles.json``: ``{name: {"CostMatrix": {"tpWeight", "fpWeight", "fnWeight", ...}}}``."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read NAB profiles: {exc}") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: expected an object of profiles")
    out = {}
    for name, entry in raw.items():
        matrix = entry.get("CostMatrix") if isinstance(entry, dict) else None
        if not isinstance(matrix, dict):
            raise ValueError(f"{path}: profile {name!r}: no CostMatrix object")
        weights = {}
        for field in ("tpWeight", "fpWeight", "fnWeight"):
            value = matrix.get(field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{path}: profile {name!r}: CostMatrix.{field} must be a number >= 0, got {value!r}")
            weights[field] = float(value)
        out[name] = Profile(name, weights["tpWeight"], weights["fpWeight"], weights["fnWeight"])
    return out


def scaled_sigmoid(x: Any) -> Any:
    """NAB's weighting ``2 / (1 + exp(5 x)) - 1``, and ``-1`` for ``x > 3`` (number or array)."""
    arr = np.asarray(x, dtype=float)
    out = np.where(arr > 3.0, -1.0, 2.0 / (1.0 + np.exp(np.minimum(5.0 * arr, 700.0))) - 1.0)
    return float(out) if out.ndim == 0 else out


def probation_length(n: int, fraction: float = PROBATION_FRACTION) -> int:
    """Records at the start of an ``n``-record series that are never scored: ``min(floor(0.15 n), 750)``."""
    return int(min(math.floor(fraction * n), fraction * PROBATION_CAP_RECORDS))


# --------------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------------


def _times(times: Any, name: str, field: str = "timestamp") -> np.ndarray:
    """Epoch nanoseconds (int64) of timestamps (naive: UTC) or epoch seconds."""
    series = pd.Series(times)
    if len(series) and pd.api.types.is_bool_dtype(series):
        raise ValueError(f"{name}: {field} must be times, got booleans")
    try:
        if len(series) and pd.api.types.is_numeric_dtype(series):
            stamps = pd.to_datetime(series.astype(float), unit="s", utc=True)
        else:
            stamps = pd.to_datetime(series, utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}: {field}: not a time: {exc}") from None
    out = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return out


def windows_from_labels(times: Any, labels: Iterable[Any], name: str = "series",
                        fraction: float = WINDOW_FRACTION) -> list[tuple[int, int]]:
    """NAB's windows around labelled anomaly times, as ``(first, last)`` record indices (inclusive).

    Each label is placed on the first record (in time order) at or after it; its window spans ``int(fraction * n / k)``
    records centred on it (``length // 2`` either side), clipped to the series; windows that overlap
    are merged. No labels: no windows.
    """
    stamps = _times(times, name)
    labels = list(labels)
    points = np.asarray([_times([label], name, "label")[0] for label in labels], dtype=np.int64)
    if not len(points):
        return []
    n = len(stamps)
    if not n:
        raise ValueError(f"{name}: labels given for a series without records")
    half = int(fraction * n / len(points)) // 2
    if points.max() > stamps[-1]:
        raise ValueError(f"{name}: label {list(labels)[int(np.argmax(points))]!r} is after the series' last record")
    order = np.argsort(stamps, kind="stable")
    at = order[np.minimum(np.searchsorted(stamps[order], points, "left"), n - 1)]
    spans = [(max(int(a) - half, 0), min(int(a) + half, n - 1)) for a in at]
    merged: list[tuple[int, int]] = []
    for first, last in sorted(spans):
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def window_indices(times: Any, windows: Iterable[tuple[Any, Any]], name: str = "series") -> list[tuple[int, int]]:
    """``(first, last)`` record indices (inclusive) of windows given as ``(start, end)`` times.

    A window runs from the first to the last record (in the series' order, as NAB takes them: a few
    NAB series have times that step back) with ``start <= time <= end``; it must hold at least one
    record and not overlap the one before it (NAB's windows never do).
    """
    stamps = _times(times, name)
    out: list[tuple[int, int]] = []
    for number, (start, end) in enumerate(windows):
        begin, finish = _times([start, end], f"{name} window {number}", "start/end")
        if finish < begin:
            raise ValueError(f"{name}: window {number} [{start}, {end}]: end is before start")
        inside = np.flatnonzero((stamps >= begin) & (stamps <= finish))
        if not len(inside):
            raise ValueError(f"{name}: window {number} [{start}, {end}] holds no record of the series")
        first, last = int(inside[0]), int(inside[-1])
        if out and first <= out[-1][1]:
            raise ValueError(f"{name}: window {number} [{start}, {end}] overlaps the window before it")
        out.append((first, last))
    return out


# --------------------------------------------------------------------------------------------------
# one series
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """A labelled series as NAB sees it: its length, windows (record indices) and probation."""

    name: str
    length: int
    windows: tuple[tuple[int, int], ...]
    probation: int

    @classmethod
    def make(cls, name: str, length: int, windows: Sequence[tuple[int, int]], probation: int | None = None) -> Series:
        """Check and build; ``probation=None``: NAB's (:func:`probation_length`)."""
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
            raise ValueError(f"{name}: length must be an integer >= 0, got {length!r}")
        previous = -1
        for number, (first, last) in enumerate(windows):
            if not 0 <= first <= last < length or first <= previous:
                raise ValueError(f"{name}: window {number} ({first}, {last}) is not inside records 0-{length - 1} "
                                 "after the window before it")
            previous = last
        probation = probation_length(length) if probation is None else int(probation)
        return cls(name, int(length), tuple((int(a), int(b)) for a, b in windows), probation)

    def weights(self, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
        """Per record: what a detection there is worth, and its window's number (-1 outside every window)."""
        value = np.full(self.length, -profile.fp)
        window = np.full(self.length, -1)
        top = scaled_sigmoid(-1.0)
        index = np.arange(self.length)
        for number, (first, last) in enumerate(self.windows):
            width = last - first + 1
            inside = index[first:last + 1]
            value[first:last + 1] = profile.tp * scaled_sigmoid(-(last - inside + 1) / width) / top
            window[first:last + 1] = number
            following = self.windows[number + 1][0] if number + 1 < len(self.windows) else self.length
            after = index[last + 1:following]
            distance = (after - last) / (width - 1) if width > 1 else np.full(len(after), np.inf)
            value[last + 1:following] = profile.fp * scaled_sigmoid(distance)
        return value, window


@dataclass(frozen=True)
class Raw:
    """A raw NAB score and its counts: windows detected (tp), missed (fn), detections outside windows (fp)."""

    score: float
    tp: int
    fn: int
    fp: int

    def __add__(self, other: Raw) -> Raw:
        return Raw(self.score + other.score, self.tp + other.tp, self.fn + other.fn, self.fp + other.fp)


def _flags(flags: Any, series: Series, field: str = "flags") -> np.ndarray:
    arr = np.asarray(flags)
    if arr.shape != (series.length,):
        raise ValueError(f"{series.name}: {field} has {arr.size} values for {series.length} records")
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number) or not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{series.name}: {field} must be booleans (or 0/1)")
        arr = arr.astype(bool)
    return arr


def raw_score(flags: Any, series: Series, profile: Profile = PROFILES["standard"]) -> Raw:
    """The raw NAB score of one series for a detection flag per record (records in probation are ignored)."""
    flagged = _flags(flags, series)
    value, window = series.weights(profile)
    scored = flagged & (np.arange(series.length) >= series.probation)
    outside = scored & (window < 0)
    total, tp = float(value[outside].sum()), 0
    for number in range(len(series.windows)):
        hits = value[scored & (window == number)]
        if len(hits):
            total += float(hits.max())
            tp += 1
    fn = len(series.windows) - tp
    return Raw(total - profile.fn * fn, tp, fn, int(outside.sum()))


# --------------------------------------------------------------------------------------------------
# a corpus
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """A detector's NAB score over a corpus of series, for one profile."""

    profile: str
    score: float
    raw: Raw
    null: float
    perfect: float
    windows: int
    threshold: float | None = None  # the threshold chosen afterwards (inf: flag nothing), None for decisions

    def describe(self) -> str:
        chosen = "" if self.threshold is None else f", threshold {self.threshold:g}"
        return (f"{self.profile} {self.score:.1f} (raw {self.raw.score:.3f}, null {self.null:.3f}, perfect "
                f"{self.perfect:.3f}; TP {self.raw.tp} FN {self.raw.fn} FP {self.raw.fp}{chosen})")


def _check_corpus(series: Sequence[Series], values: Mapping[str, Any], field: str) -> None:
    names = [s.name for s in series]
    if len(set(names)) != len(names):
        raise ValueError(f"series named twice: {sorted({n for n in names if names.count(n) > 1})}")
    missing = [n for n in names if n not in values]
    if missing:
        raise ValueError(f"{missing[0]}: no {field} given ({len(missing)} series without)")


def null_and_perfect(series: Sequence[Series], profile: Profile) -> tuple[float, float]:
    """Raw scores of the null detector (one constant: flags every scored record or none) and the perfect one."""
    windows = sum(len(s.windows) for s in series)
    everything = sum((raw_score(np.ones(s.length, bool), s, profile) for s in series), Raw(0.0, 0, 0, 0))
    return max(-profile.fn * windows, everything.score), profile.tp * windows


def _normalise(raw: Raw, null: float, perfect: float) -> float:
    return 100.0 * (raw.score - null) / (perfect - null) if perfect != null else float("nan")


def corpus_score(flags: Mapping[str, Any], series: Sequence[Series], profile: Profile = PROFILES["standard"]) -> Score:
    """The normalised NAB score of detection flags (``{series name: flag per record}``) over a corpus."""
    _check_corpus(series, flags, "flags")
    raw = sum((raw_score(flags[s.name], s, profile) for s in series), Raw(0.0, 0, 0, 0))
    null, perfect = null_and_perfect(series, profile)
    return Score(profile.name, _normalise(raw, null, perfect), raw, null, perfect, sum(len(s.windows) for s in series))


def best_threshold(scores: Mapping[str, Any], series: Sequence[Series],
                   profile: Profile = PROFILES["standard"]) -> Score:
    """The best normalised NAB score of anomaly scores (``{series name: score per record}``) over a corpus.

    One threshold for the whole corpus; a record is a detection when its score is ``>=`` the
    threshold. Every distinct score of a scored record is tried, and ``inf`` (flag nothing); the best
    raw score wins, on a tie the higher threshold. Sweeps the records once, highest score first.
    """
    _check_corpus(series, scores, "scores")
    values, weights, windows = [], [], []
    base = 0
    for s in series:
        arr = np.asarray(scores[s.name], dtype=float)
        if arr.shape != (s.length,):
            raise ValueError(f"{s.name}: scores has {arr.size} values for {s.length} records")
        if not np.isfinite(arr[s.probation:]).all():
            raise ValueError(f"{s.name}: scores must be finite numbers after the probation")
        value, window = s.weights(profile)
        keep = slice(s.probation, None)
        values.append(arr[keep])
        weights.append(value[keep])
        windows.append(np.where(window[keep] >= 0, window[keep] + base, -1))
        base += len(s.windows)
    all_values = np.concatenate(values) if values else np.array([])
    all_weights = np.concatenate(weights) if weights else np.array([])
    all_windows = np.concatenate(windows) if windows else np.array([], int)
    order = np.argsort(-all_values, kind="stable")
    all_values, all_weights, all_windows = all_values[order], all_weights[order], all_windows[order]
    best_of = np.full(base, np.nan)
    fp_sum, tp_sum, tp, fp = 0.0, 0.0, 0, 0
    best = (-profile.fn * base, math.inf, Raw(-profile.fn * base, 0, base, 0))
    count = len(all_values)
    i = 0
    while i < count:
        threshold = all_values[i]
        while i < count and all_values[i] == threshold:
            number, weight = all_windows[i], all_weights[i]
            if number < 0:
                fp_sum += weight
                fp += 1
            elif np.isnan(best_of[number]):
                best_of[number] = weight
                tp_sum += weight
                tp += 1
            elif weight > best_of[number]:
                tp_sum += weight - best_of[number]
                best_of[number] = weight
            i += 1
        total = tp_sum + fp_sum - profile.fn * (base - tp)
        if total > best[0] + TIE_EPS:
            best = (total, float(threshold), Raw(total, tp, base - tp, fp))
    null, perfect = null_and_perfect(series, profile)
    return Score(profile.name, _normalise(best[2], null, perfect), best[2], null, perfect, base, best[1])
