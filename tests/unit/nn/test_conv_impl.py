"""ops.conv's "gemm" and "patches" implementations (1x1 as matmul; stride-1 'same' kxk with a GEMM filter gradient,
or as im2col + one matmul) equal lax.conv ("lax") in values and first and second reverse-mode derivatives, also inside a
rolled lax.scan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from metanas.nn import primitives as F
from metanas.search_spaces import ops

CASES = [  # (k, stride, dilation, groups, padding, cin, cout)
    (3, 1, 1, 1, None, 4, 6),  # GEMM-VJP path
    (5, 1, 1, 1, None, 3, 5),  # GEMM-VJP path, k=5
    (1, 1, 1, 1, None, 4, 6),  # matmul path
    (1, 2, 1, 1, 0, 4, 6),  # strided 1x1 matmul (NB201 ResNet shortcut / FactorizedReduce)
    (3, 2, 1, 1, None, 4, 6),  # lax fallback
    (3, 1, 2, 1, None, 4, 4),  # dilated: lax fallback
    (3, 1, 1, 4, None, 4, 4),  # depthwise: lax fallback
    (3, 1, 1, 1, 0, 4, 6),  # 'valid' padding: lax fallback
    (3, 1, 1, 1, None, 1, 6),  # one input channel ("patches": taps-first VJP, CNN4's first layer)
    (5, 1, 1, 1, None, 1, 3),  # one input channel, k=5
]


def _loss(impl, k, stride, dilation, groups, padding):
    def f(x, w):
        y = ops.conv(x, w, stride, dilation, groups, padding, impl=impl)
        return jnp.sum(jnp.sin(y) * y)
    return f


@pytest.mark.parametrize("impl", ["gemm", "patches"])
@pytest.mark.parametrize("k,stride,dilation,groups,padding,cin,cout", CASES)
def test_gemm_conv_matches_lax(k, stride, dilation, groups, padding, cin, cout, impl):
    kx, kw = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (2, 9, 8, cin))
    w = jax.random.normal(kw, (k, k, cin // groups, cout)) * 0.3
    args = (k, stride, dilation, groups, padding)
    y_lax = ops.conv(x, w, stride, dilation, groups, padding, impl="lax")
    y_gemm = jax.jit(lambda x, w: ops.conv(x, w, stride, dilation, groups, padding, impl=impl))(x, w)
    np.testing.assert_allclose(y_gemm, y_lax, rtol=1e-5, atol=1e-5)
    g_lax = jax.grad(_loss("lax", *args), (0, 1))(x, w)
    g_gemm = jax.jit(jax.grad(_loss(impl, *args), (0, 1)))(x, w)
    for a, b in zip(g_gemm, g_lax):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # second order (reverse over reverse, as DARTS' exact unrolled hypergradient): grad of a gradient norm
    def gnorm(impl):
        return lambda x, w: jnp.sum(jnp.square(jax.grad(_loss(impl, *args), 1)(x, w)))
    h_lax = jax.grad(gnorm("lax"), (0, 1))(x, w)
    h_gemm = jax.jit(jax.grad(gnorm(impl), (0, 1)))(x, w)
    for a, b in zip(h_gemm, h_lax):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(b))))


def test_one_channel_patches_conv_under_vmap_matches_lax():
    """Per-task kernels under vmap (MAML's CNN4 first layer): the taps-first VJP equals lax.conv's."""
    kx, kw = jax.random.split(jax.random.PRNGKey(3))
    x = jax.random.normal(kx, (3, 2, 7, 7, 1))
    w = jax.random.normal(kw, (3, 3, 3, 1, 5)) * 0.3

    def grads(impl):
        return jax.jit(jax.vmap(jax.grad(lambda x, w: jnp.sum(jnp.sin(F.conv(x, w, impl=impl))), (0, 1))))(x, w)

    for a, b in zip(grads("patches"), grads("lax")):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_gemm_conv_in_rolled_scan():
    """Stacked kernels in a rolled scan (the supernet's per-stage layout): values and gradients as with lax.conv."""
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 8, 4))
    ws = jax.random.normal(jax.random.PRNGKey(2), (3, 3, 3, 4, 4)) * 0.3

    def f(impl):
        def loss(ws, x):
            h, _ = lax.scan(lambda h, w: (jax.nn.relu(ops.conv(h, w, impl=impl)) + h, None), x, ws)
            return jnp.mean(h ** 2)
        return jax.jit(jax.value_and_grad(loss, (0, 1)))

    (v1, g1), (v2, g2) = f("gemm")(ws, x), f("lax")(ws, x)
    np.testing.assert_allclose(v1, v2, rtol=1e-5)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_default_and_unknown_impl():
    assert F.CONV_IMPL in F.CONV_IMPLS
    with pytest.raises(ValueError, match="unknown"):
        ops.conv(jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 2, 2)), impl="nope")


@pytest.mark.slow  # a whole supernet; this file's op-level tests check each implementation's values and gradients
def test_nb201_supernet_gemm_rolled_equals_lax_unrolled(monkeypatch):
    """The default NB201 supernet (gemm convs, rolled scan over a stage's cells) computes the same logits and
    weight / alpha gradients as lax.conv with the unrolled scan."""
    import dataclasses

    from metanas.search_spaces.nb201 import NB201Space
    from metanas.supernet import make_supernet

    x = jax.random.normal(jax.random.PRNGKey(3), (4, 8, 8, 3))
    y = jnp.arange(4) % 3
    # two stages (stem, 2 x 2 cells, one reduction block, head): every part of the 3-stage net, a third less to compile
    net = dataclasses.replace(make_supernet(NB201Space(), C=4, N=2, num_classes=3), num_stages=2)
    assert not net.unroll
    w, a, bs = net.init(jax.random.PRNGKey(4), x)

    def run(net):
        def loss(w, a):
            logits = net.apply(w, a, bs, x)[0]
            return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, y[:, None], -1)[:, 0])
        return jax.jit(jax.value_and_grad(loss, (0, 1)))(w, a)

    v_new, g_new = run(net)
    monkeypatch.setattr(F, "CONV_IMPL", "lax")
    v_old, g_old = run(dataclasses.replace(net, unroll=True))
    np.testing.assert_allclose(v_new, v_old, rtol=1e-5)
    for p, q in zip(jax.tree.leaves(g_new), jax.tree.leaves(g_old)):
        np.testing.assert_allclose(p, q, rtol=1e-3, atol=1e-5)
