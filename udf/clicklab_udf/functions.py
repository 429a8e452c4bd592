"""The Flink adapters: thin ``ScalarFunction`` wrappers around the forest and the threshold.

The scalar functions of ``clicklab score`` and ``clicklab evaluate`` (the lab's pipeline runs the keyed Java
functions instead, see :mod:`clicklab.udfs`). Registered by :func:`clicklab.udfs.register` as

* ``RANDOM_CUT_FOREST_WITH_FLAG(value [, key [, time]])`` -> ROW<score DOUBLE, warming_up BOOLEAN>;
* ``IS_ANOMALY(score [, key [, warming_up]])`` -> BOOLEAN: the anomaly decision (fixed or adaptive);
  without ``warming_up``, a score of exactly 0.0 (what RANDOM_CUT_FOREST returns while a key warms
  up) counts as warming up.

Each keeps its state (one forest, one score history per key) in the Python worker for the life of
the job, outside Flink's state: rows of one key must reach the same worker in order (``clicklab score``
runs at parallelism 1), and a restart forgets them. Both are declared non-deterministic, so the planner
never calls them twice for one row. :func:`random_cut_forest` (without the flag) still builds the plain
``RANDOM_CUT_FOREST(value [, key [, time]])`` -> DOUBLE for sessions that want the scalar form.
"""

from __future__ import annotations

from typing import Any

from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction, udf

from clicklab_udf.forest import ForestParams, KeyedForests
from clicklab_udf.threshold import AdaptiveThreshold, fixed_threshold


class RandomCutForestFunction(ScalarFunction):
    """``RANDOM_CUT_FOREST``: one streaming Random Cut Forest per key, as a vectorized (pandas) function.

    Flink hands over batches of rows (up to ``python.fn-execution.arrow.batch.size``), in stream
    order; :meth:`KeyedForests.score_many` scores them key by key, which keeps each forest warm in
    the CPU cache (2-3 times faster with a hundred sites interleaved). Each row is still scored
    against its key's forest as it was, then inserted, exactly once, so the scores are those of a
    row-at-a-time function. ``with_flag`` returns ``ROW<score, warming_up>`` instead of the score.
    """

    def __init__(self, params: ForestParams, with_flag: bool = False) -> None:
        self.params = params
        self.with_flag = with_flag
        self.forests: KeyedForests | None = None

    def open(self, function_context: FunctionContext) -> None:
        self.forests = KeyedForests(self.params)

    def eval(self, value: Any, key: Any = None, time: Any = None) -> Any:
        import pandas as pd

        keys = [""] * len(value) if key is None else ["" if k is None else str(k) for k in key]
        values = [None if pd.isna(v) else v for v in value]  # NaN and None are refused, naming the row
        times = None if time is None else list(time)
        scored = self.forests.score_many(keys, values, times)
        scores = pd.Series([s.score for s in scored], index=value.index, dtype="float64")
        if self.with_flag:
            return pd.DataFrame({"score": scores, "warming_up": [s.warming_up for s in scored]}, index=value.index)
        return scores

    def is_deterministic(self) -> bool:
        return False


class IsAnomalyFunction(ScalarFunction):
    """``IS_ANOMALY``: over the fixed floor, and (adaptive) unusual for the key's recent scores."""

    def __init__(self, floor: float, adaptive: bool, threshold_options: dict[str, Any] | None = None) -> None:
        self.floor = floor
        self.adaptive = adaptive
        self.options = dict(threshold_options or {})
        self.threshold: AdaptiveThreshold | None = None

    def open(self, function_context: FunctionContext) -> None:
        if self.adaptive:
            self.threshold = AdaptiveThreshold(floor=self.floor, **self.options)

    def eval(self, score: float, key: str | None = None, warming_up: bool | None = None) -> bool:
        if score is None:
            return False
        if not self.adaptive:
            return fixed_threshold(float(score), self.floor)
        if warming_up is None:  # called on destinationstream's score alone: 0.0 only while warming up
            warming_up = score == 0.0
        return self.threshold.update("" if key is None else str(key), float(score), bool(warming_up)).is_anomaly

    def is_deterministic(self) -> bool:
        return False


SCORE_WITH_FLAG = DataTypes.ROW([
    DataTypes.FIELD("score", DataTypes.DOUBLE()),
    DataTypes.FIELD("warming_up", DataTypes.BOOLEAN()),
])


def random_cut_forest(params: ForestParams, with_flag: bool = False):
    """The ``RANDOM_CUT_FOREST`` user-defined function for ``create_temporary_function``."""
    result = SCORE_WITH_FLAG if with_flag else DataTypes.DOUBLE()
    return udf(RandomCutForestFunction(params, with_flag), result_type=result, func_type="pandas")


def is_anomaly(floor: float, adaptive: bool, threshold_options: dict[str, Any] | None = None):
    """The ``IS_ANOMALY`` user-defined function."""
    return udf(IsAnomalyFunction(floor, adaptive, threshold_options), result_type=DataTypes.BOOLEAN())
