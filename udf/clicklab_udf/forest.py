"""A streaming Random Cut Forest per key: the scorer behind the lab's ``RANDOM_CUT_FOREST``.

Algorithm
---------
The Robust Random Cut Forest of S. Guha, N. Mishra, G. Roy and O. Schrijvers, *Robust Random Cut
Forest Based Anomaly Detection on Streams*, ICML 2016 (the algorithm behind Kinesis Data
Analytics' ``RANDOM_CUT_FOREST``). Each key (in the lab: each site) has its own forest, which scores
every incoming value and then learns it.

Terms
-----
* **tree** (random cut tree): a binary tree over a set of points. Each internal node cuts the points
  with a random hyperplane ``x[d] <= p``, the dimension ``d`` chosen with probability proportional
  to the side of the points' bounding box and ``p`` uniform over it. Points that are easy to cut
  off from the rest end up near the root.
* **sample**: the points one tree holds, at most ``sub_sample_size``. Over a stream, a tree keeps
  a random sample: ``aws`` maintains a time-decayed reservoir (recent points are favoured by a factor
  ``exp(t / time_decay)``), ``rrcf`` a sliding window of the latest points (first in, first out).
* **displacement**: for a point ``x`` inserted into a tree, how many leaves change depth, i.e. the
  size of the sibling subtree where ``x`` was cut off. **CoDisp** (collusive displacement) takes the
  largest ratio ``sibling size / subtree size`` over ``x``'s ancestors, so that a small group of
  similar outliers cannot hide each other. ``rrcf`` scores CoDisp averaged over the trees; AWS's
  library scores a normalised descendant of it (from the depth at which ``x`` would be cut off and
  the number of points there, averaged over the trees and scaled by ``log2(sub_sample_size)``).
* **shingle**: the last ``shingle_size`` values of a key taken together as one point, so that an
  unusual *shape* (a jump, a missing dip) stands out even when every single value is ordinary.
  ``shingle_size=1`` scores each value on its own, as the lab does.

Units: one value per call, e.g. one click-through rate (percent) per site and 10-second window. The
score is dimensionless. On the ``aws`` backend it is AWS's normalised scale: about 1 (0.6-1.2) for
ordinary values and more than 2 for values that deserve attention, 5-8 for a value far outside
everything in the sample (the lab's threshold is 2). The ``rrcf`` backend's CoDisp is on another
scale; see *Backends*.

Semantics
---------
:meth:`KeyedForests.score` does, exactly once per call: check the value, **score** it against the
key's forest as it is, **then insert** it (score-then-update; a value never counts as its own
history). While a key warms up (its first ``warmup`` values) the result is ``Scored(0.0, True)``:
the lab's ``0`` while warming up, with a flag so that a real score is never confused with it. Each
key's forest is seeded from ``(seed, key)`` with a stable hash (BLAKE2b, not Python's per-process
salted ``hash``), so a key gets the same scores whether other keys are interleaved with it or not,
in any process. A NaN, infinite or non-numeric value (``None``, a string, a boolean) raises
``ValueError`` naming the key, the time and the value: it is never scored as 0.

Parameters (:class:`ForestParams`)
----------------------------------
Names and defaults follow Kinesis Data Analytics' ``RANDOM_CUT_FOREST(inputStream, numberOfTrees,
subSampleSize, timeDecay, shingleSize)``; every parameter is checked (``ValueError`` names it).

================ ======== ==========================================================================
parameter        default  meaning (range)
================ ======== ==========================================================================
number_of_trees  100      trees per forest (>= 1). More trees: steadier scores, proportionally slower.
sub_sample_size  256      points each tree holds (>= 2): how much history "normal" is judged
                          against. Scores need about this many points to settle.
time_decay       100000   KDA's ``timeDecay``: how many recent points the sample draws from, as a
                          number of points (>= 0). ``aws`` passes ``lambda = 1 / time_decay`` to
                          AWS's library, whose sampler keeps a point for about ``1 / lambda``
                          steps, so the sample is spread over roughly the last ``time_decay``
                          points; ``0`` means no decay (a uniform sample of the whole stream).
                          AWS's library alone defaults to ``lambda = 1 / (10 * sub_sample_size)``,
                          i.e. ``time_decay=2560``. ``rrcf`` ignores it (its window is the last
                          ``sub_sample_size`` points).
shingle_size     1        values per point (>= 1), see *shingle*.
seed             42       random seed (any integer). Same seed and key: same scores.
warmup           None     values a key must have seen before its scores are emitted (>= 0); until
                          then ``Scored(0.0, True)``. ``None``: follow the sample size as AWS's
                          library does (its ``outputAfter`` default): ``1 + sub_sample_size // 4``
                          values (65 for 256 samples, 4 for the SQL lab's 12). A key also warms up
                          while its first shingle fills (``shingle_size - 1`` values).
backend          "compact" ``"compact"``: the compact forest of the keyed ``RANDOM_CUT_FOREST``
                          (:mod:`clicklab_udf.compact`, the twin of ``CompactForest.java``; seeded
                          as the Java function seeds a key, so the same scores as the pipeline's);
                          ``"aws"``: AWS's Random Cut Forest (the ``krcf`` package, Rust; the same
                          algorithm as AWS's Java library, checked by the tests);
                          ``"rrcf"``: the pure-Python ``rrcf`` library (about 200x slower);
                          ``"java"``: AWS's Java library in a Java Flink function (``udf/java``),
                          in Flink jobs only (``KeyedForests`` refuses it).
================ ======== ==========================================================================

Why the warm-up follows the sample size: a forest's scores mean something once each tree holds a
fair part of its sample; AWS's library starts emitting after a quarter of it (``outputAfter``), and
so do we by default. With 256 samples that is 65 windows of 10 seconds (11 minutes) per key; with the
SQL lab's 12 samples, 4 windows (40 seconds), which is what lets the live lab score a burst sent two
minutes after it started. A longer ``warmup`` (e.g. ``warmup=256``, a full sample) makes early scores
steadier; ``clicklab run`` prints the false alarms after warm-up on the replay for the setting used.

Backends
--------
``compact`` (default) is what the keyed pipeline runs, on AWS's scale (see :mod:`clicklab_udf.compact`).
``aws`` is AWS's own algorithm, what the lab's threshold of 2 was made for. ``rrcf`` is the library of
Bartos et al. (``rrcf`` on PyPI): a forest of ``number_of_trees`` ``RCTree``, each over a sliding
window of the last ``sub_sample_size`` shingles (first in, first out, as in rrcf's streaming
example), each tree drawing its cuts from its own seeded generator. A value is inserted into every
tree, scored with CoDisp there, i.e. by the displacement it causes among the window of the previous
values (its score against the forest as it was), and the oldest point is then forgotten. The score
is the CoDisp averaged over the trees, which is **not** on the AWS scale: CoDisp counts points, so it
grows with the sample size (up to about ``sub_sample_size``). Measured with 100 trees x 256 samples
on the CTR streams of two replays of the lab scenario (three sites, 1,392 scores after warm-up
each): ordinary values score a median of 4.4 (AWS: 0.72); the rrcf threshold that flags as many
values as AWS's ``score > 2`` (2.2 % of them) is 40-46, so about 43 stands for AWS's 2 there; the
500 % bursts score about 250. On the noisy sine of ``tests/test_forest_vs_java.py``: median 4.2,
equivalent of 2 about 45, its spikes 185-210. The two backends rank values alike only loosely
(Spearman 0.61-0.68 on these streams), so compare rrcf scores with each other (ranks, a quantile of
the key's own scores), not with 2. Speed, one key, 100 trees x 256 samples, in process: ``aws``
about 12,000-14,000 values per second, ``rrcf`` about 65-80 (about 200 times slower).

Example
-------
>>> forests = KeyedForests(ForestParams(number_of_trees=30, sub_sample_size=64, warmup=64))
>>> first = [forests.score("https://www.mysite.com", 10.0 + (i % 5)) for i in range(200)]
>>> first[0], first[63].warming_up, first[64].warming_up
(Scored(score=0.0, warming_up=True), True, False)
>>> 0.3 < forests.score("https://www.mysite.com", 12.0).score < 2
True
>>> forests.score("https://www.mysite.com", 500.0).score > 2
True
>>> forests.keys(), len(forests)
(['https://www.mysite.com'], 1)
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

import numpy as np

#: The scorers :class:`KeyedForests` runs in this process.
BACKENDS = ("compact", "aws", "rrcf")

#: The scorers :class:`ForestParams` accepts: also ``java``, AWS's Java library in a Java Flink function
#: (the jar of ``udf/java``, see :mod:`clicklab.javaudf`), which runs only inside Flink.
ALL_BACKENDS = (*BACKENDS, "java")


@dataclass(frozen=True)
class ForestParams:
    """Parameters of every key's forest; see the module docstring for meanings and ranges.

    Invalid values raise ``ValueError`` naming the parameter and the value.
    """

    number_of_trees: int = 100
    sub_sample_size: int = 256
    time_decay: float = 100_000.0
    shingle_size: int = 1
    seed: int = 42
    warmup: int | None = None
    backend: str = "compact"

    def __post_init__(self) -> None:
        if self.warmup is None:
            object.__setattr__(self, "warmup", 1 + int(self.sub_sample_size) // 4 if _is_integer(self.sub_sample_size)
                               else 0)
        for name, low in (("number_of_trees", 1), ("sub_sample_size", 2), ("shingle_size", 1), ("warmup", 0)):
            value = getattr(self, name)
            if not _is_integer(value) or value < low:
                raise ValueError(f"RANDOM_CUT_FOREST parameter {name} must be an integer >= {low}, got {value!r}")
            object.__setattr__(self, name, int(value))
        if not _is_integer(self.seed):
            raise ValueError(f"RANDOM_CUT_FOREST parameter seed must be an integer, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))
        decay = self.time_decay
        if not _is_real(decay) or not math.isfinite(decay) or decay < 0:
            raise ValueError(f"RANDOM_CUT_FOREST parameter time_decay must be a finite number >= 0, got {decay!r}")
        object.__setattr__(self, "time_decay", float(decay))
        if self.backend not in ALL_BACKENDS:
            raise ValueError(
                f"RANDOM_CUT_FOREST parameter backend must be one of {', '.join(map(repr, ALL_BACKENDS))}, "
                f"got {self.backend!r}"
            )

    @classmethod
    def preset(cls, name: str = "default", **overrides: Any) -> ForestParams:
        """A named parameter set (:data:`PRESETS`), with ``overrides`` on top.

        >>> ForestParams.preset("lab").sub_sample_size, ForestParams.preset("lab").warmup
        (12, 4)
        """
        if name not in PRESETS:
            raise ValueError(f"RANDOM_CUT_FOREST parameter set {name!r}: choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @property
    def warmup_points(self) -> int:
        """Values a key sees before its first emitted score: ``warmup``, at least a full shingle."""
        return max(self.warmup, self.shingle_size - 1)


#: Named parameter sets. ``default``: Kinesis Data Analytics' defaults (100 trees, 256 samples, time decay
#: 100000, shingle 1). ``lab``: what the SQL lab passes, ``RANDOM_CUT_FOREST(CURSOR(...), 100, 12, 100000, 1)``:
#: a 12-point sample, so a forest scores after 4 windows (the live lab uses it).
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "lab": {"number_of_trees": 100, "sub_sample_size": 12, "time_decay": 100_000.0, "shingle_size": 1},
}


class Scored(NamedTuple):
    """The score of one value, and whether its key was still warming up (then the score is 0.0)."""

    score: float
    warming_up: bool


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def key_seed(seed: int, key: str) -> int:
    """The random seed of ``key``'s forest: stable across processes (BLAKE2b of seed and key), 63 bits."""
    digest = hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def aws_options(params: ForestParams, seed: int) -> dict[str, Any]:
    """The ``krcf.RandomCutForest`` options of one key's forest on the ``aws`` backend."""
    return {
        "dimensions": 1,  # one value per call; with internal shingling krcf builds the shingle itself
        "shingle_size": params.shingle_size,
        "internal_shingling": True,
        "num_trees": params.number_of_trees,
        "sample_size": params.sub_sample_size,
        "lambda": 1.0 / params.time_decay if params.time_decay > 0 else 0.0,
        "output_after": 1,  # the warm-up is ours (KeyedForests), not the library's
        "random_seed": seed,
        "parallel_execution_enabled": False,
    }


