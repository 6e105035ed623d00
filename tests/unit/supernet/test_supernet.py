"""Supernet, mixed op, DARTS hypergradients, GDAS sampling and genotype derivation (in-process, tiny sizes)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from metanas.search.darts import DARTS, cross_entropy
from metanas.search.gdas import GDAS, gumbel_straight_through
from metanas.search_spaces.darts_cnn import DARTS_EDGES, DartsCNNSpace
from metanas.search_spaces.nb201 import NB201Space
from metanas.search_spaces.ops import OPS, get_op
from metanas.search_spaces.toy import ToySpace
from metanas.supernet import derive, make_derived, make_supernet, mixed_op
from metanas.supernet.discretize import derive_argmax, derive_darts


def test_near_one_hot_mixed_op_equals_its_op(key):
    names = NB201Space().ops
    ops = [get_op(n, 4, 1, False, rngs=nnx.Rngs(params=jax.random.fold_in(key, i))) for i, n in enumerate(names)]
    x = jax.random.normal(jax.random.fold_in(key, 99), (3, 6, 6, 4))

    @jax.jit
    def both(target):
        alpha = 40.0 * jax.nn.one_hot(target, len(ops))  # softmax weight of the others ~ e^-40
        soft = mixed_op(ops, x, jax.nn.softmax(alpha))
        hard = mixed_op(ops, x, jax.nn.one_hot(target, len(ops)), index=target)  # GDAS: only op `target`
        return soft, hard

    for target in range(len(ops)):
        soft, hard = both(jnp.asarray(target))
        want = ops[target](x)
        np.testing.assert_allclose(soft, want, atol=1e-5, err_msg=names[target])
        np.testing.assert_allclose(hard, want, atol=1e-6, err_msg=names[target])


def test_supernet_with_one_hot_alpha_equals_derived_network(key):
    """A supernet whose alphas are (near) one-hot computes the derived cell's function with the same weights."""
    space = ToySpace(ops=("skip_connect", "nor_conv_3x3", "avg_pool_3x3"))
    net = make_supernet(space, C=4, N=2, num_classes=3)
    x = jax.random.normal(key, (4, 8, 8, 1))
    w, alphas, bs = net.init(key, x)
    arch = np.array([1, 2, 1], np.int32)
    mix = jax.nn.one_hot(arch, 3)
    logits, _ = jax.jit(lambda w: net.apply_mix(w, mix, bs, x))(w)
    # derived net (non-affine BN, so weights map 1:1: keep only the chosen op's params per edge)
    dnet = make_derived(space, arch, C=4, N=2, num_classes=3)
    dnet = type(dnet)(dnet.edges, dnet.edge_ops, C=4, N=2, num_stages=1, num_classes=3, affine=False)
    dw = jax.tree.map(lambda a: a, w)
    edges = w["stages"][0]["edges"]
    dw["stages"] = {0: {"edges": {f"e{e}": {space.ops[int(a)]: edges[f"e{e}"][space.ops[int(a)]]}
                                  for e, a in enumerate(arch) if space.ops[int(a)] in edges[f"e{e}"]}}}
    d_logits, _ = jax.jit(lambda w: dnet.apply(w, {}, {}, x))(dw)
    np.testing.assert_allclose(logits, d_logits, atol=1e-5)
    assert alphas.shape == (3, 3)


def test_stages_set_the_nb201_skeleton_depth_and_are_checked(key):
    """``stages`` (the debug=fast runs use 1): stage s has C * 2**s channels and one reduction block before it."""
    space = NB201Space(ops=("skip_connect", "nor_conv_1x1"))
    x = jnp.zeros((2, 8, 8, 3))
    for stages, width in ((1, 4), (2, 8), (None, 16)):  # None: NB201's 3 stages
        net = make_supernet(space, C=4, N=1, num_classes=3, stages=stages)
        w, alphas, bs = net.init(key, x)
        assert len(w["stages"]) == (stages or 3)
        assert len(w.get("res", {})) == (stages or 3) - 1
        assert w["head"]["kernel"].shape == (width, 3)
        assert net.apply(w, alphas, bs, x)[0].shape == (2, 3)
        assert make_derived(space, np.zeros(6, np.int32), C=4, N=1, num_classes=3, stages=stages).num_stages == (stages or 3)
    with pytest.raises(ValueError, match="stages must be >= 1"):
        make_supernet(space, C=4, N=1, num_classes=3, stages=0)
    with pytest.raises(ValueError, match="DARTS network's depth is N"):
        make_supernet(DartsCNNSpace(), C=4, N=3, num_classes=3, stages=2)


