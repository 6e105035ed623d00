"""Featurizers: architecture encodings (one-hot, pruned one-hot, path encoding) and hyperparameter encodings.

Architecture encodings are pure and jittable (``jax.vmap`` them over a batch of archs). The path encoding
follows White et al., "BANANAS" (AAAI 2021), Sec. 3: one feature per op sequence on an input->output path,
paths through ``none`` dropped. It is not injective (it forgets which route a path takes); the one-hot and
``onehot_path`` encodings are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from metanas.search_spaces.nb201 import NB201Space

# NB201 input->output routes as edge indices into EDGES (string order): 0->3, 0->1->3, 0->2->3, 0->1->2->3
NB201_ROUTES: tuple[tuple[int, ...], ...] = ((3,), (0, 4), (1, 5), (0, 2, 5))

ArchEncoding = Literal["onehot", "onehot_pruned", "path", "onehot_path"]


def nb201_prune(space: NB201Space, arch: jax.Array) -> jax.Array:
    """Set to ``none`` every edge that lies on no input->output path (it cannot change the cell's output).

    Cells that compute the same function through dead branches then share an encoding.
    """
    none = space.ops.index("none")
    live = jnp.asarray(arch) != none  # [6] edges (1<-0),(2<-0),(2<-1),(3<-0),(3<-1),(3<-2)
    r1 = live[0]
    r2 = live[1] | (live[2] & r1)  # reachable from the input
    o2 = live[5]
    o1 = live[4] | (live[2] & o2)  # reaches the output
    reach_src = jnp.stack([True, True, r1, True, r1, r2])
    out_dst = jnp.stack([o1, o2, o2, True, True, True])
    useful = live & reach_src & out_dst
    return jnp.where(useful, arch, none).astype(jnp.int32)


def nb201_path_encoding(space: NB201Space, arch: jax.Array) -> jax.Array:
    """Float32 [K' + K'^2 + K'^3] counts of op sequences on the 4 routes (K' = ops other than ``none``)."""
    none = space.ops.index("none")
    k = space.num_ops - 1
    arch = jnp.asarray(arch)
    code = jnp.where(arch > none, arch - 1, arch)  # op index among the non-none ops
    feats, offset = jnp.zeros(k + k**2 + k**3, jnp.float32), 0
    offsets = {1: 0, 2: k, 3: k + k**2}
    for route in NB201_ROUTES:
        alive = jnp.all(jnp.stack([arch[e] != none for e in route]))
        idx = 0
        for e in route:
            idx = idx * k + code[e]
        feats = feats.at[offsets[len(route)] + idx].add(alive.astype(jnp.float32))
    return feats


def encode_arch(space: NB201Space, arch: jax.Array, kind: ArchEncoding = "onehot") -> jax.Array:
    """Float32 [D] encoding of one NB201 arch. Jittable and vmappable."""
    if kind == "onehot":
        return space.encode(arch)
    if kind == "onehot_pruned":
        return space.encode(nb201_prune(space, arch))
    if kind == "path":
        return nb201_path_encoding(space, arch)
    if kind == "onehot_path":
        return jnp.concatenate([space.encode(arch), nb201_path_encoding(space, arch)])
    raise ValueError(f"unknown arch encoding {kind!r}; expected one of onehot, onehot_pruned, path, onehot_path")


def encode_archs(space: NB201Space, archs, kind: ArchEncoding = "onehot") -> jax.Array:
    """Float32 [N, D] encodings of ``archs`` int [N, E]."""
    return jax.vmap(lambda a: encode_arch(space, a, kind))(jnp.asarray(archs, jnp.int32))


@dataclass(frozen=True)
class NumericHP:
    """A numeric hyperparameter / setting, min-max scaled to [0, 1] (after log when ``log``)."""

    name: str
    low: float
    high: float
    log: bool = False

    def encode(self, value: float) -> list[float]:
        f = math.log if self.log else float
        if self.log and value <= 0:
            raise ValueError(f"hyperparameter {self.name}={value} must be > 0 (log-scaled)")
        return [(f(value) - f(self.low)) / (f(self.high) - f(self.low))]


@dataclass(frozen=True)
class CategoricalHP:
    """A categorical hyperparameter / setting (optimizer, hardware kind, ...), one-hot."""

    name: str
    choices: tuple[str, ...]

    def encode(self, value: Any) -> list[float]:
        if str(value) not in self.choices:
            raise ValueError(f"hyperparameter {self.name}={value!r} not in {list(self.choices)}")
        return [float(str(value) == c) for c in self.choices]


def encode_hparams(spec: Sequence[NumericHP | CategoricalHP], values: Mapping[str, Any]) -> np.ndarray:
    """Float32 [sum of widths]: numeric log/min-max scaled, categorical one-hot, in ``spec`` order."""
    out: list[float] = []
    for hp in spec:
        if hp.name not in values:
            raise ValueError(f"hyperparameter {hp.name!r} missing; record has {sorted(values)}")
        out += hp.encode(values[hp.name])
    return np.asarray(out, np.float32)


def nb201_zero_cost_features(space: NB201Space, zc: np.ndarray) -> np.ndarray:
    """Float32 [N, 13] standardised signed-log zero-cost proxies for every cell in enumerate order.

    ``zc`` (from ``benchmarks.nb201.load_zero_cost``) is NaN for the 6,180 cells with dead branches; each of
    those computes the same function as its pruned cell (``nb201_prune``), whose row is used instead.
    """
    archs = space.enumerate()
    pruned = np.asarray(jax.vmap(lambda a: nb201_prune(space, a))(archs))
    f = np.asarray(zc, np.float64)[space.arch_code(pruned)]
    f = np.where(np.isnan(f), np.nanmedian(f, 0), f)
    f = np.sign(f) * np.log1p(np.abs(f))
    return ((f - f.mean(0)) / (f.std(0) + 1e-8)).astype(np.float32)


def darts_adjacency_ops(space, arch: jax.Array) -> jax.Array:
    """DARTS cell encoding "adjacency + ops" (BANANAS' adjacency encoding, White et al. 2021, Sec. 3), jittable.

    Per cell (normal, then reduction): the 14-entry adjacency of the candidate edges ``(dst <- src)`` in
    ``DARTS_EDGES`` order (1 = kept) and, per edge, the one-hot of its op among the non-``none`` ops (zeros when the
    edge is not kept). Float32 [2 * 14 * (1 + K')], K' = ops other than ``none``; injective on valid archs.
    ``space`` is a ``metanas.search_spaces.darts_cnn.DartsCNNSpace``.
    """
    arch = jnp.asarray(arch, jnp.int32).reshape(2, -1)  # [cell, 14]
    none = space.none_index
    kept = arch != none
    code = jnp.where(arch > none, arch - 1, arch)  # op index among the non-none ops
    ops = jax.nn.one_hot(code, len(space.ops) - 1, dtype=jnp.float32) * kept[..., None]
    return jnp.concatenate([kept.astype(jnp.float32), ops.reshape(2, -1)], axis=1).reshape(-1)
