"""Transfer search across tasks (metanas.search.transfer, metanas.benchmarks.transnas): leave-one-task-out is
enforced (a target's records never reach its own pre-training or its nested selection), zero-shot queries nothing,
the loader reads a user's own file, and transfer_transnas runs under debug=fast. Hand-made multi-task data are
SYNTHETIC (small random tables), built here."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import last_summary, run_fast, run_metanas, REPO
from metanas.experiment import compose_config
from metanas.benchmarks.transnas import TransNASDataError, load_transnas, pairwise_target, top_cells
from metanas.search import transfer as T
from metanas.predictors.pairwise import Pairwise

PRED = Pairwise(hidden=8, embed=4, steps=5, ensemble=2)
SEARCH = T.TransferSearch(budget=9, init=3, topk=3, pretrain_steps=8, finetune_steps=4, mix=0.5)


def _tasks(n_tasks=4, n_cells=40, seed=0):
    """SYNTHETIC multi-task table: shared one-hot cells, task values = shared linear score + task noise."""
    rng = np.random.default_rng(seed)
    archs = rng.integers(0, 4, (n_cells, 6))
    x = np.eye(4, dtype=np.float32)[archs].reshape(n_cells, 24)
    base = x @ rng.normal(size=24)
    values = (base[None] + rng.normal(size=(n_tasks, n_cells))).astype(np.float32)
    return x, values


def test_leave_one_out_never_hands_the_target_to_pretraining():
    x, v = _tasks()
    src, tgt = T.leave_one_out(v, 2)
    assert src.shape == (3, 40) and not any(np.array_equal(s, v[2]) for s in src)
    np.testing.assert_array_equal(tgt, v[2])
    with pytest.raises(ValueError, match="cannot be among its own source tasks"):
        T.leave_one_out(v, 1, sources=[0, 1, 3])


def test_target_records_do_not_change_its_pretraining_or_zero_shot_ranking():
    """Poison the target's row: the pre-trained model and the first (zero-shot chosen) queries stay the same."""
    x, v = _tasks()
    poisoned = v.copy()
    poisoned[1] = -poisoned[1] * 100 + 7  # the target's records reversed
    key = jax.random.PRNGKey(3)
    runs = []
    for table in (v, poisoned):
        src, tgt = T.leave_one_out(table, 1)
        runs.append(SEARCH.run(key, jnp.asarray(x), jnp.asarray(src), jnp.asarray(tgt), predictor=PRED))
    np.testing.assert_array_equal(runs[0].scores[0], runs[1].scores[0])  # zero-shot scores: pre-training only
    np.testing.assert_array_equal(runs[0].codes[:3], runs[1].codes[:3])  # first queries chosen before any target value
    assert not np.array_equal(runs[0].codes, runs[1].codes) or not np.array_equal(runs[0].values, runs[1].values)


@pytest.mark.slow  # ~45 s on a loaded 2-core CPU (two nested selections of 12 inner problems)
def test_nested_selection_of_a_target_never_reads_its_values():
    x, v = _tasks(n_tasks=4, n_cells=30)
    poisoned = v.copy()
    poisoned[0] = -poisoned[0]
    search = T.TransferSearch(budget=6, init=3, topk=3, pretrain_steps=4, finetune_steps=2)
    cfgs = [dict(mix=0.5), dict(mix=0.0)]
    hit = top_cells(v, 0.1)
    key = jax.random.PRNGKey(0)
    _, a = T.nested_select(key, x, v, cfgs, search, PRED, 1, hit)
    _, b = T.nested_select(key, x, poisoned, cfgs, search, PRED, 1, hit)
    np.testing.assert_array_equal(a[:, 0], b[:, 0])  # outer target 0's inner scores: identical
    assert np.isnan(a[:, 0, 0]).all()


def test_zero_shot_queries_nothing_before_ranking():
    """zero_shot takes no target values at all; run's first init queries are its top cells."""
    x, v = _tasks()
    src, tgt = T.leave_one_out(v, 0)
    key = jax.random.PRNGKey(1)
    _, scores = SEARCH.zero_shot(jax.random.split(key, 3)[0], jnp.asarray(x), jnp.asarray(src), predictor=PRED)
    tr = SEARCH.run(key, jnp.asarray(x), jnp.asarray(src), jnp.asarray(np.full(40, np.nan, np.float32)),
                    predictor=PRED)
    np.testing.assert_allclose(tr.scores[0], scores, rtol=1e-6)
    assert set(np.asarray(tr.codes[:3]).tolist()) == set(np.argsort(-np.asarray(scores))[:3].tolist())


