"""HPO library: search spaces, schedulers (vs the Hyperband paper's bracket table), samplers, surrogates,
warm start and importance, tested on behaviour (synthetic objectives, reference formulas)."""

import json
import math

import jax
import numpy as np
import pytest

from metanas.hpo import (CandidateSampler, Hyperband, ModelBasedSampler, PortfolioSampler, RandomSampler,
                         RandomSearch, SpaceError, SuccessiveHalving, incumbent_curve, incumbent, main_effect_importance,
                         nearest_tasks, past_tasks_from_run_store, rung_fidelities, space_from_config, to_overrides,
                         warm_start_configs)
from metanas.hpo.surrogate import expected_improvement, fit_rff_ridge, gp_posterior, rff_predict
from metanas.hpo.warmstart import PastTasks

SPACE = [
    {"name": "lr", "type": "float", "low": 1e-4, "high": 1.0, "log": True},
    {"name": "width", "type": "int", "low": 4, "high": 64, "log": True},
    {"name": "opt", "type": "categorical", "choices": ["adam", "sgd"]},
    {"name": "momentum", "type": "float", "low": 0.0, "high": 0.99, "condition": {"opt": ["sgd"]}},
]


def test_space_sampling_respects_bounds_scale_and_conditions():
    space = space_from_config(SPACE)
    rng = np.random.default_rng(0)
    samples = [space.sample(rng) for _ in range(4000)]
    lr = np.array([s["lr"] for s in samples])
    assert lr.min() >= 1e-4 and lr.max() <= 1.0
    # log-uniform: half the mass below the geometric mean 1e-2 (a linear scale would put ~1% there)
    assert abs(np.mean(lr < 1e-2) - 0.5) < 0.03
    assert all(isinstance(s["width"], int) and 4 <= s["width"] <= 64 for s in samples)
    for s in samples:
        space.validate(s)
        assert ("momentum" in s) == (s["opt"] == "sgd")
    assert abs(np.mean([s["opt"] == "sgd" for s in samples]) - 0.5) < 0.03


def test_encode_unit_interval_round_trip_and_inactive():
    space = space_from_config(SPACE)
    c = {"lr": 1e-2, "width": 16, "opt": "adam"}
    x = space.encode(c)
    assert x.shape == (space.width,) == (1 + 1 + 2 + 1,)
    assert x[0] == pytest.approx(0.5)  # 1e-2 is the log-midpoint of [1e-4, 1]
    assert x[-1] == -1.0  # inactive momentum
    np.testing.assert_array_equal(x[2:4], [1.0, 0.0])
    p = space.params[0]
    for u in (0.0, 0.3, 1.0):
        assert p.to_unit(p.from_unit(u)) == pytest.approx(u, abs=1e-9)


@pytest.mark.parametrize("spec,message", [
    ({"name": "a", "type": "float", "low": 0.0, "high": 1.0, "log": True}, "log scale needs low > 0"),
    ({"name": "a", "type": "float", "low": 2.0, "high": 1.0}, "low=2.0 > high=1.0"),
    ({"name": "a", "type": "floaty", "low": 0, "high": 1}, "expected one of 'float', 'int', 'categorical'"),
    ({"name": "a", "type": "categorical"}, "needs a non-empty list 'choices'"),
    ({"name": "a", "type": "int", "low": 1, "hi": 3}, r"unknown key\(s\) \['hi'\]"),
    ({"name": "a", "type": "float", "low": 0, "high": 1, "condition": {"nope": [1]}}, "not declared before it"),
])
def test_space_errors_are_one_line(spec, message):
    with pytest.raises(SpaceError, match=message) as e:
        space_from_config([spec])
    assert "\n" not in str(e.value)


def test_validate_rejects_inactive_and_missing():
    space = space_from_config(SPACE)
    with pytest.raises(SpaceError, match="inactive"):
        space.validate({"lr": 0.1, "width": 8, "opt": "adam", "momentum": 0.5})
    with pytest.raises(SpaceError, match="misses active parameter 'momentum'"):
        space.validate({"lr": 0.1, "width": 8, "opt": "sgd"})


def test_to_overrides_round_trips_through_hydra_parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    c = {"optimizer.learning_rate": 0.0123456789012345, "train.hidden": 7, "optimizer": "sgd", "flag": True}
    parsed = OverridesParser.create().parse_overrides(to_overrides(c))
    back = {o.key_or_group: o.value() for o in parsed}
    assert back == c


