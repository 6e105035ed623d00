"""Predictors: encodings, ridge/MLP baselines, the pairwise model and its loss, the meta-dataset reader."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metanas.predictors import encodings as E
from metanas.predictors.meta_dataset import MetaDatasetError, all_pairs, read_meta_dataset
from metanas.predictors.metrics import ranking_metrics
from metanas.predictors.pairwise import Pairwise, pair_targets
from metanas.predictors.pointwise import MLP, Ridge
from metanas.run_store import JsonlError, append_jsonl
from metanas.search_spaces.nb201 import NB201Space

SPACE = NB201Space()


@pytest.mark.parametrize("kind", ["onehot", "onehot_path"])
def test_encodings_injective_on_nb201(kind):
    x = np.asarray(E.encode_archs(SPACE, SPACE.enumerate(), kind))
    assert len(np.unique(x, axis=0)) == 15625


def test_path_encoding_by_hand():
    # |nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|avg_pool_3x3~1|none~2|: live routes 0->3 (skip) and 0->1->3
    arch = SPACE.from_string("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|avg_pool_3x3~1|none~2|")
    f = np.asarray(E.nb201_path_encoding(SPACE, arch))
    k = 4  # non-none ops: skip=0, conv1x1=1, conv3x3=2, pool=3
    expect = np.zeros(k + k**2 + k**3, np.float32)
    expect[0] = 1  # (skip)
    expect[k + 2 * k + 3] = 1  # (conv3x3, pool)
    np.testing.assert_array_equal(f, expect)
    # same counts for the all-none cell: nothing
    assert E.nb201_path_encoding(SPACE, jnp.zeros(6, jnp.int32)).sum() == 0


def test_prune_keeps_output_equivalent_cells_together():
    a = SPACE.from_string("|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|skip_connect~0|none~1|none~2|")  # 1 and 2 dead
    b = SPACE.from_string("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    np.testing.assert_array_equal(E.nb201_prune(SPACE, a), b)
    dead_end = SPACE.from_string("|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    np.testing.assert_array_equal(E.nb201_prune(SPACE, dead_end)[0], 0)  # node 1 feeds nothing: its input edge goes
    live = SPACE.from_string("|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    np.testing.assert_array_equal(E.nb201_prune(SPACE, live), live)
    # a pruned cell is a fixed point
    archs = SPACE.enumerate()[::37]
    once = jax.vmap(lambda a: E.nb201_prune(SPACE, a))(archs)
    np.testing.assert_array_equal(jax.vmap(lambda a: E.nb201_prune(SPACE, a))(once), once)


def test_hparam_encoding_log_scale_and_onehot():
    spec = [E.NumericHP("lr", 1e-4, 1e-1, log=True), E.CategoricalHP("opt", ("adam", "sgd")),
            E.NumericHP("epochs", 0, 100)]
    np.testing.assert_allclose(E.encode_hparams(spec, {"lr": 10**-2.5, "opt": "sgd", "epochs": 25}),
                               [0.5, 0, 1, 0.25], atol=1e-6)
    with pytest.raises(ValueError, match="opt='rmsprop' not in"):
        E.encode_hparams(spec, {"lr": 1e-2, "opt": "rmsprop", "epochs": 1})


def _pairwise_small():
    return Pairwise(hidden=16, layers=1, embed=8, steps=200, batch=64, ensemble=3)


@pytest.mark.parametrize("jit", [True, False])
def test_pairwise_swap_consistency(key, jit):
    model = _pairwise_small()
    params = model.init(key, 30)
    params["v"] = 0.05 * jax.random.normal(key, (30,))  # the linear skip starts at 0: make it count
    xa, xb = jax.random.normal(key, (2, 50, 30))
    compare = jax.jit(model.compare) if jit else model.compare
    m_ab = compare(params, xa, xb)
    m_ba = compare(params, xb, xa)
    assert np.abs(m_ab).max() > 0.05  # comparisons are not trivially zero
    np.testing.assert_allclose((1 + m_ab) * (1 + m_ba), 1.0, rtol=1e-4)  # same identity as the true ratios
    np.testing.assert_allclose(model.log_ratio(params, xa, xb), -model.log_ratio(params, xb, xa), atol=1e-6)
    np.testing.assert_array_equal(np.sign(m_ab), -np.sign(m_ba))
    # ranking by the O(N) utility agrees with every O(N^2) pairwise comparison
    u = model.utility(params, xa)
    m_all = model.compare(params, xa[:, None, :].repeat(50, 1).reshape(-1, 30), jnp.tile(xa, (50, 1))).reshape(50, 50)
    np.testing.assert_array_equal(np.sign(m_all), np.sign(u[:, None] - u[None, :]))


def test_pair_loss_unchanged_when_pair_and_label_swapped(key):
    model = _pairwise_small()
    params = model.init(key, 30)
    xa, xb = jax.random.normal(key, (2, 20, 30))
    p_a, p_b = jax.random.uniform(key, (2, 20), minval=10, maxval=95)
    loss = jax.jit(model.pair_loss)
    l_ab = loss(params, xa, xb, (p_a - p_b) / p_b)
    l_ba = loss(params, xb, xa, (p_b - p_a) / p_a)
    np.testing.assert_allclose(l_ab, l_ba, rtol=1e-5)


def test_pair_loss_gradient_matches_finite_differences(key):
    model = Pairwise(hidden=8, layers=1, embed=4)
    params = model.init(key, 6)
    xa, xb = jax.random.normal(key, (2, 10, 6))
    t = jax.random.uniform(key, (10,), minval=-0.5, maxval=0.5)
    g = jax.jit(jax.grad(model.pair_loss))(params, xa, xb, t)
    loss = jax.jit(model.pair_loss)
    eps = 1e-3
    for leaf_path in (("w",), ("v",)):
        p0 = params[leaf_path[0]]
        for idx in range(2):
            plus = dict(params, **{leaf_path[0]: p0.at[idx].add(eps)})
            minus = dict(params, **{leaf_path[0]: p0.at[idx].add(-eps)})
            fd = (loss(plus, xa, xb, t) - loss(minus, xa, xb, t)) / (2 * eps)
            np.testing.assert_allclose(g[leaf_path[0]][idx], fd, rtol=2e-2, atol=2e-3)


def test_pairwise_target_on_hand_made_records(tmp_path):
    path = tmp_path / "meta.jsonl"
    rows = [("c10", "val", [1.0, 0.0], 0.5), ("c10", "val", [0.0, 1.0], 0.6), ("c10", "val", [1.0, 1.0], 0.8),
            ("c100", "val", [1.0, 0.0], 0.2), ("c100", "val", [0.0, 1.0], 0.3)]
    for ds, split, enc, acc in rows:
        append_jsonl(path, {"dataset": ds, "split": split, "encoding": enc, "metrics": {"val_acc": acc}})
    md = read_meta_dataset(path, "val_acc")
    assert md.x.shape == (5, 2) and md.groups == [("c10", "val"), ("c100", "val")]
    i, j = all_pairs(md.group)
    assert len(i) == 3 * 2 + 2 * 1  # ordered pairs only within a data set / split
    assert {(int(a), int(b)) for a, b in zip(i, j)} >= {(1, 0), (0, 1), (3, 4)} and (0, 3) not in set(zip(i, j))
    t = np.asarray(pair_targets(jnp.asarray(md.y), i, j))
    expect = {(1, 0): (0.6 - 0.5) / 0.5, (0, 1): (0.5 - 0.6) / 0.6, (2, 0): (0.8 - 0.5) / 0.5, (4, 3): (0.3 - 0.2) / 0.2}
    got = {(int(a), int(b)): float(v) for a, b, v in zip(i, j, t)}
    for k, v in expect.items():
        assert got[k] == pytest.approx(v, rel=1e-5)


def test_meta_dataset_errors_name_file_and_line(tmp_path):
    good = {"dataset": "d", "split": "s", "encoding": [1.0, 2.0], "metrics": {"val_acc": 0.5}}
    path = tmp_path / "meta.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(good)[:25] + "\n")  # truncated second line
    with pytest.raises(JsonlError, match=r"meta.jsonl:2: not valid JSON"):
        read_meta_dataset(path, "val_acc")
    path.write_text(json.dumps(good) + "\n\n" + json.dumps({k: v for k, v in good.items() if k != "split"}) + "\n")
    with pytest.raises(JsonlError, match=r"meta.jsonl:3: missing key\(s\) \['split'\]"):
        read_meta_dataset(path, "val_acc")
    path.write_text(json.dumps(good) + "\n" + json.dumps(dict(good, encoding=[1.0])) + "\n")
    with pytest.raises(MetaDatasetError, match=r"meta.jsonl:2: 'encoding' has length 1, expected 2"):
        read_meta_dataset(path, "val_acc")
    path.write_text(json.dumps(dict(good, metrics={"loss": 1.0})) + "\n")
    with pytest.raises(MetaDatasetError, match=r"meta.jsonl:1: 'metrics' \(or the row\) needs a number 'val_acc' > 0"):
        read_meta_dataset(path, "val_acc")
    with pytest.raises(MetaDatasetError, match="not found"):
        read_meta_dataset(tmp_path / "absent.jsonl", "val_acc")


def test_ridge_matches_closed_form_and_ignores_rows_past_n(key):
    x = np.asarray(jax.random.normal(key, (80, 5)))
    y = x @ np.arange(1.0, 6.0) + 3.0
    y[50:] = 1e6  # rows past n must not matter
    params = jax.jit(Ridge(lam=1e-6).fit)(key, jnp.asarray(x), jnp.asarray(y), 50)
    np.testing.assert_allclose(params["w"], np.arange(1.0, 6.0), atol=1e-3)
    np.testing.assert_allclose(params["b"], 3.0, atol=1e-3)
    lam = 5.0
    xc, yc = x[:50] - x[:50].mean(0), y[:50] - y[:50].mean()
    ref = np.linalg.solve(xc.T @ xc + lam * np.eye(5), xc.T @ yc)
    np.testing.assert_allclose(Ridge(lam).fit(key, jnp.asarray(x), jnp.asarray(y), 50)["w"], ref, rtol=1e-3)


@pytest.mark.parametrize("model", [pytest.param(MLP(hidden=32, layers=1, steps=200, ensemble=2), marks=pytest.mark.slow),
                                   MLP(hidden=32, layers=1, steps=200, ensemble=2, lr=1e-2, loss="mape"),
                                   Pairwise(hidden=32, layers=1, embed=8, steps=200, batch=128, ensemble=2)])
def test_predictors_learn_a_synthetic_ranking(key, model):
    """SYNTHETIC: p = 50 + 10 tanh(x . v) + x0 * x1; trained on 150 points, ranked on 500 held-out points."""
    kx, kv = jax.random.split(key)
    x = jax.random.normal(kx, (650, 8))
    p = 50 + 10 * jnp.tanh(x @ jax.random.normal(kv, (8,)) / 3) + x[:, 0] * x[:, 1]
    params = jax.jit(model.fit)(key, x[:150], p[:150], 150)
    mean, std = model.score_std(params, x[150:])
    assert ranking_metrics(mean, p[150:])["kendall_tau"] > 0.7
    assert float(std.mean()) > 0  # two members disagree somewhere: an uncertainty estimate


def test_mlp_refuses_an_unknown_loss():
    with pytest.raises(ValueError, match="choose mse or mape"):
        MLP(loss="mae")


def test_zero_cost_features_cover_all_cells(data_dir):
    from metanas.benchmarks.nb201 import load_zero_cost

    zc = load_zero_cost(str(data_dir))
    f = E.nb201_zero_cost_features(SPACE, zc)
    assert f.shape == (15625, 13) and np.isfinite(f).all()
    g = E.nb201_zero_cost_features(SPACE, zc, normal_scores=True)
    np.testing.assert_array_equal(g[:, :13], f)
    assert g.shape == (15625, 26) and np.isfinite(g).all() and abs(g[:, 13:].mean()) < 0.05  # ties: mean ranks
    from scipy.stats import spearmanr  # a monotone transform of each proxy: the same ranking

    assert spearmanr(f[:, 7], g[:, 20]).statistic > 0.999


def test_meta_dataset_experiment_filter_skips_other_records(tmp_path):
    """The run store's meta-dataset mixes per-run records (no encoding) with collect's per-arch records."""
    path = tmp_path / "meta.jsonl"
    append_jsonl(path, {"experiment": "toy_regression", "metrics": {"loss": 0.1}, "wall_time_s": 1.0})
    append_jsonl(path, {"experiment": "collect:arch", "dataset": "d", "split": "s", "encoding": [1.0],
                        "metrics": {"val_acc": 0.4}})
    append_jsonl(path, {"experiment": "collect:arch", "dataset": "d", "split": "s", "encoding": [0.0],
                        "metrics": {"val_acc": 0.6}})
    md = read_meta_dataset(path, "val_acc", experiment="collect:arch")
    np.testing.assert_allclose(md.y, [0.4, 0.6])
    with pytest.raises(JsonlError, match=r"meta.jsonl:1: missing key"):  # unfiltered: the per-run row is named
        read_meta_dataset(path, "val_acc")
    with pytest.raises(MetaDatasetError, match="no rows with experiment='collect'"):
        read_meta_dataset(path, "val_acc", experiment="collect")


@pytest.mark.slow
def test_pairwise_within_group_pairs_ignore_offsets_between_groups(key):
    """SYNTHETIC: 20 groups, p = offset_g * (1 + 0.1 x.v); only within-group order is learnable and is learnt."""
    kx, kv, ko = jax.random.split(key, 3)
    x = jax.random.normal(kx, (400, 6))
    group = jnp.repeat(jnp.arange(20), 20)
    p = (1 + 5 * jax.random.uniform(ko, (20,)))[group] * (1.5 + 0.1 * jnp.tanh(x @ jax.random.normal(kv, (6,))))
    model = Pairwise(hidden=16, layers=1, embed=4, steps=150, batch=64)
    params = jax.jit(model.fit)(key, x, p, 300, group)  # the last 5 groups are held out
    u = model.score(params, x[300:])
    taus = [ranking_metrics(u[g * 20:(g + 1) * 20], p[300:][g * 20:(g + 1) * 20])["kendall_tau"] for g in range(5)]
    assert np.mean(taus) > 0.6


def test_darts_adjacency_ops_encoding_is_injective_and_readable(key):
    from metanas.search_spaces.darts_cnn import DartsCNNSpace

    space = DartsCNNSpace()
    archs = np.asarray(jax.vmap(space.sample)(jax.random.split(key, 3000)))
    enc = np.asarray(jax.jit(jax.vmap(lambda a: E.darts_adjacency_ops(space, a)))(archs))
    assert enc.shape == (3000, 2 * 14 * 8)
    distinct_archs = {a.tobytes() for a in archs}
    assert len({e.tobytes() for e in enc}) == len(distinct_archs)  # distinct archs -> distinct encodings
    cell = enc[0, : 14 * 8]
    adj, ops = cell[:14], cell[14:].reshape(14, 7)
    np.testing.assert_array_equal(adj, archs[0, :14] != space.none_index)
    assert adj.sum() == 8 and (ops.sum(1) == adj).all()  # 2 kept inputs per node, one op each
