"""DARTS CNN cell space (Liu et al., ICLR 2019): a normal and a reduction cell, each with 2 input nodes (the two
previous cells' outputs) and 4 intermediate nodes; node ``i`` (2..5) keeps exactly 2 incoming edges, each with a
non-``none`` op; the cell output concatenates nodes 2..5.

Arch layout: int32 ``[28]`` = normal cell edges ``[0:14]`` then reduction cell edges ``[14:28]``. Within a cell the
14 candidate edges are ordered ``(2<-0), (2<-1), (3<-0), (3<-1), (3<-2), (4<-0) .. (4<-3), (5<-0) .. (5<-4)``
(``DARTS_EDGES``) and hold an op index into ``ops``; an edge that is not kept holds the index of ``none``. So every
node has exactly two entries that are not ``none``. Strings use the DARTS ``Genotype(...)`` form with each node's
two inputs in ascending order.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from metanas.search_spaces.base import SearchSpace
from metanas.search_spaces.ops import OPS

DARTS_OPS: tuple[str, ...] = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
                              "dil_conv_3x3", "dil_conv_5x5")
NUM_INPUTS, NUM_NODES = 2, 4
DARTS_EDGES: tuple[tuple[int, int], ...] = tuple((dst, src) for dst in range(NUM_INPUTS, NUM_INPUTS + NUM_NODES)
                                                 for src in range(dst))  # (dst, src), 14 edges
EDGES_PER_CELL = len(DARTS_EDGES)
_NODE_START = tuple(sum(NUM_INPUTS + j for j in range(i)) for i in range(NUM_NODES))  # first edge of each node


@dataclass(frozen=True)
class DartsCNNSpace(SearchSpace):
    """The DARTS CNN space; ``ops`` must contain ``none`` (the 'edge not kept' marker)."""

    ops: tuple[str, ...] = DARTS_OPS
    num_edges: int = 2 * EDGES_PER_CELL

    def __post_init__(self):
        object.__setattr__(self, "ops", tuple(self.ops))
        if self.num_edges != 2 * EDGES_PER_CELL:
            raise ValueError(f"DartsCNNSpace has {2 * EDGES_PER_CELL} edges, got num_edges={self.num_edges}")
        unknown = [o for o in self.ops if o not in OPS]
        if "none" not in self.ops or unknown or len(set(self.ops)) != len(self.ops) or len(self.ops) < 2:
            raise ValueError(f"DartsCNNSpace ops must be distinct registered ops including 'none', got {list(self.ops)}")

    @property
    def none_index(self) -> int:
        return self.ops.index("none")

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        return DARTS_EDGES

    def _real_ops(self) -> np.ndarray:
        return np.array([i for i, o in enumerate(self.ops) if o != "none"], np.int32)

    # ---- jittable ------------------------------------------------------------------------------------------------
    def sample(self, key: jax.Array) -> jax.Array:
        real = jnp.asarray(self._real_ops())
        cells = []
        for kc in jax.random.split(key, 2):
            parts = []
            for i, kn in enumerate(jax.random.split(kc, NUM_NODES)):
                k_in, k_op = jax.random.split(kn)
                n_in = NUM_INPUTS + i
                chosen = jax.random.permutation(k_in, n_in)[:2]
                ops = real[jax.random.randint(k_op, (2,), 0, real.shape[0])]
                row = jnp.full((n_in,), self.none_index, jnp.int32).at[chosen].set(ops)
                parts.append(row)
            cells.append(jnp.concatenate(parts))
        return jnp.concatenate(cells).astype(jnp.int32)

    def mutate(self, key: jax.Array, arch: jax.Array) -> jax.Array:
        """Change the op of one kept edge to a different non-``none`` op."""
        arch = jnp.asarray(arch, jnp.int32)
        real = jnp.asarray(self._real_ops())
        k1, k2 = jax.random.split(key)
        kept = jnp.nonzero(arch != self.none_index, size=2 * 2 * NUM_NODES)[0]
        e = kept[jax.random.randint(k1, (), 0, kept.shape[0])]
        pos = jnp.argmax(real == arch[e])
        shift = jax.random.randint(k2, (), 1, real.shape[0])
        return arch.at[e].set(real[(pos + shift) % real.shape[0]])

    def encode(self, arch: jax.Array) -> jax.Array:
        return jax.nn.one_hot(arch, len(self.ops), dtype=jnp.float32).reshape(-1)

    # ---- host ----------------------------------------------------------------------------------------------------
    def neighbours(self, arch) -> np.ndarray:
        """All archs one op change away, plus those with one kept edge moved to another input of its node."""
        arch = np.asarray(arch, np.int32)
        out = []
        for e in np.flatnonzero(arch != self.none_index):
            for op in self._real_ops():
                if op != arch[e]:
                    nb = arch.copy()
                    nb[e] = op
                    out.append(nb)
            cell, local = divmod(int(e), EDGES_PER_CELL)
            dst = DARTS_EDGES[local][0]
            start = cell * EDGES_PER_CELL + _NODE_START[dst - NUM_INPUTS]
            for other in range(start, start + dst):
                if arch[other] == self.none_index:
                    nb = arch.copy()
                    nb[other], nb[e] = arch[e], self.none_index
                    out.append(nb)
        return np.stack(out).astype(np.int32)

    def size(self) -> None:
        """Not enumerable (about 1e18 archs with the 8 DARTS ops; ``count()`` gives the exact number)."""
        return None

    def count(self) -> int:
        per_cell = math.prod(math.comb(NUM_INPUTS + i, 2) * (len(self.ops) - 1) ** 2 for i in range(NUM_NODES))
        return per_cell**2

    def enumerate(self) -> np.ndarray:
        raise ValueError(f"the DARTS CNN space has {self.count():.3e} archs and cannot be enumerated; use sample()")

    def validate(self, arch) -> np.ndarray:
        arch = np.asarray(arch, np.int32)
        if arch.shape != (self.num_edges,) or arch.min() < 0 or arch.max() >= len(self.ops):
            raise ValueError(f"DARTS arch must be int [{self.num_edges}] with values in [0, {len(self.ops)}), "
                             f"got shape {arch.shape}")
        for cell in range(2):
            for i in range(NUM_NODES):
                s = cell * EDGES_PER_CELL + _NODE_START[i]
                kept = int(np.sum(arch[s:s + NUM_INPUTS + i] != self.none_index))
                if kept != 2:
                    raise ValueError(f"DARTS arch: node {i + NUM_INPUTS} of the "
                                     f"{('normal', 'reduce')[cell]} cell keeps {kept} edges, expected exactly 2")
        return arch

    def genotype(self, arch) -> dict[str, list]:
        """``{"normal": [(op, input), ...8], "normal_concat": [2..5], "reduce": [...], "reduce_concat": [...]}``."""
        arch = self.validate(arch)
        out: dict[str, list] = {}
        for cell, name in enumerate(("normal", "reduce")):
            pairs = []
            for local, (dst, src) in enumerate(DARTS_EDGES):
                op = int(arch[cell * EDGES_PER_CELL + local])
                if op != self.none_index:
                    pairs.append((self.ops[op], src))
            out[name] = pairs
            out[f"{name}_concat"] = list(range(NUM_INPUTS, NUM_INPUTS + NUM_NODES))
        return out

    def describe(self, arch) -> dict:
        """The DARTS genotype lists (``genotype``)."""
        return self.genotype(arch)

    def from_genotype(self, normal: list, reduce: list) -> np.ndarray:
        """Arch from DARTS genotype lists (two ``(op, input)`` pairs per node, node by node)."""
        arch = np.full((self.num_edges,), self.none_index, np.int32)
        for cell, pairs in enumerate((normal, reduce)):
            if len(pairs) != 2 * NUM_NODES:
                raise ValueError(f"DARTS genotype cell needs {2 * NUM_NODES} (op, input) pairs, got {len(pairs)}")
            for k, (op, src) in enumerate(pairs):
                i = k // 2
                if op not in self.ops or op == "none" or not 0 <= int(src) < NUM_INPUTS + i:
                    raise ValueError(f"bad DARTS genotype entry {(op, src)!r} for node {i + NUM_INPUTS}: op must be "
                                     f"one of {[o for o in self.ops if o != 'none']}, input in 0..{i + 1}")
                arch[cell * EDGES_PER_CELL + _NODE_START[i] + int(src)] = self.ops.index(op)
        return self.validate(arch)

    def to_string(self, arch) -> str:
        g = self.genotype(arch)
        return (f"Genotype(normal={g['normal']}, normal_concat={g['normal_concat']}, "
                f"reduce={g['reduce']}, reduce_concat={g['reduce_concat']})")

    def from_string(self, s: str) -> np.ndarray:
        expect = "expected \"Genotype(normal=[('op', input), ...], normal_concat=[2, 3, 4, 5], reduce=[...], ...)\""
        m = re.fullmatch(r"\s*Genotype\((.*)\)\s*", s, re.S)
        if not m:
            raise ValueError(f"bad DARTS genotype string {s[:60]!r}: {expect}")
        try:
            fields = _parse_kwargs(m.group(1))
            return self.from_genotype(fields["normal"], fields["reduce"])
        except (ValueError, SyntaxError, KeyError, TypeError) as e:
            raise ValueError(f"bad DARTS genotype string {s[:60]!r} ({str(e).splitlines()[0]}): {expect}") from None


def _parse_kwargs(body: str) -> dict:
    """``normal=[...], normal_concat=[...]`` -> dict, with literal values only (no eval)."""
    tree = ast.parse(f"f({body})", mode="eval")
    call = tree.body
    if not isinstance(call, ast.Call) or call.args:
        raise ValueError("only keyword fields are allowed")
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
