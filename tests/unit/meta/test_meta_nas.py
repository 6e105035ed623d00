"""MetaNAS (Reptile on a supernet's weights and alphas) on the shared supernet interface, tiny toy-space network."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metanas.meta import Task, cross_entropy_accuracy
from metanas.meta.metanas import MetaNAS, supernet_apply

supernet = pytest.importorskip("metanas.supernet")


def tiny_net_and_tasks(key, meta_batch=2):
    from metanas.search_spaces.toy import ToySpace

    net = supernet.make_supernet(ToySpace(), C=4, N=1, num_classes=3)
    x = jax.random.normal(key, (meta_batch, 6, 8, 8, 1))
    y = jnp.tile(jnp.array([0, 1, 2, 0, 1, 2]), (meta_batch, 1))
    w, alphas, _ = net.init(key, x[0])
    return net, {"w": w, "alpha": alphas}, Task(x, y, x, y)


@pytest.mark.slow  # ~3 min on the loaded 2-core VM (supernet compile)
def test_metanas_outer_step_is_reptile_on_weights_and_alphas(key):
    """Outer step 1, one task: theta becomes the task's adapted (w, alpha); both move, alpha by its own Adam."""
    net, theta, tasks = tiny_net_and_tasks(key, meta_batch=1)
    apply_fn = supernet_apply(net)
    algo = MetaNAS(inner_steps=2, inner_lr=0.05, inner_opt="sgd", inner_batch=0, alpha_lr=0.1)
    tx = optax.sgd(1.0)
    state = algo.init_state(theta, tx)
    new, metrics = jax.jit(lambda s, t, k: algo.meta_train_step(s, t, k, apply_fn=apply_fn, loss=cross_entropy_accuracy,
                                                                tx=tx))(state, tasks, key)
    task = jax.tree.map(lambda a: a[0], tasks)
    phi, _ = algo.adapt(state.params, (task.support_x, task.support_y), key, apply_fn=apply_fn, loss=cross_entropy_accuracy)
    chex.assert_trees_all_close(new.params["theta"], phi, rtol=1e-4, atol=1e-6)
    assert not np.allclose(new.params["theta"]["alpha"], theta["alpha"])
    assert not np.allclose(jax.tree.leaves(new.params["theta"]["w"])[0], jax.tree.leaves(theta["w"])[0])
    # alpha's inner optimiser is Adam (beta1 0): its first step moves every entry by about alpha_lr
    g = jax.grad(lambda a: cross_entropy_accuracy(apply_fn({"w": theta["w"], "alpha": a}, task.support_x),
                                         task.support_y)[0])(theta["alpha"])
    one = MetaNAS(inner_steps=1, inner_lr=0.05, inner_opt="sgd", inner_batch=0, alpha_lr=0.1)
    phi1, _ = one.adapt(state.params, (task.support_x, task.support_y), key, apply_fn=apply_fn, loss=cross_entropy_accuracy)
    np.testing.assert_allclose(phi1["alpha"] - theta["alpha"], -0.1 * np.sign(g), atol=2e-3)
    assert np.isfinite(float(metrics["loss"]))


@pytest.mark.slow
def test_metanas_adaptation_lowers_support_loss_and_derives_a_genotype(key):
    net, theta, tasks = tiny_net_and_tasks(key)
    apply_fn = supernet_apply(net)
    algo = MetaNAS(inner_steps=5, inner_lr=0.01, inner_opt="adam", inner_batch=0, eval_inner_steps=5)
    r = jax.jit(lambda p, t, k: algo.evaluate(p, t, k, apply_fn=apply_fn, loss=cross_entropy_accuracy))(
        {"theta": theta}, tasks, key)
    assert np.all(np.asarray(r["support_loss_after"]) < np.asarray(r["support_loss_before"]))
    from metanas.search_spaces.toy import ToySpace

    arch = supernet.derive(ToySpace(), theta["alpha"])
    assert arch.shape == (3,)