@pytest.mark.slow  # ~50 s on a loaded 2-core CPU (two vmapped searches compiled); the CLI tests check budgets too
def test_search_budget_distinct_queries_and_real_values():
    x, v = _tasks()
    for s in (SEARCH, T.TransferSearch(budget=9, init=3, topk=3, source=False)):
        src, tgt = T.leave_one_out(v, 3)
        tr = jax.vmap(lambda k: s.run(k, jnp.asarray(x), jnp.asarray(src), jnp.asarray(tgt), predictor=PRED))(
            jax.random.split(jax.random.PRNGKey(0), 2))
        for codes, values in zip(np.asarray(tr.codes), np.asarray(tr.values)):
            assert len(set(codes.tolist())) == 9
            np.testing.assert_allclose(values, tgt[codes])
        assert tr.scores.shape == (2, s.rounds + 1, 40)


def test_rank_target_matches_numpy_and_is_scale_free():
    v = np.array([3.0, -1.0, 2.0, 2.0, 10.0], np.float32)
    known = np.array([1, 1, 1, 1, 0], bool)
    a = np.asarray(T.rank_target(jnp.asarray(v), jnp.asarray(known)))
    np.testing.assert_allclose(a, pairwise_target(v, known), rtol=1e-5)
    assert a[4] == 1.0 and a[2] == a[3] and a[0] > a[2] > a[1] > 0
    np.testing.assert_allclose(a, np.asarray(T.rank_target(jnp.asarray(5 * v - 100), jnp.asarray(known))), rtol=1e-6)


def test_pairwise_fit_init_backward_compatible():
    x, v = _tasks(n_tasks=1)
    y = pairwise_target(v[0])
    p0 = PRED.fit(jax.random.PRNGKey(0), jnp.asarray(x), jnp.asarray(y), 40)
    again = PRED.fit(jax.random.PRNGKey(0), jnp.asarray(x), jnp.asarray(y), 40, init=None)
    jax.tree_util.tree_map(np.testing.assert_array_equal, p0, again)
    import dataclasses
    same = dataclasses.replace(PRED, steps=0).fit(jax.random.PRNGKey(1), jnp.asarray(x), jnp.asarray(y), 40, init=p0)
    jax.tree_util.tree_map(np.testing.assert_array_equal, p0, same)  # 0 fine-tuning steps: the given params


def _user_file(path, tasks=("a", "b", "c"), n=12, seed=0):
    rng = np.random.default_rng(seed)
    archs = {tuple(int(o) for o in rng.integers(0, 4, 6)) for _ in range(4 * n)}
    archs = sorted(archs)[:n]
    d = {t: {str(a): {"val_accuracy": float(rng.normal()), "flops": {"score": 1.0, "time": 0.1}} for a in archs}
         for t in tasks}
    path.write_text(json.dumps(d))
    return d


def test_load_user_file_and_orientation(tmp_path):
    d = _user_file(tmp_path / "mine.json")
    data = load_transnas(tmp_path / "mine.json", lower_is_better=["b"])
    width = sum(len(np.unique(data.archs[:, p])) for p in range(6))  # one-hot over the choices seen per position
    assert data.tasks == ("a", "b", "c") and data.x.shape == (12, width) and data.valid.shape == (3, 12)
    k = list(d["a"])[0]
    assert data.valid[1, 0] == pytest.approx(-d["b"][k]["val_accuracy"])
    assert data.valid[0, 0] == pytest.approx(d["a"][k]["val_accuracy"])
    assert (data.x.sum(1) == 6).all() and len({tuple(r) for r in data.x}) == 12  # 6 positions, distinct cells
    assert np.isfinite(data.proxies[..., data.proxy_names.index("flops")]).all()
    with pytest.raises(TransNASDataError, match="not found"):
        load_transnas(tmp_path / "none.json")
    sub = dict(d)  # a task lacking a cell: allowed, NaN there (each task uses the cells it has)
    sub["c"] = {k: v for k, v in list(d["c"].items())[:-1]}
    (tmp_path / "sub.json").write_text(json.dumps(sub))
    assert np.isnan(load_transnas(tmp_path / "sub.json").valid[2]).sum() == 1
    bad = dict(d)
    bad["c"] = {"(0, x, 1)": {"val_accuracy": 1.0}, **d["c"]}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(TransNASDataError, match="not a tuple of ints"):
        load_transnas(tmp_path / "bad.json")


