"""A compact streaming Random Cut Forest: a shared pool, per-tree samples, implicit trees (the Python twin of
``CompactForest.java``).

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
  pure function of its sample and is **never stored**: scoring ``x`` walks ``x``'s path, computing each node's
  box on the way (in one dimension a tree's sample is kept sorted, a node's points are an index range, each
  level one binary search; this module walks all trees together with numpy, level by level).
* **pool** (time-decayed weighted reservoir, as AWS's ``CompactSampler``) of ``pool_size = max(4 *
  sample_size, 256)`` points (1024 at 100 x 256, 256 at 100 x 12): the point with sequence index ``t`` (inputs
  before it) has weight ``log(-log u_t) - t / time_decay`` (``time_decay = 0``: no decay), ``u_t`` a uniform of
  ``hash(seed, t)``; the pool takes every point until it is full, then a point whose weight is below the pool's
  largest replaces that one (in its slot). Recent points are favoured by a factor ``exp(t / time_decay)``.
* **tree samples** (bagging): tree ``j`` holds the ``min(sample_size, pool_count)`` pool points with the
  smallest keys ``mix64(root_j + t * GOLDEN)`` (unsigned; a bijection of ``t``, so never a tie). Each tree has
  its own uniform subsample of the pool, as AWS's trees have their own samples; the membership is a pure
  function of the pool (kept incrementally, recomputed on restore, never stored). While a stream is shorter
  than the pool (the lab replay's 720 windows) the trees' samples are independent uniform samples of the whole
  stream, the distribution of AWS's samplers without decay; later two trees share about a quarter of their
  points (AWS's: ``sample_size / points seen``). With strong decay the trees remember as far back as the pool
  (about 4x AWS's per-tree memory).
* **forest**: ``number_of_trees`` such trees; the state is the pool (values and sequence indexes), the shingle,
  the counters and the parameters: 16 bytes per pool point.

Why this design (measured against AWS's ``randomcutforest-core`` 4.3.0 on the lab replay's CTR series and a
noisy sine, ``/tmp/aws/validate.py``; figures "ours / AWS seed 42", Spearman over ordinary values after
``sample_size`` points, with "AWS seed 7 vs AWS seed 42" in brackets):

=================================== ========================== ==========================================
design                              100 x 256                  100 x 12
=================================== ========================== ==========================================
v1: one sample shared by all trees  Spearman 0.86-0.90         ordinary > 2: 28/11, 44/13, 23/10 (sites),
(4 KB / 253 B)                      [0.90-0.97]; click-bot     140/3 (sine); Spearman 0.63-0.80
                                    max 2.22 / 2.53            [0.96-0.97]
v2: pool 4 x sample (16 KB / 833 B) Spearman 0.95-0.97;        ordinary > 2: 17/11, 15/13, 21/10; 6/3
                                    click-bot 2.48 / 2.53;
                                    ordinary > 2: 3/4, 5/4,
                                    2/2; sine 8/12
v2, pool 8 x sample (32 KB / 1.6KB) as 4 x (720 < 1024)        13/11, 16/13, 16/10; 2/3
v2, pool >= 256 (chosen; 4 KB)      as 4 x                     10/11, 12/13, 10/10; 2/3; Spearman
                                                               0.95-0.97 [0.96-0.97]
v2, pool >= 1024 (16 KB)            as 4 x                     9/11, 12/13, 12/10; 2/3
=================================== ========================== ==========================================

A per-tree reservoir over the whole stream (AWS's sampler with implicit trees over a shared store of every
point some tree holds) would match AWS's distribution exactly, but the store grows towards
``number_of_trees * sample_size`` points (25,600, 400 KB at 100 x 256) on a long stream; the pool bounds it
at ``pool_size`` and, on the lab's series, is indistinguishable from it.
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
MEMBER_SALT = 0x7F4A7C159E3779B9
LEFT = 0x632BE59BD9B4E019
RIGHT = 0x8CB92BA72F3D8DD7
TWO_POW_M53 = 2.0**-53
LOG2 = math.log(2.0)
MAGIC = 0x43524346
FORMAT_VERSION = 2
#: The pool holds ``max(POOL_FACTOR * sample_size, MIN_POOL)`` points (at most ``MAX_POOL``, at least ``sample_size``).
POOL_FACTOR = 4
MIN_POOL = 256
MAX_POOL = 65536
_HEAD = struct.Struct(">iBiidiiqiqi")

#: The Java class's command line (``clicklab.udf.CompactForestMain``).
JAVA_MAIN = "clicklab.udf.CompactForestMain"

_U = np.uint64
_C1 = _U(0xBF58476D1CE4E5B9)
_C2 = _U(0x94D049BB133111EB)
_GOLDEN_U = _U(GOLDEN)
_LEFT_U = _U(LEFT)
_RIGHT_U = _U(RIGHT)
_MAXU = _U(MASK)


def mix64(z: int) -> int:
    """splitmix64's finaliser on an unsigned 64-bit integer."""
    z &= MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def mix64_array(z: np.ndarray) -> np.ndarray:
    """:func:`mix64` on a ``uint64`` array (arithmetic wraps modulo 2**64)."""
    z = (z ^ (z >> _U(30))) * _C1
    z = (z ^ (z >> _U(27))) * _C2
    return z ^ (z >> _U(31))


