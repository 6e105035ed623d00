"""The proposer core behind the Hydra sweeper and the Optuna sampler (metanas.hpo.proposer)."""

import math

import numpy as np
import pytest

from metanas.hpo.metalearner import MetaLearnerSampler
from metanas.hpo.proposer import Proposer, Record, replay_list, usable, utilities
from metanas.hpo.schedulers import Trial
from metanas.hpo.space import config_key, space_from_config
from metanas.predictors.pairwise import Pairwise

SMALL = Pairwise(hidden=16, embed=8, steps=300, ensemble=2, batch=64)
SPACE = space_from_config([{"name": "x", "type": "float", "low": 0.0, "high": 1.0},
                           {"name": "c", "type": "categorical", "choices": ["a", "b"]}])


def f(c, shift=0.0):
    return (c["x"] - 0.3 - shift) ** 2 + (0.2 if c["c"] == "b" else 0.0) + 0.05


def draws(n, seed):
    rng = np.random.default_rng(seed)
    return [SPACE.sample(rng) for _ in range(n)]


def test_utilities_raw_for_positive_values_zscore_otherwise():
    np.testing.assert_allclose(utilities([2.0, 4.0], maximize=False), [0.5, 0.25])
    u = utilities([-1.0, 0.0, 1.0], maximize=False)  # a negative loss: exp(-z), still ordered, all > 0
    assert np.all(u > 0) and u[0] > u[1] > u[2]
    configs, utils = usable(SPACE, [Record({"x": 0.5, "c": "a"}, 1.0), Record({"x": 0.1, "c": "b"}, None, "running"),
                                    Record({"x": 0.2, "c": "a"}, math.nan), Record({"x": 2.0, "c": "a"}, 1.0),
                                    Record({"x": 0.3, "c": "b"}, 3.0, "failed")], maximize=False)
    assert configs == [{"x": 0.5, "c": "a"}] and utils == [1.0]  # out-of-space x=2.0, unfinished, failed: skipped


def test_cold_proposals_are_the_metalearner_samplers():
    records = [Record(c, f(c)) for c in draws(6, 1)]
    kw = dict(n_candidates=256, chunk=256, min_points=3, beta=0.5)
    ours = Proposer(SPACE, maximize=False, predictor=SMALL, **kw).propose(3, records, None, np.random.default_rng(7))
    trials = [Trial(i, r.params, 1.0, r.value, 0, 0, 1.0) for i, r in enumerate(records)]
    theirs = MetaLearnerSampler(SPACE, SMALL, maximize=False, **kw)(3, trials, np.random.default_rng(7))
    assert ours == theirs and len(ours) == 3
    assert not {config_key(c) for c in ours} & {config_key(r.params) for r in records}


def test_unfinished_and_failed_configurations_are_not_proposed_again():
    space = space_from_config([{"name": "c", "type": "categorical", "choices": ["a", "b", "c"]}])
    records = [Record({"c": "a"}, None, "running"), Record({"c": "b"}, None, "failed")]
    out = Proposer(space, predictor=SMALL, min_points=10).propose(1, records, None, np.random.default_rng(0))
    assert out == [{"c": "c"}]


def test_warm_start_replays_the_earlier_studies_best_configurations_first_and_once():
    a = [Record({"x": 0.1, "c": "a"}, 3.0), Record({"x": 0.2, "c": "a"}, 1.0), Record({"x": 0.4, "c": "b"}, 2.0)]
    b = [Record({"x": 0.9, "c": "b"}, 0.5), Record({"x": 0.2, "c": "a"}, 0.7), Record({"x": 0.5, "c": "a"}, None,
                                                                                          "failed")]
    history = {"a": a, "b": b}
    # each study's best first, round robin; the duplicate (x=0.2 is a's best and b's second) counted once
    assert replay_list(SPACE, history, False, 4) == [{"x": 0.2, "c": "a"}, {"x": 0.9, "c": "b"},
                                                     {"x": 0.4, "c": "b"}, {"x": 0.1, "c": "a"}]
    assert replay_list(SPACE, history, True, 1) == [{"x": 0.1, "c": "a"}]  # maximised: the largest value
    p = Proposer(SPACE, predictor=SMALL, replay=3)
    members = (["a", "b"], None)  # the replay phase needs no member (nothing is fitted or compiled)
    info = {}
    first = p.propose(2, [Record({"x": 0.9, "c": "b"}, 0.8)], history, np.random.default_rng(0), members=members,
                      info=info)
    assert first == [{"x": 0.2, "c": "a"}, {"x": 0.4, "c": "b"}] and info["replayed"] == 2  # tried one skipped


@pytest.mark.slow  # one jitted warm program (~30-90 s to compile on 2 shared cores)
def test_warm_start_trusts_the_related_study_and_proposes_near_its_optimum():
    history = {"related": [Record(c, f(c, 0.02)) for c in draws(40, 2)],
               "reversed": [Record(c, 1.0 / f(c)) for c in draws(40, 3)]}  # ranks every configuration backwards
    p = Proposer(SPACE, maximize=False, predictor=SMALL, n_candidates=512, chunk=512, min_points=4, beta=0.0,
                 replay=0, radius=0.05, random_fraction=0.0)
    members = p.history_members(history)
    info = {}
    zero_shot = p.propose(2, [], history, np.random.default_rng(0), members=members, info=info)
    assert info["weights"] == {"related": 0.5, "reversed": 0.5}  # no trial yet: equal weights
    current = [Record(c, f(c)) for c in draws(8, 4)]
    out = p.propose(2, current, history, np.random.default_rng(1), members=members, info=info)
    w = info["weights"]
    assert set(w) == {"related", "reversed", "this study"} and abs(sum(w.values()) - 1) < 1e-4
    assert w["related"] > w["reversed"], w
    best_random = min(f(c) for c in draws(8, 4))
    assert min(f(c) for c in out) < best_random, (out, best_random)
    assert zero_shot and all(0.0 <= c["x"] <= 1.0 for c in zero_shot)
    tried = [r.params for r in current] + out[:1]
    for c in out[1:]:  # no model proposal within radius of a tried configuration nor of the batch's earlier picks
        assert all(((SPACE.encode(c) - SPACE.encode(t)) ** 2).sum() / 2 >= 0.05 ** 2 for t in tried), (c, tried)
    for c in out[:1]:
        assert all(((SPACE.encode(c) - SPACE.encode(r.params)) ** 2).sum() / 2 >= 0.05 ** 2 for r in current)
