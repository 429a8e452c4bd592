"""Deciding which scores are anomalies: the lab's fixed threshold, and an adaptive one.

With a fixed threshold of 2, a forest of 100 trees x 256 samples catches bursts like the lab's, but
on a 10-second CTR built from a few clicks it also fires two to four times an hour on plain Poisson
noise: a lone window whose CTR happens to jump. :class:`AdaptiveThreshold`, in the spirit of AWS's
thresholded Random Cut Forest, asks for more than the fixed floor. A score is an anomaly when it is
over the floor **and** unusual for the key's recent scores, which here means either

* **persistent**: the key's previous score was over the floor too (a real change in traffic lasts
  longer than one window: the lab's sessions last 20 and 30 seconds), or
* **a spike**: the score is more than ``spike_ratio`` times the key's typical score (an
  exponentially weighted mean of its recent ordinary scores, weight ``alpha`` per point), so an
  extreme single window such as a 500 % CTR is reported at once.

Decisions are made before the row updates the history (decide-then-learn, as the forest does), and
scores over the floor are kept out of the typical score, so a long anomaly does not become normal.
Measured on the bundled replay (command: ``clicklab run``; figures in the README): all five labelled
anomalies detected within one window of their start, false alarms 3.0 per hour with the fixed
threshold and 0.27 per hour with the adaptive one.
"""

from __future__ import annotations

import math
from typing import NamedTuple


class Decision(NamedTuple):
    """Whether a score is an anomaly, and the threshold that applied to it (for plots)."""

    is_anomaly: bool
    threshold: float


def fixed_threshold(score: float, floor: float) -> bool:
    """The lab's rule: a score over the threshold is an anomaly."""
    return score > floor


class AdaptiveThreshold:
    """Per-key adaptive threshold over a fixed floor (see the module docstring).

    >>> t = AdaptiveThreshold(floor=2.0)
    >>> [t.update("s", x).is_anomaly for x in (1.0, 0.9, 1.1, 2.5, 1.0, 2.4, 2.6, 9.0)]
    [False, False, False, False, False, False, True, True]
    """

    def __init__(self, floor: float = 2.0, spike_ratio: float = 6.0, alpha: float = 0.02) -> None:
        for name, value, ok, rule in (
            ("floor", floor, floor > 0, "> 0"),
            ("spike_ratio", spike_ratio, spike_ratio >= 1, ">= 1"),
            ("alpha", alpha, 0 < alpha <= 1, "in (0, 1]"),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not ok:
                raise ValueError(f"adaptive threshold parameter {name} must be {rule}, got {value!r}")
        self.floor = float(floor)
        self.spike_ratio = float(spike_ratio)
        self.alpha = float(alpha)
        self._typical: dict[str, float] = {}
        self._previous: dict[str, float] = {}

    def update(self, key: str, score: float, warming_up: bool = False) -> Decision:
        """Decide on ``score`` for ``key``, then learn from it. Warm-up rows are never anomalies."""
        if warming_up:
            return Decision(False, math.inf)
        typical = self._typical.get(key)
        spike_level = self.spike_ratio * typical if typical is not None else math.inf
        persistent = self._previous.get(key, 0.0) > self.floor
        threshold = self.floor if persistent else max(self.floor, spike_level)
        anomaly = score > threshold
        self._previous[key] = score
        if score <= self.floor:  # only ordinary scores shape what is typical
            self._typical[key] = score if typical is None else typical + self.alpha * (score - typical)
        return Decision(anomaly, threshold)
