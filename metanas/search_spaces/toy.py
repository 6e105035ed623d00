"""A tiny cell space for tests: 3 nodes, 3 edges ``(1<-0), (2<-0), (2<-1)``, a few ops (default 2: 8 archs).

Arch layout: int32 ``[3]``, one op index per edge in that order; strings in the NB201 form ``|op~0|+|op~0|op~1|``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from metanas.search_spaces.base import SearchSpace
from metanas.search_spaces.ops import OPS

TOY_EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1))  # (dst, src)


@dataclass(frozen=True)
class ToySpace(SearchSpace):
    """``len(ops) ** 3`` cells of a 3-node cell; ops are names from ``metanas.search_spaces.ops.OPS``."""

    ops: tuple[str, ...] = ("skip_connect", "nor_conv_3x3")
    num_edges: int = 3

    def __post_init__(self):
        object.__setattr__(self, "ops", tuple(self.ops))
        if self.num_edges != len(TOY_EDGES):
            raise ValueError(f"ToySpace has {len(TOY_EDGES)} edges, got num_edges={self.num_edges}")
        unknown = [o for o in self.ops if o not in OPS]
        if unknown or len(set(self.ops)) != len(self.ops) or len(self.ops) < 2:
            raise ValueError(f"ToySpace ops must be >= 2 distinct registered ops, got {list(self.ops)}")

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        return TOY_EDGES

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.randint(key, (self.num_edges,), 0, len(self.ops), dtype=jnp.int32)

    def mutate(self, key: jax.Array, arch: jax.Array) -> jax.Array:
        k1, k2 = jax.random.split(key)
        e = jax.random.randint(k1, (), 0, self.num_edges)
        shift = jax.random.randint(k2, (), 1, len(self.ops))
        arch = jnp.asarray(arch, jnp.int32)
        return arch.at[e].set((arch[e] + shift) % len(self.ops))

    def neighbours(self, arch) -> np.ndarray:
        arch = np.asarray(arch, np.int32)
        out = [np.where(np.arange(self.num_edges) == e, op, arch) for e in range(self.num_edges)
               for op in range(len(self.ops)) if op != arch[e]]
        return np.stack(out).astype(np.int32)

    def encode(self, arch: jax.Array) -> jax.Array:
        return jax.nn.one_hot(arch, len(self.ops), dtype=jnp.float32).reshape(-1)

    def size(self) -> int:
        return len(self.ops) ** self.num_edges

    def enumerate(self) -> np.ndarray:
        return np.array(list(itertools.product(range(len(self.ops)), repeat=self.num_edges)), np.int32)

    def to_string(self, arch) -> str:
        a = [self.ops[int(i)] for i in np.asarray(arch)]
        return f"|{a[0]}~0|+|{a[1]}~0|{a[2]}~1|"

    def from_string(self, s: str) -> np.ndarray:
        expect = f"expected '|op~0|+|op~0|op~1|' with ops in {','.join(self.ops)}"
        groups = s.strip().split("+")
        if len(groups) != 2 or not all(g.startswith("|") and g.endswith("|") for g in groups):
            raise ValueError(f"bad toy arch string {s!r}: {expect}")
        out = []
        for dst, g in enumerate(groups, start=1):
            items = g[1:-1].split("|")
            if len(items) != dst:
                raise ValueError(f"bad toy arch string {s!r}: node {dst} has {len(items)} inputs, {expect}")
            for src, item in enumerate(items):
                op, sep, idx = item.rpartition("~")
                if not sep or idx != str(src) or op not in self.ops:
                    raise ValueError(f"bad toy arch string {s!r}: edge {item!r}, {expect}")
                out.append(self.ops.index(op))
        return np.asarray(out, np.int32)