def test_shared_transnas_file(data_dir):
    from metanas.benchmarks.transnas import TASKS, default_path

    data = load_transnas(default_path(data_dir))
    assert data.tasks == TASKS and data.valid.shape == (7, 711)
    assert top_cells(data.valid).sum(1).tolist() == [7] * 7
    assert (data.valid[TASKS.index("room_layout")] < 0).all()  # negative loss, higher is better


def _subset_file(path, n_pos=4, n_choice=3, tasks=("t0", "t1", "t2"), seed=0):
    """SYNTHETIC user file of another shape: 4 positions x 3 choices, every task holding its own random 80 %."""
    rng = np.random.default_rng(seed)
    archs = np.stack(np.meshgrid(*[np.arange(n_choice)] * n_pos, indexing="ij"), -1).reshape(-1, n_pos)
    w = rng.normal(size=(n_pos, n_choice))
    d = {}
    for t in tasks:
        keep = rng.random(len(archs)) < 0.8
        v = w[np.arange(n_pos), archs].sum(1) + 0.3 * rng.normal(size=len(archs))
        d[t] = {str(tuple(int(o) for o in a)): {"val_accuracy": float(x)} for a, x, k in zip(archs, v, keep) if k}
    path.write_text(json.dumps(d))
    return d


def test_transfer_transnas_fast(tmp_path):
    """Default mode trust on a user file of another shape (tasks holding different cells), paired baselines; the
    pairwise transfer and zero-shot modes still run."""
    d = _subset_file(tmp_path / "mine.json")
    run_fast(tmp_path, "experiment=transfer_transnas", "seeds=2", f"train.file={tmp_path}/mine.json",
             "train.target=t1")
    s, run_dir = last_summary(tmp_path, "transfer_transnas")
    m = s["metrics_per_seed"]
    assert s["metrics"]["n_candidates"] == len(d["t1"])  # the target's own cells are its candidates
    for k in ("queries_per_seed", "zero_shot_queries_per_seed", "scratch_queries_per_seed"):
        assert len(m[k]) == 2 and all(1 <= q <= 11 for q in m[k])
    assert s["metrics"]["vs_zero_shot_wins"] + s["metrics"]["vs_zero_shot_ties"] + \
        s["metrics"]["vs_zero_shot_losses"] == 2
    assert (run_dir / "trust.json").exists()


@pytest.mark.slow  # the same experiment's other target-model loop and modes (test_transfer_transnas_fast: the default)
def test_transfer_transnas_other_loop_and_modes_fast(tmp_path):
    """The trust search's other loop (jitted GP or host forest, whichever is not the default), the pairwise transfer
    and the zero-shot modes run on the same user file."""
    _subset_file(tmp_path / "mine.json")
    default = compose_config(["experiment=transfer_transnas", "debug=fast"]).train.target_model
    other = "gp" if default != "gp" else "gp+forest"  # the other loop: jitted (GP) or on the host (forest)
    run_fast(tmp_path, "experiment=transfer_transnas", "seeds=2", f"train.file={tmp_path}/mine.json",
             "train.target=t1", f"train.target_model={other}")
    s, run_dir = last_summary(tmp_path, "transfer_transnas")
    assert all(1 <= q <= 11 for q in s["metrics_per_seed"]["queries_per_seed"])
    w = json.loads((run_dir / "trust.json").read_text())["member_weights_per_round"]
    assert np.allclose(np.sum(w, 1), 1.0, atol=1e-4)
    run_fast(tmp_path, "experiment=transfer_transnas", "seeds=2", f"train.file={tmp_path}/mine.json",
             "train.target=t1", "train.mode=transfer")
    s, run_dir = last_summary(tmp_path, "transfer_transnas")
    m = s["metrics_per_seed"]
    assert len(m["transfer_queries_per_seed"]) == 2 and all(1 <= q <= 11 for q in m["transfer_queries_per_seed"])
    q = json.loads((run_dir / "queried.json").read_text())
    assert all(len(set(c)) == 10 for c in q["transfer"]["codes"])
    run_fast(tmp_path, "experiment=transfer_transnas", f"train.file={tmp_path}/mine.json", "train.target=t1",
             "train.mode=zero_shot")
    s, run_dir = last_summary(tmp_path, "transfer_transnas")
    assert "tau_0" in s["metrics"] and (run_dir / "ranking.json").exists()


