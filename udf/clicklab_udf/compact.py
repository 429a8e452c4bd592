"""A compact streaming Random Cut Forest: one shared sample, implicit trees (the Python twin of ``CompactForest.java``).

Terms (S. Guha, N. Mishra, G. Roy and O. Schrijvers, *Robust Random Cut Forest Based Anomaly Detection on
Streams*, ICML 2016)
-----------------------------------------------------------------------------------------------------------------
* **point**: what is scored and sampled; with *shingling* the last ``shingle_size`` input vectors concatenated
  (oldest first), ``shingle_size * input_dimensions`` values. Until the shingle is full nothing is scored (0.0)
  and nothing is sampled.
* **random cut tree** ``RCT(S)`` over a point multiset ``S``: at a node holding ``P`` with bounding box
  ``B(P)``, a dimension is picked with probability proportional to the side lengths of ``B(P)`` and a cut value
  uniform over that side; points ``<= cut`` go left, the others right; a node whose points are all equal is a
  *leaf* whose *mass* is the number of copies. Here the randomness of tree ``j`` at a node is one uniform ``u =
  hash(seed, j, node)``, the node's identity being a hash of its left/right path from the root; so a tree is a
  pure function of the sample and is **never stored**: scoring ``x`` walks ``x``'s path, computing each node's
  box on the way (in one dimension the sample is kept sorted, a node's points are an index range, each level one
  binary search).
* **forest**: ``number_of_trees`` such trees over **one shared sample** (as rrcf's streaming example, where
  every tree holds the same points), so the state is that sample alone.
* **sample** (time-decayed weighted reservoir, as AWS's ``CompactSampler``): the point with sequence index
  ``t`` (inputs before it) has weight ``log(-log(u_t)) - t / time_decay`` (``time_decay = 0``: no decay), ``u_t``
  a uniform of ``hash(seed, t)``; the sample takes every point until it holds ``sample_size`` of them, then a
  point that has a smaller weight than the sample's largest replaces it. Recent points are favoured by a factor
  ``exp(t / time_decay)`` (Kinesis Data Analytics' ``timeDecay``).
* **anomaly score** (AWS's ``AnomalyScoreVisitor`` with ``CommonUtils``' defaults, a normalised descendant of
  the paper's collusive displacement): in one tree, at ``x``'s leaf at depth ``d`` with mass ``m`` (tree mass
  ``M``, the sample's size), ``(1 - m/(2M)) / (d + log2(m + 1))`` if ``x`` equals the leaf point (*seen*), else
  ``1/(d + 1)`` (*unseen*); going up, at each node of depth ``d`` whose box does not contain ``x``, ``score = p/(d
  + 1) + (1 - p) score`` where ``p = gap / (range + gap)`` is the probability that a random cut of the box
  extended by ``x`` separates ``x`` (``range``: the sum of the box's sides, ``gap``: how much ``x`` extends
  them); nodes whose box contains ``x`` leave the score as it is. The tree's score is scaled by ``log2(M + 1)``,
  the forest's is the mean over the trees: about 0.6-1.2 for ordinary values, above 2 for clear outliers, about
  ``log2(sample_size)`` for far ones. :meth:`CompactForest.score_then_update` scores the forest as it is, then
  inserts (a value never counts as its own history). The recursion is evaluated top-down, as a running sum and
  product, exactly as the Java class does, so that both give the same doubles.
* **attribution** (AWS's ``DiVector``): the score split over the input dimensions and the two directions, ``x``
  above the boxes (*high*) or below them (*low*), summed over the shingle positions; the parts sum to the score.

The hashes are splitmix64's finaliser; arithmetic is in doubles in the Java class's order, so scores agree with
Java's to the last bits (the logarithms are ``StrictMath``'s in Java, the C library's here: agreement within
1e-12, usually exact). :meth:`CompactForest.to_bytes` writes the Java class's ``writeTo`` format.

Example::

    >>> forest = CompactForest(number_of_trees=20, sample_size=32, seed=7)
    >>> scores = [forest.score_then_update(10.0 + (i % 5) * 0.1) for i in range(200)]
    >>> forest.score_then_update(60.0) > 2
    True
"""

from __future__ import annotations

import bisect
import math
import struct
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

MASK = 0xFFFFFFFFFFFFFFFF
GOLDEN = 0x9E3779B97F4A7C15
SAMPLER_SALT = 0x5851F42D4C957F2D
TREE_SALT = 0x2545F4914F6CDD1D
LEFT = 0x632BE59BD9B4E019
RIGHT = 0x8CB92BA72F3D8DD7
TWO_POW_M53 = 2.0**-53
LOG2 = math.log(2.0)
MAGIC = 0x43524346
FORMAT_VERSION = 1

#: The Java class's command line (``clicklab.udf.CompactForestMain``).
JAVA_MAIN = "clicklab.udf.CompactForestMain"


