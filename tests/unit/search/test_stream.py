"""Streaming top-k over the DARTS CNN space (``metanas.search.stream``): ids <-> archs, the gather-sum first
layer against the matmul, and the streamed top-k against a brute-force ranking of the same candidates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metanas.predictors import fusion
from metanas.search import stream as S
from metanas.predictors.encodings import encode_archs
from metanas.predictors.pairwise import Pairwise
from metanas.search_spaces.darts_cnn import DartsCNNSpace

SPACE = DartsCNNSpace()
P = S.cell_count(SPACE)


def fused_ensemble(key, ensemble=3, layers=2, hidden=16, kind="onehot"):
    """A fused ensemble with random (untrained) weights and a non-zero skip term, so scores have no exact ties."""
    pred = Pairwise(ensemble=ensemble, layers=layers, hidden=hidden, embed=8)
    dim = encode_archs(SPACE, jnp.zeros((1, 28), jnp.int32), kind).shape[1]
    params = jax.vmap(pred.init, (0, None))(jax.random.split(key, ensemble), dim)
    params["v"] = 0.1 * jax.random.normal(jax.random.fold_in(key, 1), params["v"].shape)
    return fusion.fuse(pred, params)


def random_ids(key, n):
    return jax.random.randint(key, (n, 2), 0, P).astype(jnp.uint32)


def brute_force_top(f, ids, k):
    """Reference: every candidate decoded, encoded, scored with ``fusion.fused_utility``, stably sorted."""
    u = np.asarray(jax.jit(lambda i: S.dense_scores(f, SPACE, i))(ids))
    order = np.argsort(-u, kind="stable")[:k]
    return u[order], np.asarray(ids)[order]


def test_ids_count_the_space_and_round_trip(key):
    assert S.node_radices(SPACE) == (49, 147, 294, 490) and P * P == SPACE.count()
    corners = jnp.asarray([[0, 0], [P - 1, P - 1], [0, P - 1]], jnp.uint32)
    ids = jnp.concatenate([corners, random_ids(key, 300)])
    archs = np.asarray(jax.jit(lambda i: S.decode(SPACE, i))(ids))
    for a in archs:
        SPACE.validate(a)
    np.testing.assert_array_equal(S.arch_ids(SPACE, archs), np.asarray(ids))
    assert len({SPACE.to_string(a) for a in archs}) == len({tuple(i) for i in np.asarray(ids).tolist()})
    sampled = np.asarray(jax.jit(jax.vmap(SPACE.sample))(jax.random.split(key, 20)))  # any arch has an id
    np.testing.assert_array_equal(np.asarray(S.decode(SPACE, S.arch_ids(SPACE, sampled))), sampled)
    assert S.genotype_ids(SPACE, [[1, 2]]) == [P + 2]


def test_gather_sum_equals_the_matmul_on_one_hot_inputs(key):
    table = jax.random.normal(key, (50, 7))
    idx = jax.random.randint(jax.random.fold_in(key, 1), (40, 4), 0, 50)
    onehot = jax.nn.one_hot(idx, 50).sum(1)  # [40, 50], a row may pick the same entry twice
    np.testing.assert_allclose(S.gather_sum(table, idx), onehot @ table, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind,ensemble,layers", [("onehot", 3, 2), ("adjacency", 2, 1), ("onehot", 1, 0)])
def test_folded_first_layer_scores_equal_fused_utility(key, kind, ensemble, layers):
    f = fused_ensemble(key, ensemble, layers, kind=kind)
    ids = random_ids(jax.random.fold_in(key, 2), 500)
    xn, base = S.node_encodings(SPACE, kind)

    @jax.jit
    def both(f, ids):
        x = encode_archs(SPACE, S.decode(SPACE, ids), kind)
        summed = base[None] + jax.nn.one_hot(S.node_rows(SPACE, ids), xn.shape[0]).sum(1) @ xn
        return x, summed, S.stream_scores(S.fold_first_layer(f, SPACE, kind), SPACE, ids), fusion.fused_utility(f, x)

    x, summed, got, want = both(f, ids)
    np.testing.assert_allclose(summed, x, atol=1e-6)  # the encoding is the sum of its node choices' rows
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_stream_topk_enumerated_equals_brute_force(key):
    """Enumeration from an offset that crosses a reduction-cell wrap, a last chunk shorter than the others."""
    f = fused_ensemble(key)
    n, start, k = 100_000, P - 40_000, 25
    got = S.stream_topk(None, f, SPACE, n, 4096, k, start=start)
    ids = np.stack(np.divmod(start + np.arange(n, dtype=np.int64), P), 1).astype(np.uint32)
    want_s, want_ids = brute_force_top(f, jnp.asarray(ids), k)
    np.testing.assert_array_equal(np.asarray(got.ids), want_ids)
    np.testing.assert_allclose(got.scores, want_s, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got.archs, S.decode(SPACE, want_ids))
    assert np.all(np.diff(np.asarray(got.scores)) <= 0)
    dense = S.stream_topk(None, f, SPACE, n, 4096, k, start=start, first_layer="dense")  # the reference path
    np.testing.assert_array_equal(np.asarray(dense.ids), want_ids)


def test_sampled_stream_is_without_replacement_and_equals_brute_force(key):
    rk = jax.random.bits(key, (4,), jnp.uint32)
    hi, lo = np.divmod(np.arange(997 * 997), 997)  # a keyed permutation of a small [0, p)^2 is a bijection
    ph, pl = S.permute(rk, jnp.asarray(hi, jnp.uint32), jnp.asarray(lo, jnp.uint32), 997)
    assert len(np.unique(np.asarray(ph).astype(np.int64) * 997 + np.asarray(pl))) == 997 * 997
    assert np.asarray(ph).max() < 997 and np.asarray(pl).max() < 997
    f = fused_ensemble(jax.random.fold_in(key, 3))
    n, k = 50_000, 10
    got = S.stream_topk(key, f, SPACE, n, 3000, k)
    c_hi, c_lo = np.divmod(np.arange(n), P)
    ids = jnp.stack(S.permute(jax.random.bits(key, (4,), jnp.uint32), jnp.asarray(c_hi, jnp.uint32),
                              jnp.asarray(c_lo, jnp.uint32), P), 1)
    assert len(np.unique(np.asarray(ids).astype(np.int64) @ np.array([P, 1]))) == n
    from scipy.stats import chisquare  # every node digit of both cells looks uniform (the counter's hi is 0 here)

    for cell in range(2):
        for radix, digit in zip(S.node_radices(SPACE), S._digits(SPACE, ids[:, cell])):
            assert chisquare(np.bincount(np.asarray(digit), minlength=radix)).pvalue > 1e-4
    want_s, want_ids = brute_force_top(f, ids, k)
    np.testing.assert_array_equal(np.asarray(got.ids), want_ids)
    np.testing.assert_allclose(got.scores, want_s, rtol=1e-5, atol=1e-5)
    other = S.stream_topk(jax.random.fold_in(key, 9), f, SPACE, n, 3000, k)
    assert not np.array_equal(np.asarray(other.ids), want_ids)  # another key, other candidates


@pytest.mark.slow
def test_stream_topk_equals_brute_force_on_a_million_candidates(key):
    f = fused_ensemble(key, hidden=64)
    n, k = 1_000_000, 100
    got = S.stream_topk(None, f, SPACE, n, 16384, k)
    ids = jnp.stack([jnp.zeros(n, jnp.uint32), jnp.arange(n, dtype=jnp.uint32)], 1)
    want_s, want_ids = brute_force_top(f, ids, k)
    np.testing.assert_array_equal(np.asarray(got.ids), want_ids)
    np.testing.assert_allclose(got.scores, want_s, rtol=1e-5, atol=1e-5)


def test_stream_topk_rejects_bad_arguments(key):
    f = fused_ensemble(key)
    with pytest.raises(ValueError, match=r"k must be in \[1, n_candidates=5\]"):
        S.stream_topk(None, f, SPACE, 5, 4, 6)
    with pytest.raises(ValueError, match="chunk must be in"):
        S.stream_topk(None, f, SPACE, 5, 0, 1)
    with pytest.raises(ValueError, match="must lie in"):
        S.stream_topk(None, f, SPACE, 10, 4, 1, start=P * P - 5)
    with pytest.raises(ValueError, match="needs an additive encoding"):
        S.stream_topk(None, f, SPACE, 10, 4, 1, kind="path")
    with pytest.raises(ValueError, match="start is for enumeration"):
        S.stream_topk(key, f, SPACE, 10, 4, 1, start=3)
    with pytest.raises(ValueError, match="needs a DartsCNNSpace"):
        S.stream_topk(None, f, "darts", 10, 4, 1)
