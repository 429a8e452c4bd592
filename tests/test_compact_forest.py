"""CompactForest (udf/clicklab_udf/compact.py and udf/java/clicklab/udf/CompactForest.java).

Python-only tests are unmarked; those that run javac/java are marked ``flink`` (they start a JVM).
"""

from __future__ import annotations

import hashlib
import math
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from clicklab import settings
from clicklab_udf.compact import JAVA_MAIN, CompactForest, score_series_java

JAVA_DIR = settings.REPO / "udf" / "java" / "clicklab" / "udf"
SOURCES = [JAVA_DIR / "CompactForest.java", JAVA_DIR / "CompactForestMain.java"]


def _noise(n: int = 600, spike_at: int | None = 400, seed: int = 3) -> list[float]:
    rng = np.random.default_rng(seed)
    values = [float(v) for v in np.round(rng.normal(10.0, 1.0, n), 3)]
    if spike_at is not None:
        values[spike_at % n] = 60.0
    return values


def _vectors(n: int = 250, d: int = 2, seed: int = 4) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [[float(v) for v in row] for row in np.round(rng.normal(10.0, 1.0, (n, d)), 2)]


# ---------------------------------------------------------------------------------------- Python only


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"number_of_trees": 0}, "number_of_trees"),
        ({"sample_size": 1}, "sample_size"),
        ({"time_decay": -1.0}, "time_decay"),
        ({"time_decay": math.inf}, "time_decay"),
        ({"shingle_size": 0}, "shingle_size"),
        ({"input_dimensions": 0}, "input_dimensions"),
    ],
)
def test_bad_parameters_name_the_parameter(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        CompactForest(**kwargs)


def test_bad_inputs_are_refused() -> None:
    forest = CompactForest(number_of_trees=5, sample_size=8, input_dimensions=2)
    with pytest.raises(ValueError, match="input_dimensions=2"):
        forest.score_then_update([1.0])
    with pytest.raises(ValueError, match="finite"):
        forest.score_then_update([1.0, math.nan])
    assert forest.updates == 0


def test_scale_spike_and_ordinary_scores() -> None:
    values = _noise()
    scores = CompactForest(number_of_trees=50, sample_size=256, seed=11).score_series(values)
    assert scores[0] == 0.0
    assert scores[400] > 2
    ordinary = [s for i, s in enumerate(scores) if i >= 50 and i != 400]
    assert 0.5 < float(np.median(ordinary)) < 1.3
    assert max(ordinary) < scores[400]


def test_far_outlier_scores_about_log2_sample_size() -> None:
    forest = CompactForest(number_of_trees=30, sample_size=64, seed=2)
    forest.score_series(_noise(300, spike_at=None))
    far = forest.score_then_update(1e6)
    assert math.log2(64) - 1 < far <= math.log2(65) + 1e-9


def test_pool_and_trees_are_bounded() -> None:
    forest = CompactForest(number_of_trees=3, sample_size=16, time_decay=10.0)
    forest.score_series(_noise(400))
    assert forest.pool_size == 256 and forest.pool_count == 256
    assert forest.sample_count == 16 and forest.updates == 400
    for j in range(3):
        assert len(forest.tree_sequences(j)) == 16
        assert set(forest.tree_sequences(j)) <= {int(t) for t in forest._seq}


def test_trees_hold_different_samples() -> None:
    forest = CompactForest(number_of_trees=20, sample_size=32)
    forest.score_series(_noise(500, spike_at=None))
    samples = [set(forest.tree_sequences(j)) for j in range(20)]
    assert len({frozenset(s) for s in samples}) == 20
    # two trees share about 1/POOL_FACTOR of a sample (here the pool is 256 points: about 32 * 32 / 256 = 4)
    shared = [len(samples[a] & samples[b]) for a in range(20) for b in range(a + 1, 20)]
    assert float(np.mean(shared)) < 0.3 * 32
    # every pool point is about equally likely in a tree: no tree-independent bias to some points
    assert len(set().union(*samples)) > 200


def test_tree_membership_is_the_smallest_keys_of_the_pool() -> None:
    """The incremental membership equals a fresh selection from the pool at every step (what restore does)."""
    forest = CompactForest(number_of_trees=6, sample_size=8, time_decay=30.0, pool_size=24)
    for i, v in enumerate(_noise(300)):
        forest.score_then_update(v)
        if i % 7 == 0:
            fresh = CompactForest.from_bytes(forest.to_bytes())
            assert np.array_equal(fresh._member, forest._member)
            assert np.array_equal(fresh._max_key, forest._max_key)


def test_time_decay_keeps_recent_points() -> None:
    forest = CompactForest(number_of_trees=2, sample_size=16, time_decay=4.0, pool_size=32)
    forest.score_series([float(i) for i in range(300)])
    assert forest.sample_values()[:, 0].min() > 200
    assert forest.tree_values(0)[:, 0].min() > 200


def test_general_path_equals_sorted_path() -> None:
    values = _noise(300)
    fast = CompactForest(number_of_trees=10, sample_size=32, seed=9)
    slow = CompactForest(number_of_trees=10, sample_size=32, seed=9)
    slow.force_general = True
    assert fast.score_series(values) == slow.score_series(values)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"number_of_trees": 10, "sample_size": 32},
        {"number_of_trees": 5, "sample_size": 16, "shingle_size": 3},
        {"number_of_trees": 5, "sample_size": 16, "shingle_size": 2, "input_dimensions": 2},
    ],
)
def test_round_trip_mid_stream_is_bit_identical(kwargs: dict) -> None:
    dims = kwargs.get("input_dimensions", 1)
    values = _vectors(200, dims) if dims > 1 else _noise(200, spike_at=150)
    straight = CompactForest(**kwargs, seed=1).score_series(values)
    forest = CompactForest(**kwargs, seed=1)
    resumed = []
    for i, v in enumerate(values):
        resumed.append(forest.score_then_update(v))
        if i % 23 == 0:
            forest = CompactForest.from_bytes(forest.to_bytes())
        if i % 31 == 0:
            forest = forest.copy()
    assert resumed == straight