def test_rung_fidelities():
    assert rung_fidelities(1, 27, 3, False) == [1.0, 3.0, 9.0, 27.0]
    assert rung_fidelities(100, 600, 2, True) == [150.0, 300.0, 600.0]
    with pytest.raises(ValueError, match="eta must be >= 2"):
        rung_fidelities(1, 9, 1, False)


def test_hyperband_brackets_match_li_et_al_table():
    # Li et al. (2018), Table 1: R=81, eta=3 -> (n_i, r_i) of the first rung of each bracket
    hb = Hyperband(min_fidelity=1, max_fidelity=81, eta=3)
    first = [(n, fids[0]) for _, n, fids in hb.brackets()]
    assert first == [(81, 1.0), (34, 3.0), (15, 9.0), (8, 27.0), (5, 81.0)]


def _quadratic(c, fidelity):  # true loss c**2; lower fidelity adds a rank-preserving offset
    return float(c) ** 2 + 1.0 / fidelity


def test_successive_halving_promotes_the_best_and_counts_evaluations():
    sh = SuccessiveHalving(n_configs=27, min_fidelity=1, max_fidelity=27, eta=3)
    configs = list(np.random.default_rng(0).uniform(-1, 1, 27))
    hist = sh.run(lambda n, h, r: configs[:n], _quadratic, np.random.default_rng(0))
    per_rung = [sum(t.rung == k for t in hist) for k in range(4)]
    assert per_rung == [27, 9, 3, 1]
    assert incumbent(hist).config == min(configs, key=abs)
    assert incumbent(hist).fidelity == 27
    assert sum(t.cost for t in hist) == pytest.approx((27 * 1 + 9 * 3 + 3 * 9 + 1 * 27) / 27)


def test_hyperband_and_random_search_run_with_a_space():
    space = space_from_config(SPACE)
    f = lambda c, fid: (math.log10(c["lr"]) + 2) ** 2 + 1.0 / fid  # noqa: E731
    hb = Hyperband(min_fidelity=1, max_fidelity=9, eta=3).run(RandomSampler(space), f, np.random.default_rng(1))
    assert {t.bracket for t in hb} == {0, 1, 2}
    rs = RandomSearch(n_trials=5, max_fidelity=9).run(RandomSampler(space), f, np.random.default_rng(1))
    assert len(rs) == 5 and all(t.fidelity == 9 for t in rs)
    b = incumbent_curve(rs)
    assert np.all(np.diff(b) <= 0) and b[-1] == min(t.loss for t in rs)


def test_hyperband_evaluation_count():
    hb = Hyperband(min_fidelity=1, max_fidelity=9, eta=3)
    hist = hb.run(lambda n, h, r: list(r.uniform(size=n)), _quadratic, np.random.default_rng(0))
    # brackets (n, rungs): (9: 9,3,1), (5: 5,1), (3: 3) -> 13 + 6 + 3
    assert len(hist) == 22


def test_portfolio_sampler_proposes_warm_configs_first_and_skips_seen():
    base = lambda n, h, r: [f"rand{i}" for i in range(n)]  # noqa: E731
    sampler = PortfolioSampler(("a", "b", "a"), base)
    assert sampler(3, [], np.random.default_rng(0)) == ["a", "b", "rand0"]
    hist = RandomSearch(n_trials=1).run(sampler, lambda c, f: 0.0, np.random.default_rng(0))
    assert sampler(2, hist, np.random.default_rng(0)) == ["b", "rand0"]
    # the fallback's proposals never repeat a warm or evaluated config while fresh ones can be drawn
    draw = lambda n, h, r: list(r.choice(["a", "b", "c", "d"], n))  # noqa: E731
    for seed in range(20):
        out = PortfolioSampler(("a", "b"), draw)(4, [], np.random.default_rng(seed))
        assert out[:2] == ["a", "b"] and sorted(out[2:]) == ["c", "d"]
    assert len(PortfolioSampler(("a",), lambda n, h, r: ["a"] * n)(3, [], np.random.default_rng(0))) == 3


def test_candidate_sampler_never_repeats_and_uses_prior():
    feats = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    true = (feats ** 2).sum(1)
    rs = RandomSearch(n_trials=20)
    for sampler in (CandidateSampler(feats), CandidateSampler(feats, warm=(5, 5, 7), model=True, prior=true)):
        hist = rs.run(sampler, lambda c, f: float(true[c]), np.random.default_rng(0))
        assert sorted(t.config for t in hist) == list(range(20))
    warm = CandidateSampler(feats, warm=(5, 7), model=True, prior=true)
    assert warm(3, [], np.random.default_rng(0)) == [5, 7, int(np.argmin(true))]