def test_transfer_transnas_rejects_target_among_sources(tmp_path):
    _user_file(tmp_path / "mine.json")
    p = run_metanas("experiment=transfer_transnas", "debug=fast", f"train.file={tmp_path}/mine.json",
                    "train.target=a", "train.source_tasks=[a,b]", f"results_dir={tmp_path}/runs", cwd=REPO)
    assert p.returncode != 0 and "must not contain the target" in p.stderr


def test_transfer_nb201_fast(tmp_path):
    run_fast(tmp_path, "experiment=transfer_nb201", "seeds=2", "train.target=cifar10")
    s, run_dir = last_summary(tmp_path, "transfer_nb201")
    m = s["metrics_per_seed"]
    assert len(m["queries_to_top"]) == 2 and all(50 < a < 100 for a in m["best_test_acc"])
    q = json.loads((run_dir / "queried.json").read_text())
    assert all(len(set(c)) == 10 for c in q["transfer"]["codes"])


def test_nb201_tables_from_a_user_folder_without_the_shared_layout(data_dir, tmp_path):
    """A folder holding the NB201 CSVs themselves (no ``nasbench201/`` subfolder) loads like the shared copy."""
    from metanas.benchmarks.nb201 import ACC_FILE, LOWFI_FILE, VALID_FILE, load_tables

    mine = tmp_path / "my_nb201"
    mine.mkdir()
    for f in (ACC_FILE, LOWFI_FILE, VALID_FILE):
        (mine / f).symlink_to(data_dir / "nasbench201" / f)
    a, b = load_tables(str(mine)), load_tables(str(data_dir))
    np.testing.assert_array_equal(a.valid_acc, b.valid_acc)
    np.testing.assert_array_equal(a.test_acc, b.test_acc)


def test_ensemble_with_the_zscore_order():
    """prior_weight 0: the model alone; a large weight (or zscore_init): the first queries are the sources' z-score
    order's top; the weight fades with prior_halflife."""
    x, v = _tasks()
    src, tgt = T.leave_one_out(v, 0)
    key = jax.random.PRNGKey(1)
    ens = T.TransferSearch(budget=9, init=3, topk=3, pretrain_steps=8, finetune_steps=4, prior_weight=1e4)
    tr = ens.run(key, jnp.asarray(x), jnp.asarray(src), jnp.asarray(np.full(40, np.nan, np.float32)), predictor=PRED)
    z = T.zscore_order(src)
    assert set(np.asarray(tr.codes[:3]).tolist()) == set(np.argsort(-z)[:3].tolist())
    zi = T.TransferSearch(budget=9, init=3, topk=3, pretrain_steps=8, finetune_steps=4, zscore_init=True)
    tr = zi.run(key, jnp.asarray(x), jnp.asarray(src), jnp.asarray(tgt), predictor=PRED)
    assert set(np.asarray(tr.codes[:3]).tolist()) == set(np.argsort(-z)[:3].tolist())
    u = jnp.arange(40.0)
    np.testing.assert_array_equal(SEARCH.blend(u, jnp.ones(40), 0), u)
    fade = T.TransferSearch(budget=9, init=3, topk=3, prior_weight=2.0, prior_halflife=10.0)
    p = jnp.asarray(np.random.default_rng(0).normal(size=40), jnp.float32)
    d0, d10 = fade.blend(u, p, 0) - fade.blend(u, 0 * p, 0), fade.blend(u, p, 10) - fade.blend(u, 0 * p, 10)
    np.testing.assert_allclose(np.asarray(d10), 0.5 * np.asarray(d0), rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # 272 s under load average ~10 on the shared 2-core VM (two searches compiled); rejection below
def test_search_nb201_with_source_tasks_fast(tmp_path):
    """The default experiment with train.source_tasks: pre-trained on CIFAR-100, searches CIFAR-10 (packaged
    tables), baselines side by side."""
    run_fast(tmp_path, "experiment=search_nb201", "seeds=2", "train.source_tasks=[cifar100]",
             "train.baselines=[random]")
    s, run_dir = last_summary(tmp_path, "search_nb201")
    m = s["metrics_per_seed"]
    assert len(m["best_test_acc"]) == 2 and all(80 < a <= 94.38 for a in m["best_test_acc"])
    assert {"random_best_test_acc", "zero_shot_zscore_best_test_acc"} <= set(m)
    q = json.loads((run_dir / "queried.json").read_text())
    assert all(len(set(c)) == 12 for c in q["codes"])


def test_search_nb201_refuses_its_target_among_source_tasks(tmp_path):
    p = run_metanas("experiment=search_nb201", "debug=fast", "train.source_tasks=[cifar10]",
                    f"results_dir={tmp_path}/runs", cwd=REPO)
    assert p.returncode != 0 and "must not contain the target" in p.stderr


# ---- the typed train: blocks (validated before anything is written) ----------------------------------------------

def _validated(*overrides):
    from hydra import compose, initialize_config_dir

    from metanas.config import CONF_DIR, validate

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*overrides, "debug=fast"])
    validate(cfg)
    return cfg


