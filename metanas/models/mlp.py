"""MLP for sinusoid regression (Finn et al. 2017, Sec. 5.1: 2 hidden layers of 40 units, ReLU)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from metanas import initializers


def init(key: jax.Array, sizes: Sequence[int]) -> dict:
    """Params for an MLP with layer widths ``sizes`` (input first, output last), e.g. (1, 40, 40, 1).

    Layers are named ``dense0 .. dense{L-2}`` and the last one ``head`` (ANIL adapts only ``head``).
    Weights ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (PyTorch's nn.Linear default), biases 0.
    """
    keys = jax.random.split(key, len(sizes) - 1)
    params = {}
    for i, (k, fin, fout) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        name = "head" if i == len(sizes) - 2 else f"dense{i}"
        bound = 1.0 / jnp.sqrt(fin)
        params[name] = {"w": initializers.uniform(k, (fin, fout), -bound, bound),
                        "b": jnp.zeros((fout,))}
    return params


def apply(params: dict, x: jax.Array) -> jax.Array:
    """x: [N, in] -> [N, out]. ReLU between layers, linear head."""
    n_hidden = len(params) - 1
    for i in range(n_hidden):
        x = jax.nn.relu(x @ params[f"dense{i}"]["w"] + params[f"dense{i}"]["b"][None, :])
    return x @ params["head"]["w"] + params["head"]["b"][None, :]
