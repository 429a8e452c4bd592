"""A streaming Random Cut Forest per key: the scorer behind ``RANDOM_CUT_FOREST``.

The algorithm is the Robust Random Cut Forest of Guha, Mishra, Roy and Schrijvers, *Robust Random
Cut Forest Based Anomaly Detection on Streams*, ICML 2016, as used by Kinesis Data Analytics.

Terms:

* **tree**: a random cut tree built on a *sample* of the stream's points; each internal node cuts
  one dimension at a random value (dimensions chosen in proportion to their range).
* **sample**: the points a tree keeps (``sub_sample_size`` of them), maintained by time-decayed
  reservoir sampling: a new point replaces an old one with a probability that favours recent points.
* **displacement**: how many points of a tree would move if a point were inserted; a point that is
  easy to isolate displaces much. The **anomaly score** is the forest's average of the (collusive)
  displacement, normalised so that on the AWS scale ordinary points score about 1 and points that
  deserve attention more than 2 (the lab's threshold).
* **shingle**: ``shingle_size`` consecutive values scored together as one point, so that an unusual
  *shape* (not only an unusual value) stands out. Units: one value per row, e.g. one CTR (percent)
  per 10-second window.

Each value is first **scored** against the forest as it is, **then inserted** (score-then-update),
exactly once per call. Each key (site) has its own forest, seeded from ``(seed, key)`` with a stable
hash, so a key gets the same scores whether or not other keys are interleaved with it.

Parameters (:class:`ForestParams`; names and defaults as in Kinesis Data Analytics'
``RANDOM_CUT_FOREST(..., numberOfTrees, subSampleSize, timeDecay, shingleSize)``):

============== ============ ===================================================================
parameter      default      meaning and range
============== ============ ===================================================================
number_of_trees 100         trees per forest, 1-1000; more trees give steadier scores, cost time
sub_sample_size 256         points each tree keeps, >= 2: how much history "normal" is judged on
time_decay     100000       the sampler forgets with rate 1/time_decay per point (KDA's timeDecay,
                            > 0): larger remembers longer; 0 keeps a plain uniform reservoir
shingle_size   1            consecutive values per point, 1-64
seed           42           random seed: same seed, same scores
warmup         256          points a key must have seen before scores are emitted, >= 0;
                            meanwhile the score is 0.0 and ``warming_up`` is True
backend        "aws"        "aws": AWS's Random Cut Forest (the ``krcf`` package, Rust), AWS scale;
                            "rrcf": the pure-Python ``rrcf`` library (about 200x slower)
============== ============ ===================================================================

The ``rrcf`` backend reports CoDisp averaged over the trees: its scale grows with the sample size and
is not the AWS scale. Normal points score a few units there; see :data:`RRCF_THRESHOLD_NOTE`.

Example::

    >>> forests = KeyedForests(ForestParams(number_of_trees=20, sub_sample_size=64, warmup=32))
    >>> scores = [forests.score("site", 10.0 + (i % 7) * 0.1).score for i in range(200)]
    >>> scores[0], forests.score("site", 10.3).warming_up
    (0.0, False)
    >>> forests.score("site", 90.0).score > 2
    True
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple

BACKENDS = ("aws", "rrcf")

RRCF_THRESHOLD_NOTE = (
    "rrcf's CoDisp is not on the AWS scale: with 100 trees x 256 samples, ordinary points of a noisy "
    "series score around 5-15 and clear anomalies several times that; use a threshold relative to the "
    "series' own scores (the adaptive threshold's spike ratio), not the AWS value 2."
)


@dataclass(frozen=True)
class ForestParams:
    """Parameters of every key's forest (see the module docstring for meanings and ranges)."""

    number_of_trees: int = 100
    sub_sample_size: int = 256
    time_decay: float = 100_000.0
    shingle_size: int = 1
    seed: int = 42
    warmup: int = 256
    backend: str = "aws"

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ValueError(f"RANDOM_CUT_FOREST parameter {name} must be {rule}, got {getattr(self, name)!r}")

        def is_int(name: str) -> bool:
            value = getattr(self, name)
            return isinstance(value, int) and not isinstance(value, bool)

        need(is_int("number_of_trees") and 1 <= self.number_of_trees <= 1000, "number_of_trees", "an integer 1-1000")
        need(is_int("sub_sample_size") and self.sub_sample_size >= 2, "sub_sample_size", "an integer >= 2")
        need(is_int("shingle_size") and 1 <= self.shingle_size <= 64, "shingle_size", "an integer 1-64")
        need(is_int("warmup") and self.warmup >= 0, "warmup", "an integer >= 0")
        need(is_int("seed"), "seed", "an integer")
        need(isinstance(self.time_decay, int | float) and not isinstance(self.time_decay, bool)
             and math.isfinite(self.time_decay) and self.time_decay >= 0, "time_decay", "a number >= 0")
        need(self.backend in BACKENDS, "backend", f"one of {', '.join(BACKENDS)}")


