"""Random parameter initialisers that compile once per process instead of once per array shape.

Outside ``jit``, every ``jax.random.normal(key, shape)`` call compiles a threefry program for that shape: 0.6-1.5 s
each on XLA:CPU (``JAX_LOG_COMPILES=1 python -m metanas experiment=darts_nb201 debug=fast`` logged 16 s for 9 kernel
shapes, of a 63 s run). With JAX's (default)
partitionable threefry, the draws of a shape are the first ``size`` draws of any longer flat array from the same key
(``normal(k, s) == normal(k, (m,))[:size].reshape(s)``), so ``normal`` and ``uniform`` here draw a flat block of a
power-of-two length (at least 2**16; one compiled program per length) and cut it on the host: the same values as
``jax.random`` (the tests check this), a handful of compiles. Inside ``jit`` / ``vmap`` (traced keys) they are plain
``jax.random`` calls.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

_MIN_BLOCK = 2**16


@functools.partial(jax.jit, static_argnums=(1, 2))
def _block(key: jax.Array, kind: str, n: int, a: jax.Array, b: jax.Array) -> jax.Array:
    """n standard normals, or ``uniform(a, b)`` (a, b traced: one program per (kind, n))."""
    if kind == "normal":
        return jax.random.normal(key, (n,), jnp.float32)
    return jax.random.uniform(key, (n,), jnp.float32, a, b)


def _draw(key: jax.Array, kind: str, shape: tuple[int, ...], a, b) -> np.ndarray:
    size = int(np.prod(shape, dtype=np.int64))
    n = max(_MIN_BLOCK, 1 << max(size - 1, 0).bit_length())
    return np.asarray(_block(key, kind, n, jnp.float32(a), jnp.float32(b)))[:size].reshape(shape)


def _plain(key) -> bool:
    """Use ``jax.random`` itself: a traced key (under ``jit`` / ``vmap``), or a threefry without the prefix property."""
    return isinstance(key, jax.core.Tracer) or not jax.config.jax_threefry_partitionable


def normal(key: jax.Array, shape: tuple[int, ...], scale: float | jax.Array = 1.0) -> jax.Array:
    """``jnp.float32(scale) * jax.random.normal(key, shape, float32)``."""
    if _plain(key) or isinstance(scale, jax.core.Tracer):
        return jnp.float32(scale) * jax.random.normal(key, shape, jnp.float32)
    return jnp.asarray(_draw(key, "normal", tuple(shape), 0.0, 0.0) * np.float32(scale))  # float32 product, as XLA


def uniform(key: jax.Array, shape: tuple[int, ...], minval: float | jax.Array = 0.0,
            maxval: float | jax.Array = 1.0) -> jax.Array:
    """``jax.random.uniform(key, shape, float32, minval, maxval)``."""
    if _plain(key) or any(isinstance(v, jax.core.Tracer) for v in (minval, maxval)):
        return jax.random.uniform(key, shape, jnp.float32, minval, maxval)
    return jnp.asarray(_draw(key, "uniform", tuple(shape), minval, maxval))
