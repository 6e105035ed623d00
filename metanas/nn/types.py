"""Shared type aliases of the network layer and the algorithms that use it (one definition each)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

PyTree = Any  # any nested structure of arrays (dicts, lists, tuples, NamedTuples, flax State)
Params = PyTree  # a model's trainable parameters
BatchStats = PyTree  # batch-norm running statistics ({} when batch statistics are used throughout)
ApplyFn = Callable[[Params, jax.Array], jax.Array]  # (params, x) -> output
InitFn = Callable[[jax.Array], Params]  # key -> params
LossFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]  # (output, y) -> (scalar loss, metric)

__all__ = ["PyTree", "Params", "BatchStats", "ApplyFn", "InitFn", "LossFn"]