def _toy_problem(key):
    space = ToySpace(ops=("skip_connect", "nor_conv_3x3"))
    net = make_supernet(space, C=2, N=1, num_classes=3)
    k1, k2, k3 = jax.random.split(key, 3)
    xt, xv = jax.random.normal(k1, (6, 5, 5, 1)), jax.random.normal(k2, (6, 5, 5, 1))
    yt, yv = jnp.arange(6) % 3, (jnp.arange(6) + 1) % 3
    w, alphas, bs = net.init(k3, xt)
    alphas = 0.5 * jax.random.normal(jax.random.fold_in(key, 5), alphas.shape)
    return net, w, alphas, bs, (xt, yt), (xv, yv)


def test_exact_second_order_hypergradient_matches_finite_difference(key):
    """d/dalpha L_val(w - xi grad_w L_train(w, alpha), alpha) by central differences (float64) == exact autodiff;
    the paper's finite-difference HVP is close to it; first order is not."""
    with jax.enable_x64(True):
        net, w, alphas, bs, train, val = _toy_problem(key)
        w, alphas = jax.tree.map(lambda a: a.astype(jnp.float64), (w, alphas))
        train, val = (train[0].astype(jnp.float64), train[1]), (val[0].astype(jnp.float64), val[1])
        xi = 0.5

        def loss(w, a, batch):
            return cross_entropy(net.apply(w, a, bs, batch[0])[0], batch[1])

        def unrolled(a):
            g = jax.grad(loss)(w, a, train)
            return loss(jax.tree.map(lambda p, q: p - xi * q, w, g), a, val)

        h = 1e-5
        basis = h * jnp.eye(alphas.size).reshape(-1, *alphas.shape)
        f = jax.jit(jax.vmap(unrolled))
        fd = np.asarray((f(alphas[None] + basis) - f(alphas[None] - basis)) / (2 * h)).reshape(alphas.shape)


        def hyper(algo):
            return jax.jit(lambda w, a: algo.hypergradient(w, a, bs, train, val, xi, net=net)[1])(w, alphas)

        exact = hyper(DARTS(order=2, hessian="exact"))
        fdhvp = hyper(DARTS(order=2, hessian="finite_difference", fd_eps=1e-4))
        first = hyper(DARTS(order=1))
    np.testing.assert_allclose(exact, fd, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(fdhvp, exact, rtol=1e-3, atol=1e-6)
    assert np.max(np.abs(np.asarray(first) - fd)) > 1e-3 * np.max(np.abs(fd))  # the unrolled term matters here


@pytest.mark.parametrize("algo", [pytest.param(DARTS(order=1), marks=pytest.mark.slow), GDAS(),
                                  pytest.param(DARTS(order=2), marks=pytest.mark.slow),
                                  pytest.param(DARTS(order=2, hessian="finite_difference"), marks=pytest.mark.slow)],
                         ids=["darts1", "gdas", "darts2", "darts2_fd"])
def test_search_step_updates_both_pytrees_and_is_finite(key, algo):
    net, w, alphas, bs, train, val = _toy_problem(key)
    state = algo.init(w, alphas, bs, total_steps=10)
    step = jax.jit(lambda s, k: algo.step(s, train, val, k, net=net, total_steps=10))
    s2, m = step(state, key)
    assert int(s2.step) == 1 and all(np.isfinite(float(v)) for v in m.values())
    assert not np.allclose(s2.alphas, state.alphas)
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(s2.weights), jax.tree.leaves(state.weights)))
    # alpha optimiser state is separate from the weight one (Adam moments have the alpha shape)
    assert {x.shape for x in jax.tree.leaves(s2.a_opt)} >= {alphas.shape}


