"""The scorer behind RANDOM_CUT_FOREST, without Flink."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clicklab_udf.forest import ForestParams, KeyedForests, key_seed

SMALL = ForestParams(number_of_trees=40, sub_sample_size=64, warmup=64)


def _noise(n: int, seed: int = 0, level: float = 10.0, sd: float = 2.0) -> np.ndarray:
    return level + np.random.default_rng(seed).normal(0, sd, n)


def _scores(params: ForestParams, values, key: str = "site") -> list[float]:
    forests = KeyedForests(params)
    return [forests.score(key, v).score for v in values]


def test_warmup_scores_zero_with_a_flag():
    forests = KeyedForests(SMALL)
    out = [forests.score("s", v) for v in _noise(100)]
    assert all(s.warming_up and s.score == 0.0 for s in out[:64])
    assert not any(s.warming_up for s in out[64:]) and all(s.score > 0 for s in out[64:])


def test_a_lab_like_burst_scores_over_two_and_highest():
    values = _noise(500)
    values[400] = 500.0  # the Studio lab: CTR 500 %
    scores = _scores(ForestParams(warmup=100), values)
    assert scores[400] > 2 and int(np.argmax(scores)) == 400
    assert np.median(scores[100:400]) < 1.5  # ordinary points: about 1 on the AWS scale


def test_score_then_update():
    """A value is scored against the forest *before* it is inserted, and inserted exactly once."""
    values = list(_noise(200))
    new = 60.0
    first = _scores(SMALL, [*values, new])[-1]
    # the same forest fed the value twice: the second time it has been learned, so it scores lower
    twice = _scores(SMALL, [*values, new, new])
    assert twice[-2] == first
    assert twice[-1] < first
    # scoring is not inserting: a third forest that never saw `new` scores the next point as the first did
    again = _scores(SMALL, [*values, new, 10.0])
    assert again[-2] == first


def test_same_seed_same_scores_other_seed_other_scores():
    values = _noise(300, seed=3)
    assert _scores(SMALL, values) == _scores(SMALL, values)
    other = _scores(ForestParams(number_of_trees=40, sub_sample_size=64, warmup=64, seed=7), values)
    assert other != _scores(SMALL, values)
    assert key_seed(42, "https://a") == key_seed(42, "https://a") != key_seed(42, "https://b")


def test_interleaved_sites_score_as_each_alone():
    a, b = _noise(300, seed=1), _noise(300, seed=2, level=40, sd=6)
    forests = KeyedForests(SMALL)
    mixed: dict[str, list[float]] = {"a": [], "b": []}
    for va, vb in zip(a, b, strict=True):
        mixed["a"].append(forests.score("a", va).score)
        mixed["b"].append(forests.score("b", vb).score)
    assert mixed["a"] == _scores(SMALL, a, "a")
    assert mixed["b"] == _scores(SMALL, b, "b")
    assert sorted(forests.keys()) == ["a", "b"] and len(forests) == 2


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None, "12.5", True])
def test_bad_values_name_site_and_time(bad):
    forests = KeyedForests(SMALL)
    with pytest.raises(ValueError) as err:
        forests.score("https://www.mysite.com", bad, "2023-08-23 13:05:00")
    msg = str(err.value)
    assert "https://www.mysite.com" in msg and "2023-08-23 13:05:00" in msg


@pytest.mark.parametrize(
    ("field", "value"),
    [("number_of_trees", 0), ("sub_sample_size", 1), ("shingle_size", 0), ("time_decay", -1.0),
     ("warmup", -5), ("backend", "java"), ("number_of_trees", 2.5)],
)
def test_parameters_are_validated_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        ForestParams(**{field: value})


def test_shingles_catch_an_unusual_shape():
    # a regular up-down pattern; at 300 two values swap: each value is ordinary, the shape is not
    values = np.tile([10.0, 20.0], 200)
    values[300], values[301] = values[301], values[300]
    shingled = _scores(ForestParams(number_of_trees=50, sub_sample_size=64, warmup=64, shingle_size=4), values)
    plain = _scores(ForestParams(number_of_trees=50, sub_sample_size=64, warmup=64, shingle_size=1), values)
    assert max(shingled[300:305]) > 2 > max(plain[300:305])


def test_rrcf_backend_ranks_the_burst_highest():
    values = _noise(160, seed=4)
    values[150] = 80.0
    params = ForestParams(number_of_trees=15, sub_sample_size=48, warmup=48, backend="rrcf")
    scores = _scores(params, values)
    assert int(np.argmax(scores)) == 150
    assert _scores(params, values) == scores  # seeded: reproducible
