"""metanas.initializers: the same values as jax.random, with one compiled program per block length (not per shape)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metanas import initializers

SHAPES = [(3, 3, 16, 16), (5,), (1,), (70_000,), (3, 3, 3, 17), (2, 0), (40, 40)]


@pytest.mark.parametrize("shape", SHAPES)
def test_normal_and_uniform_equal_jax_random(shape):
    key = jax.random.PRNGKey(7)
    scale = jnp.sqrt(2.0 / 37)
    for got, want in (
            (initializers.normal(key, shape, scale), jax.random.normal(key, shape, jnp.float32) * scale),
            (initializers.normal(key, shape, 1e-3), 1e-3 * jax.random.normal(key, shape, jnp.float32)),
            (initializers.uniform(key, shape, -scale, scale), jax.random.uniform(key, shape, jnp.float32, -scale, scale)),
            (initializers.uniform(key, shape, -0.3, 0.7), jax.random.uniform(key, shape, minval=-0.3, maxval=0.7))):
        assert got.shape == want.shape and got.dtype == want.dtype == jnp.float32
        np.testing.assert_array_equal(got, want)


def test_typed_keys_and_traced_keys():
    key = jax.random.key(3)
    np.testing.assert_array_equal(initializers.normal(key, (4, 5)), jax.random.normal(key, (4, 5)))
    k = jax.random.PRNGKey(1)
    under_jit = jax.jit(lambda k: initializers.normal(k, (3, 4), 2.0))(k)
    np.testing.assert_array_equal(under_jit, 2.0 * jax.random.normal(k, (3, 4)))
    under_vmap = jax.vmap(lambda k: initializers.uniform(k, (2, 3), -1.0, 1.0))(jax.random.split(k, 4))
    np.testing.assert_array_equal(under_vmap[2], jax.random.uniform(jax.random.split(k, 4)[2], (2, 3), minval=-1.0,
                                                                    maxval=1.0))


def test_many_shapes_share_one_compiled_block():
    key = jax.random.PRNGKey(0)
    before = initializers._block._cache_size()
    for cin in range(1, 12):
        initializers.normal(key, (3, 3, cin, 2 * cin + 1))
    assert initializers._block._cache_size() - before <= 1  # all fit the 2**16 block: at most one new program
