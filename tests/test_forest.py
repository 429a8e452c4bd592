"""The scorer behind RANDOM_CUT_FOREST (clicklab_udf.forest), without Flink."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import krcf
import numpy as np
import pytest

from clicklab_udf.forest import BACKENDS, ForestParams, KeyedForests, Scored, aws_options, key_seed

SMALL = ForestParams(number_of_trees=40, sub_sample_size=64, warmup=64, backend="aws")  # krcf, against krcf
UDF_DIR = Path(__file__).resolve().parent.parent / "udf"


def _noise(n: int, seed: int = 0, level: float = 10.0, sd: float = 2.0) -> np.ndarray:
    return level + np.random.default_rng(seed).normal(0, sd, n)


def _lab_ctr(n: int, seed: int = 0) -> np.ndarray:
    """A 10-second CTR (percent) like the lab's: Poisson impressions (~50) and clicks (~5)."""
    rng = np.random.default_rng(seed)
    impressions = rng.poisson(50, n)
    clicks = rng.poisson(5, n)
    return clicks / np.maximum(impressions, 1) * 100.0


def _scores(params: ForestParams, values, key: str = "site") -> list[float]:
    forests = KeyedForests(params)
    return [forests.score(key, float(v)).score for v in values]


def test_warmup_scores_zero_with_a_flag():
    forests = KeyedForests(SMALL)
    out = [forests.score("s", v) for v in _noise(100)]
    assert all(isinstance(s, Scored) for s in out)
    assert [s.warming_up for s in out] == [True] * 64 + [False] * 36
    assert all(s.score == 0.0 for s in out[:64])
    assert all(0.2 < s.score < 3 for s in out[64:])
    assert forests.seen("s") == 100 and forests.seen("other") == 0


def test_warmup_zero_emits_from_the_first_value_and_a_shingle_warms_up_at_least_until_full():
    forests = KeyedForests(ForestParams(number_of_trees=10, sub_sample_size=16, warmup=0))
    assert not forests.score("s", 1.0).warming_up
    shingled = KeyedForests(ForestParams(number_of_trees=10, sub_sample_size=16, warmup=0, shingle_size=4))
    assert [shingled.score("s", float(v)).warming_up for v in range(5)] == [True, True, True, False, False]


def test_score_then_update_matches_a_forest_that_scores_before_it_inserts():
    """Each value is scored against the forest of the *previous* values, then inserted exactly once."""
    values = [*_noise(150), 60.0, 60.0, *_noise(20, seed=1)]
    ours = _scores(SMALL, values, key="https://www.mysite.com")

    def reference(insert_first: bool) -> list[float]:
        forest = krcf.RandomCutForest(aws_options(SMALL, key_seed(SMALL.seed, "https://www.mysite.com")))
        out = []
        for v in values:
            if insert_first:
                forest.update([v])
            out.append(forest.score([v]))
            if not insert_first:
                forest.update([v])
        return out

    expected = reference(insert_first=False)
    assert ours[:64] == [0.0] * 64
    assert ours[64:] == expected[64:]
    # the test tells the orders apart: scored after its own insertion, the new outlier looks less new
    other = reference(insert_first=True)
    assert ours[150] > other[150] + 0.5
    # ... and exactly as much less new as the same value once it has been inserted (once) before
    assert other[150] == ours[151] < ours[150]


def test_scoring_does_not_insert_twice_and_a_bad_value_leaves_no_trace():
    values = _noise(120, seed=5)
    clean = KeyedForests(SMALL)
    dirty = KeyedForests(SMALL)
    a, b = [], []
    for i, v in enumerate(values):
        a.append(clean.score("k", v).score)
        if i == 80:
            with pytest.raises(ValueError):
                dirty.score("k", math.nan, "row 80")
        b.append(dirty.score("k", v).score)
    assert a == b and dirty.seen("k") == 120


def test_same_seed_same_scores_other_seed_other_scores():
    values = _noise(300, seed=3)
    assert _scores(SMALL, values) == _scores(SMALL, values)
    other = _scores(ForestParams(number_of_trees=40, sub_sample_size=64, warmup=64, seed=7), values)
    assert other[64:] != _scores(SMALL, values)[64:]
    assert key_seed(42, "https://a") == key_seed(42, "https://a") != key_seed(42, "https://b")
    assert key_seed(42, "https://a") != key_seed(43, "https://a")


