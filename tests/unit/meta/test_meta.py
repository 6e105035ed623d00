"""Property tests of the meta-learning algorithms (learn2learn-style), on sinusoid tasks and toy models."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metanas.data.sinusoid import SinusoidTasks
from metanas.meta import ANIL, MAML, MetaSGD, Reptile, Task, cross_entropy_accuracy, mse
from metanas.meta.base import query_metrics, sgd_adapt
from metanas.models.cnn4 import CNN4
from metanas.nn.modules import MLP
from metanas.nn.boundary import pure


def mlp_pair(sizes):
    """The sinusoid MLP (``metanas.nn.modules.MLP``) as the pure pair the meta-learners take."""
    return pure(lambda rngs: MLP(sizes, rngs=rngs))


def sinusoid_tasks(meta_batch=4, k=5, seed=0, step=0):
    return Task(*map(jnp.asarray, SinusoidTasks(k_shot=k, k_query=k).sample(seed, step, meta_batch)))


def toy_apply(p, x):  # a smooth toy model (tanh) so finite differences are well-behaved
    return jnp.tanh(x @ p["w"] + p["c"][None, :]) @ p["head"]["w"] + p["head"]["b"][None, :]


def toy_params(key, hidden=4):
    k1, k2, k3 = jax.random.split(key, 3)
    return {"w": jax.random.normal(k1, (1, hidden)), "c": 0.1 * jax.random.normal(k3, (hidden,)),
            "head": {"w": jax.random.normal(k2, (hidden, 1)) / 2, "b": jnp.zeros((1,))}}


def test_first_order_meta_gradient_is_gradient_at_adapted_params(key):
    algo = MAML(inner_steps=3, inner_lr=0.05, first_order=True)
    init, apply = mlp_pair((1, 16, 16, 1))
    params = init(key)
    tasks = sinusoid_tasks(meta_batch=1)
    meta = algo.init(params)
    grads = jax.grad(lambda m: algo.meta_loss(m, tasks, key, apply_fn=apply, loss=mse)[0])(meta)["theta"]
    task = jax.tree.map(lambda a: a[0], tasks)
    adapted, _ = algo.adapt(meta, (task.support_x, task.support_y), key, apply_fn=apply, loss=mse)
    expected = jax.grad(lambda p: mse(apply(p, task.query_x), task.query_y)[0])(adapted)
    chex.assert_trees_all_close(grads, expected, rtol=1e-5, atol=1e-6)
    # and it is not the gradient at theta (the inner loop moved the params)
    at_theta = jax.grad(lambda p: mse(apply(p, task.query_x), task.query_y)[0])(params)
    assert not np.allclose(jax.tree.leaves(grads)[0], jax.tree.leaves(at_theta)[0], rtol=1e-3)


@pytest.mark.parametrize("algo_cls", [MAML, pytest.param(ANIL, marks=pytest.mark.slow),
                                      pytest.param(MetaSGD, marks=pytest.mark.slow)])
def test_second_order_meta_gradient_matches_finite_differences(key, algo_cls):
    with jax.enable_x64(True):
        algo = algo_cls(inner_steps=2, inner_lr=0.1, first_order=False)
        tasks = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), sinusoid_tasks(meta_batch=2))
        meta = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), algo.init(toy_params(key)))

        def f(m):
            return algo.meta_loss(m, tasks, key, apply_fn=toy_apply, loss=mse)[0]

        grads = jax.grad(f)(meta)
        leaves, treedef = jax.tree.flatten(meta)
        rng = np.random.default_rng(0)
        direction = jax.tree.unflatten(treedef, [jnp.asarray(rng.standard_normal(l.shape)) for l in leaves])
        eps = 1e-6
        plus = jax.tree.map(lambda a, d: a + eps * d, meta, direction)
        minus = jax.tree.map(lambda a, d: a - eps * d, meta, direction)
        fd = (f(plus) - f(minus)) / (2 * eps)
        analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
        np.testing.assert_allclose(float(analytic), float(fd), rtol=1e-6)
        # the first-order approximation differs from it: the check can tell them apart
        fo = algo_cls(inner_steps=2, inner_lr=0.1, first_order=True)
        fo_grads = jax.grad(lambda m: fo.meta_loss(m, tasks, key, apply_fn=toy_apply, loss=mse)[0])(meta)
        fo_dir = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(fo_grads), jax.tree.leaves(direction)))
        assert abs(float(fo_dir) - float(fd)) > 1e-4 * abs(float(fd))


def test_reptile_one_inner_step_is_sgd_with_product_lr(key):
    inner_lr, eps = 0.02, 0.5
    algo = Reptile(inner_steps=1, inner_lr=inner_lr, inner_opt="sgd", inner_batch=0)
    tx = optax.sgd(eps)
    init, apply = mlp_pair((1, 8, 1))
    params = init(key)
    tasks = sinusoid_tasks(meta_batch=3)
    state = algo.init_state(params, tx)
    new, _ = algo.meta_train_step(state, tasks, key, apply_fn=apply, loss=mse, tx=tx)

    def mean_support_loss(p):
        per_task = jax.vmap(lambda x, y: mse(apply(p, x), y)[0])(tasks.support_x, tasks.support_y)
        return jnp.mean(per_task)

    g = jax.grad(mean_support_loss)(params)
    expected = jax.tree.map(lambda p, gp: p - inner_lr * eps * gp, params, g)
    chex.assert_trees_all_close(new.params["theta"], expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("algo", [MAML(inner_steps=5, inner_lr=0.01), MAML(inner_steps=5, inner_lr=0.01, first_order=True),
                                  ANIL(inner_steps=5, inner_lr=0.01), MetaSGD(inner_steps=3, inner_lr=0.01),
                                  Reptile(inner_steps=5, inner_lr=0.01, inner_opt="sgd", inner_batch=0),
                                  Reptile(inner_steps=5, inner_lr=0.001, inner_opt="adam", inner_batch=0)],
                         ids=["maml", "fomaml", "anil", "metasgd", "reptile_sgd", "reptile_adam"])
def test_adaptation_lowers_support_loss(key, algo):
    init, apply = mlp_pair((1, 40, 40, 1))
    params = init(key)
    meta = algo.init(params)
    for t in range(4):
        task = jax.tree.map(lambda a: a[t], sinusoid_tasks(meta_batch=4, k=10))
        support = (task.support_x, task.support_y)
        adapted, losses = algo.adapt(meta, support, key, apply_fn=apply, loss=mse)
        before = mse(apply(params, task.support_x), task.support_y)[0]
        after = mse(apply(adapted, task.support_x), task.support_y)[0]
        assert float(after) < float(before)
        if not (isinstance(algo, Reptile) and algo.inner_batch):  # mini-batch losses are on part of the set
            np.testing.assert_allclose(losses[0], before, rtol=1e-5)


def test_scan_equals_python_loop(key):
    init, apply = mlp_pair((1, 16, 1))
    params = init(key)
    task = jax.tree.map(lambda a: a[0], sinusoid_tasks(meta_batch=1, k=10))
    support = (task.support_x, task.support_y)
    adapted, losses = sgd_adapt(params, 0.05, support, 4, apply_fn=apply, loss=mse, first_order=False)
    p, ref_losses = params, []
    for _ in range(4):
        value, g = jax.value_and_grad(lambda q: mse(apply(q, task.support_x), task.support_y)[0])(p)
        ref_losses.append(value)
        p = jax.tree.map(lambda w, gw: w - 0.05 * gw, p, g)
    chex.assert_trees_all_close(adapted, p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(losses, np.array(ref_losses), rtol=1e-5)

    # Reptile's inner loop (Adam, mini-batches) against an optax Python loop over the same batches
    algo = Reptile(inner_steps=4, inner_lr=0.01, inner_opt="adam", inner_batch=3)
    phi, _ = algo.adapt({"theta": params}, support, key, apply_fn=apply, loss=mse)
    perm = np.asarray(jax.random.permutation(key, 10))
    tx = optax.adam(0.01, b1=0.0, b2=0.999, eps=1e-8)
    p, s = params, tx.init(params)
    for i in range(4):
        idx = perm[(i * 3 + np.arange(3)) % 10]
        g = jax.grad(lambda q: mse(apply(q, task.support_x[idx]), task.support_y[idx])[0])(p)
        u, s = tx.update(g, s, p)
        p = optax.apply_updates(p, u)
    chex.assert_trees_all_close(phi, p, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("algo", [MAML(inner_steps=2, inner_lr=0.01), ANIL(inner_steps=2, inner_lr=0.01),
                                  MetaSGD(inner_steps=1, inner_lr=0.01),
                                  Reptile(inner_steps=2, inner_lr=0.01, persist_inner_state=True),
                                  Reptile(inner_steps=2, inner_lr=0.01)],
                         ids=["maml", "anil", "metasgd", "reptile_persist", "reptile"])
def test_meta_train_step_does_not_retrace(key, algo):
    tx = optax.adam(1e-3) if not isinstance(algo, Reptile) else optax.sgd(1.0)
    init, apply = mlp_pair((1, 8, 1))
    state = algo.init_state(init(key), tx)
    def meta_step(state, tasks, key):
        return algo.meta_train_step(state, tasks, key, apply_fn=apply, loss=mse, tx=tx)

    step = jax.jit(chex.assert_max_traces(meta_step, n=1))
    losses = []
    for i in range(3):
        state, metrics = step(state, sinusoid_tasks(meta_batch=2, step=i), jax.random.fold_in(key, i))
        losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses))
    chex.clear_trace_counter()


@pytest.mark.slow
def test_meta_training_lowers_post_adaptation_loss(key):
    """A few hundred MAML steps on sinusoids lower the post-adaptation query MSE (synthetic tasks)."""
    algo, tx = MAML(inner_steps=1, inner_lr=0.01, eval_inner_steps=1), optax.adam(1e-2)
    init, apply = mlp_pair((1, 40, 40, 1))
    state = algo.init_state(init(key), tx)
    step = jax.jit(functools.partial(algo.meta_train_step, apply_fn=apply, loss=mse, tx=tx))
    test_tasks = sinusoid_tasks(meta_batch=50, k=10, seed=123)
    before = algo.evaluate(state.params, test_tasks, key, apply_fn=apply, loss=mse)["query_loss"].mean()
    for i in range(300):
        state, _ = step(state, sinusoid_tasks(meta_batch=10, k=10, step=i), jax.random.fold_in(key, i))
    after = algo.evaluate(state.params, test_tasks, key, apply_fn=apply, loss=mse)["query_loss"].mean()
    assert float(after) < 0.7 * float(before)


def test_metasgd_learns_step_sizes_and_anil_keeps_body(key):
    init, apply = mlp_pair((1, 8, 1))
    params = init(key)
    tasks = sinusoid_tasks(meta_batch=2)
    msgd = MetaSGD(inner_lr=0.01)
    meta = msgd.init(params)
    g = jax.grad(lambda m: msgd.meta_loss(m, tasks, key, apply_fn=apply, loss=mse)[0])(meta)
    assert any(float(jnp.abs(x).max()) > 0 for x in jax.tree.leaves(g["lr"]))
    anil = ANIL(inner_steps=3, inner_lr=0.05)
    task = jax.tree.map(lambda a: a[0], tasks)
    adapted, _ = anil.adapt({"theta": params}, (task.support_x, task.support_y), key, apply_fn=apply, loss=mse)
    chex.assert_trees_all_equal(adapted["hidden"], params["hidden"])
    assert not np.allclose(adapted["head"]["kernel"], params["head"]["kernel"])


def test_non_transductive_query_points_are_independent(key):
    init, apply = pure(lambda rngs: CNN4(3, channels=4, hw=16, rngs=rngs))
    params = init(key)
    x = jax.random.normal(key, (9, 16, 16, 1))
    task = Task(x[:3], jnp.arange(3), x[3:], jnp.array([0, 1, 2, 0, 1, 2]))
    apply = jax.jit(apply)
    a = query_metrics(params, task, apply_fn=apply, loss=cross_entropy_accuracy, transductive=False)
    # changing the other query points leaves each point's prediction unchanged when not transductive
    task2 = task._replace(query_x=task.query_x.at[1:].set(0.0), query_y=task.query_y)
    one = lambda t: jax.jit(jax.vmap(lambda q: apply(params, jnp.concatenate([t.support_x, q[None]]))[-1]))(t.query_x)
    np.testing.assert_allclose(one(task)[0], one(task2)[0], rtol=1e-5, atol=1e-6)
    full1, full2 = apply(params, task.query_x)[0], apply(params, task2.query_x)[0]
    assert not np.allclose(full1, full2, atol=1e-4)  # transductive batch statistics do mix query points
    # the non-transductive query loss is the mean over query points, each scored with the support set alone
    np.testing.assert_allclose(a[0], cross_entropy_accuracy(one(task), task.query_y)[0], rtol=1e-5)
    # Reptile's ``transductive`` flag picks the protocol in ``evaluate`` (inner_lr 0: params stay at theta)
    batch = jax.tree.map(lambda v: v[None], task)
    for flag, expected in ((False, a[0]), (True, cross_entropy_accuracy(apply(params, task.query_x), task.query_y)[0])):
        algo = Reptile(inner_steps=1, inner_lr=0.0, inner_opt="sgd", inner_batch=0, eval_inner_steps=1,
                       transductive=flag)
        r = algo.evaluate({"theta": params}, batch, key, apply_fn=apply, loss=cross_entropy_accuracy)
        np.testing.assert_allclose(r["query_loss"][0], expected, rtol=1e-5)
    assert not np.isclose(float(a[0]), float(cross_entropy_accuracy(apply(params, task.query_x), task.query_y)[0]))


def test_cnn4_patches_conv_matches_lax_conv(key):
    pairs = [pure(lambda rngs, i=i: CNN4(5, channels=8, hw=16, impl=i, rngs=rngs)) for i in ("patches", "gemm", "lax")]
    params = pairs[0][0](key)
    x = jax.random.normal(key, (4, 16, 16, 1))
    patches, gemm, lax = (jax.jit(apply) for _, apply in pairs)
    np.testing.assert_allclose(patches(params, x), lax(params, x), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gemm(params, x), lax(params, x), rtol=1e-4, atol=1e-4)
    assert patches(params, x).shape == (4, 5)
    n_params = sum(p.size for p in jax.tree.leaves(pure(lambda rngs: CNN4(5, rngs=rngs))[0](key)))
    assert n_params == 112_261  # the W2 peer's CNN4 (shared/bench/README.md)


def test_sinusoid_tasks_follow_the_paper_ranges():
    fam = SinusoidTasks(k_shot=5, k_query=7)
    sx, sy, qx, qy = fam.sample(0, 3, 64)
    assert sx.shape == (64, 5, 1) and qx.shape == (64, 7, 1)
    assert sx.min() >= -5 and sx.max() <= 5 and np.abs(sy).max() <= 5
    again = fam.sample(0, 3, 64)
    np.testing.assert_array_equal(again[0], sx)
    assert not np.array_equal(fam.sample(0, 4, 64)[0], sx)


def test_reptile_task_map_equals_vmap(key):
    """task_map="map" (lax.map over tasks, the fast path for conv nets on CPU) = "vmap": meta-step and evaluate."""
    import dataclasses

    base = Reptile(inner_steps=3, inner_lr=0.01, inner_opt="adam", inner_batch=3, eval_inner_steps=4)
    tx = optax.sgd(0.7)
    init, apply = mlp_pair((1, 8, 1))
    params = init(key)
    tasks = sinusoid_tasks(meta_batch=3, k=6)
    out = {}
    for mode in ("vmap", "map"):
        algo = dataclasses.replace(base, task_map=mode)
        state = algo.init_state(params, tx)
        new, metrics = algo.meta_train_step(state, tasks, key, apply_fn=apply, loss=mse, tx=tx)
        out[mode] = (new.params, metrics, algo.evaluate(new.params, tasks, key, apply_fn=apply, loss=mse))
    chex.assert_trees_all_close(out["map"], out["vmap"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(out["map"][0]["theta"]["head"]["kernel"], params["head"]["kernel"])  # the step moved theta
    with pytest.raises(ValueError, match="task_map"):
        dataclasses.replace(base, task_map="pmap").meta_train_step(base.init_state(params, tx), tasks, key,
                                                                    apply_fn=apply, loss=mse, tx=tx)


@pytest.mark.parametrize("algo_cls", [MAML, pytest.param(ANIL, marks=pytest.mark.slow),
                                      pytest.param(MetaSGD, marks=pytest.mark.slow)])
@pytest.mark.parametrize("first_order", [False, True])
def test_meta_step_gradient_equals_autodiff_of_meta_loss(key, algo_cls, first_order):
    """meta_value_and_grad (J^T g: vjp of the inner loops, query gradients one task at a time or vmapped) =
    jax.value_and_grad of meta_loss, tasks vmapped or mapped in each stage, unrolled or rolled inner loops; a bad
    query_map is named in the error."""
    init, apply = mlp_pair((1, 16, 16, 1))
    params = init(key)
    tasks = sinusoid_tasks(meta_batch=3)
    ref_algo = algo_cls(inner_steps=2, inner_lr=0.1, first_order=first_order)
    meta = ref_algo.init(params)
    ref = jax.value_and_grad(ref_algo.meta_loss, has_aux=True)(meta, tasks, key, apply_fn=apply, loss=mse)
    for task_map, query_map, unroll_inner in [("vmap", "vmap", 8), ("map", "map", 8), ("vmap", "auto", 0)]:
        algo = algo_cls(inner_steps=2, inner_lr=0.1, first_order=first_order, task_map=task_map,
                        query_map=query_map, unroll_inner=unroll_inner)
        got = algo.meta_value_and_grad(meta, tasks, key, apply_fn=apply, loss=mse)
        chex.assert_trees_all_close(got, ref, rtol=1e-5, atol=1e-6)
    assert float(optax.global_norm(ref[1])) > 1e-3  # a gradient that can differ
    with pytest.raises(ValueError, match="query_map 'pmap' is unknown; use 'auto', 'map' or 'vmap'"):
        algo_cls(query_map="pmap").meta_value_and_grad(meta, tasks, key, apply_fn=apply, loss=mse)