def test_state_is_small() -> None:
    forest = CompactForest(number_of_trees=100, sample_size=256)
    for v in _noise(1500, spike_at=None):
        forest.score_then_update(v)
    assert forest.sample_count == 256 and forest.pool_count == 1024
    state = forest.to_bytes()
    assert len(state) == forest.serialized_size() < 17_000
    small = CompactForest(number_of_trees=100, sample_size=12)
    small.score_series(_noise(600, spike_at=None))
    assert len(small.to_bytes()) < 4_200


@pytest.mark.parametrize(
    ("kwargs", "values"),
    [
        ({"number_of_trees": 10, "sample_size": 32}, _noise(120, spike_at=None)),
        ({"number_of_trees": 5, "sample_size": 16, "shingle_size": 2, "input_dimensions": 2}, _vectors(80)),
    ],
)
def test_attribution_sums_to_score(kwargs: dict, values: list) -> None:
    forest = CompactForest(**kwargs)
    probes = [values[-1], [60.0] * kwargs.get("input_dimensions", 1), [-5.0] * kwargs.get("input_dimensions", 1)]
    for v in values:
        forest.score_then_update(v)
    for probe in probes:
        probe = probe[0] if kwargs.get("input_dimensions", 1) == 1 and isinstance(probe, list) else probe
        attr = forest.attribution(probe)
        assert len(attr) == 2 * forest.input_dimensions
        score = forest.copy().score_then_update(probe)
        assert abs(float(attr.sum()) - score) < 1e-9
    high = forest.attribution([60.0] * forest.input_dimensions if forest.input_dimensions > 1 else 60.0)
    d = forest.input_dimensions
    assert high[:d].sum() > 10 * high[d:].sum()


# ---------------------------------------------------------------------------------------- Java


@pytest.fixture(scope="module")
def classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    javac = shutil.which("javac")
    if javac is None:
        pytest.skip("needs a JDK (javac)")
    out = tmp_path_factory.mktemp("compact-classes")
    subprocess.run([javac, "--release", "11", "-encoding", "UTF-8", "-Xlint:all", "-Werror", "-d", str(out),
                    *map(str, SOURCES)], check=True, capture_output=True, text=True)
    return out


def _java(classes: Path, args: list[str], lines: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["java", "-cp", str(classes), JAVA_MAIN, *args], input="\n".join(lines) + "\n",
                          capture_output=True, text=True, check=False)


