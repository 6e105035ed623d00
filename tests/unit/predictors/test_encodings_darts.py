"""DARTS CNN cell encodings: the BANANAS path encoding and the space dispatch of ``encode_arch`` / ``encode_archs``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metanas.predictors import encodings as E
from metanas.search_spaces.darts_cnn import DartsCNNSpace

SPACE = DartsCNNSpace()
K = len(SPACE.ops) - 1  # 7 non-none ops
CELL_INPUT = K + K**2 + K**3 + K**4  # features per (cell, input node)

# node 2 <- (sep3, 0), (sep3, 1); node 3 <- (skip, 0), (sep3, 2); node 4 <- (max, 2), (skip, 3);
# node 5 <- (dil3, 0), (avg, 4)
NORMAL = [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 2),
          ("max_pool_3x3", 2), ("skip_connect", 3), ("dil_conv_3x3", 0), ("avg_pool_3x3", 4)]
REDUCE = [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
          ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)]


def reference_paths(space, arch) -> np.ndarray:
    """Host-side DFS over a genotype: every (cell, input, op sequence) path, counted into the same layout."""
    g = space.genotype(arch)
    out = np.zeros(2 * 2 * CELL_INPUT, np.float32)
    for cell, name in enumerate(("normal", "reduce")):
        incoming = {i + 2: g[name][2 * i:2 * i + 2] for i in range(4)}

        def ends_at(node):  # list of (input, [ops]) paths ending at node
            if node < 2:
                return [(node, [])]
            return [(inp, ops + [op]) for op, src in incoming[node] for inp, ops in ends_at(src)]

        for node in range(2, 6):
            for inp, ops in ends_at(node):
                codes = [space.ops.index(o) - 1 for o in ops]  # none is index 0
                idx = 0
                for c in codes:
                    idx = idx * K + c
                start = sum(K**n for n in range(1, len(ops)))
                out[(2 * cell + inp) * CELL_INPUT + start + idx] += 1
    return out


def test_darts_path_encoding_by_hand():
    arch = SPACE.from_genotype(NORMAL, REDUCE)
    f = np.asarray(E.darts_path_encoding(SPACE, arch))
    assert f.shape == (2 * 2 * CELL_INPUT,) == (11_200,)
    normal = f[:2 * CELL_INPUT].reshape(2, CELL_INPUT)
    # node 2: 1 + 1, node 3: 1 + 2, node 4: 2 + 3, node 5: 1 + 5 paths; from input 0: 1+2+3+4, from input 1: 1+1+2+2
    assert normal.sum() == 16 and normal[0].sum() == 10 and normal[1].sum() == 6
    bounds = np.cumsum([0, K, K**2, K**3, K**4])
    lengths = [normal[:, bounds[n]:bounds[n + 1]].sum() for n in range(4)]
    assert lengths == [4, 5, 5, 2]  # 0->2->3->4->5 and 1->2->3->4->5 are the two 4-op paths
    sep3, skip, mx, avg = (SPACE.ops.index(o) - 1 for o in ("sep_conv_3x3", "skip_connect", "max_pool_3x3",
                                                            "avg_pool_3x3"))
    four = K + K**2 + K**3 + ((sep3 * K + sep3) * K + skip) * K + avg  # (sep3, sep3, skip, avg) from either input
    assert normal[0, four] == 1 and normal[1, four] == 1
    np.testing.assert_array_equal(f, reference_paths(SPACE, arch))


def test_darts_path_encoding_matches_dfs_and_one_op_change_shows(key):
    archs = np.asarray(jax.jit(jax.vmap(SPACE.sample))(jax.random.split(key, 40)))
    encode = jax.jit(jax.vmap(lambda a: E.darts_path_encoding(SPACE, a)))
    enc = np.asarray(encode(archs))
    for a, e in zip(archs, enc):
        np.testing.assert_array_equal(e, reference_paths(SPACE, a))
    mutated = np.asarray(jax.jit(jax.vmap(SPACE.mutate))(jax.random.split(jax.random.fold_in(key, 1), 40), archs))
    enc_m = np.asarray(encode(mutated))
    assert all((enc_m != enc).any(1))  # one op changed -> the paths through that edge change


@pytest.mark.parametrize("kind,dim", [("onehot", 28 * 8), ("onehot_pruned", 28 * 8), ("adjacency", 2 * 14 * 8),
                                      ("path", 11_200), ("onehot_path", 28 * 8 + 11_200)])
def test_encode_archs_dispatches_on_darts_space(key, kind, dim):
    archs = jax.jit(jax.vmap(SPACE.sample))(jax.random.split(key, 8))
    x = jax.jit(lambda a: E.encode_archs(SPACE, a, kind))(archs)
    assert x.shape == (8, dim) and x.dtype == jnp.float32
    np.testing.assert_array_equal(x[3], E.encode_arch(SPACE, archs[3], kind))
    if kind == "onehot_pruned":  # a DARTS cell has no dead edges
        np.testing.assert_array_equal(x, E.encode_archs(SPACE, archs, "onehot"))


def test_encode_arch_rejects_unknown_kind_and_space():
    with pytest.raises(ValueError, match="unknown arch encoding 'paths'"):
        E.encode_arch(SPACE, jnp.zeros(28, jnp.int32), "paths")
    from metanas.search_spaces.nb201 import NB201Space

    with pytest.raises(ValueError, match="'adjacency' is for the DARTS cell"):
        E.encode_arch(NB201Space(), jnp.zeros(6, jnp.int32), "adjacency")
    with pytest.raises(ValueError, match="no arch encodings for str"):
        E.encode_arch("nb201", jnp.zeros(6, jnp.int32))


def test_describe_is_the_darts_genotype_without_a_reference_table():
    arch = SPACE.from_genotype(NORMAL, REDUCE)
    from metanas.benchmarks import reference_metrics

    extra = SPACE.describe(arch)
    assert reference_metrics(SPACE, arch, "/nonexistent") == ({}, {})
    assert extra == SPACE.genotype(arch) and extra["normal"] == NORMAL