def test_same_seed_same_scores_in_another_process():
    """The key's seed comes from a stable hash, not Python's salted ``hash()``."""
    values = _noise(100, seed=9).tolist()
    code = (
        "import json, sys\n"
        "from clicklab_udf.forest import ForestParams, KeyedForests\n"
        "f = KeyedForests(ForestParams(number_of_trees=40, sub_sample_size=64, warmup=64, backend='aws'))\n"
        "print(json.dumps([f.score('https://www.mysite.com', v).score for v in json.loads(sys.stdin.read())]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(UDF_DIR), "PYTHONHASHSEED": "12345"}
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(values), capture_output=True, text=True,
                          env=env, timeout=60, check=True)
    assert json.loads(proc.stdout) == _scores(SMALL, values, key="https://www.mysite.com")


@pytest.mark.parametrize("backend", BACKENDS)
def test_interleaved_sites_score_as_each_alone(backend):
    params = ForestParams(number_of_trees=12, sub_sample_size=32, warmup=32, backend=backend)
    n = 120 if backend == "rrcf" else 300
    a, b = _noise(n, seed=1), _noise(n, seed=2, level=40, sd=6)
    forests = KeyedForests(params)
    mixed: dict[str, list[float]] = {"a": [], "b": []}
    for va, vb in zip(a, b, strict=True):
        mixed["a"].append(forests.score("a", va).score)
        mixed["b"].append(forests.score("b", vb).score)
    assert mixed["a"] == _scores(params, a, "a")
    assert mixed["b"] == _scores(params, b, "b")
    assert forests.keys() == ["a", "b"] and len(forests) == 2 and "a" in forests and "c" not in forests


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None, "12.5", True, np.float64("nan"), [1.0]])
def test_bad_values_raise_naming_site_and_time(bad):
    forests = KeyedForests(SMALL)
    with pytest.raises(ValueError, match="not a finite number") as err:
        forests.score("https://www.mysite.com", bad, "2023-08-23 13:05:00")
    msg = str(err.value)
    assert msg.startswith("RANDOM_CUT_FOREST: site 'https://www.mysite.com' at 2023-08-23 13:05:00: value ")
    assert repr(bad) in msg
    assert len(forests) == 0  # nothing was created or inserted


def test_numbers_of_any_numeric_type_are_accepted():
    forests = KeyedForests(SMALL)
    for v in (1, 2.5, np.float32(3.0), np.int64(4), np.float64(5.0), Decimal("6.5")):
        assert forests.score("k", v) == Scored(0.0, True)
    assert forests.seen("k") == 6
    with pytest.raises(ValueError, match="value Decimal"):
        forests.score("k", Decimal("NaN"))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("number_of_trees", 0, "number_of_trees must be an integer >= 1, got 0"),
        ("number_of_trees", 2.5, "number_of_trees must be an integer >= 1, got 2.5"),
        ("number_of_trees", True, "number_of_trees must be an integer >= 1, got True"),
        ("sub_sample_size", 1, "sub_sample_size must be an integer >= 2, got 1"),
        ("shingle_size", 0, "shingle_size must be an integer >= 1, got 0"),
        ("warmup", -5, "warmup must be an integer >= 0, got -5"),
        ("time_decay", -1.0, "time_decay must be a finite number >= 0, got -1.0"),
        ("time_decay", math.nan, "time_decay must be a finite number >= 0, got nan"),
        ("time_decay", "100000", "time_decay must be a finite number >= 0, got '100000'"),
        ("seed", "42", "seed must be an integer, got '42'"),
        ("backend", "spark", "backend must be one of 'compact', 'aws', 'rrcf', 'java', got 'spark'"),
    ],
)
def test_parameters_are_validated_by_name_and_value(field, value, message):
    with pytest.raises(ValueError) as err:
        ForestParams(**{field: value})
    assert str(err.value) == f"RANDOM_CUT_FOREST parameter {message}"


