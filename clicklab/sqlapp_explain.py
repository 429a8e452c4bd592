"""Why a window of the SQL application is unusual, for its alert: ``RANDOM_CUT_FOREST_WITH_EXPLANATION`` in Python.

``23`` explains the windows with the jar's ``RANDOM_CUT_FOREST_WITH_EXPLANATION`` (a Flink query over the pumps'
counts). An alert about a row of ``DESTINATION_SQL_STREAM`` needs the same words ("CLICKCOUNT HIGH" rather than
"IMPRESSIONCOUNT LOW") without a Flink job, and live without a job that has been running since the first window:
:func:`explain_counts` scores the counts the pumps wrote (``CLICKSTREAM`` joined with ``IMPRESSIONSTREAM`` on
``ROWTIME``, in time order, as ``23``'s ``COUNTS_CURSOR`` view) with the Python twin of the jar's compact forest
(:class:`clicklab_udf.compact.CompactForest`, seeded as the Java function seeds the key ``COUNTS`` of that view),
and writes each explanation as the Java function does: ``tests/test_sql_app.py`` checks that both give the same
text for the replay's windows. :func:`clicklab.sqlapp.explain` puts it into words.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from clicklab import sqlapp

#: The columns ``23`` scores together (``DESCRIPTOR(CLICKCOUNT, IMPRESSIONCOUNT)``), in that order.
COLUMNS = ("CLICKCOUNT", "IMPRESSIONCOUNT")
#: The partition key of ``23``'s ``COUNTS_CURSOR`` view (one key, one forest): it seeds the forest.
KEY = "COUNTS"


def counts(build: Path) -> pd.DataFrame:
    """The pumps' counts per window: ``ROWTIME``, ``CLICKCOUNT``, ``IMPRESSIONCOUNT`` (windows with both), in order."""
    clicks = sqlapp.read_app_stream(build, "CLICKSTREAM")
    impressions = sqlapp.read_app_stream(build, "IMPRESSIONSTREAM")
    both = clicks.merge(impressions, on="ROWTIME", how="inner")
    return both.sort_values("ROWTIME", kind="stable").reset_index(drop=True)[["ROWTIME", *COLUMNS]]


def explanation_json(attribution: np.ndarray, names: tuple[str, ...] = COLUMNS, directionality: bool = True) -> str:
    """An attribution (per column its "high" part, then per column its "low" part) as ``ANOMALY_EXPLANATION`` JSON,
    written as ``KeyedRandomCutForestWithExplanation.explanation`` writes it (numbers with four decimals)."""
    n = len(names)
    parts = {}
    for i, name in enumerate(names):
        high, low = float(attribution[i]), float(attribution[n + i])
        total = high + low
        column = {}
        if directionality:
            column["DIRECTION"] = "HIGH" if high >= low else "LOW"
            column["STRENGTH"] = f"{abs(high - low) / total if total > 0 else 0.0:.4f}"
        column["ATTRIBUTION_SCORE"] = f"{total:.4f}"
        parts[name] = column
    return json.dumps(parts, separators=(",", ":"))


def explain_counts(build: Path, forest_preset: str = sqlapp.FOREST_PRESET) -> pd.DataFrame:
    """Every window of the pumps' counts with ``anomaly_score``, ``anomaly_explanation`` (NULL while the forest warms
    up), ``warming_up`` and ``why`` (:func:`clicklab.sqlapp.explain`), as ``23``'s query scores them."""
    from clicklab_udf.compact import CompactForest
    from clicklab_udf.forest import ForestParams, java_key_seed

    params = ForestParams.preset(forest_preset)
    forest = CompactForest(params.number_of_trees, params.sub_sample_size, params.time_decay, params.shingle_size,
                           len(COLUMNS), java_key_seed(params.seed, KEY))
    rows = counts(build)
    scores, explanations, warming = [], [], []
    for point in rows[list(COLUMNS)].astype(float).itertuples(index=False):
        values = list(point)
        warm = forest.updates + 1 <= params.warmup_points
        attribution = None if warm else forest.attribution(values)  # before the point is learned, as in Java
        score = forest.score_then_update(values)
        scores.append(0.0 if warm else score)
        explanations.append(None if attribution is None else explanation_json(attribution))
        warming.append(warm)
    out = rows.assign(anomaly_score=scores, anomaly_explanation=explanations, warming_up=warming)
    return out.assign(why=out["anomaly_explanation"].map(sqlapp.explain))


def why(build: Path, rowtimes: pd.Series) -> dict[pd.Timestamp, str]:
    """The words for each window in ``rowtimes`` (a window's ``ROWTIME``) that the pumps' counts hold."""
    explained = explain_counts(build).set_index("ROWTIME")["why"]
    wanted = pd.to_datetime(pd.Series(rowtimes), utc=True)
    return {t: explained[t] for t in wanted if t in explained.index}