class _AwsForest:
    """AWS's Random Cut Forest (krcf), internal shingling."""

    def __init__(self, params: ForestParams, seed: int) -> None:
        import krcf

        self._forest = krcf.RandomCutForest(aws_options(params, seed))
        self._point = [0.0]

    def score_then_update(self, value: float) -> float:
        self._point[0] = value
        score = float(self._forest.score(self._point))
        self._forest.update(self._point)
        return score

    def update(self, value: float) -> None:
        """Insert without scoring (a warming-up key's score is not emitted; scoring changes nothing)."""
        self._point[0] = value
        self._forest.update(self._point)


def java_key_seed(seed: int, key: str) -> int:
    """The seed the Java functions give ``key``'s forest (``KeyedForests.keySeed``): SHA-256, 63 bits."""
    digest = hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class _CompactForest:
    """The compact forest (:mod:`clicklab_udf.compact`), seeded as the keyed Java function seeds it."""

    def __init__(self, params: ForestParams, seed: int) -> None:
        from clicklab_udf.compact import CompactForest

        self._forest = CompactForest(params.number_of_trees, params.sub_sample_size, params.time_decay,
                                     params.shingle_size, 1, seed)

    def score_then_update(self, value: float) -> float:
        return self._forest.score_then_update(value)

    def update(self, value: float) -> None:
        self._forest.score_then_update(value)  # the same state as scoring: the sample is all it keeps


