"""The event generator: a scenario and a seed in, a JSON-lines clickstream and a labels CSV out.

It works like AWS's Kinesis Data Generator: every sender emits copies of its JSON template
with an ``event_time`` appended, at its rate. Arrivals are Poisson (per 1-second bin a Poisson
count whose mean is the integral of the current rate, then uniform times inside the bin) or
constant (evenly spaced: the k-th record is where the cumulative rate reaches k). Drift and
anomaly factors make the rate time-varying; anomaly windows split bins so factors apply
exactly from their start to their end.

Determinism: each sender draws from its own random stream, keyed by the seed, a hash of the
sender's name and the 300-second block of event time. The same seed gives a byte-identical
file (gzip header with no name and mtime 0), adding or removing a sender leaves the other
senders' records unchanged, and an anomaly on a sender changes that sender's records only from
the block containing the anomaly.

Speed: the timeline is processed in windows of at most :data:`MAX_WINDOW_EVENTS` expected
records; lines are assembled as a byte matrix with numpy and compressed in a background thread
(zlib releases the GIL), so memory stays bounded and throughput is well over a million records
per second on a laptop.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from clicklab.exceptions import DatasetError
from clicklab.scenario import Scenario, Sender, format_time, parse_scenario

__all__ = [
    "BLOCK_S",
    "GZIP_LEVEL",
    "MAX_WINDOW_EVENTS",
    "GenerateResult",
    "ProgressCallback",
    "benchmark_scenario",
    "default_labels_path",
    "expected_events",
    "generate",
    "write_labels",
]

BLOCK_S = 300
"""Length (event-time seconds) of a random-stream block. Part of the output's definition."""

MAX_WINDOW_EVENTS = 400_000
"""Expected records per processing window at peak rate; bounds memory. Does not change output."""

GZIP_LEVEL = 6
"""gzip compression level for ``.gz`` outputs (zlib's default balance; ~1.3M records/s end to end)."""

ProgressCallback = Callable[[int, float, float], None]
"""``progress(events_so_far, seconds_elapsed, fraction_done)``, called after each window."""

_SUFFIX = b'Z"}\n'
_CUM_EPS = 1e-9  # tolerance of the constant arrivals' cumulative count (float rounding of bin sums)


@dataclass(frozen=True)
class GenerateResult:
    """What :func:`generate` did: record count, wall-clock seconds, throughput and paths."""

    events: int
    seconds: float
    events_per_s: float
    out_path: Path
    labels_path: Path


@dataclass
class _Plan:
    """Per-sender generation state (mutable: the constant-arrivals carry and block stream)."""

    index: int
    sender: Sender
    start_ms: int
    end_ms: int
    key: tuple[int, int]
    factors: list[tuple[int, int, float]]
    carry: float = 0.0
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    means: np.ndarray | None = None
    counts: np.ndarray | None = None
    rng: np.random.Generator | None = None


# --------------------------------------------------------------------------------------------
# public API