class Scored(NamedTuple):
    """The score of one value, and whether its key was still warming up (then the score is 0.0)."""

    score: float
    warming_up: bool


def key_seed(seed: int, key: str) -> int:
    """A stable 31-bit seed for one key (Python's ``hash`` is salted per process, so not that)."""
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


class _AwsForest:
    """AWS's Random Cut Forest (krcf) with internal shingling."""

    def __init__(self, params: ForestParams, seed: int) -> None:
        import krcf

        options: dict[str, Any] = {
            "dimensions": 1,  # one value per row; krcf multiplies by the shingle size itself
            "shingle_size": params.shingle_size,
            "num_trees": params.number_of_trees,
            "sample_size": params.sub_sample_size,
            "output_after": 1,
            "random_seed": seed,
            "internal_shingling": True,
            "lambda": 1.0 / params.time_decay if params.time_decay > 0 else 0.0,
        }
        self.forest = krcf.RandomCutForest(options)

    def score_then_update(self, value: float) -> float:
        point = [value]
        score = float(self.forest.score(point))
        self.forest.update(point)
        return score


class _RrcfForest:
    """The rrcf library: trees over a sliding window of shingles; score = mean CoDisp over trees."""

    def __init__(self, params: ForestParams, seed: int) -> None:
        import numpy as np
        import rrcf

        self.np = np
        self.size = params.sub_sample_size
        self.shingle: deque[float] = deque(maxlen=params.shingle_size)
        state = np.random.get_state()
        np.random.seed(seed)  # rrcf draws its cuts from numpy's global generator
        self.trees = [rrcf.RCTree() for _ in range(params.number_of_trees)]
        self.rng_state = np.random.get_state()
        np.random.set_state(state)
        self.index = 0

    def score_then_update(self, value: float) -> float:
        np = self.np
        self.shingle.append(value)
        if len(self.shingle) < self.shingle.maxlen:
            return 0.0
        point = np.array(self.shingle, dtype=float)
        saved = np.random.get_state()
        np.random.set_state(self.rng_state)
        try:
            total = 0.0
            for tree in self.trees:
                if len(tree.leaves) >= self.size:
                    tree.forget_point(self.index - self.size)
                tree.insert_point(point, index=self.index)
                # score-then-update: CoDisp of the new point measured with it just inserted is the
                # displacement it causes against the sample as it was (rrcf has no query-only CoDisp)
                total += tree.codisp(self.index) if len(tree.leaves) > 1 else 0.0
            self.rng_state = np.random.get_state()
        finally:
            np.random.set_state(saved)
        self.index += 1
        return total / len(self.trees)


def _check_value(value: Any, key: str, time: Any) -> float:
    where = f"site {key!r}" + (f" at {time}" if time is not None else "")
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            import numpy as np

            if isinstance(value, np.number) and not isinstance(value, np.bool_):
                value = float(value)
            else:
                raise TypeError
        except TypeError:
            raise ValueError(f"RANDOM_CUT_FOREST: {where}: value {value!r} is not a number") from None
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"RANDOM_CUT_FOREST: {where}: value {value} is not a finite number")
    return value


class KeyedForests:
    """One streaming forest per key, created on the key's first value."""

    def __init__(self, params: ForestParams | None = None) -> None:
        self.params = params or ForestParams()
        self._forests: dict[str, _AwsForest | _RrcfForest] = {}
        self._seen: dict[str, int] = {}

    def score(self, key: str, value: Any, time: Any = None) -> Scored:
        """Score ``value`` against ``key``'s forest, then insert it. Bad values raise ``ValueError``."""
        value = _check_value(value, key, time)
        forest = self._forests.get(key)
        if forest is None:
            backend = _AwsForest if self.params.backend == "aws" else _RrcfForest
            forest = self._forests[key] = backend(self.params, key_seed(self.params.seed, key))
            self._seen[key] = 0
        score = forest.score_then_update(value)
        self._seen[key] += 1
        if self._seen[key] <= self.params.warmup:
            return Scored(0.0, True)
        return Scored(score, False)

    def keys(self) -> list[str]:
        return list(self._forests)

    def __len__(self) -> int:
        return len(self._forests)
