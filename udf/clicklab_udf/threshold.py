"""Which scores are anomalies: the lab's fixed threshold, and an adaptive one per key.

The lab flags a row when its Random Cut Forest score is over 2 (:func:`fixed_threshold`). On a
10-second click-through rate built from a few dozen impressions, a forest of 100 trees x 256 samples
then catches the lab's bursts, but Poisson noise alone also pushes a lone window over 2 two or three
times per site and hour (measured: 2.5 false alarms per site-hour on the lab's traffic, see below).

:class:`AdaptiveThreshold` keeps the fixed threshold as a **floor** and, in the spirit of AWS's
``ThresholdedRandomCutForest``, asks in addition that the score be unusual for the key's own recent
scores. Per key it keeps an exponentially weighted mean ``m`` and standard deviation ``s`` of its
recent *ordinary* scores (scores at or under the level below; the first ``1/alpha`` scores are
averaged plainly, later ones with weight ``alpha``). For each row:

* ``level = max(floor, m + z * s)``: a score over it is unusual for this key.
* A row is an anomaly when its score is over ``level`` and

  - **persistent**: the key's previous row was over its level too. Real changes in traffic last:
    the lab's sessions run 20-30 seconds (two or three windows), a click drop or a bot minutes,
    while a noise window comes alone. A run of unusual rows is flagged from its second row on, one
    window after it starts; or
  - **a spike**: the score is over ``spike_ratio * m`` as well (and so over the level): a single
    window far beyond anything typical, e.g. a 500 % CTR, is reported at once. Until the key has
    one ordinary score, ``m`` is unknown and only runs are flagged.

The decision is made on the history *before* the row, then the row is learned (decide-then-learn,
as the forest scores before it inserts). Unusual rows are kept out of ``m`` and ``s``, so a long
anomaly does not become the norm. Rows flagged as warming up are never anomalies and are not
learned. Everything is deterministic: same scores in, same decisions out.

Parameters (all checked, ``ValueError`` names the one at fault):

============ ======= ================================================================================
parameter    default meaning (range)
============ ======= ================================================================================
floor        2.0     the fixed threshold no anomaly is below (> 0); the lab's 2 on the AWS scale
z            3.0     how many standard deviations above the key's mean score is unusual (>= 0)
spike_ratio  6.0     a single row is an anomaly when over ``spike_ratio`` x the mean score (>= 1);
                     ordinary scores are about 0.8 on the AWS scale, so about 5. Made for forests of
                     256 samples, whose scores top out near 8; :func:`spike_ratio_for` scales it to
                     other sample sizes
alpha        0.01    weight of a new ordinary score in the mean and deviation (0 < alpha <= 1):
                     they follow roughly the last ``1/alpha`` = 100 rows
============ ======= ================================================================================

Measured with the default forest (100 trees x 256 samples, warm-up 256) on the lab's CTR per site
and 10-second window (``clicklab.evaluation``: a label is detected by a flag from one window before
its start to one window after; a false alarm is the onset of a run of flags outside every label,
extended by a minute after its end), over the bundled replay, eight more replays of the lab scenario
(seeds 1-8) and twelve hours of the lab's traffic without anomalies, 66.6 site-hours of normal
traffic after warm-up in all: both thresholds detect all 45 labelled anomalies within one window of
their start (the adaptive one flags a burst or an outage at once as a spike, extra clicks, a click
drop or a bot one window later as a run); false alarms per site-hour 2.5 with the fixed threshold,
0.075 with the adaptive one (5 in all). On the bundled replay alone: 3.0 and 0.27 (11 and 1). The
other parameters hardly matter there (``alpha`` 0.003-0.03 and ``z`` 2-4 give the same decisions
within one false alarm); ``spike_ratio`` trades noise for speed: 5 lets more noise windows through
(0.18 per site-hour), 7 fewer (0.03) but comes close to missing a lone 500 % window (its score, 7.5,
is about 7.5 times the site's mean). On ten series of the Numenta Anomaly Benchmark (road traffic,
NYC taxi, two artificial; ``clicklab evaluate``) the adaptive threshold finds 16 of the 21 labelled
windows with 15 false alarms in 267 days of normal data (0.06 per day), the fixed one 18 with 133
(0.50 per day).

>>> t = AdaptiveThreshold()
>>> [t.update("s", x).is_anomaly for x in (0.8, 0.9, 0.7, 2.6, 0.8, 2.4, 2.5, 0.8, 7.5)]
[False, False, False, False, False, False, True, False, True]
>>> t.update("s", 0.9)  # the row after an unusual one: judged against the level, 2
Decision(is_anomaly=False, threshold=2.0)
>>> t.update("s", 3.0)  # a lone 3.0: judged against the spike level, 6 x the mean of 0.82
Decision(is_anomaly=False, threshold=4.9)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple


class Decision(NamedTuple):
    """Whether a score is an anomaly, and the threshold it was compared with (for plots).

    ``threshold`` is ``inf`` while the key warms up (nothing is an anomaly then).
    """

    is_anomaly: bool
    threshold: float


def _check_number(name: str, value: Any, rule: str, ok: Callable[[float], bool]) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not ok(value):
        raise ValueError(f"adaptive threshold parameter {name} must be {rule}, got {value!r}")
    return float(value)


def fixed_threshold(score: float, floor: float) -> bool:
    """The lab's rule: a score strictly over ``floor`` is an anomaly."""
    return score > floor