def mix64(z: int) -> int:
    """splitmix64's finaliser on an unsigned 64-bit integer."""
    z &= MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def unit(h: int) -> float:
    """A uniform in [0, 1) from the top 53 bits of ``h``."""
    return (h >> 11) * TWO_POW_M53


def _child(node: int, left: bool) -> int:
    return mix64(node + (LEFT if left else RIGHT))


def _next_down(v: float) -> float:
    return math.nextafter(v, -math.inf)


class CompactForest:
    """A streaming Random Cut Forest with one shared time-decayed sample and implicit trees (see the module)."""

    def __init__(self, number_of_trees: int = 100, sample_size: int = 256, time_decay: float = 100000.0,
                 shingle_size: int = 1, input_dimensions: int = 1, seed: int = 42) -> None:
        if int(number_of_trees) != number_of_trees or number_of_trees < 1:
            raise ValueError(f"number_of_trees must be an integer >= 1, got {number_of_trees!r}")
        if int(sample_size) != sample_size or sample_size < 2:
            raise ValueError(f"sample_size must be an integer >= 2, got {sample_size!r}")
        if not math.isfinite(time_decay) or time_decay < 0:
            raise ValueError(f"time_decay must be a finite number >= 0 (0: no decay), got {time_decay!r}")
        if int(shingle_size) != shingle_size or shingle_size < 1:
            raise ValueError(f"shingle_size must be an integer >= 1, got {shingle_size!r}")
        if int(input_dimensions) != input_dimensions or input_dimensions < 1:
            raise ValueError(f"input_dimensions must be an integer >= 1, got {input_dimensions!r}")
        if not -(2**63) <= int(seed) < 2**63:
            raise ValueError(f"seed must be a signed 64-bit integer, got {seed!r}")
        self.number_of_trees = int(number_of_trees)
        self.sample_size = int(sample_size)
        self.time_decay = float(time_decay)
        self.shingle_size = int(shingle_size)
        self.input_dimensions = int(input_dimensions)
        self.seed = int(seed)
        self.dims = self.shingle_size * self.input_dimensions
        self.lam = 0.0 if self.time_decay == 0 else 1.0 / self.time_decay
        self._sorted1d = self.dims == 1
        seed_u = self.seed & MASK
        self._sampler_key = mix64(seed_u ^ SAMPLER_SALT)
        tree_key = mix64(seed_u ^ TREE_SALT)
        self._roots = [mix64(tree_key + (j + 1) * GOLDEN) for j in range(self.number_of_trees)]
        self.updates = 0
        self._shingle: list[float] = []
        # sample: 1-D sorted values, else a (slots, dims) array; sequence indexes and weights per slot
        self._values: list[float] = []
        self._points = np.zeros((self.sample_size, self.dims))
        self._sequence: list[int] = []
        self._weight: list[float] = []
        self.force_general = False

    # -------------------------------------------------------------- sampler

    def weight_of(self, t: int) -> float:
        """The sampler weight of the point with sequence index ``t`` (smaller is kept)."""
        u = ((mix64(self._sampler_key + t * GOLDEN) >> 11) + 0.5) * TWO_POW_M53
        return math.log(-math.log(u)) - self.lam * float(t)

    @property
    def sample_count(self) -> int:
        """Points in the sample."""
        return len(self._sequence)

    def sample_values(self) -> np.ndarray:
        """The sample's points, shape (count, dims) (sorted by value in one dimension)."""
        if self._sorted1d:
            return np.array(self._values, dtype=float).reshape(-1, 1)
        return self._points[: self.sample_count].copy()

    def _insert(self, point: list[float], t: int) -> None:
        w = self.weight_of(t)
        n = self.sample_count
        evict = -1
        if n == self.sample_size:
            worst = max(range(n), key=lambda i: (self._weight[i], -i))
            if not w < self._weight[worst]:
                return
            evict = worst
        if not self._sorted1d:
            slot = n if evict < 0 else evict
            self._points[slot] = point
            if evict < 0:
                self._sequence.append(t)
                self._weight.append(w)
            else:
                self._sequence[slot] = t
                self._weight[slot] = w
            return
        if evict >= 0:
            del self._values[evict], self._sequence[evict], self._weight[evict]
        x = point[0]
        at = bisect.bisect_right(self._values, x)
        self._values.insert(at, x)
        self._sequence.insert(at, t)
        self._weight.insert(at, w)

    # -------------------------------------------------------------- streaming

    def _check(self, value: float | Sequence[float]) -> list[float]:
        vec = [float(value)] if np.isscalar(value) else [float(v) for v in value]  # type: ignore[arg-type]
        if len(vec) != self.input_dimensions:
            raise ValueError(f"input must have input_dimensions={self.input_dimensions} values, got {len(vec)}")
        if not all(math.isfinite(v) for v in vec):
            raise ValueError(f"input values must be finite, got {vec}")
        return vec

    def _point_with(self, vec: list[float]) -> list[float] | None:
        shingle = self._shingle + vec
        if len(shingle) > self.dims:
            shingle = shingle[len(shingle) - self.dims:]
        return shingle if len(shingle) == self.dims else None

    def score_then_update(self, value: float | Sequence[float]) -> float:
        """Score the input against the forest as it is, then learn it (0.0 until the shingle is full)."""
        vec = self._check(value)
        point = self._point_with(vec)
        self._shingle = (self._shingle + vec)[-self.dims:]
        self.updates += 1
        if point is None:
            return 0.0
        score = self.score(point)
        self._insert(point, self.updates - 1)
        return score

    def score_series(self, values: Iterable[float | Sequence[float]]) -> list[float]:
        """:meth:`score_then_update` over a series."""
        return [self.score_then_update(v) for v in values]

    def attribution(self, value: float | Sequence[float]) -> np.ndarray:
        """Contributions to the score the next :meth:`score_then_update` of ``value`` would return, state unchanged.

        ``2 * input_dimensions`` values: per input dimension the part from the input being above the boxes
        (high), then per input dimension the part from it being below (low), summed over the shingle.
        """
        vec = self._check(value)
        out = np.zeros(2 * self.input_dimensions)
        point = self._point_with(vec)
        if point is None or self.sample_count == 0:
            return out
        attr = np.zeros(2 * self.dims)
        pts = self.sample_values()
        for j in range(self.number_of_trees):
            tree = np.zeros(2 * self.dims)
            self._score_general(point, j, pts, tree)
            attr += tree
        scale = self._normaliser() / self.number_of_trees
        d = self.input_dimensions
        for k in range(self.dims):
            out[k % d] += attr[2 * k] * scale
            out[d + k % d] += attr[2 * k + 1] * scale
        return out

    def _normaliser(self) -> float:
        return math.log(self.sample_count + 1.0) / LOG2

    def score(self, point: Sequence[float]) -> float:
        """The score of a full point (``shingle_size * input_dimensions`` values) against the forest as it is."""
        if len(point) != self.dims:
            raise ValueError(f"point must have {self.dims} values, got {len(point)}")
        if self.sample_count == 0:
            return 0.0
        total = 0.0
        if self._sorted1d and not self.force_general:
            x = float(point[0])
            for j in range(self.number_of_trees):
                total += self._score_1d(x, j)
        else:
            pts = self.sample_values()
            for j in range(self.number_of_trees):
                total += self._score_general([float(v) for v in point], j, pts, None)
        return (total / self.number_of_trees) * self._normaliser()

    def _seen(self, depth: int, mass: int) -> float:
        damp = 1.0 - mass / (2.0 * self.sample_count)
        return damp * (1.0 / (depth + math.log(mass + 1.0) / LOG2))

    def _score_1d(self, x: float, j: int) -> float:
        v = self._values
        lo, hi = 0, len(v)
        node = self._roots[j]
        depth = 0
        total = 0.0
        keep = 1.0
        while True:
            a = v[lo]
            b = v[hi - 1]
            if a == b:
                break
            rng = b - a
            gap = a - x if x < a else (x - b if x > b else 0.0)
            if gap > 0:
                p = gap / (rng + gap)
                total += keep * p * (1.0 / (depth + 1.0))
                keep *= 1.0 - p
            cut = a + unit(node) * rng
            if cut >= b:
                cut = _next_down(b)
            split = bisect.bisect_right(v, cut, lo, hi)
            left = x <= cut
            if left:
                hi = split
            else:
                lo = split
            node = _child(node, left)
            depth += 1
        if x == v[lo]:
            return total + keep * self._seen(depth, hi - lo)
        return total + keep * (1.0 / (depth + 1.0))

    def _score_general(self, x: list[float], j: int, pts: np.ndarray, attr: np.ndarray | None) -> float:
        d = self.dims
        node = self._roots[j]
        depth = 0
        total = 0.0
        keep = 1.0
        cur = pts
        while True:
            mn = cur.min(axis=0).tolist()
            mx = cur.max(axis=0).tolist()
            range_sum = 0.0
            gap_sum = 0.0
            for k in range(d):
                range_sum += mx[k] - mn[k]
                xk = x[k]
                gap_sum += mn[k] - xk if xk < mn[k] else (xk - mx[k] if xk > mx[k] else 0.0)
            if range_sum == 0.0:
                break
            if gap_sum > 0:
                p = gap_sum / (range_sum + gap_sum)
                unseen = 1.0 / (depth + 1.0)
                total += keep * p * unseen
                if attr is not None:
                    f = keep * unseen / (range_sum + gap_sum)
                    for k in range(d):
                        if x[k] > mx[k]:
                            attr[2 * k] += f * (x[k] - mx[k])
                        elif x[k] < mn[k]:
                            attr[2 * k + 1] += f * (mn[k] - x[k])
                keep *= 1.0 - p
            acc = unit(node) * range_sum
            last_positive = max(k for k in range(d) if mx[k] > mn[k])
            cut_dim = -1
            cut = 0.0
            for k in range(d):
                r = mx[k] - mn[k]
                if r > 0:
                    if acc < r or k == last_positive:
                        cut_dim = k
                        cut = mn[k] + acc
                        break
                    acc -= r
            if cut >= mx[cut_dim]:
                cut = _next_down(mx[cut_dim])
            left = x[cut_dim] <= cut
            mask = cur[:, cut_dim] <= cut
            cur = cur[mask] if left else cur[~mask]
            node = _child(node, left)
            depth += 1
        leaf = cur[0].tolist()
        gaps = [x[k] - leaf[k] for k in range(d)]
        if all(g == 0 for g in gaps):
            s = self._seen(depth, len(cur))
            if attr is not None:
                attr += keep * s / (2.0 * d)
            return total + keep * s
        unseen = 1.0 / (depth + 1.0)
        if attr is not None:
            leaf_gap = 0.0
            for g in gaps:
                leaf_gap += abs(g)
            f = keep * unseen / leaf_gap
            for k, g in enumerate(gaps):
                if g > 0:
                    attr[2 * k] += f * g
                elif g < 0:
                    attr[2 * k + 1] -= f * g
        return total + keep * unseen

    # -------------------------------------------------------------- state

    def to_bytes(self) -> bytes:
        """The state in the Java class's ``writeTo`` format (big-endian, version 1)."""
        fill = len(self._shingle) // self.input_dimensions
        parts = [struct.pack(">iBiidiiqqi", MAGIC, FORMAT_VERSION, self.number_of_trees, self.sample_size,
                             self.time_decay, self.shingle_size, self.input_dimensions, self.seed, self.updates,
                             fill)]
        parts.append(struct.pack(f">{len(self._shingle)}d", *self._shingle))
        n = self.sample_count
        parts.append(struct.pack(">i", n))
        parts.append(struct.pack(f">{n}q", *self._sequence))
        flat = self._values if self._sorted1d else self._points[:n].reshape(-1).tolist()
        parts.append(struct.pack(f">{len(flat)}d", *flat))
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> CompactForest:
        """A forest from :meth:`to_bytes` (or the Java class's ``writeTo``) bytes."""
        head = struct.Struct(">iBiidiiqqi")
        magic, version, trees, sample, decay, shingle, dims, seed, updates, fill = head.unpack_from(data, 0)
        if magic != MAGIC:
            raise ValueError(f"not a CompactForest state (magic {magic:#x})")
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported CompactForest state version {version}")
        f = cls(trees, sample, decay, shingle, dims, seed)
        off = head.size
        f.updates = updates
        f._shingle = list(struct.unpack_from(f">{fill * dims}d", data, off))
        off += 8 * fill * dims
        (n,) = struct.unpack_from(">i", data, off)
        off += 4
        f._sequence = list(struct.unpack_from(f">{n}q", data, off))
        off += 8 * n
        flat = list(struct.unpack_from(f">{n * f.dims}d", data, off))
        f._weight = [f.weight_of(t) for t in f._sequence]
        if f._sorted1d:
            f._values = flat
        else:
            f._points[:n] = np.array(flat).reshape(n, f.dims)
        return f

    def copy(self) -> CompactForest:
        """An independent copy."""
        return CompactForest.from_bytes(self.to_bytes())


def score_series_java(values: Iterable[float | Sequence[float]], classpath: str | Path, number_of_trees: int = 100,
                      sample_size: int = 256, time_decay: float = 100000.0, shingle_size: int = 1,
                      input_dimensions: int = 1, seed: int = 42, extra_args: Sequence[str] = (),
                      java: str = "java") -> list[float]:
    """Score a series with the Java class (``CompactForestMain`` on ``classpath``, e.g. the UDF jar)."""
    lines = []
    for v in values:
        vec = [v] if np.isscalar(v) else list(v)  # type: ignore[arg-type]
        lines.append(",".join(repr(float(x)) for x in vec))
    cmd = [java, "-cp", str(classpath), JAVA_MAIN, "--trees", str(number_of_trees), "--sample", str(sample_size),
           "--decay", repr(float(time_decay)), "--shingle", str(shingle_size), "--dims", str(input_dimensions),
           "--seed", str(seed), *extra_args]
    done = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{JAVA_MAIN} failed ({done.returncode}): {done.stderr.strip()}")
    return [float(line.split("\t")[0]) for line in done.stdout.splitlines() if line.strip()]
