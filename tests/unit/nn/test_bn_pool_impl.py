"""ops.batch_norm (custom VJP: closed-form backward) and ops.avg_pool (shifted slices) equal the plain autodiff
formulations they replace, in values and first and second reverse-mode derivatives (DARTS' exact second-order
hypergradient differentiates through the weight gradient)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from metanas.search_spaces import ops


def bn_reference(x, p=None, eps=1e-5):
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axes, keepdims=True)
    y = (x - mean) * lax.rsqrt(var + eps)
    return y if p is None else y * p["scale"].reshape(1, 1, 1, -1) + p["bias"].reshape(1, 1, 1, -1)


def avg_pool_reference(x, k, stride, padding):
    """lax.reduce_window sum divided by the number of in-image pixels (count_include_pad=False)."""
    pads = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    win, strides = (1, k, k, 1), (1, stride, stride, 1)
    s = lax.reduce_window(x, 0.0, lax.add, win, strides, pads)
    n = lax.reduce_window(jnp.ones((1, *x.shape[1:3], 1), x.dtype), 0.0, lax.add, win, strides, pads)
    return s / n


def _close(a, b, rtol):
    """Leaf by leaf, with an absolute tolerance of ``rtol`` times the leaf's scale (at least 1% of the largest leaf's:
    a conv bias before BN has an analytically zero gradient, i.e. float noise)."""
    leaves = jax.tree.leaves(b)
    top = max(float(jnp.max(jnp.abs(v))) for v in leaves)
    for u, v in zip(jax.tree.leaves(a), leaves):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=rtol * max(float(jnp.max(jnp.abs(v))), 1e-2 * top))


@pytest.mark.parametrize("affine", [False, True])
def test_batch_norm_custom_vjp_matches_autodiff(affine):
    kx, kr, kp = jax.random.split(jax.random.PRNGKey(0), 3)
    x = 3.0 * jax.random.normal(kx, (4, 5, 6, 7)) + 1.5
    r = jax.random.normal(kr, x.shape)
    p = {"scale": 1 + 0.1 * jax.random.normal(kp, (7,)), "bias": jnp.arange(7.0) / 7} if affine else None

    def loss(bn):
        return lambda x, p: jnp.sum(jnp.sin(bn(x, p)) * r)

    np.testing.assert_allclose(jax.jit(ops.batch_norm)(x, p), bn_reference(x, p), rtol=1e-5, atol=1e-5)
    _close(jax.jit(jax.grad(loss(ops.batch_norm), (0, 1)))(x, p), jax.grad(loss(bn_reference), (0, 1))(x, p), 1e-4)

    # second order: grad of the squared input-gradient norm (reverse over reverse)
    def gnorm(bn):
        return lambda x, p: jnp.sum(jnp.square(jax.grad(loss(bn))(x, p)))

    _close(jax.jit(jax.grad(gnorm(ops.batch_norm), (0, 1)))(x, p), jax.grad(gnorm(bn_reference), (0, 1))(x, p), 1e-3)


def test_batch_norm_custom_vjp_in_rolled_scan_and_under_vmap():
    xs = jax.random.normal(jax.random.PRNGKey(1), (3, 2, 4, 4, 5))
    ws = jax.random.normal(jax.random.PRNGKey(2), (3, 5, 5))

    def loss(bn):
        def f(ws, x):
            h, _ = lax.scan(lambda h, w: (jax.nn.relu(bn(h @ w)) + h, None), x, ws)
            return jnp.mean(h ** 2)
        return f

    for x in xs[:2]:
        _close(jax.jit(jax.value_and_grad(loss(ops.batch_norm), (0, 1)))(ws, x),
               jax.value_and_grad(loss(bn_reference), (0, 1))(ws, x), 1e-4)
    _close(jax.jit(jax.vmap(jax.grad(loss(ops.batch_norm)), (None, 0)))(ws, xs),
           jax.vmap(jax.grad(loss(bn_reference)), (None, 0))(ws, xs), 1e-4)


@pytest.mark.parametrize("shape,k,stride,padding", [((2, 9, 8, 3), 3, 1, 1), ((2, 9, 8, 3), 3, 2, 1),
                                                    ((2, 8, 8, 3), 3, 2, 1), ((1, 7, 10, 2), 5, 1, 2)])
def test_avg_pool_matches_reduce_window(shape, k, stride, padding):
    x = jax.random.normal(jax.random.PRNGKey(3), shape)
    ref = avg_pool_reference(x, k, stride, padding)
    out = jax.jit(lambda x: ops.avg_pool(x, k, stride, padding))(x)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    r = jax.random.normal(jax.random.PRNGKey(4), ref.shape)
    g = jax.grad(lambda x: jnp.sum(ops.avg_pool(x, k, stride, padding) * r))(x)
    g_ref = jax.grad(lambda x: jnp.sum(avg_pool_reference(x, k, stride, padding) * r))(x)
    np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-6)
    # count_include_pad=False: a constant image pools to itself, corners included
    np.testing.assert_allclose(ops.avg_pool(jnp.full(shape, 2.5), k, stride, padding), jnp.full(ref.shape, 2.5),
                               rtol=1e-6)


def test_source_fused_cell_leaves_out_none_with_the_same_alpha_gradient():
    """The by-source NB201 cell leaves the "none" op (w * 0) out of each mixed sum: the loss and its gradients with
    respect to the weights and to all alphas (none's included, through the softmax) equal the edge-by-edge cell's."""
    from metanas.search_spaces.nb201 import EDGES, NB201_OPS
    from metanas.nn.boundary import Pure
    from metanas.supernet.cell import Cell, CellSpec

    assert ops.op_kind(ops.get_op("none", 4)) == ("stateless", "zero")
    key = jax.random.PRNGKey(5)
    spec = CellSpec(C=4, edges=EDGES, edge_ops=tuple(NB201_OPS for _ in EDGES))
    cell = Pure(lambda rngs: Cell(spec, rngs=rngs))
    (p,) = cell.init(key)
    x = jax.random.normal(jax.random.fold_in(key, 1), (3, 6, 6, 4))
    r = jax.random.normal(jax.random.fold_in(key, 3), (3, 6, 6, 4))
    alpha = jax.random.normal(jax.random.fold_in(key, 2), (6, 5))

    def loss(plain):
        def f(p, a):
            kw = {"drop_key": key, "drop_prob": 0.0} if plain else {}
            return jnp.sum(cell.merge(p)((x,), jax.nn.softmax(a, -1), **kw) * r)
        return jax.jit(jax.value_and_grad(f, (0, 1)))

    (v1, g1), (v2, g2) = loss(False)(p, alpha), loss(True)(p, alpha)
    np.testing.assert_allclose(v1, v2, rtol=1e-5)
    _close(g1, g2, 1e-4)
    assert float(jnp.max(jnp.abs(g1[1][:, 0]))) > 0  # none's alpha is still trained (softmax coupling)
