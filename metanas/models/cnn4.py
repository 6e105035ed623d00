"""CNN4 of MAML / Reptile (Vinyals et al. 2016 embedding; Finn et al. 2017, Sec. 5.2), a flax NNX module, NHWC.

4 x [conv3x3(C, pad 1, bias) -> BatchNorm(batch statistics, affine) -> ReLU -> maxpool 2x2 (floor)]
-> flatten -> linear head. On 28x28 Omniglot the spatial size goes 28 -> 14 -> 7 -> 3 -> 1.

Batch norm always uses the statistics of the batch it is applied to (``track_running_stats=False``, as in
MAML's reference code and the Reptile paper): which batch that is decides transductive vs non-transductive
evaluation, see ``metanas.meta.base``. The layers are the shared ``metanas.nn`` ones (closed-form batch-norm VJP).

Convolutions use ``metanas.nn.functional.conv`` with ``impl`` (default ``"patches"``: im2col + one matmul; under
``vmap`` over tasks with per-task weights a ``lax.conv`` becomes a grouped convolution, which XLA:CPU runs slowly,
while the patches form becomes a batched matmul). ``init`` / ``apply`` are the pure pair the meta-learners take;
the params are a dict ``{conv0..3: {kernel [3,3,Cin,C], bias [C]}, bn0..3: {scale, bias}, head: {kernel, bias}}``.
"""

from __future__ import annotations

import jax
from flax import nnx

from metanas.nn import functional as F
from metanas.nn.modules import BatchNorm, Conv, Dense
from metanas.nn.pure import graphdef_of

BN_EPS = 1e-5


class CNN4(nnx.Module):
    """Conv and head weights ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch defaults), BN scale 1, bias 0."""

    def __init__(self, ways: int, *, channels: int = 64, in_channels: int = 1, hw: int = 28,
                 impl: str | None = "patches", rngs: nnx.Rngs):
        cin, s = in_channels, hw
        for i in range(4):
            setattr(self, f"conv{i}", Conv(cin, channels, 3, bias=True, init="uniform", impl=impl, rngs=rngs))
            setattr(self, f"bn{i}", BatchNorm(channels, eps=BN_EPS))
            cin, s = channels, s // 2
        self.head = Dense(channels * s * s, ways, bias_init="uniform", rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        """x: [N,H,W,Cin] -> [N, C*s*s] (the embedding ANIL keeps fixed in its inner loop)."""
        for i in range(4):
            x = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x))
            x = F.max_pool(jax.nn.relu(x), 2, 2, 0)
        return x.reshape(x.shape[0], -1)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [N,H,W,Cin] -> logits [N, ways]."""
        return self.head(self.features(x))


def init(key: jax.Array, ways: int, *, channels: int = 64, in_channels: int = 1, hw: int = 28) -> dict:
    """The params dict of a fresh ``CNN4`` (see the module doc)."""
    return nnx.to_pure_dict(nnx.state(CNN4(ways, channels=channels, in_channels=in_channels, hw=hw,
                                           rngs=nnx.Rngs(params=key))))


def apply(params: dict, x: jax.Array, *, impl: str | None = "patches") -> jax.Array:
    """x: [N,H,W,Cin] -> logits [N, ways] with ``params`` from ``init`` (``impl``: the convolution, see above)."""
    cin, channels = params["conv0"]["kernel"].shape[2:]
    fin, ways = params["head"]["kernel"].shape
    s = int(round((fin // channels) ** 0.5))
    gd = graphdef_of(CNN4, int(ways), channels=int(channels), in_channels=int(cin), hw=16 * s, impl=impl)
    return nnx.merge(gd, params)(x)
