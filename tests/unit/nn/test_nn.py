"""metanas.nn: the NNX modules equal the formulas they replace, and `pure` runs every meta-learner over a user's
own flax module ("bring your own model")."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from metanas.meta import ANIL, MAML, MetaSGD, Reptile, Task, cross_entropy_accuracy
from metanas.models.cnn4 import CNN4
from metanas.nn import primitives as F
from metanas.nn.modules import MLP
from metanas.nn.boundary import pure


def test_mlp_params_and_formula():
    init, apply = pure(lambda rngs: MLP((1, 8, 8, 2), rngs=rngs))
    p = init(jax.random.key(0))
    assert set(p) == {"hidden", "head"} and set(p["hidden"]) == {0, 1} and p["head"]["kernel"].shape == (8, 2)
    x = jax.random.normal(jax.random.key(1), (5, 1))
    h = x
    for k in (0, 1):
        h = jax.nn.relu(h @ p["hidden"][k]["kernel"] + p["hidden"][k]["bias"][None])
    np.testing.assert_allclose(apply(p, x), h @ p["head"]["kernel"] + p["head"]["bias"][None], rtol=1e-6)
    assert float(jnp.max(jnp.abs(p["hidden"][0]["kernel"]))) <= 1.0  # U(+-1/sqrt(fan_in)), fan_in 1


def test_cnn4_equals_the_plain_formula():
    p = pure(lambda rngs: CNN4(3, channels=4, hw=16, rngs=rngs))[0](jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (6, 16, 16, 1))
    h = x
    for i in range(4):
        c = p["convs"][i]
        h = jax.lax.conv_general_dilated(h, c["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        h = h + c["bias"][None, None, None]
        mean = h.mean((0, 1, 2), keepdims=True)
        var = ((h - mean) ** 2).mean((0, 1, 2), keepdims=True)
        bn = p["bns"][i]
        h = (h - mean) / jnp.sqrt(var + 1e-5) * bn["scale"][None, None, None] + bn["bias"][None, None, None]
        h = jax.lax.reduce_window(jax.nn.relu(h), -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    ref = h.reshape(6, -1) @ p["head"]["kernel"] + p["head"]["bias"][None]
    for impl in ("patches", "gemm", "lax"):
        _, apply = pure(lambda rngs: CNN4(3, channels=4, hw=16, impl=impl, rngs=rngs))
        np.testing.assert_allclose(jax.jit(apply)(p, x), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k", [2, 3])
def test_max_pool_windows_equal_reduce_window_with_autodiff_gradients(k):
    """Values as reduce_window (floor mode, odd sizes); first and second derivatives as autodiff of the reshape + max
    formula, ties included (relu zeros and repeated values share the gradient equally, as JAX's max rule)."""
    x = jax.random.normal(jax.random.key(0), (2, 7, 8, 3))
    x = jnp.where(jnp.abs(x) < 0.4, 0.0, x).at[:, 0, 0, :].set(x[:, 0, 1, :])  # exact ties
    ref = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, k, k, 1), (1, k, k, 1), "VALID")
    np.testing.assert_array_equal(F.max_pool(x, k, k, 0), ref)

    def autodiff_pool(x):
        n, h, w, c = x.shape
        return jnp.max(x[:, :k * (h // k), :k * (w // k)].reshape(n, h // k, k, w // k, k, c), axis=(2, 4))

    def loss(pool):
        return lambda x: jnp.sum(jnp.sin(pool(jax.nn.relu(x))) * jnp.arange(3.0)[None, None, None])

    np.testing.assert_allclose(jax.grad(loss(lambda x: F.max_pool(x, k, k, 0)))(x), jax.grad(loss(autodiff_pool))(x),
                               rtol=1e-6, atol=1e-6)

    def gnorm(pool):
        return lambda x: jnp.sum(jnp.square(jax.grad(loss(pool))(x) * x))

    np.testing.assert_allclose(jax.grad(gnorm(lambda x: F.max_pool(x, k, k, 0)))(x), jax.grad(gnorm(autodiff_pool))(x),
                               rtol=1e-5, atol=1e-5)


class SmallConvNet(nnx.Module):  # a "user's" module: flax's own layers, no metanas layers
    def __init__(self, ways, *, rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.head = nnx.Linear(4, ways, rngs=rngs)

    def __call__(self, x):
        return self.head(jnp.mean(jax.nn.relu(self.conv(x)), axis=(1, 2)))


@pytest.mark.parametrize("algo", [MAML(inner_steps=2, inner_lr=0.1), MAML(inner_steps=2, inner_lr=0.1, first_order=True),
                                  ANIL(inner_steps=2, inner_lr=0.1), MetaSGD(inner_steps=1, inner_lr=0.1),
                                  Reptile(inner_steps=2, inner_lr=0.01, inner_batch=0)],
                         ids=["maml", "fomaml", "anil", "metasgd", "reptile"])
def test_every_meta_learner_runs_over_a_user_flax_module(algo):
    init, apply = pure(lambda rngs: SmallConvNet(3, rngs=rngs))
    params = init(jax.random.key(0))
    assert set(params) == {"conv", "head"}
    x = jax.random.normal(jax.random.key(1), (2, 6, 8, 8, 1))
    y = jnp.tile(jnp.arange(3), (2, 2))
    tasks = Task(x[:, :3], y[:, :3], x[:, 3:], y[:, 3:])
    tx = optax.adam(1e-2)
    state = algo.init_state(params, tx)
    new, metrics = jax.jit(lambda s: algo.meta_train_step(s, tasks, jax.random.key(2), apply_fn=apply,
                                                          loss=cross_entropy_accuracy, tx=tx))(state)
    assert np.isfinite(float(metrics["loss"]))
    moved = jax.tree.map(lambda a, b: not np.allclose(a, b), new.params["theta"], state.params["theta"])
    assert any(jax.tree.leaves(moved))


def test_pure_refuses_modules_with_non_param_state():
    class WithStats(nnx.Module):
        def __init__(self, *, rngs):
            self.bn = nnx.BatchNorm(3, rngs=rngs)

        def __call__(self, x):
            return self.bn(x)

    init, _ = pure(lambda rngs: WithStats(rngs=rngs))
    with pytest.raises(TypeError, match=r"holds \['BatchStat'\] besides \['Param'\]"):
        init(jax.random.key(0))


def test_meta_and_search_import_no_flax():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "metanas"
    for pkg in ("meta", "search"):
        for f in (root / pkg).glob("*.py"):
            for node in ast.walk(ast.parse(f.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                assert not any(n.split(".")[0] == "flax" for n in names), f"{f} imports flax"


def test_pure_apply_works_before_init_in_the_same_process():
    """A restored params dict can be applied by a fresh ``pure`` pair whose ``init`` never ran."""
    from metanas.nn.modules import MLP

    init, apply = pure(lambda rngs: MLP((2, 4, 1), rngs=rngs))
    p = init(jax.random.key(0))
    _, fresh_apply = pure(lambda rngs: MLP((2, 4, 1), rngs=rngs))
    x = jnp.ones((3, 2))
    np.testing.assert_allclose(fresh_apply(p, x), apply(p, x))


def test_apply_after_init_reuses_the_built_graph(monkeypatch):
    """A supernet's ``apply`` after its ``init`` takes the graph definition ``init`` built (rebuilding a supernet
    abstractly cost seconds of the first step); an equal network that never ran ``init`` (restored weights) builds
    its own once, abstractly, and computes the same outputs. Nothing is shared through a process-wide cache."""
    from metanas.nn import boundary
    from metanas.search_spaces import NB201Space
    from metanas.supernet import make_supernet

    net = make_supernet(NB201Space(), C=4, N=1, num_classes=3)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 3))
    w, a, bs = net.init(jax.random.PRNGKey(0), x)
    rebuilt, eval_shape = [], nnx.eval_shape
    monkeypatch.setattr(boundary.nnx, "eval_shape", lambda *args, **kw: rebuilt.append(1) or eval_shape(*args, **kw))
    y, _ = net.apply(w, a, bs, x)
    assert not rebuilt
    fresh = make_supernet(NB201Space(), C=4, N=1, num_classes=3)
    assert fresh == net and not fresh.pures
    assert net.pures and not dataclasses.replace(net, unroll=True).pures  # a changed config builds its own graph
    y_rebuilt, _ = fresh.apply(w, a, bs, x)
    y_again, _ = fresh.apply(w, a, bs, x)
    assert len(rebuilt) == 1
    np.testing.assert_array_equal(y, y_rebuilt)
    np.testing.assert_array_equal(y, y_again)
