"""Which scores are anomalies: the lab's fixed threshold, and an adaptive one per key.

The lab flags a row when its Random Cut Forest score is over 2 (:func:`fixed_threshold`). On a
10-second click-through rate built from a few dozen impressions, Poisson noise alone pushes a lone
window over 2 a few times per site and hour; on slower series (the Numenta Anomaly Benchmark's
5-minute server, traffic and sensor metrics) a real change often shows as a stretch of moderately
raised scores, none of them over 2, and one anomaly raises the score for many rows in a row.

:class:`AdaptiveThreshold` keeps the fixed threshold as a **floor** and, in the spirit of AWS's
``ThresholdedRandomCutForest``, judges each score against the key's own history. Per key it keeps,
in a few numbers (O(1) per row):

* an exponentially weighted mean ``m`` and standard deviation ``s`` of the key's *ordinary* scores
  (scores at or under the level below);
* a short moving average ``a`` of the key's scores, each capped at the floor first (weight
  ``smoothing`` per row: about the last ``1/smoothing`` rows), and a long exponentially weighted
  mean ``ma`` and standard deviation ``sa`` of that average (every row). This is the idea of HTM's
  *anomaly likelihood*: a short average of scores that sits far in the tail of its own long-run
  distribution means the series has changed, even when no single score is remarkable;
* the bar a spike must clear after an anomaly, and the rows left of a refractory period (below).

Long weights are ``alpha`` (the first ``1/alpha`` rows are averaged plainly). For each row:

* ``level = max(floor, m + z * s)``: a row over it is *unusual* (and not learned). The row is an
  anomaly when

  - **a run**: the key's previous row was unusual and this one is over ``max(floor, m + run_z * s)``
    (real changes in traffic last: a session of extra clicks runs two or three windows, a noise
    window comes alone; on a noisy key the second row must be clearly out, ``run_z`` > ``z``),
    flagged one row after the run starts; or
  - **a spike**: its score is over the spike level, ``max(level, spike_ratio * m, spike_floor, bar)``
    but never more than ``spike_ceiling`` (or the floor, if higher): a single row far beyond anything
    typical for the key *and* on the AWS scale (``spike_floor``; a key whose ordinary scores are low,
    e.g. 0.3, would otherwise report every lone 2 as a spike), e.g. a 500 % CTR, is reported at once
    (until the key has one ordinary score, ``m`` is unknown and only runs are flagged). The ceiling
    sits just under the highest score the forest can give (a value cut off at the root of nearly every
    tree, about ``log2(sub_sample_size)``): without it a young key, whose first ordinary scores are high
    (a forest of a few points finds every value unusual), or a key just past an anomaly (``bar``) would
    have a spike level no score can reach. With the lab's 12 samples the highest score is about 3.7,
    ``spike_ratio`` 3.24: a mean of 1.13 already put the 500 % burst (3.66) out of reach; or
  - **a sustained change**: ``a - ma > sustained_z * sa``, once the key has ``2 / smoothing``
    rows of the average. Spikes are the spike rule's; this one sees many raised rows: a score adds
    at most ``smoothing * (floor - ma)`` to ``a`` (the cap), and ``a - ma`` must also be half again
    that, so one high score alone is never a sustained change, however regular the key.

* **Refractory period**: after an anomaly, the key's next ``refractory`` rows are not anomalies
  (their threshold is ``inf``; they are still learned). One change is reported once, as a pager
  would, instead of on every raised row; this is also how NAB counts (only the first detection
  in a labelled window earns, every detection outside one costs). One exception, an **escalation**:
  a row over ``spike_ceiling`` after an anomaly that was not is reported (threshold: the ceiling),
  and starts a refractory period of its own. A moderate anomaly (a CTR of 21 % on a young site)
  must not hide the 500 % burst that follows it one window later.
* **The bar after an anomaly**: an anomaly scoring ``x`` raises the key's ``bar`` to
  ``repeat_ratio * x``; it sinks back to the floor by a factor ``1 - alpha`` per row. A lone spike
  must clear it: a key that has just shown spikes of 5 reports the next one when it is larger, not
  every one of its kind (runs and sustained changes are not held to it).

The decision is made on the history *before* the row, then the row is learned (decide-then-learn,
as the forest scores before it inserts). Unusual rows are kept out of ``m`` and ``s``, so a long
anomaly does not become the norm. Rows flagged as warming up are never anomalies and are not
learned. Everything is deterministic: same scores in, same decisions out. The Java port
(``udf/java/clicklab/udf/AdaptiveThreshold.java``, behind ``ANOMALY_DECISIONS``) makes the same
decisions, bit for bit (``tests/test_keyed.py``).

Parameters (all checked, ``ValueError`` names the one at fault):

============= ======= ================================================================================
parameter     default meaning (range)
============= ======= ================================================================================
floor         2.0     the fixed threshold a run or a spike must be over (> 0); the lab's 2 on the AWS
                      scale. Also the cap of each score in the short average
z             3.0     how many standard deviations above the key's mean score is unusual (>= 0)
run_z         5.0     how many standard deviations the second row of a run must be above the mean (>= 0)
spike_ratio   6.0     a single row is a spike when over ``spike_ratio`` x the mean score (>= 1)
spike_floor   5.0     ... and over ``spike_floor`` (>= 0; 0: no such floor). Both made for forests of
                      256 samples, whose scores top out near 8; :func:`options_for` scales them (and
                      ``run_z``, ``spike_ceiling``) to other sample sizes
spike_ceiling 7.2     the spike level is never over this (>= 0; 0: no ceiling): 90 % of the highest
                      score of a 256-sample forest (8); a score over it is a spike whatever the history
repeat_ratio  2.0     after an anomaly scoring x, a spike must also clear ``repeat_ratio * x``, sinking
                      back to the floor at the pace of ``alpha`` (>= 0; 0: no such bar)
alpha         0.003   weight of a new row in the long means and deviations (0 < alpha <= 1): they
                      follow roughly the last ``1/alpha`` = 333 rows
smoothing     0.05    weight of a new score in the short average (0 < smoothing <= 1): about the last
                      20 rows
sustained_z   4.0     how many standard deviations of the short average over its long mean is a
                      sustained change (>= 0)
refractory    30      rows after an anomaly that are not anomalies (an integer >= 0): 5 minutes of
                      the lab's 10-second windows
============= ======= ================================================================================

How well it does, and how the defaults were chosen (issue 23, ``docs/scoring.md``): ``clicklab
evaluate --holdout category`` scores NAB's 42 series of ``../shared/nab`` once, then chooses
``spike_floor``, ``repeat_ratio``, ``run_z`` and ``sustained_z`` on four of NAB's categories and
scores the fifth with them, in turn (:mod:`clicklab.holdout`); the NAB score (standard profile) of
all those held-out decisions together is the estimate for series the rule was not tuned on, 68.2,
against 69.6 for the defaults on the same 42 series (in-sample: they were chosen there) and 66.1 for
the rule before issue 23 (whose own held-out figure was 62.9 to 64.7). ``refractory`` and the bound
``run_z <= 5`` come from the lab's replay, not from NAB: with the ``lab`` preset longer quiet periods
or stricter runs report the click drop late. These are figures on NAB's series, not a guarantee on
others.

>>> t = AdaptiveThreshold()
>>> [t.update("s", x).is_anomaly for x in (0.8, 0.9, 0.7, 2.6, 0.8, 2.4, 2.5, 0.8, 0.9, 7.0)]
[False, False, False, False, False, False, True, False, False, False]
>>> t.update("s", 0.9)[:2]  # within the refractory period of the run's anomaly: (is_anomaly, threshold)
(False, inf)
>>> t.update("s", 7.5)[:3]  # ... but over the ceiling, after an anomaly that was not: an escalation (and its grade)
(True, 7.2, 1.0)
>>> t = AdaptiveThreshold(refractory=0)
>>> [t.update("s", x).is_anomaly for x in (0.8, 0.9, 0.7, 2.6, 0.8, 2.4, 2.5, 0.8, 7.5)]
[False, False, False, False, False, False, True, False, True]
>>> t.update("s", 0.9)[:2]  # the row after an unusual one: judged against the run level, 2
(False, 2.0)
>>> t.update("s", 7.0)[:2]  # after the 7.5, a spike must clear 2 x 7.5, but never more than the ceiling
(False, 7.2)

With the scored value (a CTR), a decision also says what was usual for the key before the row:

>>> t = AdaptiveThreshold()
>>> for ctr in (8.0, 10.0, 9.0, 11.0, 7.0, 9.0):
...     _ = t.update("site", 0.9, value=ctr)
>>> d = t.update("site", 6.48, value=500.0)  # the lab's burst
>>> d.is_anomaly, round(d.grade, 2), round(d.expected, 1), round(d.low, 1), round(d.high, 1)
(True, 0.89, 9.0, 6.4, 11.6)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple


class Decision(NamedTuple):
    """Whether a score is an anomaly, the threshold it was compared with (for plots), and what it says.

    ``threshold`` is ``inf`` while the key warms up (nothing is an anomaly then). ``grade`` is 0 for a row
    that is not an anomaly, else how far its score is from the key's ordinary score toward the ceiling
    (0-1, :meth:`AdaptiveThreshold.grade`). ``expected``, ``low`` and ``high`` are the key's usual value
    and usual range *before* the row (``None`` without a value, or before the key's first ordinary one):
    an exponentially weighted mean of its ordinary values and that mean -/+ :data:`USUAL_Z` standard
    deviations.
    """

    is_anomaly: bool
    threshold: float
    grade: float = 0.0
    expected: float | None = None
    low: float | None = None
    high: float | None = None


#: The usual range is the expected value -/+ this many standard deviations of the key's ordinary values
#: (about 95 % of them for a steady key; a 10-second CTR of a few dozen impressions is close to normal).
USUAL_Z = 2.0


def _check_number(name: str, value: Any, rule: str, ok: Callable[[float], bool]) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not ok(value):
        raise ValueError(f"adaptive threshold parameter {name} must be {rule}, got {value!r}")
    return float(value)


def fixed_threshold(score: float, floor: float) -> bool:
    """The lab's rule: a score strictly over ``floor`` is an anomaly."""
    return score > floor


def _room(value_at_256: float, base: float, sub_sample_size: int) -> float:
    """``base + (value_at_256 - base) * log2(sub_sample_size) / 8``: a margin above the ordinary, rescaled."""
    if isinstance(sub_sample_size, bool) or not isinstance(sub_sample_size, numbers.Integral) or sub_sample_size < 2:
        raise ValueError(f"sub_sample_size must be an integer >= 2, got {sub_sample_size!r}")
    return base + (value_at_256 - base) * math.log2(sub_sample_size) / 8


def spike_ratio_for(sub_sample_size: int, ratio_at_256: float = 6.0) -> float:
    """``spike_ratio`` for a forest of another sample size than the default 256.

    On the AWS scale the highest score (a value cut off at the root of every tree) is about
    ``log2(sub_sample_size)``: 8 for 256, 6 for 64, 3.6 for the lab's 12. What a spike must clear is
    the room *above* the mean, ``spike_ratio - 1`` means, so that room is scaled by
    ``log2(sub_sample_size) / 8``: ``1 + (ratio_at_256 - 1) * log2(sub_sample_size) / 8``, never below 1.
    (Until issue 23 the whole ratio was scaled, 2.7 for 12 samples: with the ``lab`` preset a small
    forest's ordinary scores sit near 1, not 0.8, and that level let lone CTR jumps through as spikes,
    whose refractory periods then hid the replay's click drop for 140 s.)

    >>> spike_ratio_for(256), spike_ratio_for(64), spike_ratio_for(1024), round(spike_ratio_for(12), 2)
    (6.0, 4.75, 7.25, 3.24)
    """
    return max(1.0, _room(ratio_at_256, 1.0, sub_sample_size))


def options_for(sub_sample_size: int, spike_ratio: float = 6.0, spike_floor: float = 5.0, run_z: float = 5.0,
                z: float = 3.0, spike_ceiling: float = 7.2) -> dict[str, float]:
    """The options that depend on the forest's sample size, from their values for 256 samples (the defaults).

    Each is a margin above the ordinary, scaled like :func:`spike_ratio_for` (the highest score is about
    ``log2(sub_sample_size)``): ``spike_ratio`` above 1 mean, ``spike_floor`` above a score of 1, and
    ``run_z`` above ``z`` standard deviations; ``spike_ceiling``, a share of the highest score, in proportion to
    ``log2(sub_sample_size)``. The lab's 12 samples: 3.24, 2.79, 3.90 and 3.23 (its burst scores about 3.65).

    >>> {k: round(v, 2) for k, v in options_for(12).items()}
    {'spike_ratio': 3.24, 'spike_floor': 2.79, 'run_z': 3.9, 'spike_ceiling': 3.23}
    >>> options_for(256)
    {'spike_ratio': 6.0, 'spike_floor': 5.0, 'run_z': 5.0, 'spike_ceiling': 7.2}
    """
    return {"spike_ratio": spike_ratio_for(sub_sample_size, spike_ratio),
            "spike_floor": max(0.0, _room(spike_floor, 1.0, sub_sample_size)) if spike_floor > 1 else spike_floor,
            "run_z": max(z, _room(run_z, z, sub_sample_size)) if run_z > z else run_z,
            "spike_ceiling": _room(spike_ceiling, 0.0, sub_sample_size)}


class _KeyState:
    """What the threshold remembers of one key."""

    __slots__ = ("avg", "avg_mean", "avg_n", "avg_var", "bar", "mean", "n", "peak", "previous_over", "quiet",
                 "value_mean", "value_n", "value_var", "var")

    def __init__(self) -> None:
        self.n = 0  # ordinary scores learned
        self.mean = 0.0
        self.var = 0.0
        self.previous_over = False
        self.avg_n = 0  # rows in the short average's long mean and deviation
        self.avg = 0.0  # the short average of capped scores
        self.avg_mean = 0.0
        self.avg_var = 0.0
        self.quiet = 0  # refractory rows left
        self.bar = 0.0  # what a spike must clear after an anomaly (repeat_ratio x its score, decaying)
        self.peak = 0.0  # the score of the last anomaly (an escalation tops the ceiling after one that did not)
        self.value_n = 0  # ordinary values learned (rows with a value: warming up, or at or under the level)
        self.value_mean = 0.0
        self.value_var = 0.0


class AdaptiveThreshold:
    """A per-key adaptive threshold over a fixed floor (see the module docstring)."""

    def __init__(self, floor: float = 2.0, z: float = 3.0, spike_ratio: float = 6.0, alpha: float = 0.003,
                 smoothing: float = 0.05, sustained_z: float = 4.0, refractory: int = 30, run_z: float = 5.0,
                 spike_floor: float = 5.0, repeat_ratio: float = 2.0, spike_ceiling: float = 7.2) -> None:
        self.floor = _check_number("floor", floor, "a finite number > 0", lambda v: v > 0)
        self.z = _check_number("z", z, "a finite number >= 0", lambda v: v >= 0)
        self.spike_ratio = _check_number("spike_ratio", spike_ratio, "a finite number >= 1", lambda v: v >= 1)
        self.alpha = _check_number("alpha", alpha, "a number in (0, 1]", lambda v: 0 < v <= 1)
        self.smoothing = _check_number("smoothing", smoothing, "a number in (0, 1]", lambda v: 0 < v <= 1)
        self.sustained_z = _check_number("sustained_z", sustained_z, "a finite number >= 0", lambda v: v >= 0)
        if (isinstance(refractory, bool) or not isinstance(refractory, numbers.Real) or not math.isfinite(refractory)
                or refractory != int(refractory) or refractory < 0):
            raise ValueError(f"adaptive threshold parameter refractory must be an integer >= 0, got {refractory!r}")
        self.refractory = int(refractory)
        self.run_z = _check_number("run_z", run_z, "a finite number >= 0", lambda v: v >= 0)
        self.spike_floor = _check_number("spike_floor", spike_floor, "a finite number >= 0", lambda v: v >= 0)
        self.repeat_ratio = _check_number("repeat_ratio", repeat_ratio, "a finite number >= 0", lambda v: v >= 0)
        self.spike_ceiling = _check_number("spike_ceiling", spike_ceiling, "a finite number >= 0", lambda v: v >= 0)
        #: rows of the short average before a sustained change can be reported
        self.sustained_after = math.ceil(2.0 / self.smoothing)
        self._keys: dict[str, _KeyState] = {}

    def levels(self, key: str) -> tuple[float, float]:
        """``(level, spike level)`` the key's next row will be judged against (before learning it)."""
        state = self._keys.get(key)
        if state is None or state.n == 0:
            return self.floor, math.inf
        level = max(self.floor, state.mean + self.z * math.sqrt(state.var))
        spike_level = max(level, self.spike_ratio * state.mean, self.spike_floor, state.bar)
        if self.spike_ceiling > 0:
            spike_level = max(self.floor, min(spike_level, self.spike_ceiling))
        return level, spike_level

    def run_level(self, key: str) -> float:
        """What the key's next row must be over to end a run (the row before it over its level)."""
        state = self._keys.get(key)
        if state is None or state.n == 0:
            return self.floor
        return max(self.floor, state.mean + self.run_z * math.sqrt(state.var))

    def mean(self, key: str) -> float:
        """The key's mean ordinary score so far (0 before its first): what :meth:`grade` measures from."""
        state = self._keys.get(key)
        return 0.0 if state is None else state.mean

    def grade(self, mean: float, score: float) -> float:
        """How unusual an anomaly's ``score`` is, 0-1: its distance from the key's mean ordinary score ``mean``
        toward the top (the ceiling, 90 % of the highest score the forest gives; without a ceiling the higher of
        the floor and ``spike_floor``), capped at 1.

        A grade says how sure the alert is on the forest's own scale: a run just over its level grades 0.2-0.4,
        the lab's 500 % burst (6.5 against a mean of 1, ceiling 7.2) 0.9.

        >>> round(AdaptiveThreshold().grade(1.0, 6.48), 2), AdaptiveThreshold().grade(1.0, 9.0)
        (0.88, 1.0)
        """
        top = self.spike_ceiling if self.spike_ceiling > 0 else max(self.floor, self.spike_floor)
        if top <= mean:
            return 1.0
        return min(1.0, max(0.0, (score - mean) / (top - mean)))

    def update(self, key: str, score: float, warming_up: bool = False, value: float | None = None) -> Decision:
        """Decide whether ``score`` is an anomaly for ``key``, then learn it.

        ``threshold`` is what the row's own score was compared with (the spike level, or after a row over
        its level the lower of the run and spike levels), ``inf`` during a refractory period; a sustained
        change is flagged on its average, whatever the score. ``value`` (the scored value, e.g. the CTR) gives
        the decision the key's usual value and range before the row; it is learned when the row is ordinary
        (at or under the level) or warming up, so an anomaly never becomes what is usual.
        """
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)
                                  or not math.isfinite(value)):
            raise ValueError(f"adaptive threshold: key {key!r}: value {value!r} is not a finite number")
        if warming_up:
            if value is None:
                return Decision(False, math.inf)
            state = self._keys.get(key)
            if state is None:
                state = self._keys[key] = _KeyState()
            usual = _usual(state)
            _learn_value(state, float(value), self.alpha)
            return Decision(False, math.inf, 0.0, *usual)
        if isinstance(score, bool) or not isinstance(score, numbers.Real) or not math.isfinite(score):
            raise ValueError(f"adaptive threshold: key {key!r}: score {score!r} is not a finite number")
        score = float(score)
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState()
        usual = _usual(state) if value is not None else (None, None, None)
        mean = state.mean
        level, spike_level = self.levels(key)
        threshold = min(self.run_level(key), spike_level) if state.previous_over else spike_level
        state.previous_over = score > level
        if not state.previous_over:  # ordinary: learn it
            state.n += 1
            weight = max(self.alpha, 1.0 / state.n)
            delta = score - state.mean
            state.mean += weight * delta
            state.var = (1.0 - weight) * (state.var + weight * delta * delta)
            if value is not None:
                _learn_value(state, float(value), self.alpha)
        capped = min(score, self.floor)
        state.avg = capped if state.avg_n == 0 else state.avg + self.smoothing * (capped - state.avg)
        one_score = 1.5 * self.smoothing * (self.floor - state.avg_mean)  # half again what one score adds
        sustained = (state.avg_n >= self.sustained_after
                     and state.avg - state.avg_mean > max(self.sustained_z * math.sqrt(state.avg_var), one_score))
        state.avg_n += 1
        weight = max(self.alpha, 1.0 / state.avg_n)
        delta = state.avg - state.avg_mean
        state.avg_mean += weight * delta
        state.avg_var = (1.0 - weight) * (state.avg_var + weight * delta * delta)
        if state.bar > self.floor:  # the bar after an anomaly sinks back to the floor at the long memory's pace
            state.bar = self.floor + (state.bar - self.floor) * (1.0 - self.alpha)
        if state.quiet > 0:
            state.quiet -= 1
            if not 0 < self.spike_ceiling < score or state.peak > self.spike_ceiling:
                return Decision(False, math.inf, 0.0, *usual)
            anomaly, threshold = True, self.spike_ceiling  # an escalation
        else:
            anomaly = score > threshold or sustained
        if anomaly:
            state.quiet = self.refractory
            state.peak = score
            state.bar = max(state.bar, self.repeat_ratio * score)
        return Decision(anomaly, threshold, self.grade(mean, score) if anomaly else 0.0, *usual)

    def keys(self) -> list[str]:
        """The keys seen after their warm-up, in order of first appearance."""
        return [key for key, state in self._keys.items() if state.avg_n > 0]

    def __len__(self) -> int:
        return len(self.keys())


def _usual(state: _KeyState) -> tuple[float | None, float | None, float | None]:
    """The key's expected value and usual range (``None`` before its first ordinary value)."""
    if state.value_n == 0:
        return None, None, None
    spread = USUAL_Z * math.sqrt(state.value_var)
    return state.value_mean, state.value_mean - spread, state.value_mean + spread


def _learn_value(state: _KeyState, value: float, alpha: float) -> None:
    """Learn an ordinary value into the key's exponentially weighted mean and variance (the scores' weights)."""
    state.value_n += 1
    weight = max(alpha, 1.0 / state.value_n)
    delta = value - state.value_mean
    state.value_mean += weight * delta
    state.value_var = (1.0 - weight) * (state.value_var + weight * delta * delta)
