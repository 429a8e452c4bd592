"""``clicklab bench``: speed and memory figures, measured in one run (ours against a baseline).

Nothing here asserts a time: the figures are printed (and ``--json`` gives them as one object), to
be read on the machine at hand.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clicklab import flink, sqltext, udfs
from clicklab.notebook import Lab

log = logging.getLogger(__name__)


def _rss_mb() -> float:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss / 2**20


def _series(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = 10 + 2 * np.sin(np.arange(n) / 50) + rng.normal(0, 1, n)
    values[rng.choice(n, size=max(1, n // 500), replace=False)] += 25
    return values


def rcf_inprocess(backend: str, points: int, trees: int = 100, sample_size: int = 256) -> float:
    """Points scored per second by one forest in this process (score-then-update)."""
    from clicklab_udf.forest import ForestParams, KeyedForests

    forests = KeyedForests(ForestParams(number_of_trees=trees, sub_sample_size=sample_size, backend=backend))
    values = _series(points)
    start = time.perf_counter()
    for v in values:
        forests.score("bench", float(v))
    return points / (time.perf_counter() - start)


def rcf_through_flink(points: int, work: Path, t_env: Any, detector: udfs.Detector | None = None) -> float:
    """Points per second through the Flink job of ``clicklab score``, job start-up included.

    A first small job is not timed: it pays once for what every later job reuses (the Python worker
    environment, class loading), as a notebook session does in its first cell. ``detector`` picks
    the backend (default: the lab's, ``aws``).
    """
    from clicklab.score import score_frames

    def frame(n: int) -> pd.DataFrame:
        return pd.DataFrame({"key": "", "ms": np.arange(n) * 10_000, "value": _series(n)})

    score_frames({"warm-up": frame(500)}, work, detector, t_env=t_env)
    start = time.perf_counter()
    score_frames({"bench": frame(points)}, work, detector, t_env=t_env)
    return points / (time.perf_counter() - start)


def rss_per_1000_forests(forests: int = 200, points_each: int = 300) -> float:
    """Memory (MB of resident set) that 1,000 warmed-up site forests of the Python UDF (``aws``, krcf) take,
    measured on ``forests``. The keyed Java function's memory is ``keyed.heap_mb_per_1000_sites``."""
    from clicklab_udf.forest import ForestParams, KeyedForests

    gc.collect()
    before = _rss_mb()
    keyed = KeyedForests(ForestParams(backend="aws"))
    values = _series(points_each)
    for k in range(forests):
        for v in values:
            keyed.score(f"site-{k}", float(v))
    gc.collect()
    return (_rss_mb() - before) * 1000 / forests


def pipeline(work: Path, t_env: Any, sites: int, seconds: int, impressions_per_s: float,
             statements: Callable[[], list[str]]) -> tuple[int, float, float]:
    """Generate a replay, then time the lab's five steps on it: (events, baseline s, pipeline s).

    The pipeline is the notebooks' SQL (ticker -> windows -> CTR -> score -> anomalies), one job per
    step as in the notebooks. The baseline runs the same five jobs with the two Python functions
    replaced by plain SQL (:data:`BASELINE_REPLACEMENTS`), so the ratio is what the UDFs cost.
    """
    from clicklab.generator import benchmark_scenario, generate

    replay = generate(benchmark_scenario(sites, seconds, impressions_per_s, 0.1), 11, work / "bench.jsonl.gz")
    lab = Lab(replay.out_path, work / "build", t_env)
    lab.create_tables()
    lab.register_functions(udfs.Detector())
    steps = statements()
    variables = lab.variables()
    for view in view_statements():
        lab.run(sqltext.substitute(view, variables))

    def run(statements: list[str]) -> float:
        start = time.perf_counter()
        for sql in statements:
            lab.run(sqltext.substitute(sql, variables))
        return time.perf_counter() - start

    baseline = run([without_udfs(sql) for sql in steps])
    full = run(steps)
    return replay.events, baseline, full


#: How the baseline replaces the lab's keyed functions by plain SQL of the same shape (the same columns).
BASELINE_REPLACEMENTS = {
    "RANDOM_CUT_FOREST(TABLE {ctr_input} PARTITION BY site, DESCRIPTOR(ctr))":
        "(SELECT *, CAST(ctr / 100 AS DOUBLE) AS anomaly_score FROM {ctr_input})",
    "ANOMALY_DECISIONS(TABLE {scores_input} PARTITION BY site)":
        "(SELECT *, score > 2 AS is_anomaly, score / 8 AS grade, ctr AS expected, ctr AS usual_low, ctr AS usual_high "
        "FROM {scores_input})",
}


def without_udfs(sql: str) -> str:
    """The same statement with the keyed function calls replaced by plain SQL (the Flink-SQL-only baseline)."""
    for call, plain in BASELINE_REPLACEMENTS.items():
        sql = sql.replace(call, plain)
    return sql


def view_statements() -> list[str]:
    """The ordered views of notebooks 08 and 09 (``ctr_in_time_order``, ``scores_in_time_order``)."""
    from clicklab import faults

    return [v for number in faults.KEYED for v in faults.view_statements(number)]


def lab_statements() -> list[str]:
    """The INSERT statements of notebooks 04, 05, 06, 08 and 09, from the notebooks themselves."""
    from clicklab import cells, settings

    out = []
    for number in ("04", "05", "06", "08", "09"):
        path = next(settings.NOTEBOOKS_DIR.glob(f"{number}_*.ipynb"))
        out += [c for c in cells.sql_cells(path) if sqltext.parse_script(c)[0].kind == sqltext.INSERT]
    return out


def run_all(work: Path, quick: bool = False) -> dict[str, Any]:
    """Every figure of ``clicklab bench``; ``quick`` uses small sizes (for tests of the command)."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    t_env = flink.create_table_env()
    figures: dict[str, Any] = {"rcf_points_per_s": {}}
    rates = figures["rcf_points_per_s"]
    log.info("RCF in-process, aws backend ...")
    rates["aws_inprocess"] = rcf_inprocess("aws", 2_000 if quick else 20_000)
    log.info("RCF in-process, rrcf backend ...")
    rates["rrcf_inprocess"] = rcf_inprocess("rrcf", 100 if quick else 600)
    log.info("RCF through the Flink UDF, aws backend ...")
    rates["aws_flink"] = rcf_through_flink(2_000 if quick else 100_000, work / "score", t_env)
    log.info("RCF through the Flink UDF, java backend (AWS's Java library; builds the jar if needed) ...")
    from clicklab_udf.forest import ForestParams

    java = udfs.Detector(forest=ForestParams(backend="java"))
    rates["java_flink"] = rcf_through_flink(2_000 if quick else 100_000, work / "score", t_env, java)
    log.info("full pipeline vs Flink-SQL-only baseline ...")
    sites, seconds, rate = (5, 120, 5.0) if quick else (100, 3600, 7.6)
    events, baseline_s, pipeline_s = pipeline(work / "pipeline", t_env, sites, seconds, rate, lab_statements)
    figures["pipeline_events"] = events
    figures["pipeline_events_per_s"] = events / pipeline_s
    figures["baseline_events_per_s"] = events / baseline_s
    figures["pipeline_to_baseline"] = baseline_s / pipeline_s
    log.info("memory of site forests ...")
    figures["rss_mb_per_1000_forests"] = rss_per_1000_forests(20 if quick else 200)
    from clicklab import benchkeyed

    figures["keyed"] = benchkeyed.run(work / "cluster", *((200, 30) if quick else (10_000, 300)))
    return figures


def format_figures(f: dict[str, Any]) -> str:
    r = f["rcf_points_per_s"]
    return "\n".join([
        "Random Cut Forest, 100 trees x 256 samples, points/s:",
        f"  aws  in-process     {r['aws_inprocess']:>10,.0f}",
        f"  aws  through Flink  {r['aws_flink']:>10,.0f}   (target >= 5,000)",
        f"  java through Flink  {r['java_flink']:>10,.0f}   (AWS's Java library in a Java UDF, the Studio jar)",
        f"  rrcf in-process     {r['rrcf_inprocess']:>10,.0f}",
        f"Full replay pipeline ({f['pipeline_events']:,} events): {f['pipeline_events_per_s']:,.0f} events/s",
        f"Flink-SQL-only baseline (same jobs, UDF calls replaced by SQL): {f['baseline_events_per_s']:,.0f} events/s",
        f"pipeline / baseline: {f['pipeline_to_baseline']:.2f}   (target >= 0.8)",
        f"memory: {f['rss_mb_per_1000_forests']:,.0f} MB per 1,000 site forests (Python UDF, aws)",
        *([benchkeyed_text(f["keyed"])] if "keyed" in f else []),
    ])


def benchkeyed_text(keyed: dict[str, Any]) -> str:
    from clicklab import benchkeyed

    return benchkeyed.format_keyed(keyed)