def spike_ratio_for(sub_sample_size: int, ratio_at_256: float = 6.0) -> float:
    """``spike_ratio`` for a forest of another sample size than the default 256.

    On the AWS scale ordinary scores stay near 0.8 whatever the sample size, but the highest score
    (a value cut off at the root of every tree) is about ``log2(sub_sample_size)``: 8 for 256, 6 for
    64, 5 for 32. So the spike ratio is scaled by ``log2(sub_sample_size) / 8``, never below 1.

    >>> spike_ratio_for(256), spike_ratio_for(64), spike_ratio_for(1024)
    (6.0, 4.5, 7.5)
    """
    if isinstance(sub_sample_size, bool) or not isinstance(sub_sample_size, numbers.Integral) or sub_sample_size < 2:
        raise ValueError(f"sub_sample_size must be an integer >= 2, got {sub_sample_size!r}")
    return max(1.0, ratio_at_256 * math.log2(sub_sample_size) / 8)


class _KeyState:
    """What the threshold remembers of one key."""

    __slots__ = ("mean", "n", "previous_over", "var")

    def __init__(self) -> None:
        self.n = 0  # ordinary scores learned
        self.mean = 0.0
        self.var = 0.0
        self.previous_over = False


class AdaptiveThreshold:
    """A per-key adaptive threshold over a fixed floor (see the module docstring)."""

    def __init__(self, floor: float = 2.0, z: float = 3.0, spike_ratio: float = 6.0, alpha: float = 0.01) -> None:
        self.floor = _check_number("floor", floor, "a finite number > 0", lambda v: v > 0)
        self.z = _check_number("z", z, "a finite number >= 0", lambda v: v >= 0)
        self.spike_ratio = _check_number("spike_ratio", spike_ratio, "a finite number >= 1", lambda v: v >= 1)
        self.alpha = _check_number("alpha", alpha, "a number in (0, 1]", lambda v: 0 < v <= 1)
        self._keys: dict[str, _KeyState] = {}

    def levels(self, key: str) -> tuple[float, float]:
        """``(level, spike level)`` the key's next row will be judged against (before learning it)."""
        state = self._keys.get(key)
        if state is None or state.n == 0:
            return self.floor, math.inf
        level = max(self.floor, state.mean + self.z * math.sqrt(state.var))
        return level, max(level, self.spike_ratio * state.mean)

    def update(self, key: str, score: float, warming_up: bool = False) -> Decision:
        """Decide whether ``score`` is an anomaly for ``key``, then learn it."""
        if warming_up:
            return Decision(False, math.inf)
        if isinstance(score, bool) or not isinstance(score, numbers.Real) or not math.isfinite(score):
            raise ValueError(f"adaptive threshold: key {key!r}: score {score!r} is not a finite number")
        score = float(score)
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState()
        level, spike_level = self.levels(key)
        threshold = level if state.previous_over else spike_level
        state.previous_over = score > level
        if not state.previous_over:  # ordinary: learn it
            state.n += 1
            weight = max(self.alpha, 1.0 / state.n)
            delta = score - state.mean
            state.mean += weight * delta
            state.var = (1.0 - weight) * (state.var + weight * delta * delta)
        return Decision(score > threshold, threshold)

    def keys(self) -> list[str]:
        """The keys seen after their warm-up, in order of first appearance."""
        return list(self._keys)

    def __len__(self) -> int:
        return len(self._keys)