@pytest.mark.parametrize("overrides,expected", [
    (("experiment=transfer_transnas", "train.mode=sideways"), "'train.mode' = 'sideways' is not a choice"),
    (("experiment=transfer_transnas", "train.members=orders+oracle"), "unknown part(s) ['oracle']"),
    (("experiment=transfer_transnas", "train.target=a", "train.source_tasks=[a,b]"), "must not contain the target 'a'"),
    (("experiment=transfer_transnas", "train.mix=1.5"), "'train.mix' = 1.5 is out of range; expected float in [0, 1]"),
    (("experiment=transfer_transnas", "train.top_frac=0.0"), "'train.top_frac' = 0.0 is out of range"),
    (("experiment=transfer_transnas", "train.tau_at=[0,-1]"), "'train.tau_at[1]' = -1 is out of range"),
    (("experiment=transfer_transnas", "+train.prior=1"), "unknown key 'train.prior' for experiment transfer_transnas"),
    (("experiment=transfer_nb201", "train.target=svhn"), "'train.target' = 'svhn' is not a choice"),
    (("experiment=transfer_nb201", "train.source_tasks=[cifar10,svhn]"), "unknown data set(s) ['svhn']"),
    (("experiment=transfer_nb201", "train.budget=12"), "budget - init a multiple of topk"),
    (("experiment=transfer_nb201", "train.pretrain_steps=-1"), "'train.pretrain_steps' = -1 is out of range"),
    (("experiment=search_nb201", "train.source_tasks=[svhn]"), "unknown data set(s) ['svhn']"),
    (("experiment=search_nb201", "train.source_tasks=[cifar100]", "train.transfer.scale=0"),
     "'train.transfer.scale' = 0.0 is out of range"),
    (("experiment=search_nb201", "train.source_tasks=[cifar100]", "+train.transfer.steps=3"),
     "unknown key 'train.transfer.steps'"),
])
def test_transfer_train_blocks_reject_bad_values_naming_the_key(overrides, expected):
    from metanas.config import ConfigError

    with pytest.raises(ConfigError) as e:
        _validated(*overrides)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_transfer_train_blocks_fill_defaults_from_one_place():
    """Keys a yaml leaves out take the dataclass defaults; search_nb201's train.transfer is the same settings type
    as the transfer experiments' flat keys."""
    from metanas.config import train_block
    from metanas.runners.predictor import SearchTrain
    from metanas.runners.transfer import NB201TransferTrain, TransferSettings, TransNASTrain

    # the schema fills a key the yaml leaves out while composing; an untyped config (a saved config.yaml on resume)
    # that lacks one gets it from the dataclass when the train block is built
    plain = OmegaConf.create(OmegaConf.to_container(_validated("experiment=transfer_transnas"), resolve=True))
    del plain.train["prior_halflife"]
    t = train_block(TransNASTrain, plain)
    assert t.prior_halflife == TransferSettings.prior_halflife and t.tau_at == (0, 10, 20)
    s = train_block(SearchTrain, _validated("experiment=search_nb201", "train.source_tasks=[cifar100]"))
    assert isinstance(s.transfer, TransferSettings) and s.transfer.prior_weight == 0.0
    ts = s.transfer.search(s.budget, s.init, s.topk)
    assert (ts.budget, ts.mix, ts.pretrain_steps) == (s.budget, 0.5, s.transfer.pretrain_steps)
    n = train_block(NB201TransferTrain, _validated("experiment=transfer_nb201"))
    assert n.search(n.budget, n.init, n.topk).budget == 10  # the fast override


def test_bad_transfer_value_exits_2_before_a_run_directory_exists(tmp_path):
    p = run_metanas("experiment=transfer_nb201", "train.target=cifar10", "train.source_tasks=[cifar10]",
                    f"results_dir={tmp_path}/runs", f"meta_dataset={tmp_path}/meta.jsonl", cwd=tmp_path)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "must not contain the target 'cifar10'" in lines[0], p.stderr
    assert list(tmp_path.iterdir()) == []