class _RrcfForest:
    """The rrcf library: each tree over a sliding window of shingles; score = mean CoDisp."""

    def __init__(self, params: ForestParams, seed: int) -> None:
        import rrcf

        tree_seeds = np.random.SeedSequence(seed).generate_state(params.number_of_trees)
        # each tree draws its cuts from its own generator, never from numpy's global one
        self._trees = [rrcf.RCTree(random_state=np.random.RandomState(int(s))) for s in tree_seeds]
        self._window = params.sub_sample_size
        self._shingle: deque[float] = deque(maxlen=params.shingle_size)
        self._index = 0

    def score_then_update(self, value: float) -> float:
        self._shingle.append(value)
        if len(self._shingle) < self._shingle.maxlen:
            return 0.0
        point = np.fromiter(self._shingle, dtype=float, count=len(self._shingle))
        index, oldest = self._index, self._index - self._window
        total = 0.0
        for tree in self._trees:
            tree.insert_point(point, index=index)
            total += tree.codisp(index)  # the displacement it causes among the previous window
            if oldest >= 0:
                tree.forget_point(oldest)
        self._index += 1
        return total / len(self._trees)

    def update(self, value: float) -> None:
        self.score_then_update(value)  # rrcf's insert and forget are what cost; CoDisp is cheap


