"""Leave-one-category-out tuning of the decision rule (clicklab.holdout), on small series made by hand."""

from __future__ import annotations

import numpy as np
import pytest

from clicklab import holdout, nab
from clicklab.holdout import Candidate, Scored
from clicklab_udf.threshold import AdaptiveThreshold
from tests.conftest import shared_path


def _series(name: str, category: str, length: int = 400, windows=((300, 339),), spikes=(), seed: int = 0) -> Scored:
    """Ordinary scores about 0.8, ``spikes`` as ``{index: score}``; NAB's probation (15 %)."""
    rng = np.random.default_rng(seed)
    scores = 0.8 + 0.05 * rng.standard_normal(length)
    for at, value in dict(spikes).items():
        scores[at] = value
    scored = np.ones(length, bool)
    scored[:10] = False  # the forest's warm-up
    return Scored(name, category, nab.Series.make(name, length, list(windows)), scores, scored)


def _corpus() -> list[Scored]:
    """Three categories. In ``a`` and ``b`` the anomaly scores 3.0 and noise 2.5 comes before it (a threshold
    of 2.75 is right); in ``c`` the anomaly scores only 2.6 and nothing else is high (2.25 is right)."""
    out = []
    for i in range(2):
        out.append(_series(f"a/{i}", "a", spikes={150: 2.5, 310: 3.0}, seed=i))
        out.append(_series(f"b/{i}", "b", spikes={200: 2.5, 320: 3.0}, seed=10 + i))
    out.append(_series("c/0", "c", spikes={305: 2.6}, seed=20))
    return out


CANDIDATES = [Candidate("fixed", {"threshold": 2.25, "refractory": 0}),
              Candidate("fixed", {"threshold": 2.75, "refractory": 0})]


def test_grid_lists_every_combination_in_order():
    cands = holdout.grid("fixed", threshold=[2.0, 3.0], refractory=[10, 20])
    assert [c.params for c in cands] == [{"threshold": 2.0, "refractory": 10}, {"threshold": 2.0, "refractory": 20},
                                         {"threshold": 3.0, "refractory": 10}, {"threshold": 3.0, "refractory": 20}]
    assert cands[0].describe() == "fixed(threshold=2, refractory=10)"


def test_fixed_rule_keeps_quiet_for_its_refractory_rows():
    s = _series("a/x", "a", spikes={100: 3.0, 105: 3.0, 120: 3.0, 5: 9.0})  # row 5 is still warming up
    flags = Candidate("fixed", {"threshold": 2.0, "refractory": 10}).decide(s)
    assert list(np.flatnonzero(flags)) == [100, 120]


def test_adaptive_rule_is_the_shipped_threshold():
    s = _series("a/x", "a", spikes={100: 7.5, 200: 2.6, 201: 2.5, 300: 7.0})
    rule = AdaptiveThreshold(refractory=5)
    expected = [rule.update("k", v, not ok).is_anomaly for v, ok in zip(s.scores, s.scored, strict=True)]
    assert list(Candidate("adaptive", {"refractory": 5}).decide(s)) == expected
    assert sum(expected) == 2  # the 7.5 and the run; the 7.0 is under the bar the 7.5 left (2 x 7.5, sinking)


def test_likelihood_rule_flags_a_shift_of_the_scores_once_per_refractory_period():
    s = _series("a/x", "a", length=600)
    scores = s.scores.copy()
    scores[400:] += 0.5  # a lasting change, no single score remarkable
    shifted = Scored(s.name, s.category, s.series, scores, s.scored)
    flags = Candidate("likelihood", {"window": 200, "epsilon": 1e-4, "refractory": 1000}).decide(shifted)
    assert list(np.flatnonzero(flags)) == [400]
    assert not Candidate("likelihood", {"window": 200, "epsilon": 1e-4}).decide(s)[:400].any()


