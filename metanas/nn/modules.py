"""flax NNX layer modules over the plain-function layers of ``metanas.nn.primitives`` (the fast custom-VJP
convolution and batch norm), and the one MLP of the package.

Parameters are ``nnx.Param``. Batch norm uses the batch's statistics (``track_running_stats=False``, as the NAS
search codes and MAML's reference code) unless ``BatchNorm.track`` gave it running statistics (``nnx.BatchStat``),
as a network whose reference has them does (``make_derived(..., running_stats=True)``). Random draws go through
``metanas.initializers`` (a handful of compiles per process instead of one per array shape).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from metanas import initializers
from metanas.nn import primitives as F


def fan_in_uniform(key: jax.Array, shape: tuple[int, ...], fan_in: int) -> jax.Array:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's nn.Linear / nn.Conv2d default)."""
    bound = 1.0 / float(fan_in) ** 0.5
    return initializers.uniform(key, shape, -bound, bound)


def _row(b: jax.Array, ndim: int) -> jax.Array:
    """A per-channel vector shaped to broadcast over the last axis of an ``ndim``-d array (explicit ranks)."""
    return b.reshape((1,) * (ndim - 1) + (-1,))


class Conv(nnx.Module):
    """NHWC x HWIO convolution (``primitives.conv``, 'same' padding by default), optional bias.

    ``init="kaiming"``: kernel ~ N(0, 2 / fan_in) (NB201 / DARTS); ``"uniform"``: kernel and bias
    ~ U(+-1/sqrt(fan_in)) (PyTorch's default, MAML's CNN4). ``impl``: see ``primitives.CONV_IMPLS`` (None: the
    module-wide ``primitives.CONV_IMPL``)."""

    def __init__(self, cin: int, cout: int, k: int, *, stride: int = 1, dilation: int = 1, groups: int = 1,
                 padding: int | None = None, bias: bool = False, init: str = "kaiming", impl: str | None = None,
                 rngs: nnx.Rngs):
        fan_in = k * k * cin // groups
        shape = (k, k, cin // groups, cout)
        if init == "kaiming":
            self.kernel = nnx.Param(initializers.normal(rngs.params(), shape, (2.0 / fan_in) ** 0.5))
            self.bias = nnx.Param(jnp.zeros((cout,), jnp.float32)) if bias else None
        elif init == "uniform":
            self.kernel = nnx.Param(fan_in_uniform(rngs.params(), shape, fan_in))
            self.bias = nnx.Param(fan_in_uniform(rngs.params(), (cout,), fan_in)) if bias else None
        else:
            raise ValueError(f"Conv init {init!r} is unknown; use 'kaiming' or 'uniform'")
        self.stride, self.dilation, self.groups, self.padding, self.impl = stride, dilation, groups, padding, impl

    def __call__(self, x: jax.Array) -> jax.Array:
        y = F.conv(x, self.kernel[...], self.stride, self.dilation, self.groups, self.padding, impl=self.impl)
        return y if self.bias is None else y + _row(self.bias[...], y.ndim)


class BatchNorm(nnx.Module):
    """Batch norm over (batch, H, W) with the batch's statistics (``primitives.batch_norm``); ``affine`` adds a
    learned scale (1) and shift (0).

    ``track()`` adds running statistics (PyTorch's ``BatchNorm2d``: ``mean`` 0 and ``var`` 1, ``nnx.BatchStat``;
    each training call moves them by ``momentum`` towards the batch's mean and unbiased variance); with
    ``use_running_average`` (``nnx.Module.eval()`` sets it) they replace the batch's statistics."""

    def __init__(self, C: int, *, affine: bool = True, eps: float = 1e-5):
        self.scale = nnx.Param(jnp.ones((C,), jnp.float32)) if affine else None
        self.bias = nnx.Param(jnp.zeros((C,), jnp.float32)) if affine else None
        self.eps, self.C = eps, C
        self.mean = self.var = None
        self.momentum, self.use_running_average = 0.1, False

    def track(self, momentum: float = 0.1) -> None:
        """Hold running statistics from now on (see the class doc)."""
        self.mean = nnx.data(nnx.BatchStat(jnp.zeros((self.C,), jnp.float32)))  # was a static None
        self.var = nnx.data(nnx.BatchStat(jnp.ones((self.C,), jnp.float32)))
        self.momentum = momentum

    def __call__(self, x: jax.Array) -> jax.Array:
        p = None if self.scale is None else {"scale": self.scale[...], "bias": self.bias[...]}
        if self.mean is None:
            return F.batch_norm(x, p, self.eps)
        if self.use_running_average:
            y = (x - _row(self.mean[...], x.ndim)) * jax.lax.rsqrt(_row(self.var[...], x.ndim) + self.eps)
            return y if p is None else y * _row(p["scale"], x.ndim) + _row(p["bias"], x.ndim)
        axes, n = tuple(range(x.ndim - 1)), x.size // x.shape[-1]
        xs = jax.lax.stop_gradient(x)
        m = self.momentum
        self.mean[...] = (1 - m) * self.mean[...] + m * jnp.mean(xs, axes)
        self.var[...] = (1 - m) * self.var[...] + m * jnp.var(xs, axes) * n / max(n - 1, 1)
        return F.batch_norm(x, p, self.eps)


class Dense(nnx.Module):
    """``x @ kernel + bias``; kernel ~ U(+-1/sqrt(fan_in)); bias zeros or (``bias_init="uniform"``) U(+-1/sqrt(fan_in))."""

    def __init__(self, cin: int, cout: int, *, bias_init: str = "zeros", rngs: nnx.Rngs):
        self.kernel = nnx.Param(fan_in_uniform(rngs.params(), (cin, cout), cin))
        self.bias = nnx.Param(fan_in_uniform(rngs.params(), (cout,), cin) if bias_init == "uniform"
                              else jnp.zeros((cout,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = x @ self.kernel[...]
        return y + _row(self.bias[...], y.ndim)


class MLP(nnx.Module):
    """The package's one MLP module: layer widths ``sizes`` (input first, output last), ``activation`` between
    layers, a linear last layer. Layers are ``hidden`` (an ``nnx.List``) and ``head`` (ANIL adapts only ``head``);
    weights ~ U(+-1/sqrt(fan_in)) (PyTorch's nn.Linear), biases 0. Finn et al. 2017's sinusoid model is
    ``MLP((1, 40, 40, 1))``."""

    def __init__(self, sizes: Sequence[int], *, activation=jax.nn.relu, rngs: nnx.Rngs):
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2:
            raise ValueError(f"MLP sizes need an input and an output width, got {sizes}")
        self.hidden = nnx.List([Dense(a, b, rngs=rngs) for a, b in zip(sizes[:-2], sizes[1:-1])])
        self.head = Dense(sizes[-2], sizes[-1], rngs=rngs)
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        return F.mlp([{"kernel": d.kernel[...], "bias": d.bias[...]} for d in (*self.hidden, self.head)], x,
                     activation=self.activation)