def unit(h: int) -> float:
    """A uniform in [0, 1) from the top 53 bits of ``h``."""
    return (h >> 11) * TWO_POW_M53


def _child(node: int, left: bool) -> int:
    return mix64(node + (LEFT if left else RIGHT))


def _next_down(v: float) -> float:
    return math.nextafter(v, -math.inf)


def default_pool(sample_size: int) -> int:
    """The pool's capacity for ``sample_size`` (the Java class's ``defaultPool``)."""
    return max(sample_size, min(max(POOL_FACTOR * sample_size, MIN_POOL), MAX_POOL))


class CompactForest:
    """A streaming Random Cut Forest: a shared time-decayed pool, per-tree samples, implicit trees (see the module)."""

    def __init__(self, number_of_trees: int = 100, sample_size: int = 256, time_decay: float = 100000.0,
                 shingle_size: int = 1, input_dimensions: int = 1, seed: int = 42,
                 pool_size: int | None = None) -> None:
        if int(number_of_trees) != number_of_trees or number_of_trees < 1:
            raise ValueError(f"number_of_trees must be an integer >= 1, got {number_of_trees!r}")
        if int(sample_size) != sample_size or not 2 <= sample_size <= MAX_POOL:
            raise ValueError(f"sample_size must be an integer >= 2 and <= {MAX_POOL}, got {sample_size!r}")
        if not math.isfinite(time_decay) or time_decay < 0:
            raise ValueError(f"time_decay must be a finite number >= 0 (0: no decay), got {time_decay!r}")
        if int(shingle_size) != shingle_size or shingle_size < 1:
            raise ValueError(f"shingle_size must be an integer >= 1, got {shingle_size!r}")
        if int(input_dimensions) != input_dimensions or input_dimensions < 1:
            raise ValueError(f"input_dimensions must be an integer >= 1, got {input_dimensions!r}")
        if not -(2**63) <= int(seed) < 2**63:
            raise ValueError(f"seed must be a signed 64-bit integer, got {seed!r}")
        pool = default_pool(int(sample_size)) if pool_size is None else pool_size
        if int(pool) != pool or not sample_size <= pool <= MAX_POOL:
            raise ValueError(f"pool_size must be an integer >= sample_size and <= {MAX_POOL}, got {pool_size!r}")
        self.number_of_trees = int(number_of_trees)
        self.sample_size = int(sample_size)
        self.time_decay = float(time_decay)
        self.shingle_size = int(shingle_size)
        self.input_dimensions = int(input_dimensions)
        self.seed = int(seed)
        self.pool_size = int(pool)
        self.dims = self.shingle_size * self.input_dimensions
        self.lam = 0.0 if self.time_decay == 0 else 1.0 / self.time_decay
        self._sorted1d = self.dims == 1
        seed_u = self.seed & MASK
        self._sampler_key = mix64(seed_u ^ SAMPLER_SALT)
        tree_key = mix64(seed_u ^ TREE_SALT)
        member_key = mix64(seed_u ^ MEMBER_SALT)
        t = self.number_of_trees
        self._roots = np.array([mix64(tree_key + (j + 1) * GOLDEN) for j in range(t)], dtype=np.uint64)
        self._member_roots = np.array([mix64(member_key + (j + 1) * GOLDEN) for j in range(t)], dtype=np.uint64)
        self.updates = 0
        self._shingle: list[float] = []
        # pool: slots of (dims) values, sequence indexes and weights
        self.pool_count = 0
        self._pts = np.zeros((self.pool_size, self.dims))
        self._seq = np.zeros(self.pool_size, dtype=np.int64)
        self._weight = np.zeros(self.pool_size)
        # trees: key of every pool slot per tree, membership (the sample_count smallest keys of each row)
        self._keys = np.full((t, self.pool_size), _MAXU, dtype=np.uint64)
        self._member = np.zeros((t, self.pool_size), dtype=bool)
        self._max_key = np.zeros(t, dtype=np.uint64)
        self._index: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.force_general = False

    # -------------------------------------------------------------- sampler

    def weight_of(self, t: int) -> float:
        """The pool weight of the point with sequence index ``t`` (smaller is kept)."""
        u = ((mix64(self._sampler_key + t * GOLDEN) >> 11) + 0.5) * TWO_POW_M53
        return math.log(-math.log(u)) - self.lam * float(t)

    def _keys_of(self, t: int) -> np.ndarray:
        """Every tree's key of the point with sequence index ``t`` (unsigned; distinct for distinct ``t``)."""
        with np.errstate(over="ignore"):
            return mix64_array(self._member_roots + _U((t * GOLDEN) & MASK))

    @property
    def sample_count(self) -> int:
        """Points in each tree's sample: ``min(sample_size, pool_count)``."""
        return min(self.sample_size, self.pool_count)

    def sample_values(self) -> np.ndarray:
        """The pool's points, shape (pool_count, dims), in slot order."""
        return self._pts[: self.pool_count].copy()

    def tree_sequences(self, j: int) -> list[int]:
        """The sequence indexes of tree ``j``'s sample, ascending."""
        return sorted(int(v) for v in self._seq[: self.pool_count][self._member[j, : self.pool_count]])

    def tree_values(self, j: int) -> np.ndarray:
        """Tree ``j``'s sample, shape (sample_count, dims), in slot order."""
        return self._pts[: self.pool_count][self._member[j, : self.pool_count]]

    def _insert(self, point: list[float], t: int) -> None:
        w = self.weight_of(t)
        n = self.pool_count
        if n < self.pool_size:
            self._pts[n] = point
            self._seq[n] = t
            self._weight[n] = w
            self.pool_count = n + 1
            self._grow(n, t)
        else:
            worst = int(np.argmax(self._weight))
            if not w < self._weight[worst]:
                return
            self._replace(worst, point, t, w)
        self._index = None

    def _drop_max(self, rows: np.ndarray) -> None:
        """Take each of ``rows``' largest-key member out."""
        keys = np.where(self._member[rows], self._keys[rows], _U(0))
        self._member[rows, np.argmax(keys, axis=1)] = False

    def _refresh_max(self, rows: np.ndarray) -> None:
        self._max_key[rows] = np.where(self._member[rows], self._keys[rows], _U(0)).max(axis=1)

    def _grow(self, slot: int, t: int) -> None:
        knew = self._keys_of(t)
        count_before = min(self.sample_size, self.pool_count - 1)
        self._keys[:, slot] = knew
        if count_before < self.sample_size:
            self._member[:, slot] = True
            self._max_key = knew.copy() if count_before == 0 else np.maximum(self._max_key, knew)
            return
        rows = np.flatnonzero(knew < self._max_key)
        if rows.size:
            self._drop_max(rows)
            self._member[rows, slot] = True
            self._refresh_max(rows)

    def _replace(self, e: int, point: list[float], t: int, w: float) -> None:
        knew = self._keys_of(t)
        removed = self._member[:, e].copy()
        self._pts[e] = point
        self._seq[e] = t
        self._weight[e] = w
        self._keys[:, e] = knew
        self._member[:, e] = False
        # trees that lost the old point take their smallest key outside (every outside key is above the old max)
        rows = np.flatnonzero(removed)
        if rows.size:
            outside = np.where(self._member[rows], _MAXU, self._keys[rows])
            self._member[rows, np.argmin(outside, axis=1)] = True
        # the others take the new point when its key is below their largest
        rows2 = np.flatnonzero(~removed & (knew < self._max_key))
        if rows2.size:
            self._drop_max(rows2)
            self._member[rows2, e] = True
        changed = np.concatenate([rows, rows2])
        if changed.size:
            self._refresh_max(changed)

    def _rebuild_trees(self) -> None:
        n = self.pool_count
        self._keys[:] = _MAXU
        self._member[:] = False
        if n == 0:
            return
        with np.errstate(over="ignore"):
            seq = self._seq[:n].astype(np.uint64)
            keys = mix64_array(self._member_roots[:, None] + seq[None, :] * _GOLDEN_U)
        self._keys[:, :n] = keys
        c = self.sample_count
        threshold = np.partition(keys, c - 1, axis=1)[:, c - 1]
        self._member[:, :n] = keys <= threshold[:, None]
        self._max_key = threshold.copy()
        self._weight[:n] = [self.weight_of(int(s)) for s in self._seq[:n]]

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
        for j in range(self.number_of_trees):
            tree = np.zeros(2 * self.dims)
            self._score_general(point, j, self.tree_values(j), tree)
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
        if self._sorted1d and not self.force_general:
            scores = self._score_1d_all(float(point[0])).tolist()
        else:
            x = [float(v) for v in point]
            scores = [self._score_general(x, j, self.tree_values(j), None) for j in range(self.number_of_trees)]
        total = 0.0
        for s in scores:  # in tree order, as the Java class adds them
            total += s
        return (total / self.number_of_trees) * self._normaliser()

    def _seen(self, depth: int, mass: int) -> float:
        damp = 1.0 - mass / (2.0 * self.sample_count)
        return damp * (1.0 / (depth + math.log(mass + 1.0) / LOG2))

    def _tree_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """1-D, rebuilt when the pool changes: the pool's values sorted; per tree (flattened, row stride
        ``sample_count``) its members' ranks in that order plus ``row * (pool_count + 1)`` (so ascending over
        all trees), and its members' values sorted."""
        if self._index is None:
            n = self.pool_count
            vals = self._pts[:n, 0]
            order = np.argsort(vals, kind="stable")
            sorted_vals = vals[order]
            rows, cols = np.nonzero(self._member[:, :n][:, order])
            self._index = (sorted_vals, rows * (n + 1) + cols, sorted_vals[cols])
        return self._index

    def _score_1d_all(self, x: float) -> np.ndarray:
        """Every tree's unnormalised score of ``x``, all trees walked together level by level (1-D).

        The arithmetic per tree is the Java class's ``score1d``, element-wise: a tree that reached its leaf keeps
        its range (its next "cut" is below its only value, which splits nothing) and adds nothing more.
        """
        sorted_vals, ranks, tree_vals = self._tree_index()
        t = self.number_of_trees
        c = self.sample_count
        n = self.pool_count
        base = np.arange(t, dtype=np.int64) * c
        rank_base = np.arange(t, dtype=np.int64) * (n + 1)
        lo = base.copy()
        hi = base + c
        node = self._roots.copy()
        total = np.zeros(t)
        keep = np.ones(t)
        live = np.ones(t, dtype=bool)
        leaf_depth = np.zeros(t)
        p = np.zeros(t)
        depth = 0
        with np.errstate(over="ignore", invalid="ignore"):
            while True:
                a = tree_vals.take(lo)
                b = tree_vals.take(hi - 1)
                newly = (a == b) & live
                if newly.any():
                    leaf_depth[newly] = depth
                    live &= ~newly
                    if not live.any():
                        break
                rng = b - a
                gap = np.maximum(np.maximum(a - x, x - b), 0.0)
                p.fill(0.0)
                np.divide(gap, rng + gap, out=p, where=live)
                total += keep * p * (1.0 / (depth + 1.0))
                keep *= 1.0 - p
                cut = np.minimum(a + ((node >> _U(11)).astype(np.float64) * TWO_POW_M53) * rng,
                                 np.nextafter(b, -np.inf))
                # members <= cut in each tree: those whose rank in the pool is below the pool's count <= cut
                split = np.searchsorted(ranks, rank_base + np.searchsorted(sorted_vals, cut, side="right"))
                left = (x <= cut) & live
                hi = np.where(left, split, hi)
                lo = np.where(left, lo, split)
                node = mix64_array(node + np.where(left, _LEFT_U, _RIGHT_U))
                depth += 1
        mass = hi - lo
        out = keep * (1.0 / (leaf_depth + 1.0))
        seen = np.flatnonzero(tree_vals.take(lo) == x)
        for k in seen.tolist():
            out[k] = keep[k] * self._seen(int(leaf_depth[k]), int(mass[k]))
        return total + out

    def _score_general(self, x: list[float], j: int, pts: np.ndarray, attr: np.ndarray | None) -> float:
        d = self.dims
        node = int(self._roots[j])
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
        """The state in the Java class's ``writeTo`` format (big-endian, version 2): the trees follow from the pool."""
        fill = len(self._shingle) // self.input_dimensions
        n = self.pool_count
        parts = [_HEAD.pack(MAGIC, FORMAT_VERSION, self.number_of_trees, self.sample_size, self.time_decay,
                            self.shingle_size, self.input_dimensions, self.seed, self.pool_size, self.updates, fill),
                 struct.pack(f">{len(self._shingle)}d", *self._shingle),
                 struct.pack(">i", n),
                 self._seq[:n].astype(">i8").tobytes(),
                 self._pts[:n].astype(">f8").tobytes()]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> CompactForest:
        """A forest from :meth:`to_bytes` (or the Java class's ``writeTo``) bytes."""
        magic, version = struct.unpack_from(">iB", data, 0)
        if magic != MAGIC:
            raise ValueError(f"not a CompactForest state (magic {magic:#x})")
        if version != FORMAT_VERSION:
            raise ValueError(f"unsupported CompactForest state version {version}")
        _, _, trees, sample, decay, shingle, dims, seed, pool, updates, fill = _HEAD.unpack_from(data, 0)
        f = cls(trees, sample, decay, shingle, dims, seed, pool)
        off = _HEAD.size
        f.updates = updates
        f._shingle = list(struct.unpack_from(f">{fill * dims}d", data, off))
        off += 8 * fill * dims
        (n,) = struct.unpack_from(">i", data, off)
        off += 4
        if not 0 <= n <= pool:
            raise ValueError(f"corrupt CompactForest state: pool count {n}")
        f.pool_count = n
        f._seq[:n] = np.frombuffer(data, dtype=">i8", count=n, offset=off)
        off += 8 * n
        f._pts[:n] = np.frombuffer(data, dtype=">f8", count=n * f.dims, offset=off).reshape(n, f.dims)
        f._rebuild_trees()
        return f

    def copy(self) -> CompactForest:
        """An independent copy."""
        return CompactForest.from_bytes(self.to_bytes())

    def serialized_size(self) -> int:
        """Bytes :meth:`to_bytes` writes now."""
        return _HEAD.size + 8 * len(self._shingle) + 4 + 8 * self.pool_count * (1 + self.dims)


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
