"""The `aws` backend against AWS's own Java Random Cut Forest (the jars that the `jrcf` package ships).

The Java side runs in a subprocess (JPype starts its JVM in-process, and this test process already
talks to Flink's JVM), on the same 2,000-point stream with the same parameters. A forest is random:
two Java forests with different seeds agree only to a Spearman of about 0.83-0.90 on the ordinary
points of this stream (measured), so each side is averaged over the same four seeds, which compares
the scores the algorithms expect rather than one draw of their randomness.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import spearmanr

from clicklab_udf.forest import ForestParams, KeyedForests

N, TREES, SAMPLES, DECAY = 2000, 100, 256, 100_000.0
SEEDS = (1, 2, 3, 4)

JAVA_SCRIPT = f"""
import json, sys
from jrcf.rcf import RandomCutForestModel
values = json.load(sys.stdin)
runs = []
for seed in {SEEDS}:
    forest = RandomCutForestModel(dimensions=1, shingle_size=1, num_trees={TREES}, sample_size={SAMPLES},
                                  output_after=1, random_seed=seed, lam={1 / DECAY})
    scores = []
    for v in values:
        scores.append(float(forest.score([v])))
        forest.update([v])
    runs.append(scores)
print(json.dumps(runs))
"""


def _stream() -> np.ndarray:
    rng = np.random.default_rng(2024)
    t = np.arange(N)
    values = 20 + 5 * np.sin(2 * np.pi * t / 300) + rng.normal(0, 1, N)
    for i in (700, 1100, 1500, 1800):
        values[i] += 30
    return values


@pytest.fixture(scope="module")
def both() -> tuple[np.ndarray, np.ndarray]:
    pytest.importorskip("jrcf", reason="jrcf (AWS's Java Random Cut Forest jars) is not installed")
    values = _stream()
    proc = subprocess.run([sys.executable, "-c", JAVA_SCRIPT], input=json.dumps(values.tolist()),
                          capture_output=True, text=True, timeout=300, check=True)
    java = np.mean(json.loads(proc.stdout), axis=0)
    runs = []
    for seed in SEEDS:
        forests = KeyedForests(ForestParams(number_of_trees=TREES, sub_sample_size=SAMPLES, time_decay=DECAY,
                                            warmup=0, seed=seed))
        runs.append([forests.score("s", v).score for v in values])
    ours = np.mean(runs, axis=0)
    return ours[SAMPLES:], java[SAMPLES:]  # after both samples have filled


def test_scores_agree_in_rank(both):
    ours, java = both
    assert spearmanr(ours, java).statistic >= 0.9


def test_scores_agree_in_level_and_flag_the_same_spikes(both):
    ours, java = both
    assert abs(np.median(ours) - np.median(java)) <= 0.25 * np.median(java)
    spikes = np.array([700, 1100, 1500, 1800]) - SAMPLES
    assert (ours[spikes] > 2).all() and (java[spikes] > 2).all()
    assert set(np.argsort(ours)[-4:]) == set(spikes) == set(np.argsort(java)[-4:])