def test_model_based_sampler_beats_random_proposals():
    space = space_from_config(SPACE[:2])
    f = lambda c: (math.log10(c["lr"]) + 2) ** 2 + (math.log2(c["width"]) - 4) ** 2  # noqa: E731
    rng = np.random.default_rng(0)
    hist = RandomSearch(n_trials=10).run(RandomSampler(space), lambda c, fid: f(c), rng)
    mb = ModelBasedSampler(space, random_fraction=0.0)
    proposed = [f(c) for c in mb(8, hist, np.random.default_rng(1))]
    random_ = [f(c) for c in RandomSampler(space)(8, hist, np.random.default_rng(1))]
    assert np.mean(proposed) < np.mean(random_)


def test_rff_ridge_fits_a_smooth_function():
    x = np.linspace(-2, 2, 200)[:, None].astype(np.float32)
    y = np.sin(2 * x[:, 0])
    model = fit_rff_ridge(x[::2], y[::2], seed=0, num_features=256, lengthscale=0.5, l2=1e-5)
    pred = np.asarray(rff_predict(model, x[1::2]))
    assert 1 - np.mean((pred - y[1::2]) ** 2) / np.var(y) > 0.95


def test_gp_interpolates_and_ei_matches_monte_carlo(key):
    x = np.array([[0.0], [0.5], [1.0]], np.float32)
    y = np.array([1.0, -1.0, 0.5], np.float32)
    mean, std = gp_posterior(x, y, x, lengthscale=0.3, noise=1e-6)
    np.testing.assert_allclose(mean, y, atol=1e-3)
    assert float(std.max()) < 1e-2
    m, s, best = 0.3, 0.7, 0.1
    draws = m + s * np.asarray(jax.random.normal(key, (400_000,)))
    mc = np.mean(np.maximum(best - draws, 0))
    assert float(expected_improvement(np.float32(m), np.float32(s), best)) == pytest.approx(mc, rel=1e-2)


def test_nearest_tasks_matches_brute_force():
    rng = np.random.default_rng(0)
    past, q = rng.normal(size=(30, 4)), rng.normal(size=4)
    for p in (1.0, 2.0):
        ref = np.argsort([np.sum(np.abs(r - q) ** p) for r in past])[:5]
        np.testing.assert_array_equal(nearest_tasks(q, past, 5, p=p), ref)
    assert 3 not in nearest_tasks(past[3], past, 5, exclude=[3])


def test_warm_start_configs_nearest_first_and_deduplicated():
    feats = np.array([[0.0], [1.0], [2.0], [10.0]])
    past = PastTasks(["a", "b", "c", "d"], feats, [{"x": 1}, {"x": 1}, {"x": 2}, {"x": 3}], np.zeros(4), ["f"])
    assert warm_start_configs(np.array([0.1]), past, 2) == [{"x": 1}, {"x": 2}]


def test_past_tasks_from_run_store(tmp_path):
    rows = [
        {"experiment": "hpo_x", "metafeatures": {"n": 100, "d": 3}, "hpo": {"task": "t1", "best_config": {"lr": 0.1},
                                                                            "best_loss": 0.5}},
        {"experiment": "hpo_x", "metafeatures": {"n": 100, "d": 3}, "hpo": {"task": "t1", "best_config": {"lr": 0.2},
                                                                            "best_loss": 0.4}},
        {"experiment": "toy", "metrics": {}},
        {"experiment": "hpo_x", "metafeatures": {"n": 5, "d": 9}, "hpo": {"task": "t2", "best_config": {"lr": 0.3},
                                                                          "best_loss": 0.1}},
    ]
    path = tmp_path / "meta.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    past = past_tasks_from_run_store(path)
    assert sorted(past.names) == ["t1", "t2"] and past.feature_names == ["d", "n"]
    assert past.best_configs[past.names.index("t1")] == {"lr": 0.2}  # the better of two runs
    assert past_tasks_from_run_store(path, exclude_task="t2").names == ["t1"]
    with pytest.raises(FileNotFoundError, match="run HPO experiments first"):
        past_tasks_from_run_store(tmp_path / "none.jsonl")