@pytest.mark.flink
@pytest.mark.parametrize(
    "kwargs",
    [
        {"number_of_trees": 30, "sample_size": 64, "time_decay": 100000.0},
        {"number_of_trees": 100, "sample_size": 12, "time_decay": 0.0},
        {"number_of_trees": 10, "sample_size": 32, "time_decay": 25.0, "seed": -7},
        {"number_of_trees": 8, "sample_size": 24, "shingle_size": 3},
        {"number_of_trees": 8, "sample_size": 24, "shingle_size": 2, "input_dimensions": 2},
    ],
)
def test_java_equals_python(classes: Path, kwargs: dict) -> None:
    values: list = _vectors(250) if kwargs.get("input_dimensions", 1) > 1 else _noise(500)
    python = CompactForest(**kwargs).score_series(values)
    java = score_series_java(values, classes, **kwargs)
    assert len(java) == len(values)
    assert max(abs(a - b) for a, b in zip(python, java, strict=True)) < 1e-9


@pytest.mark.flink
def test_java_round_trip_and_copy_are_bit_identical(classes: Path) -> None:
    values = _noise(800)
    for kwargs in ({"number_of_trees": 50, "sample_size": 64, "time_decay": 200.0},
                   {"number_of_trees": 10, "sample_size": 16, "shingle_size": 4}):
        straight = score_series_java(values, classes, **kwargs)
        for extra in (["--roundtrip-every", "1"], ["--roundtrip-every", "97"], ["--copy-every", "13"]):
            assert score_series_java(values, classes, **kwargs, extra_args=extra) == straight


@pytest.mark.flink
def test_java_state_bytes_equal_python(classes: Path) -> None:
    values = _noise(300)
    for kwargs in ({"number_of_trees": 10, "sample_size": 32, "time_decay": 50.0},
                   {"number_of_trees": 4, "sample_size": 8, "shingle_size": 3}):
        python = CompactForest(**kwargs)
        python.score_series(values)
        args = ["--trees", str(kwargs["number_of_trees"]), "--sample", str(kwargs["sample_size"]),
                "--decay", str(kwargs.get("time_decay", 100000.0)), "--shingle", str(kwargs.get("shingle_size", 1)),
                "--state"]
        done = _java(classes, args, [repr(v) for v in values])
        assert done.returncode == 0, done.stderr
        assert bytes.fromhex(done.stderr.strip()) == python.to_bytes()


@pytest.mark.flink
def test_java_bench_state_and_heap_are_bounded(classes: Path) -> None:
    done = subprocess.run(["java", "-cp", str(classes), JAVA_MAIN, "--bench", "3000"], capture_output=True,
                          text=True, check=True)
    fields = dict(part.split("=") for part in done.stdout.split())
    assert fields["pool"] == "1024"
    assert int(fields["serialized_bytes"]) < 17_000
    assert int(fields["approx_heap_bytes"]) < 200_000


@pytest.mark.flink
def test_java_bench_over_keys(classes: Path) -> None:
    done = subprocess.run(["java", "-cp", str(classes), JAVA_MAIN, "--bench", "3000", "--keys", "10", "--trees", "20"],
                          capture_output=True, text=True, check=True)
    fields = dict(part.split("=") for part in done.stdout.split())
    assert (fields["keys"], fields["points_per_key"]) == ("10", "300")
    assert float(fields["points_per_second"]) > 0


@pytest.mark.flink
def test_java_pool_option_equals_python(classes: Path) -> None:
    values = _noise(400)
    python = CompactForest(10, 16, 60.0, pool_size=40).score_series(values)
    java = score_series_java(values, classes, 10, 16, 60.0, extra_args=["--pool", "40", "--roundtrip-every", "9"])
    assert max(abs(a - b) for a, b in zip(python, java, strict=True)) < 1e-9


@pytest.mark.flink
def test_java_attribution_sums_to_score(classes: Path) -> None:
    values = _vectors(200, 2)
    values[150] = [60.0, 10.0]
    done = _java(classes, ["--trees", "10", "--sample", "32", "--shingle", "2", "--dims", "2", "--attribution"],
                 [",".join(map(repr, v)) for v in values])
    assert done.returncode == 0, done.stderr
    rows = [[float(x) for x in line.split("\t")] for line in done.stdout.splitlines()]
    for row in rows:
        assert len(row) == 5
        assert abs(sum(row[1:]) - row[0]) < 1e-9
    spike = rows[150]
    assert spike[0] > 2 and spike[1] > 0.8 * spike[0]
    python = CompactForest(10, 32, shingle_size=2, input_dimensions=2)
    for v in values[:150]:
        python.score_then_update(v)
    assert np.allclose(python.attribution(values[150]), spike[1:], rtol=0, atol=1e-9)


