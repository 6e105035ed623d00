"""Plain-function layers (NHWC activations, HWIO kernels) that every network module calls: one convolution (with
ONE implementation switch, ``CONV_IMPL``), one batch norm, the pools.

For speed on XLA:CPU, ``batch_norm``'s normalisation, stride-1 ``avg_pool`` and the "gemm" ``conv`` have custom
VJPs (same values and gradients up to float rounding): reverse-mode autodiff works at any order, forward mode
(``jax.jvp`` / ``jacfwd``) does not (use ``impl="lax"`` for the convolution then).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from metanas.nn.types import Params

# "gemm": 1x1 convolutions are matmuls and stride-1 'same' kxk convolutions have a custom VJP whose filter gradient
# is k*k GEMMs (shifted input^T @ dy) and whose input gradient is a canonical (NHWC/HWIO) convolution; everything
# else, and "lax", is lax.conv_general_dilated with JAX's own derivatives. Same values and gradients up to float
# rounding. On XLA:CPU the filter-gradient convolution JAX emits for small channel counts is several times slower
# than the GEMMs, and inside a rolled lax.scan XLA:CPU runs it with a slow fallback. "gemm" supports reverse-mode
# autodiff at any order but not forward mode (jax.jvp / jacfwd): use "lax" for that.
# "patches": stride-1 'same' kxk convolutions as one im2col matmul (k*k shifted slices concatenated on C, then
# [.., k*k*Cin] @ [k*k*Cin, Cout]) with JAX's own derivatives; under a vmap over per-task kernels (MAML's CNN4) a
# lax.conv becomes a grouped convolution, which XLA:CPU runs slowly, while this becomes a batched matmul.
CONV_IMPLS = ("gemm", "patches", "lax")
CONV_IMPL = "gemm"


def _conv_lax(x: jax.Array, w: jax.Array, stride: int, dilation: int, groups: int, p: int) -> jax.Array:
    return lax.conv_general_dilated(x, w, (stride, stride), ((p, p), (p, p)), rhs_dilation=(dilation, dilation),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


@jax.custom_vjp
def _conv_same(x: jax.Array, w: jax.Array) -> jax.Array:
    """Stride-1 convolution with 'same' padding (odd k), no dilation or groups."""
    return _conv_lax(x, w, 1, 1, 1, (w.shape[0] - 1) // 2)


def _conv_same_fwd(x, w):
    return _conv_same(x, w), (x, w)


def _conv_same_bwd(res, dy):
    x, w = res
    k, _, cin, cout = w.shape
    p = (k - 1) // 2
    # input gradient: correlation of dy with the spatially flipped, in/out-transposed kernel (canonical layouts)
    dx = _conv_lax(dy, jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2), 1, 1, 1, p)
    # filter gradient: dw[i, j] = sum over (n, h, w) of x_pad[n, h + i, w + j]^T dy[n, h, w], one GEMM per tap
    # (one GEMM over the im2col matrix instead was as fast on W1 and no quicker to compile)
    _, h, wd, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    d2 = dy.reshape(-1, cout)
    dw = jnp.stack([_tdot(xp[:, i:i + h, j:j + wd, :].reshape(-1, cin), d2) for i in range(k) for j in range(k)])
    return dx, dw.reshape(w.shape)


def _tdot(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a.T @ b``; when the contracted (batch) axis is sharded (data parallel), the sum comes out replicated."""
    sh = jax.typeof(a).sharding
    if any(s is not None for s in getattr(sh, "spec", ())):
        return jnp.matmul(a.T, b, out_sharding=jax.sharding.NamedSharding(sh.mesh, jax.sharding.PartitionSpec()))
    return a.T @ b


_conv_same.defvjp(_conv_same_fwd, _conv_same_bwd)


def conv(x: jax.Array, w: jax.Array, stride: int = 1, dilation: int = 1, groups: int = 1,
         padding: int | None = None, impl: str | None = None) -> jax.Array:
    """NHWC x HWIO convolution, 'same' padding by default; ``impl`` (default ``CONV_IMPL``): see ``CONV_IMPLS``."""
    impl = CONV_IMPL if impl is None else impl
    if impl not in CONV_IMPLS:
        raise ValueError(f"conv impl {impl!r} is unknown; use one of {CONV_IMPLS}")
    k = w.shape[0]
    p = dilation * (k - 1) // 2 if padding is None else padding
    if impl != "lax" and groups == 1 and w.shape[0] == w.shape[1]:
        if k == 1 and p == 0:
            xs = x[:, ::stride, ::stride, :]  # a 2-D matmul: XLA:CPU runs the 4-D dot_general's VJP ~3x slower
            return (xs.reshape(-1, w.shape[2]) @ w.reshape(w.shape[2], w.shape[3])).reshape(*xs.shape[:3], w.shape[3])
        if stride == 1 and dilation == 1 and k % 2 == 1 and p == (k - 1) // 2:
            return _conv_same(x, w) if impl == "gemm" else _conv_patches(x, w)
    return _conv_lax(x, w, stride, dilation, groups, p)


