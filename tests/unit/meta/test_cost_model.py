"""maml_mlp cost family (MAML over an MLP, metanas.meta.cost_model) on SYNTHETIC additive devices: meta-training
lowers the meta-loss, the meta-learnt initialisation adapts to a new device far better than a random one, and
adaptation reads only the k measured cells."""

import jax
import jax.numpy as jnp
import numpy as np
from conftest import synthetic_cost_devices

from metanas.meta.cost_model import MetaMLPCost
from metanas.nn.primitives import mlp_init
from metanas.predictors import cost as C
from metanas.search_spaces.nb201 import NB201Space

X = jnp.asarray(C.cost_features(NB201Space()))
YS = synthetic_cost_devices(X, 7)  # SYNTHETIC: six source devices and one new one
RANK = jnp.asarray(np.argsort(np.argsort(YS[6])).astype(np.float32))
KEYS = jax.vmap(jax.random.PRNGKey)(jnp.arange(3))
MODEL = MetaMLPCost(meta_steps=200)


def test_meta_learnt_mlp_recovers_a_new_synthetic_devices_ranking():
    theta, losses = MODEL.meta_train(jax.random.PRNGKey(0), X, jnp.asarray(YS[:6]), 10)
    losses = np.asarray(losses)
    assert np.isfinite(losses).all() and losses[-50:].mean() < 0.5 * losses[:10].mean()
    y = jnp.asarray(YS[6])
    many = np.asarray(MODEL.few_shot_run(theta, X, y, RANK, KEYS, 200)[0])  # adapted on 200 cells
    few = np.asarray(MODEL.few_shot_run(theta, X, y, RANK, KEYS, 10)[0])
    untrained = np.asarray(MODEL.few_shot_run(mlp_init(jax.random.PRNGKey(0), (X.shape[1], 64, 64, 1)), X, y, RANK,
                                              KEYS, 10)[0])  # the same 5 SGD steps from a random initialisation
    assert many.min() > 0.85 and few.min() > 0.8
    assert few.mean() > untrained.mean() + 0.3


def test_adaptation_reads_only_the_measured_cells():
    theta = mlp_init(jax.random.PRNGKey(1), (X.shape[1], 64, 64, 1))
    y = jnp.asarray(YS[6])
    codes = jnp.arange(0, 15625, 1117)[:10]
    poisoned = jnp.full_like(y, jnp.nan).at[codes].set(y[codes])  # every other cell unmeasured
    np.testing.assert_array_equal(np.asarray(MODEL.adapt_predict(theta, X, y, codes)),
                                  np.asarray(MODEL.adapt_predict(theta, X, poisoned, codes)))
    # a task draws its support and query cells among the measured ones only
    task = MODEL.sample_task(jax.random.PRNGKey(2), X, jnp.where(jnp.arange(len(y)) % 2 == 0, y, jnp.nan), 10)
    assert np.isfinite(np.asarray(task.support_y)).all() and np.isfinite(np.asarray(task.query_y)).all()
    np.testing.assert_allclose(float(task.support_y.mean()), 0.0, atol=1e-5)
