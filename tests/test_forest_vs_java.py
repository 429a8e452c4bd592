"""The ``aws`` backend (krcf, Rust) against AWS's own Java Random Cut Forest.

The Java library is the one the ``jrcf`` package ships (``randomcutforest-core`` jars), called
through JPype in this process: importing ``jrcf`` starts the JVM, once for the module (JPype cannot
start a second one). Both sides score the same deterministic 2,000-point stream (a noisy sine with
four spikes) with the same parameters, score-then-update.

A forest is random, and two Java forests with different seeds agree on the ordinary points of this
stream only to a Spearman rank correlation of about 0.84 (measured). So each side is averaged over
the same eight seeds, which compares the scores the two implementations expect rather than one draw
of their randomness, and the single-seed agreement between the implementations is compared with the
agreement of Java with itself.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from clicklab_udf.forest import ForestParams, KeyedForests

pytestmark = pytest.mark.flink

N, TREES, SAMPLES, TIME_DECAY = 2000, 100, 256, 100_000.0
SEEDS = tuple(range(1, 9))
SPIKES = (700, 1100, 1500, 1800)


def _stream() -> np.ndarray:
    rng = np.random.default_rng(2024)
    t = np.arange(N)
    values = 20 + 5 * np.sin(2 * np.pi * t / 300) + rng.normal(0, 1, N)
    values[list(SPIKES)] += 30
    return values


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (the scores have no ties that matter; ranks by argsort)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.fixture(scope="module")
def scores() -> dict[str, np.ndarray]:
    """Per side, one row of scores per seed (after both samples have filled)."""
    pytest.importorskip("jpype", reason="JPype is not installed (pip install jpype1)")
    jrcf_rcf = pytest.importorskip("jrcf.rcf", reason="jrcf (AWS's Java Random Cut Forest jars) is not installed")
    values = _stream()
    java, ours = [], []
    for seed in SEEDS:
        forest = jrcf_rcf.RandomCutForestModel(
            dimensions=1, shingle_size=1, num_trees=TREES, sample_size=SAMPLES, output_after=1, random_seed=seed,
            lam=1.0 / TIME_DECAY,
        )
        row = []
        for v in values.tolist():
            row.append(forest.score([v]))
            forest.update([v])
        java.append(row)
        forests = KeyedForests(ForestParams(number_of_trees=TREES, sub_sample_size=SAMPLES, time_decay=TIME_DECAY,
                                            seed=seed, warmup=0))
        ours.append([forests.score("stream", v).score for v in values])
    return {"java": np.array(java)[:, SAMPLES:], "ours": np.array(ours)[:, SAMPLES:]}


def test_java_forest_is_configured_like_ours():
    jrcf_rcf = pytest.importorskip("jrcf.rcf", reason="jrcf (AWS's Java Random Cut Forest jars) is not installed")
    model = jrcf_rcf.RandomCutForestModel(dimensions=1, shingle_size=1, num_trees=TREES, sample_size=SAMPLES,
                                          output_after=1, random_seed=1, lam=1.0 / TIME_DECAY)
    assert model.get_number_of_trees() == TREES and model.get_sample_size() == SAMPLES
    assert model.get_time_decay() == pytest.approx(1.0 / TIME_DECAY)


def test_scores_agree_in_rank(scores):
    ours, java = scores["ours"], scores["java"]
    assert _spearman(ours.mean(axis=0), java.mean(axis=0)) >= 0.9
    # one forest of ours agrees with one Java forest as well as two Java forests agree with each other
    pairs = list(itertools.combinations(range(len(SEEDS)), 2))
    java_java = np.mean([_spearman(java[i], java[j]) for i, j in pairs])
    ours_java = np.mean([_spearman(ours[i], java[j]) for i, j in pairs])
    assert ours_java >= java_java - 0.03


def test_scores_agree_in_level_and_flag_the_same_spikes(scores):
    ours, java = scores["ours"], scores["java"]
    assert abs(np.median(ours) - np.median(java)) <= 0.05 * np.median(java)
    assert 0.5 < np.median(java) < 1.2  # the AWS scale: about 1 for ordinary points
    spikes = np.array(SPIKES) - SAMPLES
    assert (ours[:, spikes] > 2).all() and (java[:, spikes] > 2).all()  # by every forest of either side
    assert set(np.argsort(ours.mean(axis=0))[-4:]) == set(spikes) == set(np.argsort(java.mean(axis=0))[-4:])
    assert np.allclose(ours[:, spikes].mean(axis=0), java[:, spikes].mean(axis=0), rtol=0.1)
