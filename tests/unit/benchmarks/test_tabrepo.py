"""TabRepo loader: shapes, values cross-checked against the raw CSV, clear errors, a user's own copy."""

import csv
import json
import math
import shutil

import numpy as np
import pytest

from metanas.benchmarks.tabrepo import (CONFIGS_FILE, META_FILE, RESULTS_FILE, TASK_FEATURE_NAMES, TabRepoError,
                                        fit_standardiser, load_tabrepo, normalized_regret, standardise)


@pytest.fixture(scope="module")
def tr(request):
    from conftest import DATA_DIR

    if not DATA_DIR.exists():
        pytest.skip("shared data not found")
    return load_tabrepo(DATA_DIR)


def test_shapes_and_dtypes(tr):
    T, C = len(tr.task_names), len(tr.config_names)
    assert (T, C) == (73, 104)  # the README's 73 tasks x 104 configs
    assert tr.error.shape == tr.train_time.shape == (T, C)
    assert tr.config_features.shape == (C, len(tr.config_feature_names)) and tr.config_features.dtype == np.float32
    assert tr.task_features.shape == (T, len(tr.task_feature_names)) and tr.task_features.dtype == np.float32
    assert np.isfinite(tr.error).all() and np.isfinite(tr.task_features).all()
    assert len(set(tr.task_names)) == T


def test_values_match_the_raw_csv(tr, data_dir):
    root = data_dir / "tabrepo_lightgbm"
    with open(root / RESULTS_FILE) as f:
        rows = list(csv.DictReader(f))
    for r in rows[::997]:
        i, j = tr.task_names.index(r["dataset"]), tr.config_names.index(r["framework"])
        assert tr.error[i, j] == pytest.approx(float(r["metric_error"]), rel=1e-6)
        assert tr.train_time[i, j] == pytest.approx(float(r["time_train_s"]), rel=1e-6)
        assert tr.problem_type[i] == r["problem_type"]
    # rank 1 in the file is the config of least error on that task
    for r in rows:
        if float(r["rank"]) == 1.0:
            i = tr.task_names.index(r["dataset"])
            assert tr.error[i].min() == pytest.approx(float(r["metric_error"]), rel=1e-6)


def test_config_encoding(tr, data_dir):
    hp = json.loads((data_dir / "tabrepo_lightgbm" / CONFIGS_FILE).read_text())["LightGBM_r1"]["hyperparameters"]
    x = tr.config_features[tr.config_names.index("LightGBM_r1")]
    assert x[0] == pytest.approx(math.log(hp["learning_rate"]), rel=1e-6)
    assert x[1] == pytest.approx(math.log(hp["num_leaves"]), rel=1e-6)
    assert x[2] == pytest.approx(hp["feature_fraction"], rel=1e-6)
    assert x[4] == float(hp["extra_trees"])
    c1, c2 = (tr.config_features[tr.config_names.index(n)] for n in ("LightGBM_c1", "LightGBM_c2"))
    np.testing.assert_allclose(c1[:4], c2[:4])  # c2 = c1 + extra_trees
    assert (c1[4], c2[4]) == (0.0, 1.0)


def test_task_features_standardised(tr):
    np.testing.assert_allclose(tr.task_features.mean(0), 0.0, atol=1e-5)
    sd = tr.task_features.std(0)
    assert np.all((np.abs(sd - 1) < 1e-4) | (sd == 0))
    # raw log-instances is the log of the OpenML quality; a larger data set has a larger feature
    k = tr.task_feature_names.index("log_instances")
    assert np.all(np.exp(tr.task_features_raw[:, k]) >= 100)


def test_normalized_regret_properties(tr):
    r = normalized_regret(tr.error)
    assert r.min() == 0.0 and r.max() == pytest.approx(1.0)
    np.testing.assert_allclose(r.min(1), 0.0)
    assert (np.argmin(r, 1) == np.argmin(tr.error, 1)).all()
    # invariant to a positive affine change of one task's metric
    e2 = tr.error.copy()
    e2[0] = 3.0 * e2[0] + 7.0
    np.testing.assert_allclose(normalized_regret(e2), r, atol=1e-5)