def test_raw_scores_agree_with_nab_raw_score():
    rng = np.random.default_rng(3)
    s = _series("a/x", "a", windows=((100, 139), (300, 339)))
    for _ in range(20):
        flags = rng.random(400) < 0.02
        expected = nab.raw_score(flags, s.series)
        got = holdout._Weights(s.series, nab.PROFILES["standard"]).raw(flags)
        assert got[0] == pytest.approx(expected.score) and got[1:] == (expected.tp, expected.fn, expected.fp)


def test_each_category_is_decided_by_parameters_chosen_without_it():
    corpus = _corpus()
    raws = holdout.raw_table(corpus, CANDIDATES)
    result = holdout.leave_one_category_out(corpus, CANDIDATES, raws=raws)
    chosen = {f.category: f.chosen for f in result.folds}
    # c's missed anomaly outweighs a's or b's two noise alarms: with c among the others, 2.25; without it, 2.75
    assert chosen == {"a": CANDIDATES[0], "b": CANDIDATES[0], "c": CANDIDATES[1]}
    assert result.chosen_on_all == CANDIDATES[0]
    c = result.folds[2]
    assert c.held_out < c.in_sample and result.total < result.in_sample_total
    # the total: every series' held-out flags scored together, as nab.corpus_score scores them
    flags = {s.name: chosen[s.category].decide(s) for s in corpus}
    expected = nab.corpus_score(flags, [s.series for s in corpus])
    assert result.total == pytest.approx(expected.score)
    table = result.table()
    assert list(table["held out"]) == ["a", "b", "c", "all"] and table["series"].iloc[-1] == 5


def test_ties_go_to_the_first_candidate_and_bad_input_is_refused():
    corpus = _corpus()
    same = [Candidate("fixed", {"threshold": 5.0}), Candidate("fixed", {"threshold": 6.0})]  # both flag nothing
    assert all(f.chosen == same[0] for f in holdout.leave_one_category_out(corpus, same).folds)
    with pytest.raises(ValueError, match="two categories or more"):
        holdout.leave_one_category_out([s for s in corpus if s.category == "a"], CANDIDATES)
    with pytest.raises(ValueError, match="no candidates"):
        holdout.leave_one_category_out(corpus, [])
    with pytest.raises(ValueError, match="raws has shape"):
        holdout.leave_one_category_out(corpus, CANDIDATES, raws=np.zeros((1, 1)))


def test_a_category_without_windows_counts_its_false_alarms_in_the_total():
    corpus = [*_corpus(), _series("z/0", "z", windows=(), spikes={200: 3.0}, seed=40)]
    result = holdout.leave_one_category_out(corpus, CANDIDATES)
    z = result.folds[-1]
    assert z.category == "z" and np.isnan(z.held_out) and z.held_out_raw < 0


@pytest.mark.shared
def test_leave_one_category_out_on_the_shared_nab_series():
    """NAB's 42 series and windows, with scores made up (the forest would take minutes): the folds are NAB's
    categories, and the held-out total is the NAB score of the held-out decisions put together."""
    from clicklab.evaluation import labelled_files

    root = shared_path("nab")
    series = labelled_files(root / "data", root / "labels" / "combined_windows.json")
    rng = np.random.default_rng(0)
    corpus = []
    for name, labelled in series.items():
        length = len(labelled.frame)
        scores = 0.8 + 0.1 * rng.standard_normal(length)
        scores[rng.integers(0, length, 5)] = 2.6  # noise
        for first, last in labelled.windows:
            scores[(first + last) // 2] = 3.2  # each anomaly, at its label
        corpus.append(Scored(name, labelled.corpus, labelled.nab_series(), scores, np.ones(length, bool)))
    cands = holdout.grid("fixed", threshold=[2.5, 3.0], refractory=[30])
    result = holdout.leave_one_category_out(corpus, cands)
    assert [f.category for f in result.folds] == sorted({s.category for s in corpus})
    assert len(result.folds) == 5 and sum(f.series for f in result.folds) == len(corpus) == 42
    assert all(f.chosen == cands[1] for f in result.folds)  # 3.0: every anomaly, none of the noise
    flags = {s.name: cands[1].decide(s) for s in corpus}
    assert result.total == pytest.approx(nab.corpus_score(flags, [s.series for s in corpus]).score)