def test_main_effect_importance_recovers_additive_shares():
    rng = np.random.default_rng(0)
    bg = rng.uniform(size=(2000, 3)).astype(np.float32)
    predict = lambda x: 3.0 * x[:, 0] + 1.0 * x[:, 1]  # noqa: E731  x2 is irrelevant
    groups = [("a", slice(0, 1)), ("b", slice(1, 2)), ("c", slice(2, 3))]
    imp = main_effect_importance(predict, bg, groups, max_values=64)
    assert imp["a"] == pytest.approx(0.9, abs=0.08) and imp["b"] == pytest.approx(0.1, abs=0.05)
    assert imp["c"] == pytest.approx(0.0, abs=1e-6)


def test_best_so_far_prefers_higher_fidelity_and_counts_low_fidelity_first():
    from metanas.hpo import Trial

    h = [Trial(0, "a", 1.0, 0.1, 0, 0, 1 / 9), Trial(1, "b", 1.0, 0.3, 0, 0, 1 / 9),
         Trial(2, "b", 9.0, 0.5, 0, 1, 1.0)]
    true = {"a": 10.0, "b": 20.0}
    np.testing.assert_allclose(incumbent_curve(h, true.get), [10.0, 10.0, 20.0])  # b wins once seen at full fidelity


def test_tabular_objective_budgets_and_warm_start():
    from metanas.hpo.simulation import knn_warm_configs, regret_at_budgets, strategy_curves, table_objective

    rng = np.random.default_rng(0)
    regret = rng.uniform(size=(6, 30))
    regret[np.arange(6), rng.integers(0, 30, 6)] = 0.0
    feats = rng.normal(size=(30, 3))
    f = table_objective(regret[2], noise=0.3, max_fidelity=1.0, seed=0, task_index=2)
    assert f(4, 1.0) == regret[2, 4]  # full fidelity is the recorded value
    assert f(4, 0.25) == f(4, 0.25) != regret[2, 4]  # low fidelity: fixed synthetic noise
    sh = SuccessiveHalving(n_configs=9, min_fidelity=1 / 3, max_fidelity=1.0, eta=3)
    for s in ("random", "sh", "bo", "bo+meta"):
        c = strategy_curves(s, regret=regret, config_features=feats, target=2, seeds=[0, 1], budget=8, sh=sh,
                            meta_prior=regret[2])
        assert c.shape == (2, 8)
        fin = c[:, np.isfinite(c).all(0)]
        assert np.all(np.diff(fin, axis=1) <= 1e-12)
    oracle = int(np.argmin(regret[2]))
    warm = strategy_curves("random+knn", regret=regret, config_features=feats, target=2, seeds=[0], budget=3,
                           knn=[oracle])
    assert warm[0, 0] == 0.0  # the warm-start config is evaluated first
    bo_meta = strategy_curves("bo+meta", regret=regret, config_features=feats, target=2, seeds=[0], budget=2,
                              meta_prior=regret[2])
    assert bo_meta[0, 0] == 0.0  # a perfect meta-learner ranks the best config first
    tf = rng.normal(size=(6, 2))
    tf[4] = tf[2] + 1e-3
    assert knn_warm_configs(tf, regret.argmin(1), 2, [0, 1, 3, 4, 5], 1) == [int(regret[4].argmin())]
    h = RandomSearch(n_trials=3).run(lambda n, hist, r: [len(hist)], lambda c, fid: float(regret[0, c]),
                                     np.random.default_rng(0))
    np.testing.assert_allclose(regret_at_budgets(h, lambda c: regret[0, c], 3),
                               np.minimum.accumulate(regret[0, :3]))


def test_trials_table_marks_promoted_configs():
    from metanas.runners.hpo import trials_table

    a, b = {"lr": 0.1}, {"lr": 0.01}
    trials = [dict(index=0, bracket=0, rung=0, fidelity=1.0, config=a, loss=-0.5),
              dict(index=1, bracket=0, rung=0, fidelity=1.0, config=b, loss=-0.7),
              dict(index=2, bracket=0, rung=1, fidelity=3.0, config=b, loss=-0.9)]
    rows = trials_table(trials).splitlines()
    assert rows[0].startswith("| trial | bracket | rung | fidelity | config id | lr | loss | promoted |")
    assert rows[2] == "| 0 | 0 | 0 | 1 | 0 | 0.1 | -0.5000 |  |"
    assert rows[3] == "| 1 | 0 | 0 | 1 | 1 | 0.01 | -0.7000 | yes |"  # b went on to rung 1
    assert rows[4].endswith("| 1 | 0.01 | -0.9000 |  |")