def _copy(data_dir, tmp_path):
    dst = tmp_path / "mytabrepo"
    shutil.copytree(data_dir / "tabrepo_lightgbm", dst)
    for p in dst.iterdir():
        p.chmod(0o644)
    return dst


def test_user_copy_subset_loads(data_dir, tmp_path):
    dst = _copy(data_dir, tmp_path)
    with open(dst / RESULTS_FILE) as f:
        rows = list(csv.DictReader(f))
    keep = sorted({r["dataset"] for r in rows})[:3]
    with open(dst / RESULTS_FILE, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(r for r in rows if r["dataset"] in keep)
    tr = load_tabrepo(dst)
    assert sorted(tr.task_names) == keep and tr.error.shape == (3, 104)


@pytest.mark.parametrize("damage,expected", [
    ("delete_results", f"TabRepo file missing: .*{RESULTS_FILE}"),
    ("delete_meta", f"TabRepo file missing: .*{META_FILE}"),
    ("bad_json", "not valid JSON"),
    ("drop_row", "matrix is incomplete"),
    ("bad_number", "is not a number"),
    ("no_column", r"missing column\(s\) \['metric_error'\]"),
])
def test_clear_errors(data_dir, tmp_path, damage, expected):
    dst = _copy(data_dir, tmp_path)
    res = dst / RESULTS_FILE
    lines = res.read_text().splitlines(keepends=True)
    if damage == "delete_results":
        res.unlink()
    elif damage == "delete_meta":
        (dst / META_FILE).unlink()
    elif damage == "bad_json":
        (dst / CONFIGS_FILE).write_text("{not json")
    elif damage == "drop_row":
        res.write_text("".join(lines[:5] + lines[6:]))
    elif damage == "bad_number":
        parts = lines[1].split(",")
        parts[4] = "abc"
        res.write_text("".join([lines[0], ",".join(parts)] + lines[2:]))
    elif damage == "no_column":
        res.write_text(lines[0].replace("metric_error", "err") + "".join(lines[1:]))
    with pytest.raises(TabRepoError, match=expected) as e:
        load_tabrepo(dst)
    assert "\n" not in str(e.value)


def test_missing_directory(tmp_path):
    with pytest.raises(TabRepoError, match="TabRepo (directory not found|file missing)"):
        load_tabrepo(tmp_path / "nowhere")


def _hand_made(tmp_path, tasks=("1", "2", "3"), n_instances=(100, 1000, 10000)):
    """A tiny SYNTHETIC TabRepo in single files: 3 tasks x 2 configs (no shared layout, no folder)."""
    res, cfg, meta = tmp_path / "my_results.csv", tmp_path / "my_configs.json", tmp_path / "my_meta.csv"
    with open(res, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["dataset", "framework", "problem_type", "metric_error", "time_train_s"])
        for i, t in enumerate(tasks):
            w.writerow([t, "A", "binary", 0.1 + i, 1.0])
            w.writerow([t, "B", "binary", 0.2, 2.0])
    cfg.write_text(json.dumps({"A": {"hyperparameters": {"learning_rate": 0.1}},
                               "B": {"hyperparameters": {"num_leaves": 64, "extra_trees": True}}}))
    with open(meta, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["tid", "name", "NumberOfInstances", "NumberOfFeatures", "NumberOfClasses",
                    "NumberOfNumericFeatures", "NumberOfSymbolicFeatures", "NumberOfMissingValues",
                    "NumberOfInstancesWithMissingValues", "MajorityClassSize", "MinorityClassSize"])
        for t, n in zip(tasks, n_instances):
            w.writerow([t, f"ds{t}", n, 10, 2, 8, 2, 0, 0, n // 2 + 1, n // 2 - 1])
    return res, cfg, meta


def test_user_task_results_as_single_files(tmp_path):
    res, cfg, meta = _hand_made(tmp_path)
    tr = load_tabrepo(results=res, configs=cfg, metadata=meta)
    assert tr.task_names == ["1", "2", "3"] and tr.config_names == ["A", "B"]
    np.testing.assert_allclose(tr.error, [[0.1, 0.2], [1.1, 0.2], [2.1, 0.2]], rtol=1e-6)
    assert tr.hyperparameters[1]["num_leaves"] == 64 and tr.hyperparameters[0]["num_leaves"] == 31
    assert tr.task_features_raw[2, 0] == pytest.approx(math.log(10000), rel=1e-6)
    with pytest.raises(TabRepoError, match="results="):
        load_tabrepo(results=res, configs=cfg)
    with pytest.raises(TabRepoError, match="train_tasks"):
        load_tabrepo(results=res, configs=cfg, metadata=meta, train_tasks=["9"])


def test_new_tasks_do_not_move_the_training_standardisation(tmp_path):
    res, cfg, meta = _hand_made(tmp_path)
    a = load_tabrepo(results=res, configs=cfg, metadata=meta, train_tasks=["1", "2"])
    k = TASK_FEATURE_NAMES.index("log_instances")
    # z-scored with tasks 1 and 2 only: they sit at -1 and +1, the held-out task 3 outside
    np.testing.assert_allclose(a.task_features[:2, k], [-1.0, 1.0], atol=1e-5)
    assert a.task_features[2, k] == pytest.approx(3.0, abs=1e-4)  # log 1e4 is 2 half-spans above log 1e3
    # changing the held-out task's meta-features changes nothing of the training tasks' features
    (tmp_path / "other").mkdir()
    res2, cfg2, meta2 = _hand_made(tmp_path / "other", n_instances=(100, 1000, 10 ** 7))
    b = load_tabrepo(results=res2, configs=cfg2, metadata=meta2, train_tasks=["1", "2"])
    np.testing.assert_array_equal(a.task_features[:2], b.task_features[:2])
    assert b.task_features[2, k] > a.task_features[2, k]
    # ... whereas the exploratory default (all loaded tasks) would move them
    c = load_tabrepo(results=res2, configs=cfg2, metadata=meta2)
    assert not np.allclose(c.task_features[:2, k], a.task_features[:2, k])
    # the same with the standalone standardiser fit on training rows
    s = fit_standardiser(b.task_features_raw[:2])
    np.testing.assert_allclose(s.apply(b.task_features_raw), b.task_features, atol=1e-6)
    np.testing.assert_allclose(standardise(b.task_features_raw, [0, 1]), b.task_features, atol=1e-6)


def test_meta_learner_scales_with_past_tasks_only():
    """fit_meta_learner's prediction for task 0 does not depend on the held-out task's meta-features (SYNTHETIC)."""
    from metanas.hpo.simulation import fit_meta_learner

    rng = np.random.default_rng(0)
    feats, cf, y = rng.normal(size=(6, 3)), rng.normal(size=(4, 2)), rng.random((6, 4))
    past = [0, 1, 2, 3, 4]
    p1 = fit_meta_learner(feats, cf, y, past, seed=0)(feats[5])
    f2 = feats.copy()
    f2[5] = 100.0  # the held-out task's own features far away: the past tasks' scaling must not move
    m2 = fit_meta_learner(f2, cf, y, past, seed=0)
    np.testing.assert_allclose(m2(feats[5]), p1, rtol=1e-6)
    # an affine change of all rows (e.g. standardised over all tasks) gives the same model
    np.testing.assert_allclose(fit_meta_learner(3 * feats + 1, cf, y, past, seed=0)(3 * feats[5] + 1), p1, rtol=1e-5)