@pytest.mark.flink
@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["--trees", "0"], "numberOfTrees"),
        (["--sample", "1"], "sampleSize"),
        (["--decay", "-1"], "timeDecay"),
        (["--shingle", "0"], "shingleSize"),
        (["--dims", "0"], "inputDimensions"),
    ],
)
def test_java_bad_parameters_name_the_parameter(classes: Path, args: list[str], name: str) -> None:
    done = _java(classes, args, ["1.0"])
    assert done.returncode == 2
    assert name in done.stderr


def _pinned_inputs(n: int, seed: int, dims: int = 1, decimals: int = 3, spikes: tuple[int, ...] = ()) -> list[str]:
    """Input lines from ``random.Random`` (its ``random()`` stream is stable across Python versions)."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        row = [round(10.0 + sum(rng.random() for _ in range(4)) - 2.0, decimals) for _ in range(dims)]
        if i in spikes:
            row = [60.0] * dims
        lines.append(",".join(repr(v) for v in row))
    return lines


# Produced by the Java class of commit 55d5caf (before the speed-ups): sha256 (first 16 hex digits) of the score
# lines and of the final state bytes, the last score and the largest. Any change of the algorithm (a score bit,
# a state byte) fails here; change these only together with the Python twin and on purpose.
PINNED = [
    (["--trees", "100", "--sample", "256", "--decay", "100000"], (2500, 1, 1, 3, (1800,)),
     "7987d7fa2c6f5e52", "8b42376a2159548c", "0.7759620747279571", "7.771627115746272"),
    (["--trees", "100", "--sample", "256", "--decay", "300"], (2500, 2, 1, 1, ()),
     "57f056f63a5952a9", "0fb15e7b219a7657", "0.8504703720022052", "3.2158108003246393"),
    (["--trees", "40", "--sample", "64", "--decay", "50", "--roundtrip-every", "7"], (1500, 3, 1, 2, ()),
     "6f8ffcd3a73340a7", "41c56396a4196d59", "0.6864890529160863", "3.1490806435216845"),
    (["--trees", "100", "--sample", "12", "--decay", "0"], (1000, 4, 1, 3, ()),
     "836f8b1f4b201c21", "d9fe8be77340faec", "1.453529019124337", "2.067992106628322"),
    (["--trees", "20", "--sample", "32", "--decay", "60", "--pool", "40", "--general"], (600, 5, 1, 1, ()),
     "be9264d26f0a3367", "bfe39fa42f37e313", "0.7006181136666616", "2.833514662507632"),
    (["--trees", "10", "--sample", "32", "--decay", "80", "--shingle", "3"], (700, 6, 1, 3, ()),
     "5bf980f9e26fd181", "97cab1c69dfe9216", "0.8107048624898873", "1.9427847472683186"),
    (["--trees", "8", "--sample", "24", "--shingle", "2", "--dims", "2", "--decay", "40"], (600, 7, 2, 1, ()),
     "f0cd507994c821df", "bc609a3e7b20641a", "1.1394989539046267", "1.7493214478339434"),
]


@pytest.mark.flink
@pytest.mark.parametrize(("args", "data", "scores_sha", "state_sha", "last", "largest"), PINNED,
                         ids=[" ".join(p[0]) for p in PINNED])
def test_java_scores_and_state_are_pinned(classes: Path, args: list[str], data: tuple, scores_sha: str,
                                          state_sha: str, last: str, largest: str) -> None:
    n, seed, dims, decimals, spikes = data
    done = _java(classes, [*args, "--state"], _pinned_inputs(n, seed, dims, decimals, spikes))
    assert done.returncode == 0, done.stderr
    scores = done.stdout.splitlines()
    assert len(scores) == n
    assert (scores[-1], max(scores, key=float)) == (last, largest)
    assert hashlib.sha256("\n".join(scores).encode()).hexdigest()[:16] == scores_sha
    assert hashlib.sha256(bytes.fromhex(done.stderr.strip())).hexdigest()[:16] == state_sha
