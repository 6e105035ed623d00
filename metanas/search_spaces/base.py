"""The search-space interface shared by predictors, black-box search and supernet code.

An ``Arch`` is an int32 array ``[E]`` of op indices into ``space.ops`` (jax or numpy). Spaces with more
structure (DARTS: normal + reduce cells, input node per edge) document their own layout but keep it a
flat int32 array, so every space can be sampled, mutated and encoded under ``jit``/``vmap``.
"""

from __future__ import annotations

import abc

import jax
import numpy as np


class SearchSpace(abc.ABC):
    """Abstract search space. Concrete spaces are frozen dataclasses (hashable, safe to close over in jit)."""

    ops: tuple[str, ...]  # op names; the order fixes the op axis of alphas and of encodings
    num_edges: int  # length E of an Arch

    @abc.abstractmethod
    def sample(self, key: jax.Array) -> jax.Array:
        """A uniformly random arch, int32 [E]. Jittable, vmappable."""

    @abc.abstractmethod
    def mutate(self, key: jax.Array, arch: jax.Array) -> jax.Array:
        """``arch`` with exactly one edge changed to a different op. Jittable, vmappable."""

    @abc.abstractmethod
    def neighbours(self, arch) -> np.ndarray:
        """All archs one mutation away, int32 [n, E] (host numpy)."""

    @abc.abstractmethod
    def encode(self, arch: jax.Array) -> jax.Array:
        """Float32 [D] feature vector (one-hot op per edge). Jittable, vmappable."""

    @abc.abstractmethod
    def size(self) -> int | None:
        """Number of archs, ``None`` if not enumerable."""

    @abc.abstractmethod
    def enumerate(self) -> np.ndarray:
        """All archs, int32 [N, E] in a fixed order (finite spaces only)."""

    @abc.abstractmethod
    def to_string(self, arch) -> str:
        """Canonical string of one arch."""

    @abc.abstractmethod
    def from_string(self, s: str) -> np.ndarray:
        """Inverse of ``to_string``; ``ValueError`` with a one-line message on a bad string."""

    def describe(self, arch) -> dict:
        """A derived ``arch`` beyond its string: extra fields of ``genotype.json``. Nothing by default. (Reference
        accuracies of a tabular benchmark come from ``metanas.benchmarks.reference_metrics``.)"""
        return {}