def check_value(value: Any, key: str, time: Any = None, key_name: str = "site") -> float:
    """``value`` as a float, or ``ValueError`` naming the key and time if it is not a finite number."""
    if _is_real(value) or isinstance(value, Decimal):  # Flink hands DECIMAL columns over as Decimal
        number = float(value)
        if math.isfinite(number):
            return number
    where = f"{key_name} {key!r}" + (f" at {time}" if time is not None else "")
    raise ValueError(f"RANDOM_CUT_FOREST: {where}: value {value!r} is not a finite number")


class KeyedForests:
    """One streaming Random Cut Forest per key, created on the key's first value.

    ``key_name`` only names keys in error messages (the lab's keys are sites).
    """

    def __init__(self, params: ForestParams | None = None, key_name: str = "site") -> None:
        self.params = params if params is not None else ForestParams()
        if self.params.backend == "java":
            raise ValueError(
                "RANDOM_CUT_FOREST backend 'java' runs only inside Flink (the Java function of "
                "build/udf/clickstream-rcf-udf.jar, registered by clicklab.udfs.register); "
                "in this process use backend 'aws', the same algorithm"
            )
        self.key_name = key_name
        self._backend = {"compact": _CompactForest, "aws": _AwsForest, "rrcf": _RrcfForest}[self.params.backend]
        self._forests: dict[str, _CompactForest | _AwsForest | _RrcfForest] = {}
        self._seen: dict[str, int] = {}

    def score(self, key: str, value: Any, time: Any = None) -> Scored:
        """Score ``value`` against ``key``'s forest, then insert it; ``time`` only names the row in errors."""
        number = check_value(value, key, time, self.key_name)
        forest = self._forests.get(key)
        if forest is None:
            seed = (java_key_seed if self.params.backend == "compact" else key_seed)(self.params.seed, key)
            forest = self._forests[key] = self._backend(self.params, seed)
            self._seen[key] = 0
        self._seen[key] += 1
        if self._seen[key] <= self.params.warmup_points:
            forest.update(number)  # the score would be dropped: only learn the value
            return Scored(0.0, True)
        return Scored(forest.score_then_update(number), False)

    def score_many(
        self, keys: Sequence[str], values: Sequence[Any], times: Sequence[Any] | None = None,
    ) -> list[Scored]:
        """:meth:`score` for a batch of rows, returned in the rows' order; the same results as row by row.

        Rows are taken key by key (each key's rows in their order), so that one forest's memory is
        used for several rows in a row: with a hundred keys interleaved, each forest is cold in the
        CPU cache at every row, and this is 2-3 times faster (``clicklab bench``). Forests of
        different keys never share anything, so the order across keys does not change any score.
        """
        if len(keys) != len(values) or (times is not None and len(times) != len(values)):
            raise ValueError(f"score_many: {len(keys)} keys, {len(values)} values"
                             + ("" if times is None else f", {len(times)} times") + ": lengths differ")
        rows_of: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            rows_of.setdefault(key, []).append(i)
        out: list[Scored] = [Scored(0.0, True)] * len(values)
        for key, rows in rows_of.items():
            for i in rows:
                out[i] = self.score(key, values[i], None if times is None else times[i])
        return out

    def seen(self, key: str) -> int:
        """How many values ``key`` has been scored on (0 for a key never seen)."""
        return self._seen.get(key, 0)

    def keys(self) -> list[str]:
        """The keys that have a forest, in order of first appearance."""
        return list(self._forests)

    def __len__(self) -> int:
        return len(self._forests)

    def __contains__(self, key: object) -> bool:
        return key in self._forests
