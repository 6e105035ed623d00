"""Featurizers: architecture encodings (one-hot, pruned one-hot, path encoding) and hyperparameter encodings.

Architecture encodings are pure and jittable (``jax.vmap`` them over a batch of archs). ``encode_arch`` /
``encode_archs`` dispatch on the space (NB201 or DARTS CNN); the kinds are

- ``onehot``: one-hot op per edge, ``none`` included. For the DARTS cell this *is* "adjacency + ops" (an edge is
  in the adjacency iff its op is not ``none``); ``adjacency`` is the same information laid out as BANANAS' adjacency
  encoding (``darts_adjacency_ops``).
- ``onehot_pruned``: one-hot after setting dead edges to ``none`` (NB201; a DARTS cell has no dead edges, so there
  it equals ``onehot``).
- ``path``: the path encoding of White et al., "BANANAS" (AAAI 2021), Sec. 3: one count per op sequence on an
  input->output path, paths through ``none`` dropped. Not injective (it forgets which route a path takes).
- ``onehot_path``: ``onehot`` and ``path`` concatenated (injective).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from metanas.search_spaces.darts_cnn import DARTS_EDGES, DartsCNNSpace
from metanas.search_spaces.nb201 import NB201Space

# NB201 input->output routes as edge indices into EDGES (string order): 0->3, 0->1->3, 0->2->3, 0->1->2->3
NB201_ROUTES: tuple[tuple[int, ...], ...] = ((3,), (0, 4), (1, 5), (0, 2, 5))

ArchEncoding = Literal["onehot", "onehot_pruned", "path", "onehot_path", "adjacency"]
ARCH_ENCODINGS: tuple[str, ...] = ("onehot", "onehot_pruned", "path", "onehot_path", "adjacency")


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


def encode_arch(space, arch: jax.Array, kind: ArchEncoding = "onehot") -> jax.Array:
    """Float32 [D] encoding of one arch of ``space`` (``NB201Space`` or ``DartsCNNSpace``). Jittable, vmappable."""
    if kind not in ARCH_ENCODINGS:
        raise ValueError(f"unknown arch encoding {kind!r}; expected one of {', '.join(ARCH_ENCODINGS)}")
    if isinstance(space, DartsCNNSpace):
        path = darts_path_encoding
        prune = lambda s, a: jnp.asarray(a, jnp.int32)  # noqa: E731  every kept DARTS edge reaches the output
    elif isinstance(space, NB201Space):
        if kind == "adjacency":
            raise ValueError("arch encoding 'adjacency' is for the DARTS cell; NB201's 'onehot' already is one-hot "
                             "op per edge of its fixed 4-node DAG")
        path, prune = nb201_path_encoding, nb201_prune
    else:
        raise ValueError(f"no arch encodings for {type(space).__name__}; expected NB201Space or DartsCNNSpace")
    if kind == "onehot":
        return space.encode(arch)
    if kind == "onehot_pruned":
        return space.encode(prune(space, arch))
    if kind == "path":
        return path(space, arch)
    if kind == "adjacency":
        return darts_adjacency_ops(space, arch)
    return jnp.concatenate([space.encode(arch), path(space, arch)])  # onehot_path


def encode_archs(space, archs, kind: ArchEncoding = "onehot") -> jax.Array:
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


def nb201_zero_cost_features(space: NB201Space, zc: np.ndarray, *, normal_scores: bool = False) -> np.ndarray:
    """Float32 [N, 13] standardised signed-log zero-cost proxies for every cell in enumerate order.

    ``zc`` (from ``benchmarks.nb201.load_zero_cost``) is NaN for the 6,180 cells with dead branches; each of
    those computes the same function as its pruned cell (``nb201_prune``), whose row is used instead.
    ``normal_scores``: [N, 26], each proxy also as the normal score of its rank among all N cells
    (``Phi^-1((rank - 1/2) / N)``: heavy tails and outliers flattened). That uses the proxies of the whole candidate
    set (no accuracies), which a search over the space computes anyway.
    """
    from scipy.stats import norm, rankdata

    archs = space.enumerate()
    pruned = np.asarray(jax.vmap(lambda a: nb201_prune(space, a))(archs))
    f = np.asarray(zc, np.float64)[space.arch_code(pruned)]
    f = np.where(np.isnan(f), np.nanmedian(f, 0), f)
    f = np.sign(f) * np.log1p(np.abs(f))
    out = (f - f.mean(0)) / (f.std(0) + 1e-8)
    if normal_scores:
        out = np.concatenate([out, norm.ppf((rankdata(f, axis=0) - 0.5) / len(f))], 1)
    return out.astype(np.float32)


def darts_adjacency_ops(space: DartsCNNSpace, arch: jax.Array) -> jax.Array:
    """DARTS cell encoding "adjacency + ops" (BANANAS' adjacency encoding, White et al. 2021, Sec. 3), jittable.

    Per cell (normal, then reduction): the 14-entry adjacency of the candidate edges ``(dst <- src)`` in
    ``DARTS_EDGES`` order (1 = kept) and, per edge, the one-hot of its op among the non-``none`` ops (zeros when the
    edge is not kept). Float32 [2 * 14 * (1 + K')], K' = ops other than ``none``; injective on valid archs. It holds
    the same information as ``space.encode`` (one-hot over all ops incl. ``none``), laid out as adjacency + ops.
    """
    arch = jnp.asarray(arch, jnp.int32).reshape(2, -1)  # [cell, 14]
    none = space.none_index
    kept = arch != none
    code = jnp.where(arch > none, arch - 1, arch)  # op index among the non-none ops
    ops = jax.nn.one_hot(code, len(space.ops) - 1, dtype=jnp.float32) * kept[..., None]
    return jnp.concatenate([kept.astype(jnp.float32), ops.reshape(2, -1)], axis=1).reshape(-1)


def darts_path_encoding(space: DartsCNNSpace, arch: jax.Array) -> jax.Array:
    """DARTS cell path encoding (BANANAS, White et al. 2021, Sec. 3 and their ``darts/arch.py``), jittable.

    A path starts at one of a cell's 2 input nodes, follows kept edges through intermediate nodes and ends at any
    intermediate node (all 4 are concatenated into the cell output, so each such path reaches the output); its
    feature is (input node, op sequence), 1 to 4 ops long. Edges holding ``none`` are not kept, so they cut paths.
    Per cell (normal, then reduction) and input node: the counts of every op sequence of length 1..4 over the K'
    non-``none`` ops, lengths in order, sequences in base-K' order (first op most significant).
    Float32 [2 cells * 2 inputs * (K' + K'^2 + K'^3 + K'^4)] = [11,200] for the 8 DARTS ops.
    """
    arch = jnp.asarray(arch, jnp.int32).reshape(2, -1)  # [cell, 14] in DARTS_EDGES order
    none = space.none_index
    k = len(space.ops) - 1
    feats = []
    for cell in range(2):
        kept = arch[cell] != none
        code = jnp.where(arch[cell] > none, arch[cell] - 1, arch[cell])
        step = jax.nn.one_hot(code, k, dtype=jnp.float32) * kept[:, None]  # [14, K'] the op of each kept edge
        # paths[node][inp][length - 1]: float [K'^length] counts of op sequences from input ``inp`` ending at node
        paths: dict[int, list[list[jax.Array]]] = {}
        total = [[jnp.zeros(k ** (n + 1), jnp.float32) for n in range(4)] for _ in range(2)]
        for node in range(2, 6):
            acc = [[jnp.zeros(k ** (n + 1), jnp.float32) for n in range(4)] for _ in range(2)]
            for e, (dst, src) in enumerate(DARTS_EDGES):
                if dst != node:
                    continue
                for inp in range(2):
                    if src < 2:
                        if src == inp:
                            acc[inp][0] = acc[inp][0] + step[e]
                        continue
                    for n in range(3):  # extend paths ending at ``src`` by this edge's op
                        acc[inp][n + 1] = acc[inp][n + 1] + (paths[src][inp][n][:, None] * step[e][None, :]).reshape(-1)
            paths[node] = acc
            total = [[t + a for t, a in zip(ti, ai)] for ti, ai in zip(total, acc)]
        feats += [t for ti in total for t in ti]
    return jnp.concatenate(feats)
