"""Code that Flink ships to its Python workers for the lab's anomaly detection.

``forest``: the streaming Random Cut Forest per key behind ``RANDOM_CUT_FOREST``; ``threshold``: the
lab's fixed threshold and the adaptive one behind ``IS_ANOMALY``. Both need only numpy and the
backend library (``krcf`` or ``rrcf``, imported when a forest is created) and are tested without
Flink; ``functions`` holds the thin PyFlink adapters and is not imported here.
"""

from clicklab_udf.forest import ForestParams, KeyedForests, Scored
from clicklab_udf.threshold import AdaptiveThreshold, Decision, fixed_threshold, options_for, spike_ratio_for

__all__ = [
    "AdaptiveThreshold",
    "Decision",
    "ForestParams",
    "KeyedForests",
    "Scored",
    "fixed_threshold",
    "options_for",
    "spike_ratio_for",
]
