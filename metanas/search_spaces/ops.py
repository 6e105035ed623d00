"""Operation name registry: op names are data (genotypes, alpha axes, benchmark tables), so ops are looked up by name.

Every op is a flax NNX module factory registered with ``@register_op(name)``: ``factory(C, stride, affine, *, rngs)
-> nnx.Module`` (a module class with that constructor is a factory), whose ``__call__(x)`` maps NHWC float32
``[B, H, W, C]`` to ``[B, H/stride, W/stride, C]``. Parameters are ``nnx.Param`` (batch norms use batch statistics,
so ops hold no other state); the supernets split each cell into a pure params dict, so cells of the same shape
are stacked and run with ``lax.scan``. The layers are the plain functions of ``metanas.nn.primitives`` (fast
custom-VJP convolution, batch norm and pools).

Op definitions follow the papers' reference code: NB201 (Dong & Yang 2020, xautodl ``cell_operations.py``:
``nor_conv_kxk`` = ReLU -> Conv(bias = not affine) -> BN) and DARTS (Liu et al. 2019, ``operations.py``:
``sep_conv``, ``dil_conv``, ``FactorizedReduce``). Batch norm always uses the batch statistics
(``track_running_stats=False`` as in both search codes); ``affine`` adds a learned scale and shift.

An op module may set the class attribute ``kind`` to let a supernet fuse it across the edges that read the same
node: ``("stateless",)`` = output depends on x only (computed once); ``("stateless", "zero")``: always zeros (left
out of a mixed sum); ``("relu_conv_bn", stride)`` = a ``ReLUConvBN`` (kernels concatenated on C_out).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from metanas.nn.primitives import avg_pool, batch_norm, conv, max_pool
from metanas.nn.modules import BatchNorm, Conv

__all__ = ["OPS", "OpFactory", "register_op", "get_op", "op_kind", "ReLUConvBN", "relu_conv_bn_fused",
           "FactorizedReduce", "DilConv", "SepConv", "Zero", "Identity", "Pool", "PoolBN"]

OpFactory = Callable[..., nnx.Module]  # (C, stride, affine, *, rngs) -> module with __call__(x)
OPS: dict[str, OpFactory] = {}


def register_op(name: str) -> Callable[[OpFactory], OpFactory]:
    """Register ``factory(C, stride, affine, *, rngs) -> nnx.Module`` under ``name``; a duplicate name raises."""

    def deco(factory: OpFactory) -> OpFactory:
        if name in OPS:
            raise ValueError(f"op {name!r} is already registered")
        OPS[name] = factory
        return factory

    return deco


def get_op(name: str, C: int, stride: int = 1, affine: bool = False, *, rngs: nnx.Rngs | None = None) -> nnx.Module:
    """The op module ``name`` for ``C`` channels (``rngs``: parameter keys; default ``nnx.Rngs(0)``)."""
    if name not in OPS:
        raise ValueError(f"unknown op {name!r}; registered ops: {', '.join(sorted(OPS))}")
    return OPS[name](C, stride, affine, rngs=nnx.Rngs(0) if rngs is None else rngs)


def op_kind(op: nnx.Module) -> tuple:
    """The fusion kind of an op module (``()`` when it declares none)."""
    return tuple(getattr(op, "kind", ()))


class ReLUConvBN(nnx.Module):
    """ReLU -> Conv(k, stride, 'same' padding, optional bias) -> BN."""

    def __init__(self, C_in: int, C_out: int, k: int, stride: int, affine: bool, bias: bool, *, rngs: nnx.Rngs):
        self.conv = Conv(C_in, C_out, k, stride=stride, bias=bias, rngs=rngs)
        self.bn = BatchNorm(C_out, affine=affine)
        self.kind = ("relu_conv_bn", stride)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.bn(self.conv(jax.nn.relu(x)))


def relu_conv_bn_fused(ops: list[ReLUConvBN], x: jax.Array, stride: int) -> list[jax.Array]:
    """``[op(x) for op in ops]`` as ONE convolution with the kernels concatenated along C_out (BN is per channel, so
    this is exact); fewer, wider convolutions compile and run faster."""
    y = conv(jax.nn.relu(x), jnp.concatenate([op.conv.kernel[...] for op in ops], -1), stride)
    if ops[0].conv.bias is not None:
        y = y + jnp.concatenate([op.conv.bias[...] for op in ops]).reshape(1, 1, 1, -1)
    bn = None
    if ops[0].bn.scale is not None:
        bn = {"scale": jnp.concatenate([op.bn.scale[...] for op in ops]),
              "bias": jnp.concatenate([op.bn.bias[...] for op in ops])}
    return jnp.split(batch_norm(y, bn), len(ops), axis=-1)


class FactorizedReduce(nnx.Module):
    """DARTS FactorizedReduce: ReLU, two 1x1 stride-2 convs (the second shifted by one pixel), concat, BN."""

    def __init__(self, C_in: int, C_out: int, affine: bool, *, rngs: nnx.Rngs):
        self.conv1 = Conv(C_in, C_out // 2, 1, stride=2, padding=0, rngs=rngs)
        self.conv2 = Conv(C_in, C_out - C_out // 2, 1, stride=2, padding=0, rngs=rngs)
        self.bn = BatchNorm(C_out, affine=affine)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jax.nn.relu(x)
        x2 = jnp.pad(x[:, 1:, 1:, :], ((0, 0), (0, 1), (0, 1), (0, 0)))
        return self.bn(jnp.concatenate([self.conv1(x), self.conv2(x2)], axis=-1))


class Zero(nnx.Module):
    """NB201 / DARTS ``none``: zeros of the output shape."""

    kind = ("stateless", "zero")

    def __init__(self, stride: int):
        self.stride = stride

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.zeros_like(x[:, ::self.stride, ::self.stride, :])


class Identity(nnx.Module):
    kind = ("stateless",)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x


class Pool(nnx.Module):
    """3x3 average or max pool (padding 1, ``count_include_pad=False``)."""

    kind = ("stateless",)

    def __init__(self, mode: str, stride: int):
        self.mode, self.stride = mode, stride

    def __call__(self, x: jax.Array) -> jax.Array:
        return (avg_pool if self.mode == "avg" else max_pool)(x, 3, self.stride, 1)


class PoolBN(nnx.Module):
    """An op followed by a non-affine BN (DARTS search ``MixedOp`` appends one to its pools)."""

    def __init__(self, op: nnx.Module):
        self.op = op

    def __call__(self, x: jax.Array) -> jax.Array:
        return batch_norm(self.op(x))


class DilConv(nnx.Module):
    """ReLU -> depthwise Conv(k, dilation) -> pointwise 1x1 -> BN."""

    def __init__(self, C_in: int, C_out: int, k: int, stride: int, dilation: int, affine: bool, *, rngs: nnx.Rngs):
        self.dw = Conv(C_in, C_in, k, stride=stride, dilation=dilation, groups=C_in, rngs=rngs)
        self.pw = Conv(C_in, C_out, 1, rngs=rngs)
        self.bn = BatchNorm(C_out, affine=affine)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.bn(self.pw(self.dw(jax.nn.relu(x))))


class SepConv(nnx.Module):
    """Two stacked (ReLU -> depthwise -> pointwise -> BN) blocks, the first with the stride."""

    def __init__(self, C: int, k: int, stride: int, affine: bool, *, rngs: nnx.Rngs):
        self.a = DilConv(C, C, k, stride, 1, affine, rngs=rngs)
        self.b = DilConv(C, C, k, 1, 1, affine, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.b(self.a(x))


# ---- NB201 ops (Dong & Yang 2020) -----------------------------------------------------------------------------------
@register_op("none")
def none_op(C: int, stride: int, affine: bool, *, rngs: nnx.Rngs) -> nnx.Module:
    return Zero(stride)


@register_op("skip_connect")
def skip_connect(C: int, stride: int, affine: bool, *, rngs: nnx.Rngs) -> nnx.Module:
    return Identity() if stride == 1 else FactorizedReduce(C, C, affine, rngs=rngs)


@register_op("nor_conv_1x1")
def nor_conv_1x1(C: int, stride: int, affine: bool, *, rngs: nnx.Rngs) -> nnx.Module:
    return ReLUConvBN(C, C, 1, stride, affine, bias=not affine, rngs=rngs)


@register_op("nor_conv_3x3")
def nor_conv_3x3(C: int, stride: int, affine: bool, *, rngs: nnx.Rngs) -> nnx.Module:
    return ReLUConvBN(C, C, 3, stride, affine, bias=not affine, rngs=rngs)


@register_op("avg_pool_3x3")
def avg_pool_3x3(C: int, stride: int, affine: bool, *, rngs: nnx.Rngs) -> nnx.Module:
    return Pool("avg", stride)


# ---- DARTS ops (Liu et al. 2019) ------------------------------------------------------------------------------------
@register_op("max_pool_3x3")
def max_pool_3x3(C: int, stride: int, affine: bool, *, rngs: nnx.Rngs) -> nnx.Module:
    return Pool("max", stride)


@register_op("sep_conv_3x3")
def sep_conv_3x3(C: int, stride: int, affine: bool, *, rngs: nnx.Rngs) -> nnx.Module:
    return SepConv(C, 3, stride, affine, rngs=rngs)


@register_op("sep_conv_5x5")
def sep_conv_5x5(C: int, stride: int, affine: bool, *, rngs: nnx.Rngs) -> nnx.Module:
    return SepConv(C, 5, stride, affine, rngs=rngs)


@register_op("dil_conv_3x3")
def dil_conv_3x3(C: int, stride: int, affine: bool, *, rngs: nnx.Rngs) -> nnx.Module:
    return DilConv(C, C, 3, stride, 2, affine, rngs=rngs)


@register_op("dil_conv_5x5")
def dil_conv_5x5(C: int, stride: int, affine: bool, *, rngs: nnx.Rngs) -> nnx.Module:
    return DilConv(C, C, 5, stride, 2, affine, rngs=rngs)