def _conv_patches(x: jax.Array, w: jax.Array) -> jax.Array:
    """Stride-1 'same' convolution (odd k) as im2col + one matmul (channel order of the patches: (kh, kw, Cin))."""
    k, _, cin, cout = w.shape
    if cin == 1:
        return _conv_one_channel(x, w)
    p = (k - 1) // 2
    _, h, wd, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    patches = jnp.concatenate([xp[:, i:i + h, j:j + wd, :] for i in range(k) for j in range(k)], axis=-1)
    return patches @ w.reshape(k * k * cin, cout)


def _taps(x: jax.Array, k: int) -> jax.Array:
    """[k*k, N, H, W] the k*k shifted copies of a one-channel image batch x [N, H, W, 1] ('same' zero padding)."""
    p = (k - 1) // 2
    _, h, wd, _ = x.shape
    xp = jnp.pad(x[..., 0], ((0, 0), (p, p), (p, p)))
    return jnp.stack([xp[:, i:i + h, j:j + wd] for i in range(k) for j in range(k)])


@jax.custom_vjp
def _conv_one_channel(x: jax.Array, w: jax.Array) -> jax.Array:
    """The 'patches' convolution of a one-channel input (MAML's first CNN4 layer on Omniglot) with a VJP whose
    filter gradient is the canonical GEMM taps [k*k, NHW] @ dy [NHW, Cout]: autodiff's patches^T @ dy made XLA:CPU
    transpose dy, the layer's largest tensor, for every task."""
    k, cout = w.shape[0], w.shape[3]
    return jnp.einsum("knhw,kc->nhwc", _taps(x, k), w.reshape(k * k, cout))


def _conv_one_channel_fwd(x, w):
    return _conv_one_channel(x, w), (x, w)


def _conv_one_channel_bwd(res, dy):
    x, w = res
    k, cout = w.shape[0], w.shape[3]
    p = (k - 1) // 2
    n, h, wd, _ = x.shape
    taps = _taps(x, k).reshape(k * k, n * h * wd)
    dw = (taps @ dy.reshape(n * h * wd, cout)).reshape(w.shape)
    dtaps = dy @ w.reshape(k * k, cout).T  # [N, H, W, k*k]; the input gradient sums the shifted taps back
    dxp = sum(jnp.pad(dtaps[..., i * k + j], ((0, 0), (i, k - 1 - i), (j, k - 1 - j)))
              for i in range(k) for j in range(k))
    return dxp[:, p:p + h, p:p + wd, None], dw


_conv_one_channel.defvjp(_conv_one_channel_fwd, _conv_one_channel_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _bn_normalize(x: jax.Array, eps: float) -> jax.Array:
    """``(x - mean) / sqrt(var + eps)`` per channel over (batch, H, W), with the closed-form backward
    ``dx = (g - mean(g) - y * mean(g * y)) / sqrt(var + eps)``: two reductions instead of autodiff's chain through
    mean and variance. Differentiable again (the backward is plain JAX), so second-order DARTS works."""
    return _bn_normalize_fwd(x, eps)[0]


def _bn_normalize_fwd(x, eps):
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axes, keepdims=True)
    rstd = lax.rsqrt(var + eps)
    y = (x - mean) * rstd
    return y, (y, rstd)


def _bn_normalize_bwd(eps, res, g):
    y, rstd = res
    axes = tuple(range(y.ndim - 1))
    return ((g - jnp.mean(g, axes, keepdims=True) - y * jnp.mean(g * y, axes, keepdims=True)) * rstd,)


_bn_normalize.defvjp(_bn_normalize_fwd, _bn_normalize_bwd)


def batch_norm(x: jax.Array, p: Params | None = None, eps: float = 1e-5) -> jax.Array:
    """BN over (batch, H, W) with batch statistics; ``p = {"scale", "bias"}`` when affine."""
    y = _bn_normalize(x, eps)
    if p is not None:
        y = y * p["scale"].reshape((1,) * (x.ndim - 1) + (-1,)) + p["bias"].reshape((1,) * (x.ndim - 1) + (-1,))
    return y


