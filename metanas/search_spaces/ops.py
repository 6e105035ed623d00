"""Operation name registry: op names are data (genotypes, alpha axes, benchmark tables), so ops are looked up by name.

Every op is registered with ``@register_op(name)`` as a factory ``(C, stride, affine) -> Op``. An ``Op`` is a pair of
pure functions ``init(key) -> params`` and ``apply(params, x) -> y`` on NHWC float32 arrays (``C`` channels in and
out, spatial size divided by ``stride``). The layers are the plain functions of ``metanas.nn.functional``, so a
cell's parameters are an ordinary pytree that ``lax.scan`` can stack across cells of the same shape.

Op definitions follow the papers' reference code: NB201 (Dong & Yang 2020, xautodl ``cell_operations.py``:
``nor_conv_kxk`` = ReLU -> Conv(bias = not affine) -> BN) and DARTS (Liu et al. 2019, ``operations.py``:
``sep_conv``, ``dil_conv``, ``FactorizedReduce``). Batch norm always uses the batch statistics
(``track_running_stats=False`` as in both search codes); ``affine`` adds a learned scale and shift.

The fast custom-VJP layers (convolution, batch norm, pools) are described in ``metanas.nn.functional``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metanas.nn.functional import avg_pool, batch_norm, bn_init, conv, conv_init, max_pool
from metanas.nn.types import Params

__all__ = ["Op", "OPS", "OpFactory", "register_op", "get_op", "relu_conv_bn", "relu_conv_bn_fused",
           "factorized_reduce", "avg_pool", "batch_norm", "bn_init", "conv", "conv_init", "max_pool"]


class Op(NamedTuple):
    init: Callable[[jax.Array], Params]  # key -> params pytree
    apply: Callable[[Params, jax.Array], jax.Array]  # (params, x [B,H,W,C]) -> y [B,H/s,W/s,C]
    # what the supernet may fuse across edges that read the same node: ("stateless",) = output depends on x only
    # (computed once; ("stateless", "zero"): always zeros, left out of a mixed sum); ("relu_conv_bn", stride) =
    # ReLU -> Conv -> [bias] -> BN (kernels concatenated on C_out)
    kind: tuple = ()


OpFactory = Callable[[int, int, bool], Op]
OPS: dict[str, OpFactory] = {}


def register_op(name: str) -> Callable[[OpFactory], OpFactory]:
    """Register ``factory(C, stride, affine) -> Op`` under ``name``; a duplicate name raises."""

    def deco(factory: OpFactory) -> OpFactory:
        if name in OPS:
            raise ValueError(f"op {name!r} is already registered")
        OPS[name] = factory
        return factory

    return deco


def get_op(name: str, C: int, stride: int = 1, affine: bool = False) -> Op:
    if name not in OPS:
        raise ValueError(f"unknown op {name!r}; registered ops: {', '.join(sorted(OPS))}")
    return OPS[name](C, stride, affine)


def relu_conv_bn(C_in: int, C_out: int, k: int, stride: int, affine: bool, bias: bool) -> Op:
    """ReLU -> Conv(k, stride, 'same' padding) -> BN."""

    def init(key):
        p = {"w": conv_init(key, k, C_in, C_out), "bn": bn_init(C_out, affine)}
        if bias:
            p["b"] = jnp.zeros((C_out,), jnp.float32)
        return p

    def apply(p, x):
        y = conv(jax.nn.relu(x), p["w"], stride)
        if bias:
            y = y + p["b"].reshape(1, 1, 1, -1)
        return batch_norm(y, p["bn"])

    return Op(init, apply, ("relu_conv_bn", stride))


def relu_conv_bn_fused(params: list[Params], x: jax.Array, stride: int) -> list[jax.Array]:
    """``[relu_conv_bn(p, x) for p in params]`` as ONE convolution with the kernels concatenated along C_out (BN is
    per channel, so this is exact); fewer, wider convolutions compile and run faster."""
    y = conv(jax.nn.relu(x), jnp.concatenate([p["w"] for p in params], -1), stride)
    if "b" in params[0]:
        y = y + jnp.concatenate([p["b"] for p in params]).reshape(1, 1, 1, -1)
    bn = None
    if params[0]["bn"] is not None:
        bn = {k: jnp.concatenate([p["bn"][k] for p in params]) for k in ("scale", "bias")}
    return jnp.split(batch_norm(y, bn), len(params), axis=-1)


def factorized_reduce(C_in: int, C_out: int, affine: bool) -> Op:
    """DARTS FactorizedReduce: ReLU, two 1x1 stride-2 convs (the second shifted by one pixel), concat, BN."""

    def init(key):
        k1, k2 = jax.random.split(key)
        return {"w1": conv_init(k1, 1, C_in, C_out // 2), "w2": conv_init(k2, 1, C_in, C_out - C_out // 2),
                "bn": bn_init(C_out, affine)}

    def apply(p, x):
        x = jax.nn.relu(x)
        x2 = jnp.pad(x[:, 1:, 1:, :], ((0, 0), (0, 1), (0, 1), (0, 0)))
        y = jnp.concatenate([conv(x, p["w1"], 2, padding=0), conv(x2, p["w2"], 2, padding=0)], axis=-1)
        return batch_norm(y, p["bn"])

    return Op(init, apply)


def _no_params(fn: Callable[[jax.Array], jax.Array]) -> Op:
    return Op(lambda key: {}, lambda p, x: fn(x), ("stateless",))


# ---- NB201 ops (Dong & Yang 2020) -----------------------------------------------------------------------------------
@register_op("none")
def none_op(C: int, stride: int, affine: bool) -> Op:
    return _no_params(lambda x: jnp.zeros_like(x[:, ::stride, ::stride, :]))._replace(kind=("stateless", "zero"))


@register_op("skip_connect")
def skip_connect(C: int, stride: int, affine: bool) -> Op:
    return _no_params(lambda x: x) if stride == 1 else factorized_reduce(C, C, affine)


@register_op("nor_conv_1x1")
def nor_conv_1x1(C: int, stride: int, affine: bool) -> Op:
    return relu_conv_bn(C, C, 1, stride, affine, bias=not affine)


@register_op("nor_conv_3x3")
def nor_conv_3x3(C: int, stride: int, affine: bool) -> Op:
    return relu_conv_bn(C, C, 3, stride, affine, bias=not affine)


@register_op("avg_pool_3x3")
def avg_pool_3x3(C: int, stride: int, affine: bool) -> Op:
    return _no_params(lambda x: avg_pool(x, 3, stride, 1))


# ---- DARTS ops (Liu et al. 2019) ------------------------------------------------------------------------------------
@register_op("max_pool_3x3")
def max_pool_3x3(C: int, stride: int, affine: bool) -> Op:
    return _no_params(lambda x: max_pool(x, 3, stride, 1))


def _dil_conv(C_in: int, C_out: int, k: int, stride: int, dilation: int, affine: bool) -> Op:
    """ReLU -> depthwise Conv(k, dilation) -> pointwise 1x1 -> BN."""

    def init(key):
        k1, k2 = jax.random.split(key)
        return {"dw": conv_init(k1, k, C_in, C_in, groups=C_in), "pw": conv_init(k2, 1, C_in, C_out),
                "bn": bn_init(C_out, affine)}

    def apply(p, x):
        y = conv(jax.nn.relu(x), p["dw"], stride, dilation, groups=C_in)
        return batch_norm(conv(y, p["pw"]), p["bn"])

    return Op(init, apply)


def _sep_conv(C: int, k: int, stride: int, affine: bool) -> Op:
    """Two stacked (ReLU -> depthwise -> pointwise -> BN) blocks, the first with the stride."""
    a, b = _dil_conv(C, C, k, stride, 1, affine), _dil_conv(C, C, k, 1, 1, affine)

    def init(key):
        k1, k2 = jax.random.split(key)
        return {"a": a.init(k1), "b": b.init(k2)}

    return Op(init, lambda p, x: b.apply(p["b"], a.apply(p["a"], x)))


@register_op("sep_conv_3x3")
def sep_conv_3x3(C: int, stride: int, affine: bool) -> Op:
    return _sep_conv(C, 3, stride, affine)


@register_op("sep_conv_5x5")
def sep_conv_5x5(C: int, stride: int, affine: bool) -> Op:
    return _sep_conv(C, 5, stride, affine)


@register_op("dil_conv_3x3")
def dil_conv_3x3(C: int, stride: int, affine: bool) -> Op:
    return _dil_conv(C, C, 3, stride, 2, affine)


@register_op("dil_conv_5x5")
def dil_conv_5x5(C: int, stride: int, affine: bool) -> Op:
    return _dil_conv(C, C, 5, stride, 2, affine)
