"""MLP for sinusoid regression (Finn et al. 2017, Sec. 5.1: 2 hidden layers of 40 units, ReLU): the package's one
``metanas.nn.modules.MLP`` as the pure pair the meta-learners take."""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from metanas.nn.modules import MLP
from metanas.nn.pure import graphdef_of


def init(key: jax.Array, sizes: Sequence[int]) -> dict:
    """Params of an MLP with layer widths ``sizes`` (input first, output last), e.g. (1, 40, 40, 1): layers
    ``dense0 .. dense{L-2}`` and ``head`` (ANIL adapts only ``head``), each ``{kernel [in, out], bias [out]}``.
    Weights ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's nn.Linear default), biases 0."""
    return nnx.to_pure_dict(nnx.state(MLP(tuple(sizes), rngs=nnx.Rngs(params=key))))


def apply(params: dict, x: jax.Array) -> jax.Array:
    """x: [N, in] -> [N, out]. ReLU between layers, linear head."""
    n_hidden = len(params) - 1
    sizes = tuple(int(params[f"dense{i}"]["kernel"].shape[0]) for i in range(n_hidden))
    sizes += tuple(int(s) for s in params["head"]["kernel"].shape)
    return nnx.merge(graphdef_of(MLP, sizes), params)(x)