def _pool_counts(x: jax.Array, k: int, stride: int, padding: int) -> jax.Array:
    """[1, OH, OW, 1] number of in-image pixels in each k x k output window of ``x`` [B, H, W, C] (a constant)."""
    def axis(n):
        start = np.arange((n + 2 * padding - k) // stride + 1) * stride - padding
        return np.minimum(start + k, n) - np.maximum(start, 0)
    return jnp.asarray(np.outer(axis(x.shape[1]), axis(x.shape[2]))[None, :, :, None], x.dtype)


def _window_sum(x: jax.Array, k: int, stride: int, padding: int) -> jax.Array:
    """Sum over k x k windows (zero padding): one pad, then k strided slices per spatial axis (separable)."""
    oh, ow = ((n + 2 * padding - k) // stride + 1 for n in x.shape[1:3])
    xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    s = sum(xp[:, i:i + stride * (oh - 1) + 1:stride] for i in range(k))
    return sum(s[:, :, j:j + stride * (ow - 1) + 1:stride] for j in range(k))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _avg_pool_same(x: jax.Array, k: int, padding: int) -> jax.Array:
    """Stride-1 'same' average pool; its transpose is the window sum of g / count (the box is symmetric)."""
    return _window_sum(x, k, 1, padding) / _pool_counts(x, k, 1, padding)


def _avg_pool_same_fwd(x, k, padding):
    return _avg_pool_same(x, k, padding), None


def _avg_pool_same_bwd(k, padding, _, g):
    return (_window_sum(g / _pool_counts(g, k, 1, padding), k, 1, padding),)


_avg_pool_same.defvjp(_avg_pool_same_fwd, _avg_pool_same_bwd)


def avg_pool(x: jax.Array, k: int = 3, stride: int = 1, padding: int = 1) -> jax.Array:
    """Average pool with ``count_include_pad=False`` (PyTorch semantics used by NB201 and DARTS), as shifted slices
    (separable window sum) divided by the constant per-pixel count; XLA:CPU's reduce_window and its transpose are
    several times slower. Stride-1 'same' pooling (NB201) has a custom VJP (the window sum of g / count)."""
    if stride == 1 and 2 * padding == k - 1:
        return _avg_pool_same(x, k, padding)
    return _window_sum(x, k, stride, padding) / _pool_counts(x, k, stride, padding)


def _window_views(x: jax.Array, k: int) -> list[jax.Array]:
    """The k*k strided views x[:, i::k, j::k] of the non-overlapping k x k windows (floor mode)."""
    h2, w2 = x.shape[1] // k, x.shape[2] // k
    return [x[:, i:i + k * h2:k, j:j + k * w2:k] for i in range(k) for j in range(k)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool_windows(x: jax.Array, k: int) -> jax.Array:
    """Max over non-overlapping k x k windows as an elementwise maximum of the k*k strided views (XLA:CPU runs it as
    one loop fusion; the reduce over a [.., k, .., k, ..] reshape was several times slower on CNN4's first layer).
    The VJP is elementwise too: each view gets g where it equals the max, divided by the number of ties (JAX's own
    rule for max), and the views are interleaved back."""
    return functools.reduce(jnp.maximum, _window_views(x, k))


def _max_pool_windows_fwd(x, k):
    y = _max_pool_windows(x, k)
    return y, (x, y)


def _max_pool_windows_bwd(k, res, g):
    x, y = res
    n, h, w, c = x.shape
    h2, w2 = h // k, w // k
    hits = [(v == y).astype(g.dtype) for v in _window_views(x, k)]
    share = g / sum(hits)
    dx = jnp.stack([hit * share for hit in hits], axis=0).reshape(k, k, n, h2, w2, c)
    dx = dx.transpose(2, 3, 0, 4, 1, 5).reshape(n, k * h2, k * w2, c)
    return (jnp.pad(dx, ((0, 0), (0, h - k * h2), (0, w - k * w2), (0, 0))),)


_max_pool_windows.defvjp(_max_pool_windows_fwd, _max_pool_windows_bwd)


def max_pool(x: jax.Array, k: int = 3, stride: int = 1, padding: int = 1) -> jax.Array:
    """Max pool (floor mode); non-overlapping unpadded windows (``k == stride``, CNN4's 2x2): ``_max_pool_windows``."""
    if k == stride and padding == 0:
        return _max_pool_windows(x, k)
    pads = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, k, k, 1), (1, stride, stride, 1), pads)


# ---- the MLP ------------------------------------------------------------------------------------------------------
def mlp_init(key: jax.Array, sizes: tuple[int, ...]) -> list[dict]:
    """He-initialised dense layers ``sizes[0] -> ... -> sizes[-1]``: [{"kernel" [a, b], "bias" [b]}, ...] (the
    predictors'; flax's names, as ``nn.modules.Dense``)."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [{"kernel": jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), "bias": jnp.zeros(b)}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def mlp(layers, x: jax.Array, *, activation=jax.nn.relu, final_activation: bool = False) -> jax.Array:
    """The package's one MLP computation: ``x @ kernel + bias`` per layer of ``layers`` ([{"kernel", "bias"}, ...]),
    ``activation`` between layers (and after the last with ``final_activation``). ``nn.modules.MLP`` calls it on its
    parameters."""
    for i, layer in enumerate(layers):
        x = x @ layer["kernel"] + layer["bias"].reshape((1,) * (x.ndim - 1) + (-1,))
        if i < len(layers) - 1 or final_activation:
            x = activation(x)
    return x