def test_weight_step_on_the_raveled_vector_equals_optax_leaf_by_leaf(key):
    """SearchOptimizers runs clip -> decay -> SGD(momentum, nesterov, cosine lr) on one raveled weight vector: three
    steps give the same weights as the same optax chain on the weight pytree."""
    net, w, alphas, bs, train, _ = _toy_problem(key)
    algo = DARTS(w_nesterov=True, w_grad_clip=0.05)  # a clip that binds, so the global norm is exercised

    def loss(w):
        logits, bs2 = net.apply(w, alphas, bs, train[0], True)
        return cross_entropy(logits, train[1]), (bs2, jnp.zeros(()))

    state = algo.init(w, alphas, bs, total_steps=10)
    tx = algo.w_tx(10)
    ref_w, ref_opt = w, tx.init(w)
    for _ in range(3):
        state, _, _ = algo.weight_step(state, loss, total_steps=10)
        g = jax.grad(lambda w: loss(w)[0])(ref_w)
        upd, ref_opt = tx.update(g, ref_opt, ref_w)
        ref_w = jax.tree.map(lambda a, b: a + b, ref_w, upd)
    assert jax.tree.structure(state.weights) == jax.tree.structure(w)
    for a, b in zip(jax.tree.leaves(state.weights), jax.tree.leaves(ref_w)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(jax.tree.leaves(state.weights)[0], jax.tree.leaves(w)[0])


def test_gumbel_straight_through_is_one_hot_with_soft_gradient(key):
    alpha = jnp.array([[0.1, 0.5, -0.2], [1.0, 0.0, 0.0]])
    hard, index = gumbel_straight_through(alpha, key, 1.0)
    np.testing.assert_allclose(hard, jax.nn.one_hot(index, 3), atol=1e-6)
    g = jax.grad(lambda a: jnp.sum(gumbel_straight_through(a, key, 1.0)[0] * jnp.arange(3.0)[None, :]))(alpha)
    assert np.all(np.abs(np.asarray(g)) > 0)  # gradient flows through the soft sample
    gd = GDAS()
    assert float(gd.tau(0, 11)) == pytest.approx(10.0, rel=1e-5) and float(gd.tau(10, 11)) == pytest.approx(0.1, rel=1e-5)


def test_derive_nb201_argmax_on_hand_made_alpha():
    space = NB201Space()
    alpha = np.zeros((6, 5))
    want = np.array([3, 0, 2, 1, 4, 3])
    alpha[np.arange(6), want] = [2.0, 0.3, 1.0, 5.0, 0.1, 0.01]
    np.testing.assert_array_equal(derive(space, jnp.asarray(alpha)), want)  # none (0) may win on NB201
    assert space.to_string(want) == ("|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+"
                                     "|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|")
    np.testing.assert_array_equal(derive_argmax(alpha), want)


def test_derive_darts_top2_excludes_none():
    ops = DartsCNNSpace().ops  # none, max, avg, skip, sep3, sep5, dil3, dil5
    a = np.zeros((14, 8))
    # node 2 (edges 0,1): none is the strongest on edge 0 but still both edges are kept (only 2 inputs)
    a[0, 0], a[0, 4] = 10.0, 2.0
    a[1, 6] = 3.0
    # node 3 (edges 2,3,4): edge 3 has 'none' dominant and weak real ops -> dropped; edges 2 and 4 kept
    a[2, 5] = 4.0
    a[3, 0], a[3, 1] = 9.0, 0.5
    a[4, 3] = 3.0
    # node 4 (edges 5..8), node 5 (edges 9..13)
    a[6, 7], a[8, 2] = 5.0, 4.0
    a[9, 1], a[13, 4] = 6.0, 7.0
    arch = derive_darts({"normal": a, "reduce": a[:, ::-1].copy()}, ops)
    g = DartsCNNSpace().genotype(arch)
    assert g["normal"] == [("sep_conv_3x3", 0), ("dil_conv_3x3", 1), ("sep_conv_5x5", 0), ("skip_connect", 2),
                           ("dil_conv_5x5", 1), ("avg_pool_3x3", 3), ("max_pool_3x3", 0), ("sep_conv_3x3", 4)]
    assert all(op != "none" for op, _ in g["normal"] + g["reduce"])
    # reduce alphas are the op axis reversed: 'none' (now last) still never chosen, and each node keeps 2 edges
    assert len(g["reduce"]) == 8
    space = DartsCNNSpace()
    np.testing.assert_array_equal(space.from_string(space.to_string(arch)), arch)


@pytest.mark.parametrize("space", [NB201Space(), ToySpace(), DartsCNNSpace()], ids=["nb201", "toy", "darts"])
def test_arch_string_round_trip_and_space_api(key, space):
    for i in range(20):
        arch = np.asarray(space.sample(jax.random.fold_in(key, i)))
        assert np.array_equal(space.from_string(space.to_string(arch)), arch)
        mutated = np.asarray(space.mutate(jax.random.fold_in(key, 100 + i), arch))
        assert np.sum(mutated != arch) >= 1
        assert space.encode(arch).shape == (space.num_edges * len(space.ops),)
        nbs = space.neighbours(arch)
        assert len({tuple(n) for n in nbs}) == len(nbs) > 0 and not (nbs == arch).all(1).any()
        if not isinstance(space, DartsCNNSpace):  # one op change per neighbour, every one of them
            assert ((nbs != arch).sum(1) == 1).all() and len(nbs) == space.num_edges * (len(space.ops) - 1)
    with pytest.raises(ValueError):
        space.from_string("|nope~0|")


def test_nb201_canonical_string_round_trip():
    s = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    assert NB201Space().to_string(NB201Space().from_string(s)) == s


def test_darts_space_count_and_genotype_layout():
    space = DartsCNNSpace()
    assert space.count() == (1 * 7**2 * 3 * 7**2 * 6 * 7**2 * 10 * 7**2) ** 2
    assert len(DARTS_EDGES) == 14
    with pytest.raises(ValueError, match="keeps"):
        space.validate(np.zeros(28, np.int32))


@pytest.mark.slow
def test_darts_supernet_and_derived_forward_shapes(key):
    space = DartsCNNSpace(ops=("none", "skip_connect", "sep_conv_3x3", "max_pool_3x3"))
    x = jax.random.normal(key, (2, 8, 8, 3))
    net = make_supernet(space, C=2, N=3, num_classes=4)
    w, alphas, bs = net.init(key, x)
    assert alphas["normal"].shape == (14, 4) and alphas["reduce"].shape == (14, 4)
    logits, _ = jax.jit(lambda w, a: net.apply(w, a, bs, x))(w, alphas)
    assert logits.shape == (2, 4)
    arch = derive(space, alphas)
    dnet = make_derived(space, arch, C=2, N=3, num_classes=4, drop_path_prob=0.2)
    dw, da, _ = dnet.init(key, x)
    assert da == {}
    out_train, out_eval = jax.jit(lambda w: (dnet.apply(w, {}, {}, x, True, key=key)[0],
                                             dnet.apply(w, {}, {}, x, False)[0]))(dw)
    assert out_train.shape == out_eval.shape == (2, 4) and np.all(np.isfinite(out_train))


def test_op_registry():
    assert {"none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "max_pool_3x3", "sep_conv_3x3",
            "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"} <= set(OPS)
    x = jnp.ones((1, 8, 8, 4))
    for name in OPS:
        op = get_op(name, 4, 2, True, rngs=nnx.Rngs(params=0))
        assert op(x).shape == (1, 4, 4, 4), name
    with pytest.raises(ValueError, match="unknown op"):
        get_op("conv_99x99", 4)


@pytest.mark.parametrize("affine", [False, True])
def test_source_fused_cell_equals_edge_by_edge_cell(key, affine):
    """NB201 cells run edges grouped by source node (shared pools, concatenated convs): same output as the plain
    edge-by-edge DAG loop (forced here by passing a drop-path key with drop probability 0)."""
    from metanas.search_spaces.nb201 import EDGES
    from metanas.nn.boundary import Pure
    from metanas.supernet.cell import Cell, CellSpec

    spec = CellSpec(C=4, edges=EDGES, edge_ops=tuple(NB201Space().ops for _ in EDGES), affine=affine)
    cell = Pure(lambda rngs: Cell(spec, rngs=rngs))
    (p,) = cell.init(key)
    if affine:  # non-trivial BN affine parameters
        p = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.fold_in(key, a.size), a.shape), p)
    x = jax.random.normal(jax.random.fold_in(key, 1), (3, 6, 6, 4))
    mix = jax.nn.softmax(jax.random.normal(jax.random.fold_in(key, 2), (6, 5)), -1)
    fused, plain = jax.jit(lambda p: (cell.merge(p)((x,), mix),
                                      cell.merge(p)((x,), mix, drop_key=key, drop_prob=0.0)))(p)
    np.testing.assert_allclose(fused, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_gdas_step_on_the_darts_cnn_space(key):
    """GDAS samples one op per edge in both cell types of the DARTS CNN supernet; both alphas get a gradient."""
    space = DartsCNNSpace(ops=("none", "skip_connect", "sep_conv_3x3", "max_pool_3x3"))
    x = jax.random.normal(key, (4, 8, 8, 3))
    y = jnp.arange(4) % 3
    net = make_supernet(space, C=2, N=3, num_classes=3)
    w, alphas, bs = net.init(key, x)
    algo = GDAS()
    state = algo.init(w, alphas, bs, total_steps=4)
    s2, m = jax.jit(lambda s, k: algo.step(s, (x, y), (x, y), k, net=net, total_steps=4))(state, key)
    assert all(np.isfinite(float(v)) for v in m.values())
    for cell in ("normal", "reduce"):
        assert not np.allclose(s2.alphas[cell], state.alphas[cell]), cell


def test_derived_network_running_statistics(key):
    """``make_derived(..., running_stats=True)``: the same weights, the same training-mode logits as without; the
    BN running statistics move by momentum 0.1 towards the batch's (per cell, through the stage's scan), and
    evaluation normalises with them, so a sample's evaluation logits no longer depend on the rest of its batch."""
    from metanas.nn import primitives as F

    space = NB201Space()
    arch = np.array([3, 3, 3, 2, 1, 3], np.int32)  # several nor_conv_3x3 edges leave node 0: the fused path
    kw = dict(C=4, N=2, num_classes=3, stages=2)
    plain, tracked = make_derived(space, arch, **kw), make_derived(space, arch, **kw, running_stats=True)
    x = jax.random.normal(key, (6, 8, 8, 3))
    w, _, bs0 = plain.init(key, x)
    wt, _, bs = tracked.init(key, x)
    assert bs0 == {}
    jax.tree.map(np.testing.assert_array_equal, w, wt)
    np.testing.assert_array_equal(bs["stem_bn"]["var"], np.ones(4))
    assert bs["stages"][0]["edges"]["e0"]["nor_conv_3x3"]["bn"]["mean"].shape == (2, 4)  # one row per cell
    train = jax.jit(lambda w, bs, x: tracked.apply(w, {}, bs, x, True))
    logits, bs1 = train(w, bs, x)
    np.testing.assert_allclose(logits, plain.apply(w, {}, {}, x, True)[0], rtol=1e-5, atol=1e-6)
    stem = F.conv(x, w["stem"]["kernel"])
    np.testing.assert_allclose(bs1["stem_bn"]["mean"], 0.1 * stem.mean((0, 1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bs1["stem_bn"]["var"], 0.9 + 0.1 * stem.var((0, 1, 2), ddof=1), rtol=1e-4)
    cell_means = bs1["stages"][0]["edges"]["e0"]["nor_conv_3x3"]["bn"]["mean"]
    assert float(jnp.abs(cell_means).min()) > 0 and not np.allclose(cell_means[0], cell_means[1])
    evaluate = jax.jit(lambda w, bs, x: tracked.apply(w, {}, bs, x, False)[0])
    other = x.at[1:].set(jax.random.normal(jax.random.fold_in(key, 1), (5, 8, 8, 3)))
    np.testing.assert_allclose(evaluate(w, bs1, x)[0], evaluate(w, bs1, other)[0], rtol=1e-5, atol=1e-6)
    batch_eval = jax.jit(lambda w, x: plain.apply(w, {}, {}, x, False)[0])
    assert not np.allclose(batch_eval(w, x)[0], batch_eval(w, other)[0], atol=1e-4)  # batch statistics do mix
