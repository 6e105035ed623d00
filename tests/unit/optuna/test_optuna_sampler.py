"""metanas.optuna.MetaLearnerSampler / MetaLearnerPruner against Optuna's sampler and pruner contract (Optuna >= 5),
on studies in an SQLite storage."""

import math

import numpy as np
import pytest

optuna = pytest.importorskip("optuna", minversion="4")

from metanas.optuna import MetaLearnerPruner, MetaLearnerSampler  # noqa: E402
from metanas.predictors.pairwise import Pairwise  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
SMALL = Pairwise(hidden=16, embed=8, steps=300, ensemble=2, batch=64)


def objective(trial):
    x = trial.suggest_float("x", -2.0, 2.0)
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    q = trial.suggest_float("q", 0.0, 1.0, step=0.25)
    k = trial.suggest_int("k", 1, 9, step=2)
    n = trial.suggest_int("n", 1, 64, log=True)
    c = trial.suggest_categorical("c", ["a", None, True, 2.5])
    return (x - 0.5) ** 2 + (math.log10(lr) + 2) ** 2 + q + 0.1 * k + 0.01 * n + (0.0 if c == "a" else 0.5)


def test_sampler_contract_on_sqlite(tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    sampler = MetaLearnerSampler(seed=0, n_startup_trials=3, n_candidates=256, predictor=SMALL)
    study = optuna.create_study(study_name="toy", storage=storage, sampler=sampler)
    study.optimize(objective, n_trials=6)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 6
    for t in trials:  # every value inside its distribution, steps and types kept
        for name, value in t.params.items():
            d = t.distributions[name]
            assert d._contains(d.to_internal_repr(value)), (name, value, d)
        assert isinstance(t.params["k"], int) and t.params["k"] % 2 == 1
        assert t.params["q"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    # trials after the start-up ones are relative samples of the meta-learner; no configuration twice
    assert len({tuple(sorted(map(str, t.params.items()))) for t in trials}) == 6
    loaded = optuna.load_study(study_name="toy", storage=storage)
    assert loaded.best_value == pytest.approx(min(t.value for t in trials))


def test_dynamic_search_space_and_independent_parameters():
    sampler = MetaLearnerSampler(seed=1, n_startup_trials=2, n_candidates=256, predictor=SMALL)
    study = optuna.create_study(sampler=sampler)

    def obj(trial):
        kind = trial.suggest_categorical("kind", ["a", "b"])
        x = trial.suggest_float(f"x_{kind}", 0.0, 1.0)  # a parameter only some trials have: sampled independently
        return x if kind == "a" else 1 + x

    study.optimize(obj, n_trials=5)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_multi_objective_is_rejected_with_one_clear_message():
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=MetaLearnerSampler(seed=0))
    trial = study.ask()
    with pytest.raises(ValueError, match="single-objective studies.*2 directions.*NSGAIISampler"):
        trial.suggest_float("x", 0.0, 1.0)


def test_maximize_direction_and_seed_determinism():
    def run(seed):
        s = optuna.create_study(direction="maximize",
                                sampler=MetaLearnerSampler(seed=seed, n_startup_trials=10, n_candidates=256))
        s.optimize(lambda t: -objective(t), n_trials=3)
        return [t.params for t in s.trials]

    assert run(3) == run(3) != run(4)


def test_pruner_forecasts_finals_with_the_curve_model_and_prunes_a_bad_trial(tmp_path):
    storage = f"sqlite:///{tmp_path}/p.db"
    old = optuna.create_study(study_name="old", storage=storage)
    for slope in np.linspace(0.1, 1.0, 8):  # earlier study: curves y_t = slope * (10 - t) / 10, final = slope / 10
        t = old.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
        for step in range(10):
            t.report(float(slope * (10 - step) / 10), step)
        old.tell(t, float(slope / 10))
    pruner = MetaLearnerPruner(history=["old"], min_checkpoints=2, threshold=0.9)
    new = optuna.create_study(study_name="new", storage=storage, pruner=pruner)
    dist = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    first = new.ask(dist)
    first.report(0.3, 0)
    assert not first.should_prune()  # no finished trial in this study: no incumbent, never pruned
    for step in range(1, 10):
        first.report(0.3 * (10 - step) / 10, step)
    new.tell(first, 0.03)
    good, bad = new.ask(dist), new.ask(dist)
    for trial, slope in ((good, 0.2), (bad, 1.0)):
        trial.report(slope, 0)
        assert not trial.should_prune()  # one checkpoint < min_checkpoints
        trial.report(slope * 0.9, 1)
    assert not good.should_prune() and bad.should_prune()  # forecast finals 0.02 vs 0.1 against 0.03
    assert pruner.last_probability >= 0.9
    new.tell(bad, state=optuna.trial.TrialState.PRUNED)
    assert not optuna.create_study(pruner=MetaLearnerPruner()).ask().should_prune()  # no curves: never prunes
