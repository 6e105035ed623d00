"""CNN4 of MAML / Reptile (Vinyals et al. 2016 embedding; Finn et al. 2017, Sec. 5.2), a flax NNX module, NHWC.

4 x [conv3x3(C, pad 1, bias) -> BatchNorm(batch statistics, affine) -> ReLU -> maxpool 2x2 (floor)]
-> flatten -> linear head. On 28x28 Omniglot the spatial size goes 28 -> 14 -> 7 -> 3 -> 1.

Batch norm always uses the statistics of the batch it is applied to (``track_running_stats=False``, as in
MAML's reference code and the Reptile paper): which batch that is decides transductive vs non-transductive
evaluation, see ``metanas.meta.base``. The layers are the shared ``metanas.nn`` ones (closed-form batch-norm VJP).

Convolutions use ``metanas.nn.primitives.conv`` with ``impl`` (default ``"patches"``: im2col + one matmul; under
``vmap`` over tasks with per-task weights a ``lax.conv`` becomes a grouped convolution, which XLA:CPU runs slowly,
while the patches form becomes a batched matmul). ``metanas.nn.boundary.pure(lambda rngs: CNN4(ways, rngs=rngs))`` is
the pure pair the meta-learners take; the params are a dict ``{convs: {0..3: {kernel [3,3,Cin,C], bias [C]}},
bns: {0..3: {scale, bias}}, head: {kernel, bias}}``.
"""

from __future__ import annotations

import jax
from flax import nnx

from metanas.nn import primitives as F
from metanas.nn.modules import BatchNorm, Conv, Dense

BN_EPS = 1e-5


class CNN4(nnx.Module):
    """Conv and head weights ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch defaults), BN scale 1, bias 0."""

    def __init__(self, ways: int, *, channels: int = 64, in_channels: int = 1, hw: int = 28,
                 impl: str | None = "patches", rngs: nnx.Rngs):
        sizes = [in_channels] + [channels] * 4
        self.convs = nnx.List([Conv(a, b, 3, bias=True, init="uniform", impl=impl, rngs=rngs)
                               for a, b in zip(sizes, sizes[1:])])
        self.bns = nnx.List([BatchNorm(channels, eps=BN_EPS) for _ in range(4)])
        self.head = Dense(channels * (hw // 16) ** 2, ways, bias_init="uniform", rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        """x: [N,H,W,Cin] -> [N, C*s*s] (the embedding ANIL keeps fixed in its inner loop)."""
        for conv, bn in zip(self.convs, self.bns):
            x = F.max_pool(jax.nn.relu(bn(conv(x))), 2, 2, 0)
        return x.reshape(x.shape[0], -1)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [N,H,W,Cin] -> logits [N, ways]."""
        return self.head(self.features(x))