def test_defaults_are_kinesis_data_analytics_and_time_decay_maps_to_aws_lambda():
    p = ForestParams()
    assert (p.number_of_trees, p.sub_sample_size, p.time_decay, p.shingle_size) == (100, 256, 100_000.0, 1)
    assert (p.seed, p.warmup, p.backend) == (42, 65, "compact")  # warm-up: 1 + sub_sample_size // 4, as AWS's
    assert ForestParams(sub_sample_size=12).warmup == 4 and ForestParams(sub_sample_size=12, warmup=0).warmup == 0
    assert aws_options(p, 1)["lambda"] == pytest.approx(1e-5)
    assert aws_options(ForestParams(time_decay=2560), 1)["lambda"] == pytest.approx(1 / 2560)
    assert aws_options(ForestParams(time_decay=0), 1)["lambda"] == 0.0
    assert ForestParams(number_of_trees=np.int64(10)).number_of_trees == 10


def test_a_lab_like_burst_scores_over_two_and_highest():
    ctr = _lab_ctr(500)
    ctr[400:403] = 500.0  # the Studio lab: 50 clicks on 10 impressions for 30 seconds
    scores = _scores(ForestParams(), ctr)
    after = np.array(scores[256:])
    assert scores[400] > 2 and int(np.argmax(scores)) == 400
    assert 0.5 < np.median(after) < 1.2  # ordinary CTRs: about 1 on the AWS scale
    assert scores[401] > 2  # the burst goes on: still unusual, less so as the forest learns it


def test_shingles_catch_an_unusual_shape():
    # a regular up-down pattern; at 300 two values swap: each value is ordinary, the shape is not
    values = np.tile([10.0, 20.0], 200)
    values[300], values[301] = values[301], values[300]
    shingled = _scores(ForestParams(number_of_trees=50, sub_sample_size=64, warmup=64, shingle_size=4), values)
    plain = _scores(ForestParams(number_of_trees=50, sub_sample_size=64, warmup=64, shingle_size=1), values)
    assert max(shingled[300:305]) > 2 > max(plain[300:305])


def test_rrcf_backend_ranks_the_burst_highest_and_leaves_numpy_alone():
    ctr = _lab_ctr(150, seed=4)
    ctr[140] = 500.0
    params = ForestParams(number_of_trees=15, sub_sample_size=48, warmup=48, backend="rrcf")
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    scores = _scores(params, ctr)
    assert (np.random.get_state()[1] == before).all()  # each tree has its own generator
    assert int(np.argmax(scores)) == 140
    assert scores[140] > 5 * np.median(scores[48:140])  # CoDisp: its own scale, not AWS's
    assert _scores(params, ctr) == scores  # seeded: reproducible
    other = _scores(ForestParams(number_of_trees=15, sub_sample_size=48, warmup=48, backend="rrcf", seed=1), ctr)
    assert other != scores


def test_rrcf_window_holds_sub_sample_size_points():
    forests = KeyedForests(ForestParams(number_of_trees=3, sub_sample_size=10, warmup=0, backend="rrcf"))
    for v in _noise(40):
        forests.score("k", v)
    trees = forests._forests["k"]._trees
    assert all(len(tree.leaves) == 10 for tree in trees)


def test_a_batch_of_interleaved_keys_scores_exactly_as_row_by_row():
    """score_many (what the vectorized RANDOM_CUT_FOREST calls) takes rows key by key: same scores, same order."""
    sites = ["https://a", "https://b", "https://c"]
    rng = np.random.default_rng(4)
    keys = [sites[i] for i in rng.integers(0, 3, 400)]
    values = [float(v) for v in _lab_ctr(400, seed=4)]
    values[350] = 500.0
    one_by_one = KeyedForests(SMALL)
    expected = [one_by_one.score(k, v) for k, v in zip(keys, values, strict=True)]
    batched = KeyedForests(SMALL)
    got = batched.score_many(keys[:123], values[:123]) + batched.score_many(keys[123:], values[123:])
    assert got == expected
    assert got[350].score > 2 and sum(not s.warming_up for s in got) > 100  # real scores, not only warm-up zeros


def test_a_bad_value_in_a_batch_names_its_key_and_time():
    forests = KeyedForests(SMALL)
    with pytest.raises(ValueError, match=r"site 'https://b' at 2023-08-23 13:46:30: value nan"):
        forests.score_many(["https://a", "https://b"], [1.0, math.nan], ["t0", "2023-08-23 13:46:30"])
    with pytest.raises(ValueError, match="lengths differ"):
        forests.score_many(["https://a"], [1.0, 2.0])
