"""Fused ensemble ranking (metanas.predictors.fusion) agrees with Pairwise.score."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metanas.predictors import fusion
from metanas.predictors.encodings import encode_archs
from metanas.predictors.pairwise import Pairwise
from metanas.search_spaces.nb201 import NB201Space


@pytest.mark.parametrize("layers,skip,ensemble", [(2, True, 3), (0, False, 2)])
def test_fused_scores_equal_score_up_to_a_constant(key, layers, skip, ensemble):
    space = NB201Space()
    archs = jnp.asarray(space.enumerate()[::31])
    x = encode_archs(space, archs, "onehot_pruned")
    pred = Pairwise(hidden=16, layers=layers, embed=4, ensemble=ensemble, linear_skip=skip)
    params = jax.vmap(lambda k: pred.init(k, x.shape[1]))(jax.random.split(key, ensemble))  # the layout fit returns
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(key, p.shape), params)  # non-trivial biases, skip
    want = np.asarray(pred.score(params, x))
    f = fusion.fuse(pred, params)
    got = np.asarray(fusion.fused_utility(f, x))
    np.testing.assert_allclose(got - got.mean(), want - want.mean(), rtol=1e-4, atol=1e-4)
    table = fusion.candidate_table(space, archs, "onehot_pruned")
    assert table.x.shape[0] < len(archs)  # pruning makes some cells share an encoding
    np.testing.assert_array_equal(table.x[table.inverse], x)
    order = np.asarray(fusion.rank_table(f, table))
    assert sorted(order.tolist()) == list(range(len(archs))) and (np.diff(want[order]) <= 1e-4).all()  # best first
    top = np.asarray(fusion.rank_table(f, table, top=5))
    np.testing.assert_allclose(want[top], want[order[:5]], atol=1e-5)


def test_argsort_desc_orders_candidates_with_ties_and_nan():
    space = NB201Space()
    table = fusion.candidate_table(space, jnp.asarray(space.enumerate()[::7]), "onehot_pruned")
    inv = np.asarray(table.inverse)
    rng = np.random.default_rng(0)
    n_rows = table.x.shape[0]
    distinct = rng.permutation(n_rows).astype(np.float32) - 100.0
    # distinct row utilities: exactly the stable argsort of the candidates' utilities
    np.testing.assert_array_equal(fusion.argsort_desc(table, jnp.asarray(distinct)),
                                  np.argsort(-distinct[inv], kind="stable"))
    # heavy ties between rows, -0.0 / 0.0, -inf and NaN: best first, NaN last, ties by row then candidate index
    tied = np.round(rng.standard_normal(n_rows) * 2).astype(np.float32) / 2
    tied[:4] = [np.nan, -np.inf, -0.0, 0.0]
    order = np.asarray(fusion.argsort_desc(table, jnp.asarray(tied)))
    key = np.where(np.isnan(tied), -np.inf, tied)
    want = sorted(range(len(inv)), key=lambda i: (-key[inv[i]], np.isnan(tied[inv[i]]), inv[i], i))
    np.testing.assert_array_equal(order, want)
