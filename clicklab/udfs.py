"""Registering the lab's user-defined functions in a Flink session.

The pipeline's functions are the keyed process table functions of the Java jar (``udf/java``,
:mod:`clicklab.javaudf`): ``RANDOM_CUT_FOREST(TABLE t PARTITION BY site, DESCRIPTOR(ctr))`` keeps one
compact forest per site in Flink's keyed state, ``ANOMALY_DECISIONS(TABLE t PARTITION BY site)`` the
adaptive threshold per site. The scalar functions (``RANDOM_CUT_FOREST_WITH_FLAG``, ``IS_ANOMALY``; Python in
``udf/clicklab_udf``, the code Flink ships to its Python workers) serve ``clicklab score``. This module builds
them with the lab's parameters and registers them under the lab's names.
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


#: The backends the keyed ``RANDOM_CUT_FOREST`` scores with (it runs the Java compact forest).
KEYED_BACKENDS = ("compact",)


def threshold_options(detector: Detector) -> dict[str, Any]:
    """The adaptive threshold's options: the spike ratio, spike floor and run level follow the forest's sample
    size (the highest AWS score grows with it: :func:`clicklab_udf.threshold.options_for`), then the
    detector's own ``threshold_options``."""
    from clicklab_udf.threshold import options_for

    return {**options_for(detector.forest_params().sub_sample_size), **detector.threshold_options}


def adaptive_threshold(detector: Detector) -> Any:
    """The Python twin of the detector's ``ANOMALY_DECISIONS`` (:class:`clicklab_udf.threshold.AdaptiveThreshold`
    with the detector's floor and :func:`threshold_options`), for replaying its decisions in this process."""
    from clicklab_udf.threshold import AdaptiveThreshold

    return AdaptiveThreshold(floor=detector.threshold, **threshold_options(detector))


def register(t_env: Any, detector: Detector | None = None, keyed: bool = True) -> Detector:
    """Register the keyed ``RANDOM_CUT_FOREST`` and ``ANOMALY_DECISIONS``, and the scalar
    ``RANDOM_CUT_FOREST_WITH_FLAG`` and ``IS_ANOMALY``.

    Registering again replaces them (and starts their state afresh), so a notebook can re-run. The keyed
    functions are Java (the jar is built first if needed) and score with the ``compact`` forest: another
    ``backend`` raises :class:`ClicklabError` unless ``keyed`` is false (``clicklab score``, which needs only
    the scalar functions). The scalar forest function follows the backend (``java``: the jar's);
    ``IS_ANOMALY`` is always the Python one.
    """
    from clicklab import javaudf
    from clicklab.exceptions import ClicklabError
    from clicklab_udf.functions import is_anomaly, random_cut_forest

    detector = detector or Detector()
    params = detector.forest_params()
    options = threshold_options(detector)
    if keyed:
        if params.backend not in KEYED_BACKENDS:
            raise ClicklabError(
                f"RANDOM_CUT_FOREST backend {params.backend!r}: the keyed pipeline (08, 09) scores with the "
                f"compact forest in Flink's keyed state, backend 'compact'; {params.backend!r} serves "
                f"`clicklab score` and the scalar RANDOM_CUT_FOREST_WITH_FLAG")
        javaudf.register_keyed(t_env, params, detector.threshold, detector.adaptive, options)
    functions = {settings.IS_ANOMALY: is_anomaly(detector.threshold, detector.adaptive, options)}
    if params.backend == "java":
        javaudf.register(t_env, params, names=(settings.RANDOM_CUT_FOREST_WITH_FLAG,))
    else:
        functions[settings.RANDOM_CUT_FOREST_WITH_FLAG] = random_cut_forest(params, with_flag=True)
    for name, function in functions.items():
        with contextlib.suppress(Exception):  # not registered yet
            t_env.drop_temporary_function(name)
        t_env.create_temporary_function(name, function)
    return detector