def default_labels_path(out_path: str | Path) -> Path:
    """The labels file next to an events file: ``X.jsonl.gz`` or ``X.jsonl`` -> ``X.labels.csv``."""
    path = Path(out_path)
    name = path.name
    if name.endswith(".gz"):
        name = name[: -len(".gz")]
    for ext in (".jsonl", ".ndjson", ".json"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    return path.with_name(f"{name}.labels.csv")


def write_labels(scenario: Scenario, labels_path: str | Path) -> Path:
    """Write the labels CSV (``site,start,end,kind``; ISO-8601 UTC times; sorted by start)."""
    path = Path(labels_path)
    rows = sorted(scenario.anomalies, key=lambda a: a.start)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["site", "start", "end", "kind"])
    for a in rows:
        start, end = format_time(scenario.start_time, a.start), format_time(scenario.start_time, a.end)
        writer.writerow([a.site, start, end, a.kind])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(buf.getvalue(), encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot write labels file: {exc}") from exc
    return path


def expected_events(scenario: Scenario) -> float:
    """Expected number of records (the integral of every sender's rate, drift and anomalies included)."""
    total = 0.0
    end_ms = _ms(scenario.duration)
    for plan in _plans(scenario):
        for block_lo in range(0, end_ms, BLOCK_S * 1000):
            _, _, means = _bins(plan, block_lo, min(block_lo + BLOCK_S * 1000, end_ms))
            total += float(means.sum())
    return total


def generate(
    scenario: Scenario,
    seed: int,
    out_path: str | Path,
    labels_path: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> GenerateResult:
    """Generate the scenario's records into ``out_path`` and its labels into ``labels_path``.

    Records are JSON lines (template fields, then ``event_time`` as ISO-8601 UTC with
    milliseconds and ``Z``), ordered by time; ties keep sender order (normal senders, then each
    anomaly's extra senders, in file order). The file is gzip-compressed when ``out_path`` ends
    with ``.gz``. ``labels_path`` defaults to :func:`default_labels_path`. ``progress``, if
    given, is called after each processing window. The file is written under a temporary name
    and renamed at the end, so an interrupted run leaves no truncated dataset behind.

    Raises:
        ValueError: ``seed`` is not a non-negative integer, or the two paths are the same.
        DatasetError: an output path cannot be written.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    out = Path(out_path)
    labels = default_labels_path(out) if labels_path is None else Path(labels_path)
    if out.resolve() == labels.resolve():
        raise ValueError(f"{out}: the events file and the labels file must differ")

    began = time.perf_counter()
    tmp = out.with_name(out.name + ".part")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        raw = open(tmp, "wb")  # noqa: SIM115 - closed in the finally below
    except OSError as exc:
        raise DatasetError(f"{out}: cannot write events file: {exc}") from exc

    events = 0
    try:
        stream: BinaryIO
        if out.name.endswith(".gz"):
            stream = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0)  # type: ignore[assignment]
        else:
            stream = raw
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="clicklab-writer") as pool:
            pending: Future[Any] | None = None
            for count, data, fraction in _iter_windows(scenario, int(seed)):
                if pending is not None:
                    pending.result()
                pending = pool.submit(stream.write, data)
                events += count
                if progress is not None:
                    progress(events, time.perf_counter() - began, fraction)
            if pending is not None:
                pending.result()
        if stream is not raw:
            stream.close()
        raw.close()
        os.replace(tmp, out)
    except OSError as exc:
        raise DatasetError(f"{out}: cannot write events file: {exc}") from exc
    finally:
        raw.close()
        if tmp.exists():
            tmp.unlink()

    write_labels(scenario, labels)
    seconds = time.perf_counter() - began
    return GenerateResult(
        events=events,
        seconds=seconds,
        events_per_s=events / seconds if seconds > 0 else float("inf"),
        out_path=out,
        labels_path=labels,
    )


def benchmark_scenario(
    sites: int,
    duration_s: int,
    impressions_per_s: float,
    ctr: float,
    *,
    start_time: str = "2023-08-23T12:00:00Z",
    name: str | None = None,
) -> Scenario:
    """An in-memory scenario of ``sites`` sites with Poisson impressions and clicks, no anomalies.

    Sites are ``https://site-001.example.com``, ``https://site-002.example.com``, ...; each has
    ``impressions_per_s`` impressions per second and ``impressions_per_s * ctr`` clicks per
    second, so the file holds about ``sites * duration_s * impressions_per_s * (1 + ctr)``
    records (e.g. 10 sites, 3600 s, 250/s, 0.1 -> ~9.9M; 100 sites, 3600 s, 7.6/s, 0.1 -> ~3M).
    """
    if isinstance(sites, bool) or not isinstance(sites, int) or sites < 1:
        raise ValueError(f"sites must be a positive integer, got {sites!r}")
    width = max(3, len(str(sites)))
    senders: list[dict[str, Any]] = []
    for i in range(1, sites + 1):
        site = f"https://site-{i:0{width}d}.example.com"
        senders.append(
            {
                "name": f"site-{i:0{width}d}-impressions",
                "template": {"browseraction": "Impression", "site": site},
                "rate": impressions_per_s,
            }
        )
        senders.append(
            {
                "name": f"site-{i:0{width}d}-clicks",
                "template": {"browseraction": "Click", "site": site},
                "rate": impressions_per_s * ctr,
            }
        )
    data = {
        "name": name or f"benchmark-{sites}x{duration_s}s",
        "description": f"{sites} sites, {impressions_per_s} impressions/s each, CTR {ctr}",
        "start_time": start_time,
        "duration": duration_s,
        "senders": senders,
        "anomalies": [],
    }
    return parse_scenario(data, source="<benchmark>")


# --------------------------------------------------------------------------------------------
# internals


def _ms(seconds: float) -> int:
    """Seconds to whole milliseconds."""
    return round(seconds * 1000)


def _name_key(name: str) -> tuple[int, int]:
    """Two 32-bit words from a stable hash of a sender name (part of its random-stream key)."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest[:4], "little"), int.from_bytes(digest[4:], "little")


def _plain(value: Any) -> Any:
    """Read-only template values (MappingProxyType, tuples) back to JSON-serialisable ones."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _prefix(sender: Sender) -> bytes:
    """The bytes of a record up to the event_time value: ``{..., "event_time": "``."""
    body = json.dumps(_plain(sender.template))  # ensure_ascii: pure ASCII, never a NUL byte
    if body == "{}":
        return b'{"event_time": "'
    return (body[:-1] + ', "event_time": "').encode("ascii")


def _plans(scenario: Scenario) -> list[_Plan]:
    """Generation plans for all senders in output tie order, with their anomaly factors."""
    plans: list[_Plan] = []
    normal = set(range(len(scenario.senders)))
    for i, sender in enumerate(scenario.all_senders):
        factors: list[tuple[int, int, float]] = []
        if i in normal:
            for a in scenario.anomalies:
                action = sender.browseraction
                if sender.site == a.site and isinstance(action, str) and action in a.rate_factor:
                    factors.append((_ms(a.start), _ms(a.end), a.rate_factor[action]))
        plans.append(
            _Plan(
                index=i,
                sender=sender,
                start_ms=_ms(sender.start),
                end_ms=min(_ms(sender.end), _ms(scenario.duration)),
                key=_name_key(sender.name),
                factors=factors,
            )
        )
    return plans


def _bins(plan: _Plan, lo_ms: int, hi_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bins of ``plan``'s active time inside ``[lo_ms, hi_ms)`` and their expected counts.

    Bins are 1-second bins of scenario offset, split further at anomaly boundaries, so rate
    factors are constant inside a bin. Returns ``(bin_lo_ms, bin_hi_ms, means)``.
    """
    a = max(lo_ms, plan.start_ms)
    b = min(hi_ms, plan.end_ms)
    if a >= b or plan.sender.rate <= 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=np.float64)
    points = [np.array([a, b], dtype=np.int64), np.arange(-(-a // 1000) * 1000, b, 1000, dtype=np.int64)]
    cuts = [t for fs, fe, _ in plan.factors for t in (fs, fe) if a < t < b]
    if cuts:
        points.append(np.array(cuts, dtype=np.int64))
    edges = np.unique(np.concatenate(points))
    lo, hi = edges[:-1], edges[1:]
    rate = np.full(lo.shape, plan.sender.rate, dtype=np.float64)
    drift = plan.sender.drift
    if drift is not None and drift.amplitude:
        mid_s = (lo + hi) / 2000.0
        rate *= 1.0 + drift.amplitude * np.sin(2.0 * np.pi * mid_s / drift.period + np.radians(drift.phase))
    for fs, fe, factor in plan.factors:
        inside = (lo >= fs) & (lo < fe)
        rate[inside] *= factor
    return lo, hi, rate * ((hi - lo) / 1000.0)


def _start_block(plan: _Plan, seed: int, block: int, lo_ms: int, hi_ms: int) -> None:
    """Compute the plan's bins for one block and, for Poisson arrivals, draw the bin counts."""
    plan.lo, plan.hi, plan.means = _bins(plan, lo_ms, hi_ms)
    plan.counts = None
    plan.rng = None
    if plan.sender.arrivals == "poisson" and plan.lo.size:
        seq = np.random.SeedSequence(entropy=seed, spawn_key=(*plan.key, block))
        plan.rng = np.random.Generator(np.random.PCG64(seq))
        plan.counts = plan.rng.poisson(plan.means)


def _window_times(plan: _Plan, w_lo: int, w_hi: int) -> np.ndarray:
    """The plan's record offsets (ms, int64) inside ``[w_lo, w_hi)``; not necessarily sorted."""
    assert plan.lo is not None and plan.hi is not None and plan.means is not None
    i0, i1 = np.searchsorted(plan.lo, [w_lo, w_hi], side="left")
    if i0 == i1:
        return np.empty(0, dtype=np.int64)
    lo, hi = plan.lo[i0:i1], plan.hi[i0:i1]
    if plan.sender.arrivals == "poisson":
        assert plan.counts is not None and plan.rng is not None
        counts = plan.counts[i0:i1]
        n = int(counts.sum())
        if n == 0:
            return np.empty(0, dtype=np.int64)
        u = plan.rng.random(n)
        starts = np.repeat(lo, counts)
        widths = np.repeat(hi - lo, counts)
        return starts + (u * widths).astype(np.int64)
    # constant: record k sits where the cumulative expected count reaches k (a sum that misses an
    # integer by float rounding, e.g. 20 * 0.181 s + ..., counts as reaching it: no extra record)
    means = plan.means[i0:i1]
    cum = plan.carry + np.concatenate(([0.0], np.cumsum(means)))
    plan.carry = float(cum[-1])
    ks = np.arange(math.ceil(cum[0] - _CUM_EPS), math.ceil(cum[-1] - _CUM_EPS), dtype=np.float64)
    if ks.size == 0:
        return np.empty(0, dtype=np.int64)
    idx = np.maximum(np.searchsorted(cum, ks, side="right") - 1, 0)
    offset = np.rint((ks - cum[idx]) * (hi - lo)[idx] / means[idx]).astype(np.int64)
    return np.minimum(lo[idx] + offset, hi[idx] - 1)


def _window_size_ms(scenario: Scenario, plans: list[_Plan]) -> int:
    """Processing-window length: at most a block, about MAX_WINDOW_EVENTS records at peak rate."""
    peak = 0.0
    for plan in plans:
        drift = plan.sender.drift
        boost = max([1.0] + [f for _, _, f in plan.factors])
        peak += plan.sender.rate * (1.0 + (drift.amplitude if drift else 0.0)) * boost
    if peak <= 0:
        return BLOCK_S * 1000
    seconds = int(min(BLOCK_S, max(1, MAX_WINDOW_EVENTS // peak)))
    return seconds * 1000


class _Formatter:
    """Turns sorted (offset ms, sender index) arrays into JSON-lines bytes, vectorised."""

    def __init__(self, scenario: Scenario, plans: list[_Plan]) -> None:
        start = scenario.start_time
        self.base_ms = int(start.timestamp()) * 1000 + start.microsecond // 1000
        prefixes = [_prefix(p.sender) for p in plans]
        self.width = max(len(p) for p in prefixes)
        row = self.width + 19 + 4 + len(_SUFFIX)  # prefix, seconds, ".mmm", 'Z"}\n'
        self.rows = np.zeros((len(prefixes), row), dtype=np.uint8)
        for i, pre in enumerate(prefixes):
            # right-aligned, so the timestamp columns are the same for every sender; the NUL
            # padding on the left is deleted after assembly
            self.rows[i, self.width - len(pre) : self.width] = np.frombuffer(pre, dtype=np.uint8)
        self.rows[:, self.width + 19] = ord(".")
        self.rows[:, self.width + 23 :] = np.frombuffer(_SUFFIX, dtype=np.uint8)
        self.padded = len({len(p) for p in prefixes}) > 1

    def lines(self, offsets_ms: np.ndarray, sender_idx: np.ndarray) -> bytes:
        """Bytes of the records, one per line, in the given order."""
        if offsets_ms.size == 0:
            return b""
        w = self.width
        out = self.rows[sender_idx]
        abs_ms = offsets_ms + self.base_ms
        secs = abs_ms // 1000
        first = int(secs.min())
        table_s = np.arange(first, int(secs.max()) + 1, dtype=np.int64).astype("datetime64[s]")
        table = np.datetime_as_string(table_s, unit="s").astype("S19")
        table_u8 = np.frombuffer(table.tobytes(), dtype=np.uint8).reshape(-1, 19)
        out[:, w : w + 19] = table_u8[secs - first]
        ms = (abs_ms - secs * 1000).astype(np.int16)
        out[:, w + 20] = 48 + ms // 100
        out[:, w + 21] = 48 + (ms // 10) % 10
        out[:, w + 22] = 48 + ms % 10
        data = out.tobytes()
        return data.translate(None, b"\x00") if self.padded else data


def _iter_windows(scenario: Scenario, seed: int, window_ms: int | None = None) -> Iterator[tuple[int, bytes, float]]:
    """Yield ``(record count, bytes, fraction done)`` per processing window, in time order.

    ``window_ms`` overrides the window length (tests use it to show it does not change output).
    """
    plans = _plans(scenario)
    fmt = _Formatter(scenario, plans)
    end_ms = _ms(scenario.duration)
    step = _window_size_ms(scenario, plans) if window_ms is None else window_ms
    block_ms = BLOCK_S * 1000
    for block, block_lo in enumerate(range(0, end_ms, block_ms)):
        block_hi = min(block_lo + block_ms, end_ms)
        live = []
        for plan in plans:
            _start_block(plan, seed, block, block_lo, block_hi)
            if plan.lo is not None and plan.lo.size:
                live.append(plan)
        for w_lo in range(block_lo, block_hi, step):
            w_hi = min(w_lo + step, block_hi)
            count, data = _merge_window(live, fmt, w_lo, w_hi)
            yield count, data, w_hi / end_ms


def _merge_window(live: list[_Plan], fmt: _Formatter, w_lo: int, w_hi: int) -> tuple[int, bytes]:
    """``(record count, JSON-lines bytes)`` of the ``live`` plans' records inside ``[w_lo, w_hi)``.

    Records are in time order; ties keep plan order (``plan.index``). Each plan's bins must cover
    the window (:func:`_start_block`). Shared by the replay and the live generator
    (:mod:`clicklab.live.timeline`).
    """
    parts = [_window_times(p, w_lo, w_hi) for p in live]
    if not parts:
        return 0, b""
    times = np.concatenate(parts)
    owners = np.repeat(np.array([p.index for p in live], dtype=np.int32), [part.size for part in parts])
    order = np.argsort(times, kind="stable")
    return int(times.size), fmt.lines(times[order], owners[order])
