"""CNN4 of MAML / Reptile (Vinyals et al. 2016 embedding; Finn et al. 2017, Sec. 5.2), NHWC, functional.

4 x [conv3x3(C, pad 1, bias) -> BatchNorm(batch statistics, affine) -> ReLU -> maxpool 2x2 (floor)]
-> flatten -> linear head. On 28x28 Omniglot the spatial size goes 28 -> 14 -> 7 -> 3 -> 1.

Batch norm always uses the statistics of the batch it is applied to (``track_running_stats=False``, as in
MAML's reference code and the Reptile paper): which batch that is decides transductive vs non-transductive
evaluation, see ``metanas.meta.base``.

Convolutions are written as patches + one matmul (``conv_impl="patches"``) by default: under ``vmap`` over
tasks with per-task weights a ``lax.conv`` becomes a grouped convolution, which XLA:CPU runs slowly, while
the patches form becomes a batched matmul. ``conv_impl="lax"`` uses ``lax.conv_general_dilated``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from metanas import initializers

BN_EPS = 1e-5


def init(key: jax.Array, ways: int, *, channels: int = 64, in_channels: int = 1, hw: int = 28) -> dict:
    """Params {conv0..3: {w [3,3,Cin,C], b [C]}, bn0..3: {scale, bias}, head: {w [C*s*s, ways], b}}.

    Conv and head weights ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch defaults), BN scale 1, bias 0.
    """
    keys = jax.random.split(key, 5)
    params, cin, s = {}, in_channels, hw
    for i in range(4):
        bound = 1.0 / jnp.sqrt(9 * cin)
        kw, kb = jax.random.split(keys[i])
        params[f"conv{i}"] = {"w": initializers.uniform(kw, (3, 3, cin, channels), -bound, bound),
                              "b": initializers.uniform(kb, (channels,), -bound, bound)}
        params[f"bn{i}"] = {"scale": jnp.ones((channels,)), "bias": jnp.zeros((channels,))}
        cin, s = channels, s // 2
    fin = channels * s * s
    bound = 1.0 / jnp.sqrt(fin)
    kw, kb = jax.random.split(keys[4])
    params["head"] = {"w": initializers.uniform(kw, (fin, ways), -bound, bound),
                      "b": initializers.uniform(kb, (ways,), -bound, bound)}
    return params


def conv3x3(x: jax.Array, w: jax.Array, b: jax.Array, *, impl: str = "patches") -> jax.Array:
    """Same-padded 3x3 convolution, stride 1. x: [N,H,W,Cin], w: [3,3,Cin,Cout] -> [N,H,W,Cout]."""
    if impl == "lax":
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + b[None, None, None, :]
    if impl == "xla_patches":  # one patches op (a conv with a constant 0/1 kernel), then a matmul
        c = x.shape[-1]
        patches = jax.lax.conv_general_dilated_patches(x, (3, 3), (1, 1), "SAME",
                                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
        # patches' channel axis is ordered (Cin, kh, kw); reorder w [3,3,Cin,Cout] to match
        return patches @ jnp.transpose(w, (2, 0, 1, 3)).reshape(9 * c, -1) + b[None, None, None, :]
    if impl != "patches":
        raise ValueError(f"conv impl '{impl}' is unknown; use 'patches', 'xla_patches' or 'lax'")
    n, h, wd, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate([xp[:, i:i + h, j:j + wd, :] for i in range(3) for j in range(3)], axis=-1)
    return patches @ w.reshape(9 * c, -1) + b[None, None, None, :]  # [N,H,W,9Cin] @ [9Cin,Cout]


def batch_norm(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    """Batch statistics over (N,H,W); biased variance, eps 1e-5 (PyTorch BatchNorm2d in train mode)."""
    mean = jnp.mean(x, axis=(0, 1, 2), keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2), keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + BN_EPS) * scale[None, None, None, :] + bias[None, None, None, :]


def max_pool2(x: jax.Array) -> jax.Array:
    """2x2 max pool, stride 2, floor mode (7 -> 3)."""
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    x = x[:, :2 * h2, :2 * w2, :].reshape(n, h2, 2, w2, 2, c)
    return jnp.max(x, axis=(2, 4))


def features(params: dict, x: jax.Array, *, impl: str = "patches") -> jax.Array:
    """x: [N,H,W,Cin] -> [N, C*s*s] (the embedding ANIL keeps fixed in its inner loop)."""
    for i in range(4):
        x = conv3x3(x, params[f"conv{i}"]["w"], params[f"conv{i}"]["b"], impl=impl)
        x = batch_norm(x, params[f"bn{i}"]["scale"], params[f"bn{i}"]["bias"])
        x = max_pool2(jax.nn.relu(x))
    return x.reshape(x.shape[0], -1)


def apply(params: dict, x: jax.Array, *, impl: str = "patches") -> jax.Array:
    """x: [N,H,W,Cin] -> logits [N, ways]."""
    return features(params, x, impl=impl) @ params["head"]["w"] + params["head"]["b"][None, :]
