"""Registering the lab's user-defined functions in a Flink session.

The functions themselves live in ``udf/clicklab_udf`` (the code Flink ships to its Python workers);
this module only builds them with the lab's parameters and registers them under the lab's names.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from clicklab import settings


@dataclass(frozen=True)
class Detector:
    """Everything that decides what is an anomaly: the forest's parameters and the threshold."""

    forest: Any = None  # clicklab_udf.forest.ForestParams; None: the defaults
    threshold: float = settings.ANOMALY_THRESHOLD
    adaptive: bool = True
    threshold_options: dict[str, Any] = field(default_factory=dict)

    def forest_params(self) -> Any:
        from clicklab_udf.forest import ForestParams

        return self.forest if self.forest is not None else ForestParams()


def register(t_env: Any, detector: Detector | None = None) -> Detector:
    """Register ``RANDOM_CUT_FOREST``, ``RANDOM_CUT_FOREST_WITH_FLAG`` and ``IS_ANOMALY``.

    Registering again replaces them (and starts their state afresh), so a notebook can re-run.
    With the ``java`` backend the two forest functions are the Java ones (:mod:`clicklab.javaudf`; the
    jar is built first if needed); ``IS_ANOMALY`` is always the Python one.
    """
    from clicklab_udf.functions import is_anomaly, random_cut_forest
    from clicklab_udf.threshold import spike_ratio_for

    detector = detector or Detector()
    params = detector.forest_params()
    # the highest AWS score grows with the sample size, so the spike ratio follows it
    options = {"spike_ratio": spike_ratio_for(params.sub_sample_size), **detector.threshold_options}
    functions = {settings.IS_ANOMALY: is_anomaly(detector.threshold, detector.adaptive, options)}
    if params.backend == "java":
        from clicklab import javaudf

        javaudf.register(t_env, params)
    else:
        functions[settings.RANDOM_CUT_FOREST] = random_cut_forest(params)
        functions[settings.RANDOM_CUT_FOREST_WITH_FLAG] = random_cut_forest(params, with_flag=True)
    for name, function in functions.items():
        with contextlib.suppress(Exception):  # not registered yet
            t_env.drop_temporary_function(name)
        t_env.create_temporary_function(name, function)
    return detector
