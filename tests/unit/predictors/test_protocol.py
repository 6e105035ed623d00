"""Every predictor keeps the ``Predictor`` contract (``metanas.predictors.protocol``): hashable hyperparameters,
``fit(key, x, y, n)`` that reads only the first ``n`` rows, ``score`` [M] and ``score_std`` ([M], [M] >= 0), jittable
unless it says ``jittable = False``. SYNTHETIC data (a random linear target)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metanas.predictors import MLP, Pairwise, Predictor, Ridge
from metanas.predictors.cost import BayesLinearCost, CostPrior
from metanas.predictors.select import Blend, Columns
from metanas.predictors.trees import BoostedTrees, RandomForest, is_jittable

D, N, n = 5, 24, 16

MODELS = {
    "ridge": lambda: Ridge(),
    "mlp": lambda: MLP(hidden=16, steps=40),
    "pairwise": lambda: Pairwise(hidden=16, embed=8, steps=40, batch=64, ensemble=2),
    "blend": lambda: Blend((Ridge(), Ridge(lam=10.0))),
    "columns": lambda: Columns(Ridge(), (True, False, True, False, True)),
    "bayes_linear_cost": lambda: BayesLinearCost(CostPrior(jnp.zeros(D), jnp.eye(D), jnp.asarray(0.1))),
    "random_forest": lambda: RandomForest(trees=20),
    "boosted_trees": lambda: BoostedTrees(),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_predictor_keeps_the_contract(name, key):
    if name in ("random_forest", "boosted_trees"):
        pytest.importorskip("sklearn")
    model = MODELS[name]()
    assert isinstance(model, Predictor)
    hash(model)  # frozen hyperparameters: usable as a static jit argument and a cache key
    kx, kw, kf = jax.random.split(key, 3)
    x = jax.random.uniform(kx, (N, D))
    y = 1.0 + x @ jax.random.uniform(kw, (D,))  # positive (the cost model normalises by the median)
    poisoned = y.at[n:].set(1e3)  # rows past n are padding: they must not change the fit
    jittable = is_jittable(model)
    fit = jax.jit(model.fit) if jittable else model.fit
    p_clean, p_poisoned = fit(kf, x, y, n), fit(kf, x, poisoned, n)
    s = np.asarray(model.score(p_clean, x))
    assert s.shape == (N,) and np.isfinite(s).all()
    np.testing.assert_allclose(np.asarray(model.score(p_poisoned, x)), s, rtol=1e-5, atol=1e-5)
    mean, std = (np.asarray(a) for a in model.score_std(p_clean, x))
    assert mean.shape == std.shape == (N,) and (std >= 0).all()
    np.testing.assert_allclose(mean, s, rtol=1e-5, atol=1e-5)
    # it learnt something: the training rows' scores rank with the target (a ranker's score is a utility too)
    assert np.corrcoef(s[:n], np.asarray(y[:n]))[0, 1] > 0.3, name


def test_the_protocol_check_fails_for_an_object_without_score_std():
    class Half:
        def fit(self, key, x, y, n): ...

        def score(self, params, x): ...

    assert not isinstance(Half(), Predictor)
