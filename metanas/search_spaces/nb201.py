"""NAS-Bench-201 / NATS-Bench topology space (Dong & Yang, ICLR 2020): a 4-node cell with 6 edges, 5 ops.

Arch layout: int32 ``[6]``, one op index per edge in NB201 arch-string order
``(1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2)`` (``EDGES`` lists them as ``(dst, src)``), so the string is
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``. ``enumerate()`` orders cells by the base-5 number
``sum_e arch[e] * 5**(5-e)`` (``arch_code``); benchmark tables in ``metanas.benchmarks.nb201`` use that order.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from metanas.search_spaces.base import SearchSpace

NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (dst, src)


@dataclass(frozen=True)
class NB201Space(SearchSpace):
    """The NB201 cell space. ``ops`` order fixes the op axis of encodings (default: the NB201 order)."""

    ops: tuple[str, ...] = NB201_OPS
    num_edges: int = 6

    def __post_init__(self):
        object.__setattr__(self, "ops", tuple(self.ops))  # Hydra passes a list
        if self.num_edges != len(EDGES):
            raise ValueError(f"NB201Space has {len(EDGES)} edges, got num_edges={self.num_edges}")
        if len(set(self.ops)) != len(self.ops) or not self.ops:
            raise ValueError(f"NB201Space ops must be distinct and non-empty, got {list(self.ops)}")

    @property
    def num_ops(self) -> int:
        return len(self.ops)

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.randint(key, (self.num_edges,), 0, self.num_ops, dtype=jnp.int32)

    def mutate(self, key: jax.Array, arch: jax.Array) -> jax.Array:
        k_edge, k_op = jax.random.split(key)
        edge = jax.random.randint(k_edge, (), 0, self.num_edges)
        shift = jax.random.randint(k_op, (), 1, self.num_ops)  # never 0: the op really changes
        arch = jnp.asarray(arch, jnp.int32)
        return arch.at[edge].set((arch[edge] + shift) % self.num_ops)

    def neighbours(self, arch) -> np.ndarray:
        arch = np.asarray(arch, np.int32)
        out = []
        for e in range(self.num_edges):
            for op in range(self.num_ops):
                if op != arch[e]:
                    nb = arch.copy()
                    nb[e] = op
                    out.append(nb)
        return np.stack(out).astype(np.int32)

    def encode(self, arch: jax.Array) -> jax.Array:
        return jax.nn.one_hot(arch, self.num_ops, dtype=jnp.float32).reshape(-1)

    def size(self) -> int:
        return self.num_ops**self.num_edges

    def enumerate(self) -> np.ndarray:
        return np.array(list(itertools.product(range(self.num_ops), repeat=self.num_edges)), dtype=np.int32)

    def arch_code(self, arch) -> np.ndarray:
        """Row of ``arch`` (``[..., E]``) in ``enumerate()``: the base-``num_ops`` number of its op indices."""
        arch = np.asarray(arch, np.int64)
        weights = self.num_ops ** np.arange(self.num_edges - 1, -1, -1, dtype=np.int64)
        return arch @ weights

    def to_string(self, arch) -> str:
        a = [int(x) for x in np.asarray(arch)]
        groups, e = [], 0
        for dst in (1, 2, 3):
            groups.append("|" + "|".join(f"{self.ops[a[e + src]]}~{src}" for src in range(dst)) + "|")
            e += dst
        return "+".join(groups)

    def from_string(self, s: str) -> np.ndarray:
        expect = "expected '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' with ops in " + ",".join(self.ops)
        groups = s.strip().split("+")
        if len(groups) != 3:
            raise ValueError(f"bad NB201 arch string {s!r}: {len(groups)} node groups, {expect}")
        arch = []
        for dst, g in enumerate(groups, start=1):
            if not (g.startswith("|") and g.endswith("|")):
                raise ValueError(f"bad NB201 arch string {s!r}: group {g!r} not enclosed in '|', {expect}")
            items = g[1:-1].split("|")
            if len(items) != dst:
                raise ValueError(f"bad NB201 arch string {s!r}: node {dst} has {len(items)} inputs, {expect}")
            for src, item in enumerate(items):
                op, sep, idx = item.rpartition("~")
                if not sep or idx != str(src) or op not in self.ops:
                    raise ValueError(f"bad NB201 arch string {s!r}: edge {item!r}, {expect}")
                arch.append(self.ops.index(op))
        return np.asarray(arch, np.int32)
